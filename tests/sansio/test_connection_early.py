"""Early pipelining in the state table (PIPECONNECT, draft-harris-early-pipe).

``ClientConnection.allow_early_pipelining()`` lets the next EHLO go before the
greeting and one command (group) follow it unanswered; every other rule of the
table still holds.
"""

from __future__ import annotations

import pytest

from smtpsec.errors import LocalProtocolError
from smtpsec.sansio import ClientConnection, Command, Response, State

GREETING = b"220 mx.example.test ESMTP\r\n"
EHLO_REPLY = b"250-mx.example.test\r\n250-PIPELINING\r\n250-PIPECONNECT\r\n250 AUTH PLAIN\r\n"
EHLO = Command("EHLO", "[127.0.0.1]")
AUTH = Command("AUTH", "PLAIN AGFubgBwdw==", redact=True)


def feed(conn: ClientConnection, data: bytes) -> list[Response]:
    conn.receive_data(data)
    return conn.drain()


def test_ehlo_before_the_greeting_needs_the_permission() -> None:
    conn = ClientConnection(tls_active=True)
    with pytest.raises(LocalProtocolError, match="wait for the server greeting"):
        conn.send(EHLO)


def test_early_ehlo_and_auth_are_answered_in_one_read() -> None:
    conn = ClientConnection(tls_active=True)
    conn.allow_early_pipelining()
    out = conn.send(EHLO) + conn.send(AUTH)
    assert out == b"EHLO [127.0.0.1]\r\nAUTH PLAIN AGFubgBwdw==\r\n"
    assert conn.unanswered == 3  # greeting, EHLO, AUTH
    responses = feed(conn, GREETING + EHLO_REPLY + b"235 2.7.0 ok\r\n")
    assert [r.command.verb if r.command else None for r in responses] == [None, "EHLO", "AUTH"]
    assert [r.reply.code for r in responses] == [220, 250, 235]
    assert conn.state is State.READY
    assert conn.authenticated
    assert conn.extensions is not None and "PIPECONNECT" in conn.extensions


def test_only_one_command_group_follows_the_early_ehlo() -> None:
    """AUTH still ends its group (RFC 2920 §3.1), early or not."""
    conn = ClientConnection(tls_active=True)
    conn.allow_early_pipelining()
    conn.send(EHLO)
    conn.send(AUTH)
    with pytest.raises(LocalProtocolError, match="behind AUTH"):
        conn.send(Command("MAIL", "ann@example.test"))


def test_a_pipelinable_group_may_follow_the_early_ehlo() -> None:
    conn = ClientConnection(tls_active=True)
    conn.allow_early_pipelining()
    conn.send(EHLO)
    conn.send(Command("MAIL", "ann@example.test"))
    conn.send(Command("RCPT", "bob@example.test"))
    assert conn.unanswered == 4


def test_the_permission_covers_one_ehlo() -> None:
    conn = ClientConnection(tls_active=True)
    conn.allow_early_pipelining()
    conn.send(EHLO)
    feed(conn, GREETING + EHLO_REPLY)
    conn.send(Command("EHLO", "again"))
    with pytest.raises(LocalProtocolError, match="behind EHLO"):
        conn.send(AUTH)
    with pytest.raises(LocalProtocolError, match="first EHLO"):
        conn.allow_early_pipelining()


def test_nothing_but_ehlo_goes_early_before_tls() -> None:
    """R-8314-5.2-4: the TLS-required rule is not relaxed by early pipelining."""
    conn = ClientConnection(tls_active=False)
    conn.allow_early_pipelining()
    conn.send(EHLO)
    with pytest.raises(LocalProtocolError, match="before TLS"):
        conn.send(AUTH)


def test_a_refused_greeting_leaves_no_session_behind_the_early_commands() -> None:
    """The server refused everything: the AUTH refusal does not make the state READY."""
    conn = ClientConnection(tls_active=True)
    conn.allow_early_pipelining()
    conn.send(EHLO)
    conn.send(AUTH)
    responses = feed(
        conn, b"554 5.7.1 not now\r\n503 5.5.1 greeting refused\r\n503 5.5.1 no EHLO\r\n"
    )
    assert [r.reply.code for r in responses] == [554, 503, 503]
    assert conn.state is State.NEED_EHLO
    assert not conn.authenticated
    with pytest.raises(LocalProtocolError, match="send EHLO first"):
        conn.send(Command("MAIL", "ann@example.test"))


def test_a_refused_auth_after_a_normal_ehlo_stays_ready() -> None:
    conn = ClientConnection(tls_active=True)
    feed(conn, GREETING)
    conn.send(EHLO)
    feed(conn, EHLO_REPLY)
    conn.send(AUTH)
    assert [r.reply.code for r in feed(conn, b"535 5.7.8 no\r\n")] == [535]
    assert conn.state is State.READY
    conn.send(Command("MAIL", "ann@example.test"))


def test_replies_behind_a_closing_greeting_cannot_open_a_session() -> None:
    """A 521 greeting ends the dialogue: the greeting is what the caller gets, and
    nothing behind it (even in the same read) makes a session or a login."""
    conn = ClientConnection(tls_active=True)
    conn.allow_early_pipelining()
    conn.send(EHLO)
    conn.send(AUTH)
    responses = feed(conn, b"521 5.3.2 no mail here\r\n" + EHLO_REPLY + b"235 2.7.0 ok\r\n")
    assert [r.reply.code for r in responses] == [521]
    assert conn.state is State.CLOSED
    assert not conn.authenticated
    assert conn.extensions is None
    with pytest.raises(LocalProtocolError, match="closed"):
        conn.send(Command("MAIL", "ann@example.test"))


def test_a_421_ends_the_dialogue_whatever_follows_in_the_same_read() -> None:
    conn = ClientConnection(tls_active=True)
    conn.allow_early_pipelining()
    conn.send(EHLO)
    conn.send(AUTH)
    responses = feed(conn, GREETING + b"421 4.3.2 busy\r\n503 5.5.1 no\r\n")
    assert [r.reply.code for r in responses] == [220, 421]
    assert conn.state is State.CLOSED
