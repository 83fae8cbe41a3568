"""The engine's Wire on real sockets (socketpairs): replies queued in order, the
whole-reply deadline, unsolicited bytes before a flight; plus the drop-in's
wire-level helpers that moved into the engine and the drop-in package."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

import smtpsec
from smtpsec import smtplib
from smtpsec._engine import Wire, run_sync
from smtpsec._engine import _wire as wire_module
from smtpsec.auth import decode_success_data
from smtpsec.sansio import ClientConnection, Command
from smtpsec.smtplib._commands import loggable as _loggable
from smtpsec.transports import SocketTransport


@pytest.fixture
def pair() -> Iterator[tuple[Wire, socket.socket]]:
    """A Wire past the greeting on one end of a socketpair; the server end."""
    left, right = socket.socketpair()
    with left, right:
        conn = ClientConnection(tls_active=True)
        wire = Wire(SocketTransport(left), conn, timeout=5.0, host="peer", port=25)
        right.sendall(b"220 hi\r\n")
        run_sync(wire.read())
        wire.queue(Command("EHLO", "[127.0.0.1]"))
        run_sync(wire.flush())
        right.recv(1024)
        right.sendall(b"250-peer\r\n250 PIPELINING\r\n")
        run_sync(wire.read())
        yield wire, right


def test_pipelined_replies_are_handed_out_in_order(pair: tuple[Wire, socket.socket]) -> None:
    wire, server = pair
    for verb, arg in (("MAIL", "a@example.test"), ("RCPT", "b@example.test"), ("RSET", "")):
        wire.queue(Command(verb, arg))
    run_sync(wire.flush())
    server.sendall(b"250 one\r\n250-two\r\n250 two b\r\n250 three\r\n")
    assert run_sync(wire.read()).reply.lines == ("one",)
    assert run_sync(wire.read()).reply.lines == ("two", "two b")
    assert run_sync(wire.read()).reply.lines == ("three",)
    assert wire.conn.idle


def test_the_deadline_covers_the_whole_reply(
    pair: tuple[Wire, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    """R-PY-11: a reply still incomplete when the deadline passes is a timeout.

    A fake clock makes "the deadline passed between two chunks" deterministic.
    """
    wire, server = pair
    wire.queue(Command("NOOP"))
    run_sync(wire.flush())
    clock = iter([0.0, 0.0, 100.0, 100.0])
    monkeypatch.setattr(wire_module.time, "monotonic", lambda: next(clock))
    server.sendall(b"250-first line of many\r\n")
    with pytest.raises(smtpsec.TimeoutError, match="did not finish it"):
        run_sync(wire.read())


def test_unsolicited_bytes_before_a_flight_close_the_connection__R_LIB_DESYNC_1(
    pair: tuple[Wire, socket.socket],
) -> None:
    """A flight that starts with nothing outstanding first looks for stale replies."""
    wire, server = pair
    server.sendall(b"250 stale\r\n")
    wire.queue(Command("MAIL", "a@example.test"))
    with pytest.raises(smtpsec.RemoteProtocolError, match="nobody asked for"):
        run_sync(wire.flush())
    assert server.recv(1024) == b""  # nothing was written, and the connection is closed


def test_the_drop_in_debug_output_redacts_sasl_lines_but_not_the_cancel() -> None:
    assert _loggable("AUTH PLAIN AGFubgBwdw==\r\n") == "AUTH PLAIN <redacted>\r\n"
    assert _loggable(b"AUTH LOGIN\r\n") == "AUTH LOGIN\r\n"
    assert _loggable("cGFzc3dvcmQ=\r\n") == "<redacted>\r\n"
    assert _loggable("*\r\n") == "*\r\n"


def test_success_data_only_for_one_base64_word() -> None:
    assert decode_success_data("dj1zaWduYXR1cmU=") == b"v=signature"
    assert decode_success_data("2.7.0 Authentication successful") is None
    assert decode_success_data("Accepted!") is None
    assert decode_success_data("") is None


def test_commands_without_a_connection() -> None:
    s = smtplib.SMTP()
    with pytest.raises(smtplib.SMTPServerDisconnected, match="connect"):
        s.noop()
    with pytest.raises(smtplib.SMTPServerDisconnected, match="connect"):
        s.getreply()
    with pytest.raises(smtpsec.ConnectError):
        s.noop()


def test_lmtp_unix_socket_missing_without_debug(tmp_path: object) -> None:
    with pytest.raises(FileNotFoundError):
        smtplib.LMTP(f"{tmp_path}/absent.sock")
