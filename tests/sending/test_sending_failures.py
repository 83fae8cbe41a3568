"""Failures in the middle of a pipeline: each reply is checked and each message gets its own
outcome (R-2920-3.1-3, R-2920-3.1-4, R-3030-2-4, R-5321-3.3-1, R-5321-3.8-1,
R-5321-4.5.3.1.10-1, R-LIB-DESYNC-1)."""

from __future__ import annotations

from typing import Any

import pytest
from sending_helpers import CANARY, finished, flights, message, without

import smtpsec
from smtpsec.errors import (
    ConnectError,
    DeliveryUnknown,
    RecipientsRefused,
    RemoteProtocolError,
    ReplyError,
    SenderRefused,
)
from smtpsec.testing import ServerSession
from smtpsec.transports import MemoryTransport
from smtpsec.transports._memory import FAKE_TLS

MODES = {
    "bdat-pipelined": None,
    "data-pipelined": without("CHUNKING"),
    "bdat-lockstep": without("PIPELINING"),
    "data-lockstep": without("PIPELINING", "CHUNKING"),
}


def _refuse_sender(bad: str) -> Any:
    def hook(session: ServerSession, line: str) -> bytes | None:
        if line.upper().startswith(f"MAIL FROM:<{bad}>".upper()):
            return b"550 5.7.1 sender not allowed\r\n"
        return None

    return hook


def _serve(serve: Any, mode: str, **script: Any) -> Any:
    extensions = MODES[mode]
    return serve(**script) if extensions is None else serve(extensions=extensions, **script)


@pytest.mark.parametrize("mode", MODES)
def test_sender_refused(serve: Any, connect: Any, mode: str) -> None:
    srv = _serve(serve, mode, on_command=_refuse_sender("ann@example.test"))
    with connect(srv) as session, pytest.raises(SenderRefused) as info:
        session.send(message())
    assert info.value.code == 550
    assert info.value.enhanced_status == "5.7.1"
    assert info.value.sender == "ann@example.test"
    assert srv.messages == []
    capture = finished(srv)
    assert CANARY.encode() not in capture.post_tls or mode.startswith("bdat-pipelined")
    if mode.endswith("lockstep"):
        assert "RCPT" not in capture.commands


@pytest.mark.parametrize("mode", MODES)
def test_R_2920_3_1_3_some_recipients_refused(serve: Any, connect: Any, mode: str) -> None:
    srv = _serve(
        serve,
        mode,
        refuse_recipients={
            "r1@example.test": (550, "5.1.1 no such user"),
            "r3@example.test": (450, "4.2.1 mailbox busy"),
        },
    )
    rcpts = ["r1@example.test", "r2@example.test", "r3@example.test", "r4@example.test"]
    with connect(srv) as session:
        result = session.send(message(), recipients=rcpts)
    assert result.accepted == ("r2@example.test", "r4@example.test")
    assert set(result.refused) == {"r1@example.test", "r3@example.test"}
    r1, r3 = result.refused["r1@example.test"], result.refused["r3@example.test"]
    assert (r1.code, r1.enhanced_status, r1.text) == (550, "5.1.1", "no such user")
    assert r1.permanent and not r1.transient
    assert (r3.code, r3.enhanced_status) == (450, "4.2.1")
    assert r3.transient and not r3.permanent
    (delivered,) = srv.messages
    assert delivered.recipients == ("r2@example.test", "r4@example.test")


@pytest.mark.parametrize("mode", MODES)
def test_all_recipients_refused(serve: Any, connect: Any, mode: str) -> None:
    srv = _serve(
        serve,
        mode,
        refuse_recipients={
            "r1@example.test": (550, "5.1.1 no such user"),
            "r2@example.test": (451, "4.3.0 try later"),
        },
    )
    with connect(srv) as session:
        with pytest.raises(RecipientsRefused) as info:
            session.send(message(), recipients=["r1@example.test", "r2@example.test"])
        assert info.value.refused == {
            "r1@example.test": (550, "5.1.1", "no such user"),
            "r2@example.test": (451, "4.3.0", "try later"),
        }
        assert info.value.code == 550
        session.send(message())  # the session stays usable
    assert len(srv.messages) == 1
    capture = finished(srv)
    assert "RSET" in capture.commands_post_tls
    before_rset = capture.commands[: capture.commands.index("RSET")]
    if mode.endswith("lockstep"):
        assert "DATA" not in before_rset
        assert "BDAT" not in before_rset


def test_R_2920_3_1_4_all_refused_but_354_sends_only_the_terminator(
    serve: Any, connect: Any
) -> None:
    # A server that says 354 although no recipient was accepted: the client
    # must send just "." and then RSET before the next transaction.
    srv = serve(
        extensions=without("CHUNKING"),
        refuse_recipients={"r1@example.test": (550, "5.1.1 no")},
        replies={"DATA": (354, "go ahead")},
    )
    with connect(srv) as session:
        with pytest.raises(RecipientsRefused):
            session.send(message(), recipients=["r1@example.test"])
        with pytest.raises(ReplyError):
            session.send(message(body="second\n"), recipients=["r1@example.test"])
    capture = finished(srv)
    assert CANARY.encode() not in capture.post_tls
    lines = capture.lines_post_tls
    first_dot = lines.index(".")
    assert lines[first_dot + 1] == "RSET"


def test_R_5321_4_5_3_1_10_452_after_two_recipients_is_reported(serve: Any, connect: Any) -> None:
    srv = serve(max_recipients=2)
    rcpts = [f"u{i}@example.test" for i in range(5)]
    with connect(srv) as session:
        result = session.send(message(), recipients=rcpts)
    assert result.accepted == tuple(rcpts[:2])
    assert list(result.refused) == rcpts[2:]
    assert all(r.code == 452 and r.transient for r in result.refused.values())
    assert srv.messages[0].recipients == tuple(rcpts[:2])


@pytest.mark.parametrize("mode", MODES)
def test_R_5321_3_8_1_421_mid_transaction(serve: Any, connect: Any, mode: str) -> None:
    srv = _serve(serve, mode, replies={"RCPT": (421, "4.3.2 shutting down")})
    session = connect(srv)
    with pytest.raises((ReplyError, ConnectError)) as info:
        session.send(message())
    assert "not sent" in str(info.value)
    if isinstance(info.value, ReplyError):
        assert info.value.code == 421
        assert info.value.transient
    assert session.closed
    assert srv.messages == []
    assert CANARY.encode() not in finished(srv).post_tls or mode == "bdat-pipelined"


def test_R_5321_3_3_1_data_refused_sends_no_body_then_rset(serve: Any, connect: Any) -> None:
    srv = serve(extensions=without("CHUNKING"), replies={"DATA": (451, "4.3.0 local error")})
    with connect(srv) as session:
        with pytest.raises(ReplyError) as info:
            session.send(message())
        assert info.value.code == 451
        assert info.value.transient
        assert "temporary" in str(info.value)
        with pytest.raises(ReplyError):
            session.send(message(body="again\n"))
    capture = finished(srv)
    assert CANARY.encode() not in capture.post_tls
    verbs = capture.commands_post_tls
    second_mail = [i for i, v in enumerate(verbs) if v == "MAIL"][1]
    assert verbs[second_mail - 1] == "RSET"


def test_final_reply_refused(serve: Any, connect: Any) -> None:
    srv = serve(replies={".": (554, "5.7.1 spam")})
    with connect(srv) as session:
        with pytest.raises(ReplyError) as info:
            session.send(message())
        assert info.value.permanent
        session.send_many([message()])
    assert srv.messages == []


@pytest.mark.parametrize("mode", ["bdat-pipelined", "bdat-lockstep"])
def test_R_3030_2_4_no_chunk_after_a_refused_chunk(serve: Any, connect: Any, mode: str) -> None:
    srv = _serve(serve, mode, replies={"BDAT": (552, "5.3.4 too much")})
    body = (b"y" * 99 + b"\n") * 80_000  # 8 MB: eight 1 MiB chunks when streamed
    with connect(srv) as session:
        with pytest.raises(ReplyError) as info:
            session.send(body, sender="ann@example.test", recipients=["bob@example.test"])
        assert info.value.code == 552
        with pytest.raises(ReplyError):
            session.send(message())
    capture = finished(srv)
    verbs = capture.commands_post_tls
    bdats = verbs[: verbs.index("RSET")].count("BDAT")
    assert bdats == 1 if mode == "bdat-lockstep" else 1 < bdats < 8
    assert verbs[verbs.index("RSET") + 1] == "MAIL"


def test_send_many_middle_sender_refused_does_not_stop_the_others(serve: Any, connect: Any) -> None:
    srv = serve(on_command=_refuse_sender("bad@example.test"))
    batch = [message(subject="one"), message(sender="bad@example.test"), message(subject="three")]
    with connect(srv) as session:
        first, middle, last = session.send_many(batch)
    assert isinstance(first, smtpsec.SendResult)
    assert isinstance(middle, SenderRefused)
    assert isinstance(last, smtpsec.SendResult)
    assert [
        m.data.count(b"Subject: one") + m.data.count(b"Subject: three") for m in srv.messages
    ] == [1, 1]


def _drop_on_third_mail() -> Any:
    seen = 0

    def hook(session: ServerSession, line: str) -> bytes | None:
        nonlocal seen
        if line.upper().startswith("MAIL"):
            seen += 1
            if seen == 3:
                session.close()
                return b""
        return None

    return hook


@pytest.mark.parametrize("mode", ["bdat-pipelined", "data-pipelined"])
def test_send_many_dropped_connection_marks_the_rest_not_sent(
    serve: Any, connect: Any, mode: str
) -> None:
    srv = _serve(serve, mode, on_command=_drop_on_third_mail())
    session = connect(srv)
    outcomes = session.send_many([message(subject=f"n{i}") for i in range(5)])
    assert [type(o).__name__ for o in outcomes[:2]] == ["SendResult", "SendResult"]
    assert all(isinstance(o, ConnectError) for o in outcomes[2:])
    if mode == "bdat-pipelined":
        # Messages 3-5 went out whole in one flight before the drop: their
        # replies are missing, so whether the server took them is unknowable,
        # and they must not be called "not sent" (a resend could duplicate).
        assert all(isinstance(o, DeliveryUnknown) for o in outcomes[2:])
        cause = outcomes[2].__cause__  # type: ignore[union-attr]
        assert "closed the connection" in str(cause)
        assert all(o.__cause__ is cause for o in outcomes[3:])  # type: ignore[union-attr]
    else:
        # DATA waits for 354: message 3's body never went, 4 and 5 never started.
        assert not any(isinstance(o, DeliveryUnknown) for o in outcomes)
        assert "closed the connection" in str(outcomes[2])
        assert all(o.__cause__ is outcomes[2] for o in outcomes[3:])  # type: ignore[union-attr]
        assert "not sent" in str(outcomes[4])
    assert session.closed
    assert len(srv.messages) == 2


def test_R_LIB_DESYNC_1_extra_reply_detected_at_data(serve: Any, connect: Any) -> None:
    srv = serve(
        extensions=without("CHUNKING"), extra_replies_after=("MAIL", b"250 2.0.0 extra\r\n")
    )
    session = connect(srv)
    with pytest.raises(RemoteProtocolError) as info:
        session.send(message())
    assert "out of step" in str(info.value)
    assert session.closed
    assert CANARY.encode() not in finished(srv).post_tls
    assert srv.messages == []


def test_timeout_mid_transaction_closes_the_session(serve: Any, connect: Any) -> None:
    srv = serve(extensions=without("CHUNKING"), replies={"DATA": None})
    session = connect(srv, timeout=0.5)
    with pytest.raises(smtpsec.TimeoutError):
        session.send(message())
    assert session.closed
    assert srv.messages == []


def test_lock_step_sender_refused_needs_no_rset(serve: Any, connect: Any) -> None:
    srv = serve(extensions=without("PIPELINING"), on_command=_refuse_sender("bad@example.test"))
    with connect(srv) as session:
        with pytest.raises(SenderRefused):
            session.send(message(sender="bad@example.test"))
        session.send(message())
    assert "RSET" not in finished(srv).commands
    assert len(srv.messages) == 1


def test_segments_show_no_body_after_refused_data_in_pipeline(serve: Any, connect: Any) -> None:
    srv = serve(
        extensions=without("CHUNKING"), refuse_recipients={"r@example.test": (550, "5.1.1 no")}
    )
    with connect(srv) as session, pytest.raises(RecipientsRefused):
        session.send(message(), recipients=["r@example.test"])
    assert all(CANARY.encode() not in s for s in flights(finished(srv)))


class _AnswersThenBreaks(MemoryTransport):
    """After TLS: answers the first messages of the transaction flight, then its write fails."""

    def __init__(self, after_tls: list[bytes], answers: bytes) -> None:
        super().__init__(after_tls=after_tls)
        self._answers = answers
        self._arrived = b""

    def start_tls(self, context: object, **_options: object) -> MemoryTransport:  # type: ignore[override]
        self.upgraded = tls = _AnswersThenBreaks([], self._answers)
        tls._incoming.extend(self._after_tls)
        tls._tls = FAKE_TLS
        return tls

    def write(self, data: bytes, *, timeout: float) -> None:
        super().write(data, timeout=timeout)
        if b"MAIL FROM" in data:
            self._arrived = self._answers  # read by the transport while it waited
            raise smtpsec.ConnectError("connection lost while writing: broken pipe")

    def poll(self) -> bytes | None:
        data, self._arrived = self._arrived, b""
        return data or None


def test_replies_that_arrived_before_a_failed_write_still_settle_their_messages() -> None:
    """A write fails half-way through a flight of three messages, but the server's
    replies to the first message had already arrived: that message is a SendResult,
    not DeliveryUnknown; the others are not reported as sent."""
    ok = b"250 2.0.0 ok\r\n"
    transport = _AnswersThenBreaks(
        [b"220 mem ESMTP\r\n", b"250-mem.example.test\r\n250-PIPELINING\r\n250 CHUNKING\r\n"],
        answers=ok * 2 + b"250 2.0.0 queued as A1\r\n",  # MAIL, RCPT, BDAT of message 1
    )
    session = smtpsec.connect_transport(
        transport, "mem.example.test", 465, security=smtpsec.Security.IMPLICIT_TLS, timeout=1.0
    )
    raw = b"Subject: x\r\n\r\nhi\r\n"
    outcomes = session.send_many(
        [smtpsec.Outgoing(raw, "ann@example.test", [f"bob{i}@example.test"]) for i in range(3)]
    )
    first, *rest = outcomes
    assert isinstance(first, smtpsec.SendResult), first
    assert first.accepted == ("bob0@example.test",)
    assert all(isinstance(o, smtpsec.DeliveryUnknown) for o in rest), rest
    assert session.closed
