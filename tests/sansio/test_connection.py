"""The client state table (sansio.ClientConnection): legal steps, pipelining, STARTTLS
boundary, desync detection; plus a Hypothesis property over random dialogues."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpsec.errors import (
    InvalidArgumentError,
    LocalProtocolError,
    RemoteProtocolError,
    ResponseInjectionError,
)
from smtpsec.sansio import ClientConnection, Command, Response, State


def feed(conn: ClientConnection, data: bytes) -> list[Response]:
    """Give ``conn`` server bytes and take every response they complete."""
    conn.receive_data(data)
    return conn.drain()


GREETING = b"220 mx.example.test ESMTP\r\n"
EHLO_REPLY = b"250-mx.example.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 STARTTLS\r\n"


def ready(*, tls: bool = True) -> ClientConnection:
    conn = ClientConnection(tls_active=tls)
    feed(conn, GREETING)
    conn.send(Command("EHLO", "[127.0.0.1]"))
    feed(conn, EHLO_REPLY)
    assert conn.state is State.READY
    return conn


def test_greeting_then_ehlo_learns_extensions() -> None:
    conn = ClientConnection(tls_active=True)
    assert conn.state is State.GREETING
    with pytest.raises(LocalProtocolError, match="greeting"):
        conn.send(Command("EHLO", "x"))
    (greeting,) = feed(conn, GREETING)
    assert greeting.command is None
    assert greeting.reply.code == 220
    assert conn.state is State.NEED_EHLO
    assert conn.send(Command("EHLO", "[127.0.0.1]")) == b"EHLO [127.0.0.1]\r\n"
    (resp,) = feed(conn, EHLO_REPLY)
    assert resp.tls
    assert conn.extensions is not None
    assert "PIPELINING" in conn.extensions
    assert conn.server_name == "mx.example.test"


@pytest.mark.parametrize("code", [421, 500, 221, 354])
def test_non_220_greeting_closes(code: int) -> None:
    conn = ClientConnection(tls_active=True)
    feed(conn, f"{code} go away\r\n".encode())
    assert conn.state is State.CLOSED
    with pytest.raises(LocalProtocolError, match="closed"):
        conn.send(Command("EHLO", "x"))


def test_554_greeting_still_allows_quit_only() -> None:
    """RFC 5321 §3.1: after 554 the client may say QUIT (R-LIB-GREET-1)."""
    conn = ClientConnection(tls_active=True)
    feed(conn, b"554 no service\r\n")
    assert conn.send(Command("QUIT")) == b"QUIT\r\n"
    feed(conn, b"221 bye\r\n")
    assert conn.state is State.CLOSED


def test_mail_needs_ehlo_first() -> None:
    conn = ClientConnection(tls_active=True)
    feed(conn, GREETING)
    with pytest.raises(LocalProtocolError, match="EHLO"):
        conn.send(Command("MAIL", "a@example.test"))


@pytest.mark.parametrize("verb", ["NOOP", "RSET", "VRFY", "HELP", "XCLIENT"])
def test_neutral_commands_any_time_rfc_5321_4_1_4(verb: str) -> None:
    """NOOP, HELP, EXPN, VRFY and RSET may be used at any time (RFC 5321 §4.1.4),
    even before EHLO; they change no state. Verbs the table does not know
    (extensions sent through the drop-in) are treated the same way."""
    conn = ClientConnection(tls_active=True)
    feed(conn, GREETING)
    conn.send(Command(verb))
    (response,) = feed(conn, b"250 ok\r\n")
    assert response.command == Command(verb)
    assert conn.state is State.NEED_EHLO
    conn = ready()
    conn.send(Command("MAIL", "a@example.test"))
    feed(conn, b"250 ok\r\n")
    conn.send(Command(verb))
    feed(conn, b"502 not here\r\n")
    assert conn.state is State.MAIL


def test_responses_wait_in_order_with_their_tags() -> None:
    """The connection is the one queue of what is outstanding: sent but unanswered,
    then answered but not yet taken."""
    conn = ready()
    conn.send(Command("MAIL", "a@example.test"), tag="mail")
    conn.send(Command("RCPT", "b@example.test"), tag="rcpt")
    assert (conn.awaiting, conn.unanswered, conn.idle) == (2, 2, False)
    conn.receive_data(b"250 ok\r\n250 ok\r\n")
    assert (conn.awaiting, conn.unanswered) == (2, 0)
    first, second = conn.next_response(), conn.next_response()
    assert first is not None and second is not None
    assert (first.tag, second.tag) == ("mail", "rcpt")
    assert conn.next_response() is None
    assert conn.idle


def test_a_partial_reply_is_not_idle() -> None:
    conn = ready()
    conn.send(Command("NOOP"))
    conn.receive_data(b"250 o")
    assert not conn.idle and conn.next_response() is None
    conn.receive_data(b"k\r\n")
    assert conn.next_response() is not None and conn.idle


def test_lmtp_lhlo_and_one_reply_per_recipient_rfc_2033() -> None:
    conn = ClientConnection(tls_active=True)
    feed(conn, GREETING)
    conn.send(Command("LHLO", "client.example.test"))
    feed(conn, b"250-lmtp.example.test\r\n250 PIPELINING\r\n")
    assert conn.state is State.READY and conn.extensions is not None
    conn.send(Command("MAIL", "a@example.test"))
    conn.send(Command("RCPT", "b@example.test"))
    conn.send(Command("RCPT", "c@example.test"))
    conn.send(Command("DATA"))
    feed(conn, b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n")
    conn.end_data(replies=2, tag="end")
    ends = feed(conn, b"250 b done\r\n452 c full\r\n")
    assert [r.data_end for r in ends] == [True, True]
    assert [r.tag for r in ends] == ["end", "end"]
    assert conn.state is State.READY


def test_pre_tls_only_ehlo_starttls_quit_r_8314_5_2_4() -> None:
    conn = ready(tls=False)
    for verb, arg in (("MAIL", "a@b.test"), ("AUTH", "PLAIN"), ("NOOP", ""), ("RSET", "")):
        with pytest.raises(LocalProtocolError, match="before TLS"):
            conn.send(Command(verb, arg))
    plain = ClientConnection(require_tls=False)
    feed(plain, GREETING)
    plain.send(Command("EHLO", "x"))
    feed(plain, b"250 ok\r\n")
    assert plain.send(Command("NOOP")) == b"NOOP\r\n"


def test_pipelined_transaction_matches_replies_in_order_r_2920_3_1_3() -> None:
    conn = ready()
    wire = b"".join(
        conn.send(c)
        for c in (
            Command("MAIL", "a@x.test"),
            Command("RCPT", "b@x.test"),
            Command("RCPT", "c@x.test"),
            Command("RCPT", "d@x.test"),
            Command("DATA"),
        )
    )
    assert wire.count(b"\r\n") == 5
    assert conn.awaiting == 5
    responses = feed(conn, b"250 ok\r\n550 no\r\n250 ok\r\n550 no\r\n354 go\r\n")
    assert [r.reply.code for r in responses] == [250, 550, 250, 550, 354]
    assert [r.command.argument for r in responses if r.command] == [
        "a@x.test",
        "b@x.test",
        "c@x.test",
        "d@x.test",
        "",
    ]
    assert conn.state is State.DATA
    conn.end_data()
    (end,) = feed(conn, b"250 queued\r\n")
    assert end.data_end
    assert end.command is None
    assert conn.state is State.READY


def test_group_enders_block_further_queueing_r_2920_3_1_2() -> None:
    conn = ready()
    conn.send(Command("MAIL", "a@x.test"))
    conn.send(Command("RCPT", "b@x.test"))
    conn.send(Command("DATA"))
    with pytest.raises(LocalProtocolError, match="RFC 2920"):
        conn.send(Command("RSET"))


def test_refused_mail_leaves_no_transaction() -> None:
    conn = ready()
    conn.send(Command("MAIL", "a@x.test"))
    conn.send(Command("RCPT", "b@x.test"))
    conn.send(Command("DATA"))
    feed(conn, b"550 sender refused\r\n503 need MAIL\r\n503 need RCPT\r\n")
    assert conn.state is State.READY
    assert conn.send(Command("MAIL", "a@x.test"))  # projected state caught up


def test_data_refused_keeps_transaction_open() -> None:
    conn = ready()
    for c in (Command("MAIL", "a@x.test"), Command("RCPT", "b@x.test"), Command("DATA")):
        conn.send(c)
    feed(conn, b"250 ok\r\n250 ok\r\n451 try later\r\n")
    assert conn.state is State.RCPT
    with pytest.raises(LocalProtocolError, match="no DATA body"):
        conn.end_data()
    conn.send(Command("RSET"))
    feed(conn, b"250 reset\r\n")
    assert conn.state is State.READY


def test_bdat_chunks_and_last() -> None:
    conn = ready()
    conn.send(Command("MAIL", "a@x.test"))
    conn.send(Command("RCPT", "b@x.test"))
    conn.send(Command("BDAT", "10"))
    conn.send(Command("BDAT", "5 LAST"))
    conn.send(Command("MAIL", "a@x.test"))  # RFC 3030 allows the next transaction to follow
    feed(conn, b"250 ok\r\n250 ok\r\n250 10 octets\r\n250 queued\r\n250 ok\r\n")
    assert conn.state is State.MAIL


def test_server_accepting_out_of_sequence_is_remote_error() -> None:
    conn = ready()
    conn.send(Command("MAIL", "a@x.test"))
    conn.send(Command("RCPT", "b@x.test"))
    with pytest.raises(RemoteProtocolError, match="out of sequence"):
        feed(conn, b"550 no\r\n250 ok\r\n")
    assert conn.state is State.CLOSED


def test_unsolicited_reply_is_desync_r_lib_desync_1() -> None:
    conn = ready()
    conn.send(Command("NOOP"))
    with pytest.raises(RemoteProtocolError, match="nobody asked"):
        feed(conn, b"250 ok\r\n250 ok\r\n")
    assert conn.state is State.CLOSED


def test_auth_exchange_and_single_auth_r_4954_4_5() -> None:
    conn = ready()
    conn.send(Command("AUTH", "LOGIN", redact=True))
    feed(conn, b"334 VXNlcm5hbWU6\r\n")
    assert conn.state is State.AUTH
    conn.send(Command("", "YW5u", redact=True))
    feed(conn, b"334 UGFzc3dvcmQ6\r\n")
    conn.send(Command("", "c2VjcmV0", redact=True))
    feed(conn, b"235 2.7.0 ok\r\n")
    assert conn.authenticated
    assert conn.state is State.READY
    with pytest.raises(LocalProtocolError, match="once"):
        conn.send(Command("AUTH", "PLAIN"))


def test_failed_auth_returns_to_ready() -> None:
    conn = ready()
    conn.send(Command("AUTH", "PLAIN AGFubgBw", redact=True))
    feed(conn, b"535 5.7.8 bad\r\n")
    assert not conn.authenticated
    assert conn.state is State.READY


def test_starttls_boundary_forgets_everything_r_3207_4_2_1() -> None:
    conn = ready(tls=False)
    conn.send(Command("STARTTLS"))
    with pytest.raises(LocalProtocolError):
        conn.send(Command("EHLO", "x"))
    feed(conn, b"220 go ahead\r\n")
    assert conn.state is State.TLS_PENDING
    assert conn.injected_data == b""
    conn.tls_started()
    assert conn.tls_active
    assert conn.extensions is None
    assert conn.state is State.NEED_EHLO
    with pytest.raises(LocalProtocolError, match="already runs TLS"):
        ready().send(Command("STARTTLS"))


@pytest.mark.parametrize(
    "chunks",
    [
        [b"220 go\r\n250-evil\r\n250 AUTH LOGIN\r\n"],  # whole replies in the same write
        [b"220 go\r\n250-ev"],  # a fragment
        [b"220 go\r\n", b"250 AUTH PLAIN\r\n"],  # a later write before the handshake
    ],
)
def test_injection_after_starttls_220_is_detected_r_east_br_1(chunks: list[bytes]) -> None:
    conn = ready(tls=False)
    conn.send(Command("STARTTLS"))
    for chunk in chunks:
        feed(conn, chunk)
    assert conn.injected_data
    with pytest.raises(ResponseInjectionError):
        conn.tls_started()


def test_starttls_refused_returns_to_ready() -> None:
    conn = ready(tls=False)
    conn.send(Command("STARTTLS"))
    feed(conn, b"454 4.7.0 TLS not available\r\n")
    assert conn.state is State.READY
    with pytest.raises(LocalProtocolError, match="without an accepted STARTTLS"):
        conn.tls_started()


def test_421_anywhere_closes() -> None:
    conn = ready()
    conn.send(Command("MAIL", "a@x.test"))
    conn.send(Command("RCPT", "b@x.test"))
    feed(conn, b"421 4.3.2 shutting down\r\n")
    assert conn.state is State.CLOSED
    assert conn.awaiting == 0


def test_helo_and_close() -> None:
    conn = ClientConnection(require_tls=False)
    feed(conn, GREETING)
    conn.send(Command("HELO", "x"))
    feed(conn, b"250 hi\r\n")
    assert conn.extensions is not None
    assert len(conn.extensions) == 0
    conn.close()
    assert conn.state is State.CLOSED


def test_invalid_argument_queues_nothing() -> None:
    conn = ready()
    with pytest.raises(InvalidArgumentError):
        conn.send(Command("MAIL", "a@x.test>\r\nRCPT TO:<victim@y.test"))
    assert conn.awaiting == 0
    assert conn.send(Command("MAIL", "a@x.test")) == b"MAIL FROM:<a@x.test>\r\n"


_VERBS = st.sampled_from(["EHLO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "QUIT", "AUTH"])
_REPLIES = st.sampled_from([b"250 ok\r\n", b"550 no\r\n", b"354 go\r\n", b"451 later\r\n"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_VERBS, _REPLIES), max_size=30))
def test_random_dialogues_only_raise_protocol_errors(steps: list[tuple[str, bytes]]) -> None:
    """Any command sequence either encodes or raises a ProtocolError; never anything else."""
    conn = ready()
    args = {"EHLO": "h", "MAIL": "a@x.test", "RCPT": "b@x.test", "BDAT": "1 LAST", "AUTH": "X"}
    for verb, reply in steps:
        try:
            data = conn.send(Command(verb, args.get(verb, "")))
        except LocalProtocolError:
            continue
        assert data.endswith(b"\r\n")
        try:
            feed(conn, reply)
        except RemoteProtocolError:
            assert conn.state is State.CLOSED
            return
        if conn.state is State.DATA:
            conn.end_data()
            feed(conn, b"250 ok\r\n")
        assert conn.awaiting == 0
