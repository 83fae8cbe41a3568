"""Transports: the socket edge (errors become smtpsec errors) and the public in-memory one.

SocketTransport is exercised against real loopback peers (the kit's server, or a
few lines of raw socket code where a misbehaving peer is the point);
MemoryTransport drives :func:`establish` with scripted bytes.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator

import pytest
from _security_kit import Kit

import smtpsec
from smtpsec.client import connect_transport
from smtpsec.policy import Security
from smtpsec.testing import LeafCert
from smtpsec.tls import TLSInfo
from smtpsec.transports import MemoryTransport, SocketTransport, Transport, open_socket
from smtpsec.transports._memory import FAKE_TLS
from smtpsec.transports._socket import sni as _sni

# --------------------------------------------------------------------------- raw peers


@contextlib.contextmanager
def raw_peer(behave: Callable[[socket.socket], None]) -> Iterator[int]:
    """A one-connection loopback listener running ``behave(conn)`` on a thread."""
    listener = socket.create_server(("127.0.0.1", 0))
    errors: list[BaseException] = []

    def run() -> None:
        conn, _ = listener.accept()
        try:
            behave(conn)
        except Exception as exc:  # surfaces in the test below
            errors.append(exc)
        finally:
            conn.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        thread.join(5)
        listener.close()
    assert not errors, errors


@contextlib.contextmanager
def tcp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected (client, server) TCP pair on loopback."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    try:
        yield client, server
    finally:
        client.close()
        server.close()


def _wait_readable(sock: socket.socket) -> None:
    ready, _, _ = select.select([sock], [], [], 5)
    assert ready


# --------------------------------------------------------------------------- open_socket


def test_open_socket_refused_is_connect_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    with pytest.raises(smtpsec.ConnectError, match="465 or 587") as info:
        open_socket("127.0.0.1", port, timeout=2)
    assert isinstance(info.value, ConnectionError)  # old except clauses keep working


def test_open_socket_timeout_is_typed() -> None:
    """A connect timeout becomes smtpsec.TimeoutError (and stays a builtins.TimeoutError).

    A real unanswered SYN on loopback: a listener whose accept queue is full
    drops new SYNs, so the connect waits until the deadline.
    """
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        try:
            for _ in range(3):
                filler = socket.socket()
                filler.setblocking(False)
                filler.connect_ex(("127.0.0.1", port))
                fillers.append(filler)
            with pytest.raises(smtpsec.TimeoutError, match=r"timed out after 0\.5s"):
                open_socket("127.0.0.1", port, timeout=0.5)
        finally:
            for filler in fillers:
                filler.close()


def test_open_socket_sets_nodelay() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        sock = open_socket("127.0.0.1", listener.getsockname()[1], timeout=2)
        with sock:
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_open_socket_accepts_bracketed_ipv6() -> None:
    """``[::1]`` (URL-style literal) connects like ``::1``."""
    try:
        listener = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with listener:
        sock = open_socket("[::1]", listener.getsockname()[1], timeout=2)
        sock.close()


@pytest.mark.parametrize(
    ("host", "sni"),
    [
        (None, None),
        ("smtp.example.test", "smtp.example.test"),
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("::1", "::1"),
    ],
)
def test_sni_value__R_LIB_SNI_1(host: str | None, sni: str | None) -> None:
    """Address literals are passed unbracketed (ssl then sends no SNI but checks the IP SAN)."""
    assert _sni(host) == sni


# --------------------------------------------------------------------------- read / write


def test_write_and_read_roundtrip() -> None:
    with tcp_pair() as (client, server):
        transport = SocketTransport(client, peer="peer:1")
        assert transport.tls is None
        assert transport.socket is client
        transport.write(b"EHLO x\r\n", timeout=2)
        assert server.recv(100) == b"EHLO x\r\n"
        server.sendall(b"250 ok\r\n")
        assert transport.read(timeout=2) == b"250 ok\r\n"
        server.close()
        assert transport.read(timeout=2) == b""  # end of stream


def test_read_timeout_is_typed() -> None:
    with tcp_pair() as (client, _server):
        transport = SocketTransport(client, peer="peer:1")
        with pytest.raises(smtpsec.TimeoutError, match="peer:1"):
            transport.read(timeout=0.05)
        with pytest.raises(smtpsec.TimeoutError):
            transport.read(timeout=0)


def test_read_and_write_on_dead_socket_are_connect_errors() -> None:
    with tcp_pair() as (client, _server):
        transport = SocketTransport(client, peer="peer:1")
        client.close()
        with pytest.raises(smtpsec.ConnectError, match="reading"):
            transport.read(timeout=1)
        with pytest.raises(smtpsec.ConnectError, match="writing"):
            transport.write(b"x", timeout=1)


def test_write_deadline_is_typed() -> None:
    """A peer that stops reading cannot hold a write forever."""
    with tcp_pair() as (client, _server):
        transport = SocketTransport(client, peer="peer:1")
        with pytest.raises(smtpsec.TimeoutError, match="stopped reading"):
            transport.write(b"x", timeout=0)
        with pytest.raises(smtpsec.TimeoutError, match="stopped reading"):
            transport.write(b"x" * (64 * 1024 * 1024), timeout=0.2)


_BIG = 2 * 1024 * 1024


def _small_buffers(sock: socket.socket) -> None:
    for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        sock.setsockopt(socket.SOL_SOCKET, option, 32 * 1024)


def _answers_before_reading(conn: socket.socket) -> None:
    """Like a blocking SMTP server: all its answer goes out before it reads on."""
    conn.sendall(b"r" * _BIG)
    got = 0
    while got < _BIG:
        chunk = conn.recv(65536)
        assert chunk
        got += len(chunk)


@pytest.mark.parametrize("tls", [False, True])
def test_write_takes_in_replies_while_the_peer_cannot_read__R_2920_3_1_5(
    tls: bool, smtpsec_cert: LeafCert, smtpsec_client_context: ssl.SSLContext
) -> None:
    """A long write to a peer that stops reading until its own writes are read cannot
    deadlock: the write reads meanwhile, and read() hands out what it took in."""
    server_ctx = smtpsec_cert.server_context()

    def peer(conn: socket.socket) -> None:
        _small_buffers(conn)
        _answers_before_reading(server_ctx.wrap_socket(conn, server_side=True) if tls else conn)

    with raw_peer(peer) as port:
        sock = open_socket("127.0.0.1", port, timeout=5)
        _small_buffers(sock)
        transport: Transport = SocketTransport(sock, peer="p")
        if tls:
            transport = transport.start_tls(
                smtpsec_client_context, server_hostname="localhost", timeout=5
            )
        transport.write(b"w" * _BIG, timeout=20)  # without reading: TimeoutError here
        received = b""
        while len(received) < _BIG:
            chunk = transport.read(timeout=5)
            assert chunk
            received += chunk
        assert received == b"r" * _BIG
        transport.close()


def test_pending_plaintext_peeks_without_consuming() -> None:
    """Bytes waiting before a handshake are visible (R-EAST-BR-1) and not swallowed."""
    with tcp_pair() as (client, server):
        transport = SocketTransport(client, peer="peer:1")
        client.settimeout(1.5)
        assert transport.pending_plaintext() == b""
        server.sendall(b"250 AUTH LOGIN\r\n")
        _wait_readable(client)
        assert transport.pending_plaintext() == b"250 AUTH LOGIN\r\n"
        assert client.gettimeout() == 1.5  # the peek left the socket's mode alone
        assert transport.read(timeout=1) == b"250 AUTH LOGIN\r\n"


# --------------------------------------------------------------------------- TLS


def test_start_tls_verified_session_and_close_notify__R_8314_3_4_1(kit: Kit) -> None:
    srv = kit.server(Security.IMPLICIT_TLS)
    plain = SocketTransport(open_socket("127.0.0.1", srv.port, timeout=2), peer="p")
    seen: list[bytes] = []
    tls = plain.start_tls(
        kit.ca.client_context(), server_hostname="localhost", timeout=2, verify_identity=seen.append
    )
    info = tls.tls
    assert info is not None and info.verified
    assert info.spki_pin == kit.cert.spki_sha256_pin
    assert seen == [kit.cert.cert_der]
    assert tls.pending_plaintext() == b""  # never peeks below TLS
    assert tls.read(timeout=2).startswith(b"220 ")
    plain.close()  # the plaintext transport is finished: a no-op now
    tls.close()
    tls.close()
    capture = kit.finished(srv)
    assert capture.close_notify
    assert capture.sni == "localhost"


def test_start_tls_without_name_check_is_not_verified(kit: Kit) -> None:
    """Chain-only validation does not make a session "verified" (RFC 7817 needs the name)."""
    srv = kit.server(Security.IMPLICIT_TLS)
    ctx = kit.ca.client_context()
    ctx.check_hostname = False
    plain = SocketTransport(open_socket("127.0.0.1", srv.port, timeout=2), peer="p")
    tls = plain.start_tls(ctx, server_hostname="localhost", timeout=2)
    assert tls.tls is not None and not tls.tls.verified
    tls.close()


def test_start_tls_identity_callback_can_refuse(kit: Kit) -> None:
    """An identity check that raises aborts the session and closes the socket."""
    srv = kit.server(Security.IMPLICIT_TLS)
    ctx = kit.ca.client_context()
    ctx.check_hostname = False

    def refuse(der: bytes) -> None:
        raise smtpsec.CertificateError("not the account's domain")

    plain = SocketTransport(open_socket("127.0.0.1", srv.port, timeout=2), peer="p")
    with pytest.raises(smtpsec.CertificateError):
        plain.start_tls(ctx, server_hostname="localhost", timeout=2, verify_identity=refuse)
    assert kit.finished(srv).commands == []


def test_start_tls_handshake_failure_is_ssl_error(kit: Kit) -> None:
    """Certificate failures surface as ssl errors for translate_ssl_error to type."""
    srv = kit.server(Security.IMPLICIT_TLS)
    plain = SocketTransport(open_socket("127.0.0.1", srv.port, timeout=2), peer="p")
    with pytest.raises(ssl.SSLCertVerificationError):
        plain.start_tls(ssl.create_default_context(), server_hostname="localhost", timeout=2)


def test_start_tls_timeout_names_starttls(kit: Kit) -> None:
    """A peer that never answers the ClientHello trips the handshake deadline; the
    transport says what happened, the engine adds what to do (see below)."""
    srv = kit.server(Security.PLAINTEXT, greeting=None)
    plain = SocketTransport(open_socket("127.0.0.1", srv.port, timeout=2), peer="p")
    with pytest.raises(smtpsec.TimeoutError, match=r"did not finish within 0\.3s"):
        plain.start_tls(kit.ca.client_context(), server_hostname="localhost", timeout=0.3)


def test_implicit_tls_to_a_silent_port_suggests_starttls(kit: Kit) -> None:
    srv = kit.server(Security.PLAINTEXT, greeting=None)
    with pytest.raises(smtpsec.TimeoutError, match=r"speaks STARTTLS, use Security\.STARTTLS"):
        smtpsec.connect(
            "localhost", srv.port, security=Security.IMPLICIT_TLS, policy=kit.policy(), timeout=0.3
        )


def test_start_tls_reset_is_connect_error(smtpsec_ca: object) -> None:
    """A TCP reset during the handshake is a ConnectError, not a raw OSError."""

    def reset(conn: socket.socket) -> None:
        conn.recv(65536)  # the ClientHello
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    with raw_peer(reset) as port:
        plain = SocketTransport(open_socket("127.0.0.1", port, timeout=2), peer="p")
        with pytest.raises(smtpsec.ConnectError, match="handshake"):
            plain.start_tls(ssl.create_default_context(), server_hostname="h", timeout=2)


def test_tls_read_of_garbage_is_connect_error(smtpsec_cert: LeafCert, kit: Kit) -> None:
    """Non-TLS bytes inside an established TLS session end it with ConnectError."""
    server_ctx = smtpsec_cert.server_context()

    def garbage_after_handshake(conn: socket.socket) -> None:
        tls = server_ctx.wrap_socket(conn, server_side=True)
        # Bypass the TLS layer: write cleartext below it, as an attacker would.
        socket.socket.sendall(tls, b"250 plaintext inside TLS\r\n")
        with contextlib.suppress(OSError):
            tls.recv(100)

    with raw_peer(garbage_after_handshake) as port:
        plain = SocketTransport(open_socket("127.0.0.1", port, timeout=2), peer="p")
        tls = plain.start_tls(kit.ca.client_context(), server_hostname="localhost", timeout=2)
        with pytest.raises(smtpsec.ConnectError, match="TLS error"):
            tls.read(timeout=2)
        tls.close()


# --------------------------------------------------------------------------- MemoryTransport


def test_transports_satisfy_the_protocol() -> None:
    with tcp_pair() as (client, _server):
        assert isinstance(SocketTransport(client), Transport)
    assert isinstance(MemoryTransport(), Transport)


def test_memory_transport_basics() -> None:
    transport = MemoryTransport([b"220 hi\r\n"])
    transport.feed(b"250 ok\r\n")
    assert transport.tls is None
    assert transport.pending_plaintext() == b"220 hi\r\n250 ok\r\n"
    assert transport.read(timeout=1) == b"220 hi\r\n"
    transport.write(b"EHLO a\r\n", timeout=1)
    transport.write(b"QUIT\r\n", timeout=1)
    assert transport.written == [b"EHLO a\r\n", b"QUIT\r\n"]
    assert transport.sent == b"EHLO a\r\nQUIT\r\n"
    assert transport.read(timeout=1) == b"250 ok\r\n"
    with pytest.raises(smtpsec.TimeoutError):
        transport.read(timeout=1)
    transport.close()
    assert transport.closed
    with pytest.raises(smtpsec.ConnectError):
        transport.read(timeout=1)
    with pytest.raises(smtpsec.ConnectError):
        transport.write(b"x", timeout=1)


def test_memory_transport_start_tls_reports_given_facts() -> None:
    facts = TLSInfo("TLSv1.2", "ECDHE", verified=False, peer_certificate=None, spki_pin=None)
    transport = MemoryTransport(tls_after_start=facts, after_tls=[b"220 tls\r\n"])
    upgraded = transport.start_tls(ssl.create_default_context(), server_hostname="h", timeout=1)
    assert transport.upgraded is upgraded
    assert upgraded.tls is facts
    assert upgraded.read(timeout=1) == b"220 tls\r\n"
    assert (
        MemoryTransport()
        .start_tls(ssl.create_default_context(), server_hostname="h", timeout=1)
        .tls
        is FAKE_TLS
    )


def _establish(transport: MemoryTransport, security: Security, port: int, **kw: object):  # type: ignore[no-untyped-def]
    return connect_transport(
        transport,
        "mem.example.test",
        port,
        security=security,
        timeout=1.0,
        **kw,  # type: ignore[arg-type]
    )


PASSWORD = "CANARY-PW-memory-1"


def test_establish_over_memory_transport_starttls() -> None:
    """The public in-memory transport runs a whole STARTTLS set-up, AUTH inside "TLS"."""
    transport = MemoryTransport(
        [
            b"220 mem.example.test ESMTP\r\n",
            b"250-mem.example.test\r\n250-AUTH PLAIN LOGIN\r\n250 STARTTLS\r\n",
            b"220 2.0.0 go ahead\r\n",
        ],
        after_tls=[
            b"250-mem.example.test\r\n250-PIPELINING\r\n250 AUTH PLAIN\r\n",
            b"235 2.7.0 ok\r\n",
            b"221 2.0.0 bye\r\n",
        ],
    )
    session = _establish(transport, Security.STARTTLS, 587, username="ann", password=PASSWORD)
    assert transport.sent == b"EHLO [127.0.0.1]\r\nSTARTTLS\r\n"  # nothing else in cleartext
    assert PASSWORD.encode() not in transport.sent
    upgraded = transport.upgraded
    assert upgraded is not None
    assert upgraded.written[0] == b"EHLO [127.0.0.1]\r\n"
    assert upgraded.written[1].startswith(b"AUTH PLAIN ")
    report = session.report
    assert (report.mode, report.tls_version, report.verified) == (
        Security.STARTTLS,
        "TLSv1.3",
        True,
    )
    assert report.authenticated_as == "ann" and report.mechanism == "PLAIN"
    assert "PIPELINING" in session.extensions
    session.close()
    assert upgraded.written[-1] == b"QUIT\r\n"
    assert upgraded.closed


def test_establish_over_memory_transport_implicit() -> None:
    transport = MemoryTransport(
        after_tls=[b"220 mem ESMTP\r\n", b"250 mem.example.test\r\n", b"221 bye\r\n"]
    )
    with _establish(transport, Security.IMPLICIT_TLS, 465) as session:
        assert session.report.mode is Security.IMPLICIT_TLS
        assert session.report.confidential
    assert transport.written == []  # not one plaintext byte
    assert transport.upgraded is not None
    assert transport.upgraded.sent == b"EHLO [127.0.0.1]\r\nQUIT\r\n"


def test_establish_over_memory_transport_detects_injection__R_EAST_BR_1() -> None:
    """Scripted bytes still queued after the 220 to STARTTLS are an injection."""
    transport = MemoryTransport(
        [
            b"220 mem ESMTP\r\n",
            b"250-mem\r\n250 STARTTLS\r\n",
            b"220 go ahead\r\n",
            b"250 AUTH LOGIN\r\n",  # the attacker's extra reply, in its own segment
        ]
    )
    with pytest.raises(smtpsec.ResponseInjectionError):
        _establish(transport, Security.STARTTLS, 587, username="ann", password=PASSWORD)
    assert transport.upgraded is None
    assert transport.closed
    assert transport.sent == b"EHLO [127.0.0.1]\r\nSTARTTLS\r\n"
