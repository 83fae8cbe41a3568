"""The smtplib drop-in's wire helpers, on real sockets (socketpairs), one rule each."""

from __future__ import annotations

import socket

import pytest

import smtpsec
import smtpsec._smtplib_io as wire
from smtpsec import smtplib
from smtpsec.sansio import Reply


def test_reply_reader_queues_pipelined_replies() -> None:
    left, right = socket.socketpair()
    with left, right:
        right.sendall(b"250 one\r\n250-two\r\n250 two b\r\n354 go\r\n")
        reader = wire.ReplyReader()
        assert reader.read(left, 5.0, "peer").lines == ("one",)
        assert reader.has_buffered
        assert reader.read(left, 5.0, "peer").lines == ("two", "two b")
        assert reader.read(left, 5.0, "peer").code == 354
        assert not reader.has_buffered


def test_reply_reader_deadline_covers_the_whole_reply(monkeypatch: pytest.MonkeyPatch) -> None:
    """R-PY-11: a reply still incomplete when the deadline passes is a timeout.

    A fake clock makes "the deadline passed between two chunks" deterministic.
    """
    clock = iter([0.0, 0.0, 100.0])
    monkeypatch.setattr(wire.time, "monotonic", lambda: next(clock))
    left, right = socket.socketpair()
    with left, right:
        right.sendall(b"250-first line of many\r\n")
        with pytest.raises(smtpsec.TimeoutError, match="whole-reply"):
            wire.ReplyReader().read(left, 30.0, "peer")
        assert left.gettimeout() == 30.0


def test_loggable_redacts_sasl_lines_but_not_the_cancel() -> None:
    assert wire.loggable("AUTH PLAIN AGFubgBwdw==\r\n") == "AUTH PLAIN <redacted>\r\n"
    assert wire.loggable(b"AUTH LOGIN\r\n") == "AUTH LOGIN\r\n"
    assert wire.loggable("cGFzc3dvcmQ=\r\n") == "<redacted>\r\n"
    assert wire.loggable("*\r\n") == "*\r\n"


def test_success_data_only_for_one_base64_word() -> None:
    assert wire.success_data(Reply(235, ("dj1zaWduYXR1cmU=",))) == b"v=signature"
    assert wire.success_data(Reply(235, ("2.7.0 Authentication successful",))) is None
    assert wire.success_data(Reply(235, ("Accepted!",))) is None
    assert wire.success_data(Reply(235, ())) is None


def test_commands_without_a_connection() -> None:
    s = smtplib.SMTP()
    with pytest.raises(smtplib.SMTPServerDisconnected, match="connect"):
        s.noop()
    with pytest.raises(smtplib.SMTPServerDisconnected, match="connect"):
        s.getreply()


def test_lmtp_unix_socket_missing_without_debug(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        smtplib.LMTP(str(tmp_path / "absent.sock"))
