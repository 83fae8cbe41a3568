"""Stale replies never make a refused message look sent (R-LIB-DESYNC-1).

The server queues replies nobody asked for, each in its own TLS record (so a
client reading one record at a time cannot see them together with the real
answer), then refuses everything for real. Before each flight that starts with
nothing outstanding, every client looks for such bytes and ends the session
with ``RemoteProtocolError``; the message is never reported as delivered, and
the drop-in's ``login()`` never takes a queued ``235`` as success.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

import pytest
from _security_kit import Kit

import smtpsec
from smtpsec import Security, smtplib
from smtpsec.testing import HookSession

STALE = (
    b"250 2.1.0 stale\r\n",
    b"250 2.1.5 stale\r\n",
    b"354 stale\r\n",
    b"250 2.0.0 Ok: queued\r\n",
)
REFUSE = b"554 5.7.1 refused for real\r\n"


class _Stale:
    """Answers ``verb`` with ``answer`` followed by stale replies; refuses all mail after.

    ``sent`` is set once the last stale reply is on the wire.
    """

    def __init__(self, verb: str, answer: bytes) -> None:
        self.sent = threading.Event()
        self.hook = self._make(verb, answer)

    def _make(self, verb: str, answer: bytes) -> Callable[[HookSession, str], bytes | None]:
        def hook(session: HookSession, line: str) -> bytes | None:
            word = line.split(" ", 1)[0].upper()
            if word == verb:
                session.send(answer)
                for record in STALE:
                    # One TLS record each, after the client has taken the real
                    # answer: they are waiting when its next flight starts.
                    time.sleep(0.05)
                    session.send(record)
                self.sent.set()
                return b""
            if word in ("MAIL", "RCPT", "DATA", "BDAT"):
                return REFUSE
            return None

        return hook

    def wait(self) -> None:
        assert self.sent.wait(10), "the server never sent its stale replies"
        time.sleep(0.05)  # loopback delivery of the last record (no assertion on time)


def _message() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "ann@example.test"
    msg["To"] = "bob@example.test"
    msg["Subject"] = "stale"
    msg.set_content("hello")
    return msg


def test_stale_replies_after_auth_never_become_a_result(kit: Kit) -> None:
    """The reported defect: queued 250/250/354/250 after the 235 to AUTH."""
    stale = _Stale("AUTH", b"235 2.7.0 accepted\r\n")
    srv = kit.server(Security.IMPLICIT_TLS, on_command=stale.hook)
    session = kit.connect(srv, Security.IMPLICIT_TLS)
    stale.wait()
    with pytest.raises(smtpsec.RemoteProtocolError, match="nobody asked for"):
        session.send(_message())
    assert session.closed
    capture = kit.finished(srv)
    assert "MAIL" not in capture.commands  # nothing was written on the desynchronised stream


def test_stale_replies_after_noop_never_become_a_result(kit: Kit) -> None:
    stale = _Stale("NOOP", b"250 2.0.0 ok\r\n")
    srv = kit.server(Security.IMPLICIT_TLS, on_command=stale.hook)
    session = kit.connect(srv, Security.IMPLICIT_TLS)
    assert session.noop().code == 250
    stale.wait()
    (outcome,) = session.send_many([_message()])  # per-message outcomes
    assert isinstance(outcome, smtpsec.RemoteProtocolError)
    assert "nobody asked for" in str(outcome)
    assert session.closed
    assert "MAIL" not in kit.finished(srv).commands


def test_drop_in_sendmail_after_stale_replies_is_not_a_success(
    smtpsec_server: Any, smtpsec_client_context: Any
) -> None:
    stale = _Stale("NOOP", b"250 ok\r\n")
    srv = smtpsec_server(Security.IMPLICIT_TLS, on_command=stale.hook)
    s = smtplib.SMTP_SSL("127.0.0.1", srv.port, context=smtpsec_client_context)
    s.ehlo()
    assert s.noop()[0] == 250
    stale.wait()
    with pytest.raises(smtplib.SMTPException) as info:
        s.sendmail("ann@example.test", ["bob@example.test"], b"Subject: x\r\n\r\nhi\r\n")
    assert isinstance(info.value, smtpsec.RemoteProtocolError)
    assert s.sock is None
    assert srv.messages == []


def test_drop_in_login_never_takes_a_queued_235(
    smtpsec_server: Any, smtpsec_client_context: Any
) -> None:
    """A 235 queued before AUTH is unsolicited: login() fails, it does not succeed."""
    sent = threading.Event()

    def hook(session: HookSession, line: str) -> bytes | None:
        if line.upper().startswith("NOOP"):
            session.send(b"250 ok\r\n")
            time.sleep(0.05)
            session.send(b"235 2.7.0 queued in advance\r\n")
            sent.set()
            return b""
        if line.upper().startswith("AUTH"):
            return b"535 5.7.8 bad credentials\r\n"
        return None

    srv = smtpsec_server(Security.IMPLICIT_TLS, on_command=hook)
    s = smtplib.SMTP_SSL("127.0.0.1", srv.port, context=smtpsec_client_context)
    s.ehlo()
    assert s.noop()[0] == 250
    assert sent.wait(10)
    time.sleep(0.05)
    with pytest.raises(smtplib.SMTPException) as info:
        s.login("ann", "pw")
    assert isinstance(info.value, smtpsec.RemoteProtocolError)
    assert "AUTH" not in srv.connections[0].commands
