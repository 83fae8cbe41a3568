"""The Exim harness is a real Exim: checked with the stdlib's smtplib and raw sockets only.

These tests pin what smtpsec's Exim tests rely on: the two ports and what
each offers, the certificate, AUTH only after TLS, delivery into the maildir,
and the main log's pipelining field, which tells whether a client used
PIPECONNECT (early pipelining): ``L*`` yes, ``L.`` offered but not used.
"""

from __future__ import annotations

import base64
import smtplib
import socket
import ssl
import uuid
from typing import Any

import pytest
from exim_server import PASSWORD, USER, EximServer, message_id, running_exim

PLAIN_IR = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
TIMEOUT = 10.0


def _context(server: EximServer) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(server.cafile))


def _subject() -> str:
    return f"harness {uuid.uuid4().hex[:12]}"


class Replies:
    """Read SMTP replies from a (TLS) socket, without ever waiting before a write."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        sock.settimeout(TIMEOUT)

    def next(self) -> tuple[int, list[bytes]]:
        """One reply: its code and its lines' texts; ``(0, [])`` at end of stream."""
        lines: list[bytes] = []
        while True:
            while b"\r\n" not in self.buffer:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return 0, lines
                self.buffer += chunk
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            lines.append(line[4:])
            if line[3:4] != b"-":
                return int(line[:3]), lines


def _implicit(server: EximServer) -> tuple[ssl.SSLSocket, Replies]:
    raw = socket.create_connection((server.host, server.implicit_port), timeout=TIMEOUT)
    sock = _context(server).wrap_socket(raw, server_hostname="localhost")
    return sock, Replies(sock)


def _finish_lockstep(sock: socket.socket, replies: Replies, subject: str) -> str:
    """MAIL, RCPT, DATA and QUIT, each after the previous reply; the message id."""
    for command, code in (
        (b"MAIL FROM:<ann@example.test>\r\n", 250),
        (b"RCPT TO:<bob@example.test>\r\n", 250),
        (b"DATA\r\n", 354),
    ):
        sock.sendall(command)
        assert replies.next()[0] == code, command
    sock.sendall(f"Subject: {subject}\r\n\r\nbody\r\n.\r\n".encode())
    code, text = replies.next()
    assert code == 250
    sock.sendall(b"QUIT\r\n")
    assert replies.next()[0] == 221
    return message_id(text[0])


def _ehlo_keywords(lines: list[bytes]) -> set[str]:
    return {line.split()[0].decode().upper() for line in lines[1:]}


def test_implicit_tls_ehlo_offers_pipeconnect_pipelining_chunking_and_auth(
    exim: EximServer,
) -> None:
    with smtplib.SMTP_SSL(
        "localhost", exim.implicit_port, context=_context(exim), timeout=TIMEOUT
    ) as client:
        code, _ = client.ehlo("client.test")
        assert code == 250
        for keyword in ("pipeconnect", "pipelining", "chunking", "auth"):
            assert client.has_extn(keyword), keyword
        assert set(client.esmtp_features["auth"].split()) == {"PLAIN", "LOGIN"}
        assert not client.has_extn("starttls")  # already TLS
        assert client.sock is not None
        assert isinstance(client.sock, ssl.SSLSocket)


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1"])
def test_certificate_verifies_for_localhost_and_the_loopback_address(
    exim: EximServer, name: str
) -> None:
    with smtplib.SMTP_SSL(
        exim.host, exim.implicit_port, context=_context(exim), timeout=TIMEOUT
    ) as client:
        assert client.ehlo()[0] == 250
    raw = socket.create_connection((exim.host, exim.implicit_port), timeout=TIMEOUT)
    with _context(exim).wrap_socket(raw, server_hostname=name) as sock:
        assert sock.getpeercert() is not None


def test_certificate_is_not_valid_for_the_server_own_name(exim: EximServer) -> None:
    raw = socket.create_connection((exim.host, exim.implicit_port), timeout=TIMEOUT)
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        _context(exim).wrap_socket(raw, server_hostname="exim.test")
    raw.close()


def test_starttls_port_offers_auth_only_after_tls(exim: EximServer) -> None:
    with smtplib.SMTP(exim.host, exim.starttls_port, timeout=TIMEOUT) as client:
        client.ehlo("client.test")
        assert client.has_extn("starttls")
        assert client.has_extn("pipeconnect")
        assert not client.has_extn("auth")
        code, text = client.docmd("AUTH", f"PLAIN {PLAIN_IR}")
        assert code == 503, text
        client.starttls(context=_context(exim))
        client.ehlo("client.test")
        assert not client.has_extn("starttls")
        assert set(client.esmtp_features["auth"].split()) == {"PLAIN", "LOGIN"}
        assert client.has_extn("pipeconnect")
        client.login(exim.user, exim.password)


def test_authenticated_message_is_delivered_and_logged(exim: EximServer) -> None:
    subject = _subject()
    with smtplib.SMTP(exim.host, exim.starttls_port, timeout=TIMEOUT) as client:
        client.starttls(context=_context(exim))
        client.login(exim.user, exim.password)
        assert client.mail("ann@example.test")[0] == 250
        assert client.rcpt("bob@example.test")[0] == 250
        code, reply = client.data(f"Subject: {subject}\r\n\r\nhello exim\r\n".encode())
    assert code == 250
    ident = message_id(reply)
    record = exim.accepted_message(ident)
    assert record.sender == "ann@example.test"
    assert record.subject == subject
    assert f"I=[127.0.0.1]:{exim.starttls_port}" in record.line
    assert " A=plain:ann " in record.line
    # smtplib waits for every reply: PIPECONNECT offered, no pipelining of any kind.
    assert record.pipelining == "L.-"
    assert not record.early_pipelining_used
    assert not record.pipelining_used
    (copy,) = exim.delivered(ident)  # waits for the delivery, which follows the reply
    assert copy in exim.deliveries()
    assert f"\nSubject: {subject}\n".encode() in copy
    assert b"Envelope-to: bob@example.test\n" in copy
    assert copy.endswith(b"\nhello exim\n")


def test_auth_login_is_accepted(exim: EximServer) -> None:
    with smtplib.SMTP_SSL(
        "localhost", exim.implicit_port, context=_context(exim), timeout=TIMEOUT
    ) as client:
        client.ehlo()
        client.user, client.password = exim.user, exim.password
        code, _ = client.auth("LOGIN", client.auth_login)
        assert code == 235
    with smtplib.SMTP_SSL(
        "localhost", exim.implicit_port, context=_context(exim), timeout=TIMEOUT
    ) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login(exim.user, "wrong")


def test_only_authenticated_mail_to_example_test_is_accepted(exim: EximServer) -> None:
    with smtplib.SMTP_SSL(
        "localhost", exim.implicit_port, context=_context(exim), timeout=TIMEOUT
    ) as client:
        client.ehlo()
        client.mail("ann@example.test")
        assert client.rcpt("bob@example.test") == (550, b"authentication required")
        client.rset()
        client.login(exim.user, exim.password)
        client.mail("ann@example.test")
        assert client.rcpt("bob@other.test") == (550, b"relay not permitted")


def test_ehlo_before_the_greeting_over_implicit_tls_is_answered(exim: EximServer) -> None:
    sock, replies = _implicit(exim)
    with sock:
        sock.sendall(b"EHLO early.test\r\n")  # right after the handshake, no banner read
        code, banner = replies.next()
        assert code == 220
        assert banner[0].startswith(b"exim.test ESMTP Exim 4.96")
        code, ehlo = replies.next()
        assert code == 250
        assert ehlo[0].startswith(b"exim.test Hello early.test")
        assert {"PIPECONNECT", "PIPELINING", "AUTH"} <= _ehlo_keywords(ehlo)


def test_early_pipelined_transaction_is_logged_with_l_star(exim: EximServer) -> None:
    subject = _subject()
    sock, replies = _implicit(exim)
    with sock:
        # The first flight after the handshake: EHLO and AUTH with its initial
        # response, as a PIPECONNECT client does (before reading the banner).
        sock.sendall(f"EHLO early.test\r\nAUTH PLAIN {PLAIN_IR}\r\n".encode())
        assert replies.next()[0] == 220
        code, ehlo = replies.next()
        assert code == 250
        assert "PIPECONNECT" in _ehlo_keywords(ehlo)
        assert replies.next() == (235, [b"Authentication succeeded"])
        sock.sendall(b"MAIL FROM:<ann@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
        assert [replies.next()[0] for _ in range(3)] == [250, 250, 354]
        sock.sendall(f"Subject: {subject}\r\n\r\nearly\r\n.\r\nQUIT\r\n".encode())
        code, text = replies.next()
        assert code == 250
        assert replies.next()[0] == 221
    ident = message_id(text[0])
    record = exim.accepted_message(ident)
    assert record.pipelining == "L*"  # early pipelining, and pipelining, both used
    assert record.early_pipelining_used
    assert record.pipelining_used
    assert exim.early_pipelining_used(ident)
    assert " P=esmtpsa L* X=TLS" in record.line
    (copy,) = exim.delivered(ident)
    assert f"Subject: {subject}".encode() in copy


def test_early_pipelining_on_the_starttls_port(exim: EximServer) -> None:
    subject = _subject()
    raw = socket.create_connection((exim.host, exim.starttls_port), timeout=TIMEOUT)
    replies = Replies(raw)
    raw.sendall(b"EHLO early.test\r\nSTARTTLS\r\n")  # before the greeting, in cleartext
    assert replies.next()[0] == 220
    code, ehlo = replies.next()
    assert code == 250
    assert {"PIPECONNECT", "STARTTLS"} <= _ehlo_keywords(ehlo)
    assert replies.next() == (220, [b"TLS go ahead"])
    assert replies.buffer == b""
    sock = _context(exim).wrap_socket(raw, server_hostname="localhost")
    with sock:
        replies = Replies(sock)
        # Right after the STARTTLS handshake: EHLO and AUTH in one flight.
        sock.sendall(f"EHLO early.test\r\nAUTH PLAIN {PLAIN_IR}\r\n".encode())
        code, ehlo = replies.next()
        assert code == 250
        assert "AUTH" in _ehlo_keywords(ehlo)
        assert replies.next()[0] == 235
        ident = _finish_lockstep(sock, replies, subject)
    record = exim.accepted_message(ident)
    assert record.early_pipelining_used
    assert record.pipelining == "L*-"  # the rest went in lock-step


def test_without_pipeconnect_early_input_is_refused(exim: EximServer, smtpsec_ca: Any) -> None:
    del exim  # only for the skip/fail logic: this test starts its own Exim
    with running_exim(smtpsec_ca, pipe_connect=False) as server:
        with smtplib.SMTP(server.host, server.starttls_port, timeout=TIMEOUT) as client:
            client.ehlo("client.test")
            assert client.has_extn("pipelining")
            assert not client.has_extn("pipeconnect")
        raw = socket.create_connection((server.host, server.starttls_port), timeout=TIMEOUT)
        with raw:
            replies = Replies(raw)
            raw.sendall(b"EHLO early.test\r\n")
            assert replies.next() == (554, [b"SMTP synchronization error"])
            assert replies.next() == (0, [])  # and the connection is closed
        assert (
            "SMTP protocol synchronization error (input sent without waiting for greeting)"
            in server.main_log()
        )
        # A lock-step client: PIPELINING offered, not used, and no PIPECONNECT mark.
        sock, replies = _implicit(server)
        with sock:
            assert replies.next()[0] == 220
            sock.sendall(b"EHLO late.test\r\n")
            assert "PIPECONNECT" not in _ehlo_keywords(replies.next()[1])
            sock.sendall(f"AUTH PLAIN {PLAIN_IR}\r\n".encode())
            assert replies.next()[0] == 235
            ident = _finish_lockstep(sock, replies, _subject())
        record = server.accepted_message(ident)
        assert record.pipelining == "L-"
        assert not server.early_pipelining_used(ident)


def test_stop_ends_every_exim_process(exim: EximServer, smtpsec_ca: Any) -> None:
    import exim_server

    del exim  # only for the skip/fail logic
    with running_exim(smtpsec_ca) as server:
        held = socket.create_connection((server.host, server.starttls_port), timeout=TIMEOUT)
        assert Replies(held).next()[0] == 220  # a connection process is running
        assert len(exim_server._processes_using(server.config)) >= 2
        server.stop()
        assert server.process.returncode is not None
        assert exim_server._processes_using(server.config) == []
        with pytest.raises(OSError):
            socket.create_connection((server.host, server.starttls_port), timeout=TIMEOUT)
        held.close()
        server.stop()  # again: a no-op
