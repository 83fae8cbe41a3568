"""One typed I/O driver for blocking and asyncio code.

The dialogue (set-up, AUTH, transactions, the drop-in's single commands) is
written once, as generators that *yield* typed I/O requests — :class:`Read`,
:class:`Write`, :class:`StartTLS`... — and receive their results.
:func:`run_sync` performs each request on a blocking transport,
:func:`run_async` awaits it on an asyncio transport. An exception is thrown
back into the generator at the request that failed, so dialogue code reads like
blocking code with ``yield from`` in front of every I/O step::

    data = yield from perform(Read(transport, timeout=5.0))   # typed: bytes

Each request class implements both ways of running itself, so a new kind of
request cannot be added without both, and a transport method is called by
name only here, where a type checker sees the call.
"""

from __future__ import annotations

import abc
import ssl
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from ..transports import (
    DIRECT,
    AnyTransport,
    AsyncTransportProtocol,
    Route,
    Transport,
    open_route,
)

__all__ = [
    "IO",
    "Close",
    "Connection",
    "Offload",
    "OpenConnection",
    "PendingPlaintext",
    "Poll",
    "Read",
    "Request",
    "StartTLS",
    "Write",
    "perform",
    "run_async",
    "run_sync",
]

R = TypeVar("R")
T = TypeVar("T")


class Request(abc.ABC, Generic[R]):
    """One I/O step and how it runs, blocking or awaited; its result is an ``R``."""

    __slots__ = ()

    @abc.abstractmethod
    def run_blocking(self) -> R:
        """Perform the request on a blocking transport."""

    @abc.abstractmethod
    async def run_awaited(self) -> R:
        """Perform the request on an asyncio transport."""


#: A dialogue step that performs I/O and finally returns a ``T``.
IO = Generator[Request[Any], Any, T]


def perform(request: Request[R]) -> IO[R]:
    """Ask the driver to perform ``request``; return its (typed) result."""
    result = yield request
    # The driver sends back exactly what ``request`` produced, an ``R``.
    return cast(R, result)


def _blocking(transport: AnyTransport) -> Transport:
    # A session is driven by the runner of its own kind (Session: run_sync over
    # a blocking transport; AsyncSession: run_async over an asyncio one).
    return cast(Transport, transport)


def _awaitable(transport: AnyTransport) -> AsyncTransportProtocol:
    return cast(AsyncTransportProtocol, transport)


@dataclass(frozen=True, slots=True)
class Read(Request[bytes]):
    """The next bytes from the server (``b""`` at end of stream)."""

    transport: AnyTransport
    timeout: float

    def run_blocking(self) -> bytes:
        return _blocking(self.transport).read(timeout=self.timeout)

    async def run_awaited(self) -> bytes:
        return await _awaitable(self.transport).read(timeout=self.timeout)


@dataclass(frozen=True, slots=True)
class Write(Request[None]):
    """Write all of ``data`` (one flight)."""

    transport: AnyTransport
    data: bytes
    timeout: float

    def run_blocking(self) -> None:
        _blocking(self.transport).write(self.data, timeout=self.timeout)

    async def run_awaited(self) -> None:
        await _awaitable(self.transport).write(self.data, timeout=self.timeout)


@dataclass(frozen=True, slots=True)
class Poll(Request["bytes | None"]):
    """Bytes already received, without waiting: ``None`` if none, ``b""`` at EOF."""

    transport: AnyTransport

    def run_blocking(self) -> bytes | None:
        return _blocking(self.transport).poll()

    async def run_awaited(self) -> bytes | None:
        return await _awaitable(self.transport).poll()


@dataclass(frozen=True, slots=True)
class PendingPlaintext(Request[bytes]):
    """Bytes that arrived but were not read (checked before a STARTTLS handshake)."""

    transport: AnyTransport

    def run_blocking(self) -> bytes:
        return _blocking(self.transport).pending_plaintext()

    async def run_awaited(self) -> bytes:
        return await _awaitable(self.transport).pending_plaintext()


def _resumption(transport: AnyTransport, session: ssl.SSLSession | None) -> dict[str, Any]:
    # Only smtpsec's own transports take session=; a caller's transport (through
    # connect_transport) keeps the protocol's signature and never resumes.
    if session is None or not getattr(type(transport), "resumes_tls_sessions", False):
        return {}
    return {"session": session}


@dataclass(frozen=True, slots=True)
class StartTLS(Request[AnyTransport]):
    """Run the TLS handshake; the result is the new (TLS) transport.

    ``session`` asks to resume an earlier TLS session (smtpsec's transports only).
    """

    transport: AnyTransport
    context: ssl.SSLContext
    server_hostname: str | None
    timeout: float
    verify_identity: Callable[[bytes], object] | None = None
    session: ssl.SSLSession | None = None

    def run_blocking(self) -> AnyTransport:
        return _blocking(self.transport).start_tls(
            self.context,
            server_hostname=self.server_hostname,
            timeout=self.timeout,
            verify_identity=self.verify_identity,
            **_resumption(self.transport, self.session),
        )

    async def run_awaited(self) -> AnyTransport:
        return await _awaitable(self.transport).start_tls(
            self.context,
            server_hostname=self.server_hostname,
            timeout=self.timeout,
            verify_identity=self.verify_identity,
            **_resumption(self.transport, self.session),
        )


@dataclass(frozen=True, slots=True)
class Close(Request[None]):
    """Close the transport (TLS close_notify first, where TLS is active)."""

    transport: AnyTransport

    def run_blocking(self) -> None:
        _blocking(self.transport).close()

    async def run_awaited(self) -> None:
        await _awaitable(self.transport).close()


@dataclass(frozen=True, slots=True)
class Connection:
    """What :class:`OpenConnection` opened.

    Attributes:
        transport: the plaintext transport to the server (through the proxy's tunnel).
        address: ``"ip:port"`` the TCP connection went to (the proxy's when proxied).
    """

    transport: AnyTransport
    address: str


@dataclass(frozen=True, slots=True)
class OpenConnection(Request[Connection]):
    """Open a TCP connection (no TLS yet) along ``route``: directly or through a
    proxy, from a source address, racing a dual-stack name's addresses (RFC 8305).

    The whole step (connect, proxy handshake) is bounded by ``timeout``.
    """

    host: str
    port: int
    timeout: float
    route: Route = DIRECT

    def run_blocking(self) -> Connection:
        transport, address = open_route(
            self.host, self.port, timeout=self.timeout, route=self.route
        )
        return Connection(transport, address)

    async def run_awaited(self) -> Connection:
        # Loads asyncio: awaited dialogues only.
        from ..transports._asyncio import open_route as open_async_route

        transport, address = await open_async_route(
            self.host, self.port, timeout=self.timeout, route=self.route
        )
        return Connection(transport, address)


@dataclass(frozen=True, slots=True)
class Offload(Request[R]):
    """CPU-heavy or blocking work (PBKDF2, file locks): inline when blocking, in a
    thread under asyncio, so it never stalls the event loop."""

    work: Callable[[], R]

    def run_blocking(self) -> R:
        return self.work()

    async def run_awaited(self) -> R:
        import asyncio  # only awaited dialogues get here; blocking code never loads it

        return await asyncio.to_thread(self.work)


def run_sync(steps: IO[T]) -> T:
    """Drive ``steps`` with blocking calls; return what the dialogue returns."""
    try:
        request = next(steps)
        while True:
            try:
                result = request.run_blocking()
            except BaseException as exc:  # re-raised inside the dialogue, at this step
                request = steps.throw(exc)
            else:
                request = steps.send(result)
    except StopIteration as stop:
        return cast(T, stop.value)


async def run_async(steps: IO[T]) -> T:
    """Drive ``steps`` by awaiting each request; return what the dialogue returns."""
    try:
        request = next(steps)
        while True:
            try:
                result = await request.run_awaited()
            except BaseException as exc:  # incl. CancelledError: the dialogue cleans up
                request = steps.throw(exc)
            else:
                request = steps.send(result)
    except StopIteration as stop:
        return cast(T, stop.value)
