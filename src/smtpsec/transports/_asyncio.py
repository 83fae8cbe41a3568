"""The asyncio transport: the same contract as the blocking one, with awaitable methods.

Socket and TLS errors become smtpsec errors here, at the edge; the words of
the advice (what the caller should change) are the engine's.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ..errors import ConnectError, SMTPSecError
from ..errors import TimeoutError as DeadlineError
from ..tls import TLSInfo, can_resume_async, resuming, session_info, tls_session
from ._proxy import ProxyHandshake
from ._route import DEFAULT_HAPPY_EYEBALLS_DELAY, Route, format_address, proxy_failure
from ._route import proxy_unreachable as _proxy_unreachable
from ._socket import ack_promptly, connect_failure, sni, unbracket

__all__ = ["AsyncTransport", "open_connection", "open_route"]

T = TypeVar("T")

if sys.version_info >= (3, 11):

    async def _bounded(step: Awaitable[T], timeout: float, dispose: Callable[[T], object]) -> T:
        """Await ``step`` for at most ``timeout`` seconds (``asyncio.TimeoutError`` after).

        Not ``asyncio.wait_for``: before Python 3.12 it swallows a cancellation
        that arrives just as ``step`` completes, and the task would go on as if
        it had never been cancelled. ``asyncio.timeout`` keeps it; a result the
        caller then never uses is cleaned up by the caller's own cancellation
        handling, so ``dispose`` is not needed here.
        """
        async with asyncio.timeout(timeout):
            return await step

else:  # Python 3.10 has no asyncio.timeout

    async def _bounded(step: Awaitable[T], timeout: float, dispose: Callable[[T], object]) -> T:
        """Await ``step`` for at most ``timeout`` seconds, never losing a cancellation.

        ``step`` runs as its own task and is waited for with ``asyncio.wait``,
        which (unlike ``wait_for`` on 3.10) raises ``CancelledError`` whenever
        the caller is cancelled. The abandoned step is cancelled; if it had
        already produced a result (a connection), ``dispose`` closes it, so a
        cancelled or timed-out call leaves nothing open.
        """
        task = asyncio.ensure_future(step)
        try:
            done, _ = await asyncio.wait({task}, timeout=timeout)
        except asyncio.CancelledError:
            await _abandon(task, dispose)
            raise
        if not done:
            await _abandon(task, dispose)
            raise asyncio.TimeoutError
        return task.result()

    async def _abandon(task: asyncio.Future[T], dispose: Callable[[T], object]) -> None:
        """Cancel ``task``, close what it produced, and wait until it has ended."""

        def cleanup(done: asyncio.Future[T]) -> None:
            if not done.cancelled() and done.exception() is None:
                dispose(done.result())

        task.add_done_callback(cleanup)  # runs even if we are cancelled again below
        task.cancel()
        await asyncio.wait({task})


#: Received bytes held before reading pauses: a server that floods an idle or
#: busy client meets TCP backpressure, not unbounded memory. Large enough for
#: the replies to a whole flight while its write drains (4,096 replies of up to
#: about 1 KiB), like the blocking transport's take-in limit.
_BUFFER_LIMIT = 4 * 1024 * 1024


class _Protocol(asyncio.Protocol):
    """Collects received bytes; one waiter at a time (the SMTP client reads in turn)."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self.transport: asyncio.Transport | None = None
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _BUFFER_LIMIT and not self._paused and self.transport:
            self.transport.pause_reading()
            self._paused = True
        self._wake()

    def take(self) -> bytes:
        """Hand out what is buffered and let reading resume."""
        data = bytes(self.buffer)
        self.buffer.clear()
        if self._paused and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
        self._paused = False
        return data

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait(self, timeout: float) -> None:
        """Wait until data, EOF or an error arrives; ``asyncio.TimeoutError`` after ``timeout``."""
        # The future exists before anything can run: data arriving from now on
        # wakes it. It is awaited directly with a timer, not through
        # asyncio.wait_for, which before Python 3.12 swallows a cancellation
        # that arrives in the same loop iteration as the data (see _bounded).
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        timer = loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None


def _abort(transport: asyncio.BaseTransport | None) -> None:
    if transport is not None and isinstance(transport, asyncio.Transport):
        transport.abort()


def _expire(waiter: asyncio.Future[None]) -> None:
    # Already done only if data and the deadline fell in the same loop pass.
    if not waiter.done():  # pragma: no branch
        waiter.set_exception(asyncio.TimeoutError())


async def open_connection(
    host: str,
    port: int,
    *,
    timeout: float,
    source_address: tuple[str, int] | None = None,
    happy_eyeballs_delay: float = DEFAULT_HAPPY_EYEBALLS_DELAY,
) -> AsyncTransport:
    """Open a TCP connection (no TLS yet), racing a dual-stack name's addresses (RFC 8305)."""
    transport, _address = await open_route(
        host,
        port,
        timeout=timeout,
        route=Route(source_address=source_address, happy_eyeballs_delay=happy_eyeballs_delay),
    )
    return transport


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(unbracket(host))
    except ValueError:
        return False
    return True


async def _dial(
    host: str, port: int, *, timeout: float, route: Route
) -> tuple[asyncio.Transport, _Protocol]:
    loop = asyncio.get_running_loop()
    # An address literal has nothing to race (and the loop's race spawns tasks).
    delay = None if _is_literal(host) else route.happy_eyeballs_delay
    try:
        transport, protocol = await _bounded(
            # Happy Eyeballs by the loop (RFC 8305): staggered attempts, interleaved
            # families, the first connection wins and the others are closed.
            loop.create_connection(
                _Protocol,
                unbracket(host),
                port,
                happy_eyeballs_delay=delay,
                interleave=1 if delay is not None else None,
                local_addr=route.source_address,
            ),
            timeout,
            dispose=lambda pair: pair[0].abort(),
        )
    except asyncio.TimeoutError as exc:
        # Before Python 3.12.8 the loop's race leaves its cancelled attempts to
        # finish on their own: let them, so nothing outlives this call.
        for _ in range(3):
            await asyncio.sleep(0)
        raise connect_failure(host, port, TimeoutError(), timeout=timeout) from exc
    except OSError as exc:
        raise connect_failure(host, port, exc, timeout=timeout) from exc
    # asyncio already sets TCP_NODELAY on TCP connections.
    return transport, protocol


async def open_route(
    host: str, port: int, *, timeout: float, route: Route
) -> tuple[AsyncTransport, str]:
    """Open a connection to ``host:port`` along ``route`` (see :func:`._route.open_route`).

    Returns:
        The plaintext transport and the address the TCP connection went to
        (the proxy's when proxied).
    """
    proxy = route.proxy
    if proxy is None:
        transport, protocol = await _dial(host, port, timeout=timeout, route=route)
        address = format_address(transport.get_extra_info("peername"))
        return AsyncTransport(transport, protocol, peer=f"{host}:{port}"), address
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    handshake = ProxyHandshake(proxy, host, port)  # refuses an unusable host before any I/O
    try:
        transport, protocol = await _dial(proxy.host, proxy.port, timeout=timeout, route=route)
    except (ConnectError, DeadlineError) as exc:
        raise _proxy_unreachable(proxy, exc) from exc
    address = format_address(transport.get_extra_info("peername"))
    tunnel = AsyncTransport(transport, protocol, peer=f"{host}:{port}")
    try:
        await tunnel.write(handshake.start(), timeout=max(deadline - loop.time(), 0.001))
        while not handshake.done:
            if deadline <= loop.time():
                raise DeadlineError("proxy handshake deadline")
            data = await tunnel.read(timeout=deadline - loop.time())
            reply = handshake.receive(data)
            if reply:
                await tunnel.write(reply, timeout=max(deadline - loop.time(), 0.001))
    except SMTPSecError as exc:
        transport.abort()
        raise proxy_failure(proxy, exc) from exc
    except BaseException:
        transport.abort()
        raise
    # The mail server's first bytes, if they came with the proxy's reply.
    protocol.buffer[:0] = handshake.leftover
    return tunnel, address


class AsyncTransport:
    """An awaitable transport over an asyncio transport/protocol pair."""

    #: ``start_tls`` takes ``session=`` (resumption, on smtpsec's own contexts).
    resumes_tls_sessions = True
    #: The loop keeps receiving while ``write`` waits for the buffer to drain,
    #: up to 4 MiB of unread bytes (the blocking transport's take-in limit),
    #: far more than the replies to any engine flight.
    reads_while_writing = True

    def __init__(
        self,
        transport: asyncio.Transport,
        protocol: _Protocol,
        *,
        tls: TLSInfo | None = None,
        peer: str = "server",
    ) -> None:
        self._transport = transport
        self._protocol = protocol
        self._tls = tls
        self._peer = peer

    @property
    def tls(self) -> TLSInfo | None:
        """TLS facts, or ``None`` for plaintext."""
        return self._tls

    @property
    def tls_session(self) -> ssl.SSLSession | None:
        """The TLS session (for resumption later), or ``None`` for plaintext."""
        return tls_session(self._transport.get_extra_info("ssl_object"))

    async def write(self, data: bytes, *, timeout: float) -> None:
        """Write ``data``; wait (bounded) until the buffer drains below the high mark."""
        if self._transport.is_closing():
            raise ConnectError(f"connection to {self._peer} is closed")
        assert isinstance(self._transport, asyncio.WriteTransport)
        self._transport.write(data)
        # Flow control: with a large body, wait until the kernel took most of it.
        size = self._transport.get_write_buffer_size()
        deadline = asyncio.get_running_loop().time() + timeout
        while size > 1024 * 1024:
            if asyncio.get_running_loop().time() > deadline:
                raise DeadlineError(
                    f"writing to {self._peer} timed out; the server stopped reading"
                )
            await asyncio.sleep(0.001)
            if self._protocol.eof:
                raise ConnectError(f"connection to {self._peer} lost while writing")
            size = self._transport.get_write_buffer_size()

    async def read(self, *, timeout: float) -> bytes:
        """Return received bytes, waiting up to ``timeout``; ``b""`` at end of stream."""
        proto = self._protocol
        if not proto.buffer and not proto.eof:
            try:
                await proto.wait(timeout)
            except asyncio.TimeoutError as exc:
                raise DeadlineError(
                    f"nothing arrived from {self._peer} within the timeout"
                ) from exc
        data = proto.take()
        if not data and proto.error is not None:
            raise ConnectError(f"connection to {self._peer} lost: {proto.error}")
        return data

    async def poll(self) -> bytes | None:
        """Bytes already received without waiting: ``None`` if none, ``b""`` at EOF."""
        # Let the loop run its reader callbacks for data the kernel already has:
        # one pass polls the selector, the next delivers what it found.
        for _ in range(2):
            await asyncio.sleep(0)
        proto = self._protocol
        if proto.buffer:
            return proto.take()
        return b"" if proto.eof else None

    async def pending_plaintext(self) -> bytes:
        """Bytes received but not read yet (checked before the STARTTLS handshake)."""
        await asyncio.sleep(0)  # let already-arrived data be delivered
        return bytes(self._protocol.buffer)

    async def start_tls(
        self,
        context: ssl.SSLContext,
        *,
        server_hostname: str | None,
        timeout: float,
        verify_identity: Callable[[bytes], object] | None = None,
        session: ssl.SSLSession | None = None,
    ) -> AsyncTransport:
        """Run the TLS handshake with ``loop.start_tls``; return the TLS transport.

        ``session`` is offered for resumption when ``context`` is one of
        smtpsec's (``loop.start_tls`` has no ``session=``); otherwise ignored.
        """
        loop = asyncio.get_running_loop()
        # On Python 3.11+ loop.start_tls swaps the protocol before the loop runs
        # again, so plaintext arriving after the caller's pending_plaintext()
        # check goes into the handshake and breaks it (fail closed). On 3.10,
        # wait_for starts it a loop pass later; bytes landing in that gap are
        # caught before the next command as a RemoteProtocolError.
        offered = session if session is not None and can_resume_async(context) else None
        try:
            with resuming(offered):
                handshake = loop.start_tls(
                    self._transport,
                    self._protocol,
                    context,
                    server_hostname=sni(server_hostname),
                    ssl_handshake_timeout=timeout,
                )
                new = await _bounded(handshake, timeout, dispose=_abort)
        except asyncio.TimeoutError as exc:
            self._transport.abort()
            raise DeadlineError(
                f"TLS handshake with {self._peer} did not finish within {timeout:g}s"
            ) from exc
        except ssl.SSLError:
            self._transport.abort()
            raise
        except (ConnectionError, OSError) as exc:
            self._transport.abort()
            raise ConnectError(
                f"connection to {self._peer} lost during the TLS handshake: {exc}"
            ) from exc
        if new is None:  # pragma: no cover - only when the loop is closing
            raise ConnectError(f"connection to {self._peer} closed during the TLS handshake")
        self._protocol.transport = new  # pause/resume reading now act on TLS
        ack_promptly(new.get_extra_info("socket"))
        try:
            info = session_info(new.get_extra_info("ssl_object"), context, verify_identity)
        except BaseException:
            new.abort()
            raise
        return AsyncTransport(new, self._protocol, tls=info, peer=self._peer)

    async def close(self) -> None:
        """Close; with TLS, send close_notify first and do not wait for the peer's.

        R-8314-3.4-1: closing a TLS transport writes the close_notify to the
        socket inside ``close()`` (asyncio's TLS layer does so on 3.10 and on
        3.11+ when the socket is not backed up, which is when a session ends
        normally). R-8314-3.4-2: the peer's is not awaited: the transport is
        let go at once, with no await in between, so neither a cancellation
        nor a silent peer can leave a shutdown running. A plaintext transport
        with unsent bytes (the peer stopped reading) is let go as well.
        """
        transport = self._transport
        if not transport.is_closing():
            transport.close()
        if self.tls is not None or transport.get_write_buffer_size():
            transport.abort()
