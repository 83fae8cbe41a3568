"""Hostile or broken replies: greetings, EHLO, AUTH, reply floods, drips and desyncs.

Checklist R-LIB-GREET-1, R-LIB-HELO-1, R-4954-4-6, R-5321-4.5.3.1-2,
R-5321-4.5.3.2-1 and R-LIB-DESYNC-1. Memory is measured (tracemalloc), time
never is: deadlines are only shown to fire, not how fast.
"""

from __future__ import annotations

import select
import threading
import tracemalloc

import pytest
from _security_kit import Kit

import smtpsec
from smtpsec import Security
from smtpsec.testing import Endless, ServerSession

EVIL_TEXT = "Visit http://evil.test to fix your account"
#: Client memory must stay flat whatever the server streams (the stream is 64 MiB).
MEMORY_BOUND = 8 * 1024 * 1024


# --------------------------------------------------------------------------- greeting


@pytest.mark.parametrize("code", [554, 421, 500, 221, 354, 530])
def test_greeting_other_than_220__R_LIB_GREET_1(kit: Kit, code: int) -> None:
    """Only a 220 greeting leads anywhere; the (pre-TLS) text is marked unverified."""
    srv = kit.server(greeting=(code, EVIL_TEXT))
    with pytest.raises(smtpsec.ReplyError) as info:
        kit.connect(srv, Security.STARTTLS)
    capture = kit.finished(srv)
    error = info.value
    assert type(error) is smtpsec.ReplyError
    assert error.code == code
    assert error.server_text_authenticated is False  # R-EAST-UE-1
    assert "unverified server text" in str(error)
    assert "EHLO" not in capture.commands
    kit.assert_nothing_leaked(capture)


def test_greeting_over_implicit_tls_is_authenticated_text__R_LIB_GREET_1(kit: Kit) -> None:
    """The same refusal inside implicit TLS carries authenticated server text."""
    srv = kit.server(Security.IMPLICIT_TLS, greeting=(554, "5.3.2 no service for you"))
    with pytest.raises(smtpsec.ReplyError) as info:
        kit.connect(srv, Security.IMPLICIT_TLS)
    assert info.value.server_text_authenticated is True
    assert info.value.permanent
    assert "EHLO" not in kit.finished(srv).commands


def test_greeting_not_smtp__R_LIB_GREET_1(kit: Kit) -> None:
    """A non-numeric greeting is a protocol error; the message hints at implicit TLS."""
    srv = kit.server(greeting=b"hello, I am not an SMTP server\r\n")
    with pytest.raises(smtpsec.RemoteProtocolError) as info:
        kit.connect(srv, Security.STARTTLS)
    capture = kit.finished(srv)
    assert "IMPLICIT_TLS" in str(info.value)
    assert "EHLO" not in capture.commands
    kit.assert_nothing_leaked(capture)


def test_greeting_554_is_answered_with_quit__R_LIB_GREET_1(kit: Kit) -> None:
    """RFC 5321 §3.1: after a 554 greeting the client SHOULD send QUIT, and nothing else."""
    srv = kit.server(greeting=(554, "5.3.2 no service"))
    with pytest.raises(smtpsec.ReplyError):
        kit.connect(srv, Security.STARTTLS)
    assert kit.finished(srv).commands_pre_tls == ["QUIT"]


def test_greeting_followed_by_unsolicited_reply__R_LIB_DESYNC_1(kit: Kit) -> None:
    """A second reply glued to the greeting is answered by nobody: protocol error."""
    srv = kit.server(greeting=b"220 smtp.example.test ESMTP\r\n250 AUTH PLAIN\r\n")
    with pytest.raises(smtpsec.RemoteProtocolError):
        kit.connect(srv, Security.STARTTLS)
    capture = kit.finished(srv)
    assert "EHLO" not in capture.commands
    kit.assert_nothing_leaked(capture)


# --------------------------------------------------------------------------- EHLO


def test_ehlo_refused_before_tls_no_helo__R_LIB_HELO_1__R_EAST_NS_3(kit: Kit) -> None:
    """EHLO → 500 (a "non-ESMTP" server, EAST D_1): no HELO fallback into cleartext."""
    srv = kit.server(pre_tls_replies={"EHLO": (500, "5.5.2 what is EHLO?")})
    with pytest.raises(smtpsec.ReplyError) as info:
        kit.connect(srv, Security.STARTTLS)
    capture = kit.finished(srv)
    assert type(info.value) is smtpsec.ReplyError
    assert info.value.code == 500
    assert info.value.server_text_authenticated is False
    assert "HELO" not in capture.commands
    assert capture.pre_tls_verbs_subset_of({"EHLO", "STARTTLS", "QUIT"})
    kit.assert_nothing_leaked(capture)


def test_ehlo_refused_after_tls_no_helo__R_3207_4_2_2(kit: Kit) -> None:
    """A post-TLS EHLO answered 500 ends the session: no HELO, no AUTH."""
    srv = kit.server(post_tls_replies={"EHLO": (500, "5.5.2 no")})
    with pytest.raises(smtpsec.ReplyError) as info:
        kit.connect(srv, Security.STARTTLS)
    capture = kit.finished(srv)
    assert info.value.server_text_authenticated is True
    assert capture.commands_post_tls[0] == "EHLO"
    assert not {"HELO", "AUTH", "MAIL"} & set(capture.commands)
    kit.assert_nothing_leaked(capture)


# --------------------------------------------------------------------------- AUTH


def test_503_to_first_auth__R_4954_4_6__R_EAST_S_1(kit: Kit) -> None:
    """``503 already authenticated`` to the first AUTH: fixation → ProtocolError, no MAIL."""
    srv = kit.server(post_tls_replies={"AUTH": (503, "5.5.1 Error: already authenticated")})
    with pytest.raises(smtpsec.RemoteProtocolError):
        kit.connect(srv, Security.STARTTLS)
    capture = kit.finished(srv)
    assert "AUTH" in capture.commands_post_tls
    assert not {"MAIL", "RCPT", "DATA", "BDAT"} & set(capture.commands)
    kit.assert_nothing_leaked(capture)


# --------------------------------------------------------------------------- floods


def _peak_during(action: object) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        assert callable(action)
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_endless_multiline_reply__R_5321_4_5_3_1_2(kit: Kit) -> None:
    """A greeting that never ends (``220-x`` forever) → ProtocolError in bounded memory."""
    srv = kit.server(Security.IMPLICIT_TLS, endless_multiline=True)

    def attempt() -> None:
        with pytest.raises(smtpsec.RemoteProtocolError, match="lines"):
            kit.connect(srv, Security.IMPLICIT_TLS)

    assert _peak_during(attempt) < MEMORY_BOUND
    assert kit.finished(srv).commands == []


def test_endless_ehlo_reply__R_5321_4_5_3_1_2(kit: Kit) -> None:
    """An endless post-TLS EHLO reply → ProtocolError in bounded memory, no AUTH."""
    srv = kit.server(post_tls_replies={"EHLO": Endless(line=b"250-AUTH PLAIN\r\n")})

    def attempt() -> None:
        with pytest.raises(smtpsec.RemoteProtocolError):
            kit.connect(srv, Security.STARTTLS)

    assert _peak_during(attempt) < MEMORY_BOUND
    capture = kit.finished(srv)
    assert "AUTH" not in capture.commands
    kit.assert_nothing_leaked(capture)


def test_ten_mib_line_without_crlf__R_5321_4_5_3_1_2(kit: Kit) -> None:
    """A 10 MiB greeting line with no line ending → ProtocolError in bounded memory."""
    srv = kit.server(Security.IMPLICIT_TLS, long_line=10 * 1024 * 1024)

    def attempt() -> None:
        with pytest.raises(smtpsec.RemoteProtocolError, match="line longer"):
            kit.connect(srv, Security.IMPLICIT_TLS)

    assert _peak_during(attempt) < MEMORY_BOUND
    assert kit.finished(srv).commands == []


def test_dripping_server_hits_whole_reply_deadline__R_5321_4_5_3_2_1(kit: Kit) -> None:
    """One byte every 0.2 s keeps the socket busy, but the whole reply has one deadline."""
    srv = kit.server(
        Security.IMPLICIT_TLS, drip=(b"220 smtp.example.test ESMTP slowly ready\r\n", 0.2)
    )
    with pytest.raises(smtpsec.TimeoutError):
        kit.connect(srv, Security.IMPLICIT_TLS, timeout=1.0)
    assert kit.finished(srv).commands == []


# --------------------------------------------------------------------------- desync


def test_double_reply_to_noop__R_LIB_DESYNC_1(kit: Kit) -> None:
    """Two replies to one NOOP (one write) → RemoteProtocolError, and no further commands."""
    srv = kit.server(
        Security.IMPLICIT_TLS, replies={"NOOP": b"250 2.0.0 Ok\r\n250 2.0.0 Ok again\r\n"}
    )
    with kit.connect(srv, Security.IMPLICIT_TLS) as session:
        with pytest.raises(smtpsec.RemoteProtocolError, match="out of step"):
            session.noop()
        with pytest.raises(smtpsec.SMTPSecError):
            session.send(kit.message())
    capture = kit.finished(srv)
    assert capture.commands_post_tls[-1] == "NOOP"
    assert capture.messages == []


def test_late_surplus_reply_is_detected__R_LIB_DESYNC_1(kit: Kit) -> None:
    """A surplus reply that is already waiting when the next command is sent is a desync."""
    first_read = threading.Event()
    surplus_sent = threading.Event()

    def double(session: ServerSession, line: str) -> bytes | None:
        if line.upper() != "NOOP" or surplus_sent.is_set():
            return None
        session.send(b"250 2.0.0 Ok\r\n")
        # The test orders the two writes: the surplus goes out only after the
        # client has returned from its first noop(), so it arrives on its own.
        first_read.wait(5)
        session.send(b"250 2.0.0 surplus\r\n")
        surplus_sent.set()
        return b""

    srv = kit.server(Security.IMPLICIT_TLS, on_command=double)
    with kit.connect(srv, Security.IMPLICIT_TLS) as session:
        session.noop()
        first_read.set()
        assert surplus_sent.wait(5)
        # Order the events without timing: wait until the surplus reached our socket.
        sock = kit.socket_of(session)
        assert select.select([sock], [], [], 5)[0]
        with pytest.raises(smtpsec.RemoteProtocolError):
            session.noop()
