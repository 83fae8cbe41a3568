"""AsyncTransport over real loopback sockets: reads, polls, flow control, TLS, closing.

The peers are tiny asyncio servers in the test's own loop (or one thread for a
TLS peer that must misbehave), so each test controls exactly when the other
side writes, reads or goes away.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

import pytest
from _aio_kit import async_test, eventually

import smtpsec
from smtpsec.testing import CA, LeafCert
from smtpsec.transports import AsyncTransport
from smtpsec.transports._asyncio import open_connection

#: More than the kernel's socket buffers on both ends can hold, so a write of
#: this size must wait for the peer to read.
BIG: Final = 32 * 1024 * 1024
#: What AsyncTransport.write leaves in asyncio's buffer before it returns.
HIGH_MARK: Final = 1024 * 1024


@dataclass
class Peer:
    """The server side of one loopback connection, driven by the test."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def reset(self) -> None:
        """Close with RST (SO_LINGER 0) instead of FIN."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


@asynccontextmanager
async def _server(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[tuple[AsyncTransport, asyncio.Event]]:
    """Serve ``handle`` on loopback; yield a plain AsyncTransport connected to it.

    Handlers run until the yielded event is set; the teardown sets it and waits
    for them, so no server task outlives the test.
    """
    done = asyncio.Event()
    handlers: list[asyncio.Task[None]] = []

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await handle(reader, writer)
            await done.wait()
        finally:
            writer.close()

    server = await asyncio.start_server(tracked, "127.0.0.1", 0, ssl=ssl_context)
    port = server.sockets[0].getsockname()[1]
    transport = await open_connection("127.0.0.1", port, timeout=5)
    try:
        yield transport, done
    finally:
        await transport.close()
        done.set()
        await asyncio.gather(*handlers, return_exceptions=True)
        # The client does not wait for the server's side of a TLS close
        # (R-8314-3.4-2): let this server finish accepting and closing.
        await eventually(lambda: not _server_tasks(), "the test server's connections to end")
        server.close()
        await server.wait_closed()


def _server_tasks() -> list[asyncio.Task[object]]:
    """This module's server tasks still running: accepting a connection, or handling one."""
    return [
        task
        for task in asyncio.all_tasks()
        if task is not asyncio.current_task()
        and task.get_coro().__qualname__.endswith(
            ("_accept_connection2", "_server.<locals>.tracked")
        )
    ]


@asynccontextmanager
async def peer_and_transport() -> AsyncIterator[tuple[Peer, AsyncTransport]]:
    """A plain loopback connection: the server side for the test to drive, and the client."""
    peers: list[Peer] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(Peer(reader, writer))

    async with _server(handle) as (transport, _done):
        await eventually(lambda: bool(peers), "the server accepting")
        yield peers[0], transport


@asynccontextmanager
async def tls_peer(cert: LeafCert) -> AsyncIterator[AsyncTransport]:
    """A TLS server that completes the handshake and then waits; yields the client side."""

    async def handle(_reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
        return None

    async with _server(handle, cert.server_context()) as (transport, _done):
        yield transport


# ---------------------------------------------------------------------------- reading


@async_test
async def test_poll_pending_plaintext_and_read() -> None:
    async with peer_and_transport() as (peer, transport):
        assert await transport.poll() is None  # nothing arrived: no waiting either

        peer.writer.write(b"220 hello\r\n")
        await _arrived(transport)
        # pending_plaintext only looks: the bytes are still there to read.
        assert await transport.pending_plaintext() == b"220 hello\r\n"
        assert await transport.read(timeout=5) == b"220 hello\r\n"
        assert await transport.pending_plaintext() == b""
        assert await transport.poll() is None

        peer.writer.write(b"250 late\r\n")
        assert await _poll_until_something(transport) == b"250 late\r\n"

        peer.writer.close()
        assert await _poll_until_something(transport) == b""  # EOF
        assert await transport.read(timeout=5) == b""


async def _arrived(transport: AsyncTransport) -> None:
    for _ in range(1000):
        if await transport.pending_plaintext():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("nothing arrived")


async def _poll_until_something(transport: AsyncTransport) -> bytes:
    for _ in range(1000):
        data = await transport.poll()
        if data is not None:
            return data
        await asyncio.sleep(0.005)
    raise AssertionError("poll never saw anything")


@async_test
async def test_read_waits_for_data_then_returns_it() -> None:
    async with peer_and_transport() as (peer, transport):
        reading = asyncio.create_task(transport.read(timeout=5))
        await asyncio.sleep(0)
        assert not reading.done()
        peer.writer.write(b"220 now\r\n")
        assert await reading == b"220 now\r\n"


@async_test
async def test_read_timeout_is_a_smtpsec_timeout() -> None:
    async with peer_and_transport() as (_peer, transport):
        with pytest.raises(smtpsec.TimeoutError, match="nothing arrived from"):
            await transport.read(timeout=0.05)


@async_test
async def test_read_after_a_reset_is_a_connect_error() -> None:
    async with peer_and_transport() as (peer, transport):
        peer.reset()
        with pytest.raises(smtpsec.ConnectError, match="lost"):
            await _read_until_error(transport)


async def _read_until_error(transport: AsyncTransport) -> None:
    for _ in range(1000):  # the RST may still be on its way
        assert await transport.read(timeout=5) == b""
        await asyncio.sleep(0.005)


@async_test
async def test_cancel_arriving_with_the_data_is_not_lost() -> None:
    """A cancellation in the same loop iteration as the data still cancels the read.

    asyncio.wait_for before Python 3.12 returned the data instead and the task
    carried on as if never cancelled.
    """
    async with peer_and_transport() as (_peer, transport):
        reading = asyncio.create_task(transport.read(timeout=5))
        await asyncio.sleep(0)  # the read is now waiting
        transport._protocol.data_received(b"220 hi\r\n")  # data arrives...
        reading.cancel()  # ...and a cancellation, before the task runs again
        with pytest.raises(asyncio.CancelledError):
            await reading


# ---------------------------------------------------------------------------- writing


@async_test
async def test_large_write_waits_for_the_peer_to_read() -> None:
    """Flow control: write() returns only once most of the data left asyncio's buffer."""
    async with peer_and_transport() as (peer, transport):
        writing = asyncio.create_task(transport.write(b"x" * BIG, timeout=30))
        await asyncio.sleep(0)
        assert transport._transport.get_write_buffer_size() > HIGH_MARK
        assert not writing.done()  # the peer reads nothing yet: the write must wait

        received = asyncio.create_task(_read_exactly(peer.reader, BIG))
        await writing
        assert transport._transport.get_write_buffer_size() <= HIGH_MARK
        assert await received == BIG


async def _read_exactly(reader: asyncio.StreamReader, count: int) -> int:
    got = 0
    while got < count:
        chunk = await reader.read(1024 * 1024)
        assert chunk, "EOF before everything arrived"
        got += len(chunk)
    return got


@async_test
async def test_write_to_a_peer_that_never_reads_times_out() -> None:
    async with peer_and_transport() as (_peer, transport):
        with pytest.raises(smtpsec.TimeoutError, match="stopped reading"):
            await transport.write(b"x" * BIG, timeout=0.2)


@async_test
async def test_peer_gone_while_a_write_waits_is_a_connect_error() -> None:
    async with peer_and_transport() as (peer, transport):
        writing = asyncio.create_task(transport.write(b"x" * BIG, timeout=30))
        await asyncio.sleep(0)
        assert not writing.done()
        peer.reset()
        with pytest.raises(smtpsec.ConnectError, match="lost while writing"):
            await writing


@async_test
async def test_close_is_idempotent_and_write_after_close_fails() -> None:
    async with peer_and_transport() as (peer, transport):
        await transport.close()
        await transport.close()
        with pytest.raises(smtpsec.ConnectError, match="closed"):
            await transport.write(b"NOOP\r\n", timeout=5)
        assert await peer.reader.read() == b""  # the peer saw the connection end


# ---------------------------------------------------------------------------- connecting


@async_test
async def test_refused_connection_is_a_connect_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
    with pytest.raises(smtpsec.ConnectError, match=f"127.0.0.1:{port}"):
        await open_connection("127.0.0.1", port, timeout=5)


@async_test
async def test_connect_deadline_is_a_smtpsec_timeout() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        # A deadline that has already passed: the first wait inside connect trips it.
        with pytest.raises(smtpsec.TimeoutError, match="timed out"):
            await open_connection("127.0.0.1", listener.getsockname()[1], timeout=0)


# ---------------------------------------------------------------------------- TLS


@async_test
async def test_start_tls_with_an_identity_check(smtpsec_ca: CA, smtpsec_cert: LeafCert) -> None:
    """RFC 7817 path: the chain is checked by ssl, the name by the given callable."""
    seen: list[bytes] = []
    context = smtpsec_ca.client_context()
    context.check_hostname = False
    async with tls_peer(smtpsec_cert) as transport:
        tls = await transport.start_tls(
            context, server_hostname="localhost", timeout=5, verify_identity=seen.append
        )
        assert tls.tls is not None
        assert tls.tls.verified  # chain by ssl + name by the callable
        assert seen and seen[0].startswith(b"\x30")  # the DER certificate
        assert transport.tls is None  # the plaintext transport is unchanged
        await tls.close()


@async_test
async def test_start_tls_identity_mismatch_aborts(smtpsec_ca: CA, smtpsec_cert: LeafCert) -> None:
    context = smtpsec_ca.client_context()
    context.check_hostname = False

    def refuse(_der: bytes) -> None:
        raise smtpsec.CertificateError("not the reference identity")

    async with tls_peer(smtpsec_cert) as transport:
        with pytest.raises(smtpsec.CertificateError, match="reference identity"):
            await transport.start_tls(
                context, server_hostname="localhost", timeout=5, verify_identity=refuse
            )
        await eventually(lambda: transport._protocol.eof, "the connection to end")


@async_test
async def test_start_tls_without_verification_is_reported_unverified(
    smtpsec_cert: LeafCert,
) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    async with tls_peer(smtpsec_cert) as transport:
        tls = await transport.start_tls(context, server_hostname="localhost", timeout=5)
        assert tls.tls is not None
        assert not tls.tls.verified
        await tls.close()


@async_test
async def test_start_tls_untrusted_certificate_raises_ssl_error(
    smtpsec_cert: LeafCert,
) -> None:
    context = CA.create().client_context()  # another CA
    async with tls_peer(smtpsec_cert) as transport:
        with pytest.raises(ssl.SSLCertVerificationError):
            await transport.start_tls(context, server_hostname="localhost", timeout=5)
        # The connection is aborted. (Python 3.10's SSL layer never reports the
        # loss to the protocol after a failed handshake, so ask the transport.)
        await eventually(transport._transport.is_closing, "the connection to end")
        await eventually(lambda: len(asyncio.all_tasks()) == 1, "the server side to finish")


@async_test
async def test_start_tls_peer_gone_is_a_connect_error(smtpsec_ca: CA) -> None:
    async with peer_and_transport() as (peer, transport):
        peer.writer.close()  # no handshake, just EOF
        with pytest.raises(smtpsec.ConnectError, match="during the TLS handshake"):
            await transport.start_tls(
                smtpsec_ca.client_context(), server_hostname="localhost", timeout=5
            )


@async_test
async def test_start_tls_deadline(smtpsec_ca: CA) -> None:
    async with peer_and_transport() as (_peer, transport):  # the peer never answers
        with pytest.raises(smtpsec.TimeoutError, match="TLS handshake"):
            await transport.start_tls(
                smtpsec_ca.client_context(), server_hostname="localhost", timeout=0.2
            )


@async_test
async def test_close_does_not_wait_for_a_silent_tls_peer(
    smtpsec_ca: CA, smtpsec_cert: LeafCert
) -> None:
    """R-8314-3.4-2: close_notify is sent; a peer that never answers it cannot hold close()."""
    with _MuteTLSPeer(smtpsec_cert) as mute:
        plain = await open_connection("127.0.0.1", mute.port, timeout=5)
        tls = await plain.start_tls(
            smtpsec_ca.client_context(), server_hostname="localhost", timeout=5
        )
        await asyncio.wait_for(tls.close(), 10)  # hang guard only
        assert await asyncio.to_thread(mute.close_notify.wait, 10)
        await eventually(lambda: tls._protocol.eof, "the connection to be closed")


class _MuteTLSPeer:
    """A TLS server that reads the client's close_notify but never answers it."""

    def __init__(self, cert: LeafCert) -> None:
        self._context = cert.server_context()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.close_notify = threading.Event()
        self._release = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> _MuteTLSPeer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self._thread.join(10)
        self._listener.close()

    def _serve(self) -> None:
        raw, _ = self._listener.accept()
        raw.settimeout(10)
        # No ragged EOFs: a bare FIN without close_notify must not count as one.
        with self._context.wrap_socket(raw, server_side=True, suppress_ragged_eofs=False) as tls:
            if tls.recv(1) == b"":  # SSL EOF: the client's close_notify
                self.close_notify.set()
            self._release.wait(10)  # and no close_notify back
