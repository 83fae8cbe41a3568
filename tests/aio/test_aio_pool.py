"""smtpsec.aio.Pool against real loopback servers, counted from the server's side.

What the server saw (its per-connection captures) is the evidence: how many
connections, how many at once, which commands, which messages on which
connection. No test looks at a clock.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from _aio_kit import (
    USER,
    assert_no_leaked_tasks,
    async_test,
    cancelled,
    eventually,
    message,
    subject,
    wait_closed,
)

import smtpsec
import smtpsec.aio
from poolkit import Admission
from smtpsec import Security
from smtpsec.testing import LeafCert, ServerSession, SMTPServer
from smtpsec.testing.plugin import ServerFactory


def _pool(srv: SMTPServer, args: dict[str, Any], **options: Any) -> smtpsec.aio.Pool:
    return smtpsec.aio.Pool("localhost", srv.port, **args, **options)


async def _closed_all(srv: SMTPServer) -> bool:
    return all([await wait_closed(c) for c in srv.connections])


# ---------------------------------------------------------------------------- size and reuse


@async_test
async def test_pool_never_opens_more_than_size_connections(
    smtpsec_server: ServerFactory, login_args: dict[str, Any], users: dict[str, str]
) -> None:
    admission = Admission()
    srv = smtpsec_server(Security.IMPLICIT_TLS, users=users, on_command=admission)
    admission.server = srv
    async with _pool(srv, login_args, size=3) as pool:
        results = await asyncio.gather(*(pool.send(message(i)) for i in range(30)))
        assert pool.open_connections == 3
    assert all(isinstance(r, smtpsec.SendResult) for r in results)
    assert len(srv.connections) == 3
    assert admission.peak == 3
    assert len(srv.messages) == 30
    assert await _closed_all(srv)


@async_test
async def test_hundred_sends_over_two_connections(
    smtpsec_server: ServerFactory, login_args: dict[str, Any], users: dict[str, str]
) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS, users=users)
    async with _pool(srv, login_args, size=2) as pool:
        await asyncio.gather(*(pool.send(message(i)) for i in range(100)))
    assert len(srv.connections) == 2
    assert len(srv.messages) == 100
    assert sorted(subject(m.data) for m in srv.messages) == sorted(
        f"message {i}" for i in range(100)
    )
    # Each connection logged in once, whatever the number of messages it carried.
    assert [len(c.auth) for c in srv.connections] == [1, 1]


@async_test
async def test_session_context_manager_returns_the_session(
    smtpsec_server: ServerFactory, tls_args: dict[str, Any]
) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS)
    async with _pool(srv, tls_args, size=2) as pool:
        async with pool.session() as first:
            await first.send(message(1))
        async with pool.session() as again:
            assert again is first
        assert pool.open_connections == 1
    assert len(srv.connections) == 1


# ---------------------------------------------------------------------------- replacing sessions


@async_test
async def test_session_dropped_while_idle_is_replaced(
    smtpsec_cert: LeafCert, tls_args: dict[str, Any]
) -> None:
    """The server restarts between two sends: the pool notices and reconnects."""
    first = SMTPServer(smtpsec_cert, tls=Security.IMPLICIT_TLS).start()
    try:
        pool = smtpsec.aio.Pool("localhost", first.port, size=1, **tls_args)
        await pool.send(message(1))
    finally:
        first.stop()  # drops the pooled connection
    second = SMTPServer(smtpsec_cert, tls=Security.IMPLICIT_TLS, port=first.port).start()
    try:
        result = await pool.send(message(2))
        assert pool.open_connections == 1
        await pool.close()
    finally:
        second.stop()
    assert result.accepted == ("bob@example.test",)
    assert [subject(m.data) for m in first.messages] == ["message 1"]
    assert [subject(m.data) for m in second.messages] == ["message 2"]
    assert "NOOP" not in second.connections[0].commands  # a fresh session needs no check


@async_test
async def test_session_closed_by_a_421_is_replaced(
    smtpsec_server: ServerFactory, tls_args: dict[str, Any]
) -> None:
    """R-5321-3.8-1: a 421 to MAIL fails that message and ends the session; a new one follows."""

    def shut_first(session: ServerSession, line: str) -> bytes | None:
        if line.upper().startswith("MAIL") and session.capture.index == 0:
            session.close()
            return b"421 4.3.2 Service shutting down\r\n"
        return None

    srv = smtpsec_server(Security.IMPLICIT_TLS, on_command=shut_first)
    async with _pool(srv, tls_args, size=1) as pool:
        with pytest.raises(smtpsec.ReplyError) as caught:
            await pool.send(message(1))
        assert caught.value.code == 421
        assert caught.value.transient
        assert pool.open_connections == 0
        await pool.send(message(2))
    assert len(srv.connections) == 2
    assert [subject(m.data) for m in srv.messages] == ["message 2"]


@async_test
async def test_session_closed_after_it_was_returned_is_replaced(
    smtpsec_server: ServerFactory, tls_args: dict[str, Any]
) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS)
    async with _pool(srv, tls_args, size=1) as pool:
        async with pool.session() as session:
            pass
        await session.close()  # misuse: closed behind the pool's back
        async with pool.session() as fresh:
            assert fresh is not session
            await fresh.send(message(1))
    assert len(srv.connections) == 2


@async_test
async def test_health_check_noop_after_idle(
    smtpsec_server: ServerFactory, tls_args: dict[str, Any]
) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS)
    async with _pool(srv, tls_args, size=1, health_check_after=0) as pool:
        for i in range(3):
            await pool.send(message(i))
    (capture,) = srv.connections
    assert capture.commands_post_tls.count("NOOP") == 2  # before each reuse, not before the first
    assert capture.commands_post_tls.index("NOOP") > capture.commands_post_tls.index("MAIL")


@async_test
async def test_no_health_check_within_health_check_after(
    smtpsec_server: ServerFactory, tls_args: dict[str, Any]
) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS)
    async with _pool(srv, tls_args, size=1, health_check_after=3600) as pool:
        for i in range(3):
            await pool.send(message(i))
    assert "NOOP" not in srv.connections[0].commands


@async_test
async def test_failed_health_check_replaces_the_session(
    smtpsec_server: ServerFactory, tls_args: dict[str, Any]
) -> None:
    srv = smtpsec_server(
        Security.IMPLICIT_TLS, replies={"NOOP": (421, "4.4.2 idle too long, closing")}
    )
    async with _pool(srv, tls_args, size=1, health_check_after=0) as pool:
        await pool.send(message(1))
        await pool.send(message(2))
        assert pool.open_connections == 1
    assert len(srv.connections) == 2
    assert srv.connections[0].commands_post_tls[-1] == "NOOP"
    assert [len(c.messages) for c in srv.connections] == [1, 1]


@async_test
async def test_refused_health_check_replaces_the_session(
    smtpsec_server: ServerFactory, tls_args: dict[str, Any]
) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS, replies={"NOOP": (554, "5.5.1 no")})
    async with _pool(srv, tls_args, size=1, health_check_after=0) as pool:
        await pool.send(message(1))
        await pool.send(message(2))
    assert len(srv.connections) == 2
    assert srv.connections[0].commands_post_tls[-2:] == ["NOOP", "QUIT"]


@async_test
async def test_sessions_idle_longer_than_max_idle_are_closed(
    smtpsec_server: ServerFactory, tls_args: dict[str, Any]
) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS)
    async with _pool(srv, tls_args, size=1, max_idle=0) as pool:
        for i in range(3):
            await pool.send(message(i))
    assert len(srv.connections) == 3
    assert await _closed_all(srv)
    assert all(c.commands_post_tls[-1] == "QUIT" for c in srv.connections)


# ---------------------------------------------------------------------------- 421 on connect


@async_test
async def test_421_on_the_third_connection_shrinks_the_pool(
    smtpsec_server: ServerFactory, login_args: dict[str, Any], users: dict[str, str]
) -> None:
    """ "Too many connections": the pool keeps the two it has and still sends everything."""
    admission = Admission(limit=2)
    srv = smtpsec_server(Security.IMPLICIT_TLS, users=users, on_command=admission)
    admission.server = srv
    async with _pool(srv, login_args, size=3) as pool:
        outcomes = await pool.send_many([message(i) for i in range(30)], batch=5)
        assert pool.size == 2
    assert all(isinstance(o, smtpsec.SendResult) for o in outcomes)
    assert admission.refused == 1
    assert admission.peak == 2
    assert len(srv.messages) == 30
    assert len(srv.connections) == 3
    assert sorted(len(c.messages) for c in srv.connections)[0] == 0  # the refused one


@async_test
async def test_421_with_no_connection_open_is_raised(
    smtpsec_server: ServerFactory, tls_args: dict[str, Any]
) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS, greeting=(421, "4.7.0 try again later"))
    async with _pool(srv, tls_args, size=2) as pool:
        with pytest.raises(smtpsec.ReplyError) as caught:
            await pool.send(message(1))
        assert caught.value.code == 421
        assert pool.open_connections == 0


@async_test
async def test_failed_login_does_not_strand_waiting_tasks(
    smtpsec_server: ServerFactory, tls_args: dict[str, Any], users: dict[str, str]
) -> None:
    """Every task waiting for the one slot gets the AuthenticationError; none hangs."""
    srv = smtpsec_server(Security.IMPLICIT_TLS, users=users)
    pool = smtpsec.aio.Pool(
        "localhost", srv.port, size=1, username=USER, password="wrong", **tls_args
    )
    sends = asyncio.gather(*(pool.send(message(i)) for i in range(3)), return_exceptions=True)
    outcomes = await asyncio.wait_for(sends, 30)  # hang guard, not a timing check
    assert all(isinstance(o, smtpsec.AuthenticationError) for o in outcomes)
    assert pool.open_connections == 0
    await pool.close()


# ---------------------------------------------------------------------------- send_many


@async_test
async def test_send_many_spreads_batches_and_keeps_order(
    smtpsec_server: ServerFactory, login_args: dict[str, Any], users: dict[str, str]
) -> None:
    refuse = {"gone@example.test": (550, "5.1.1 mailbox unavailable")}
    srv = smtpsec_server(Security.IMPLICIT_TLS, users=users, refuse_recipients=refuse)
    batch = [message(i) for i in range(40)]
    batch[17] = message(17, to="gone@example.test")
    async with _pool(srv, login_args, size=4) as pool:
        outcomes = await pool.send_many(batch, batch=5)
    assert len(outcomes) == 40
    assert isinstance(outcomes[17], smtpsec.RecipientsRefused)
    ok = [o for i, o in enumerate(outcomes) if i != 17]
    assert all(isinstance(o, smtpsec.SendResult) for o in ok)
    used = [c for c in srv.connections if c.messages]
    assert len(used) > 1
    # Within a connection, each batch arrives in order.
    for capture in used:
        numbers = [int(subject(m.data).split()[1]) for m in capture.messages]
        assert numbers == sorted(numbers)
    assert len(srv.messages) == 39


@async_test
async def test_rate_limit_refusals_are_outcomes_never_retried(
    smtpsec_server: ServerFactory, tls_args: dict[str, Any]
) -> None:
    """A 450 4.7.1 rate limit is reported per message; retrying is the application's call."""
    limited = {"busy@example.test": (450, "4.7.1 rate limit exceeded, try later")}
    srv = smtpsec_server(Security.IMPLICIT_TLS, refuse_recipients=limited)
    batch = [message(0), message(1, to="busy@example.test"), message(2)]
    async with _pool(srv, tls_args, size=2) as pool:
        outcomes = await pool.send_many(batch)
    refusal = outcomes[1]
    assert isinstance(refusal, smtpsec.RecipientsRefused)
    assert refusal.transient
    assert isinstance(outcomes[0], smtpsec.SendResult)
    assert isinstance(outcomes[2], smtpsec.SendResult)
    rcpts = [line for c in srv.connections for line in c.lines_post_tls if line.startswith("RCPT")]
    assert sum("busy@" in line for line in rcpts) == 1


@async_test
async def test_send_many_when_the_server_is_unreachable(tls_args: dict[str, Any]) -> None:
    port = await _unused_port()
    pool = smtpsec.aio.Pool("127.0.0.1", port, size=2, **tls_args)
    outcomes = await pool.send_many([message(i) for i in range(4)], batch=2)
    assert len(outcomes) == 4
    assert all(isinstance(o, smtpsec.ConnectError) for o in outcomes)
    assert pool.open_connections == 0
    await pool.close()


@async_test
async def test_send_many_security_error_is_raised_after_every_batch_ended(
    smtpsec_server: ServerFactory, tls_args: dict[str, Any]
) -> None:
    """Not an outcome but an error: raised, and no batch is left running behind it."""
    srv = smtpsec_server(Security.IMPLICIT_TLS)
    untrusting = {**tls_args, "policy": smtpsec.Policy()}  # the test CA is unknown
    pool = _pool(srv, untrusting, size=3)
    with pytest.raises(smtpsec.CertificateError):
        await pool.send_many([message(i) for i in range(6)], batch=1)
    assert_no_leaked_tasks()
    assert pool.open_connections == 0
    assert srv.messages == []
    await pool.close()


@async_test
async def test_send_many_rejects_an_empty_batch_size(
    smtpsec_server: ServerFactory, tls_args: dict[str, Any]
) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS)
    pool = _pool(srv, tls_args)
    with pytest.raises(smtpsec.PolicyError, match="batch"):
        await pool.send_many([message(0)], batch=0)
    assert srv.connections == []


def test_pool_needs_one_connection() -> None:
    with pytest.raises(smtpsec.PolicyError, match="at least one"):
        smtpsec.aio.Pool("localhost", 465, size=0)


# ---------------------------------------------------------------------------- closing


@async_test
async def test_close_closes_idle_sessions_and_refuses_more_work(
    smtpsec_server: ServerFactory, tls_args: dict[str, Any]
) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS)
    pool = _pool(srv, tls_args, size=2)
    await asyncio.gather(pool.send(message(1)), pool.send(message(2)))
    await pool.close()
    assert pool.open_connections == 0
    assert await _closed_all(srv)
    assert all(c.commands_post_tls[-1] == "QUIT" and c.close_notify for c in srv.connections)
    with pytest.raises(smtpsec.ConnectError, match="closed"):
        await pool.send(message(3))
    with pytest.raises(smtpsec.ConnectError, match="closed"):
        async with pool.session():
            pass  # pragma: no cover - not reached
    await pool.close()  # idempotent


@async_test
async def test_session_in_use_closes_when_returned_after_close(
    smtpsec_server: ServerFactory, tls_args: dict[str, Any]
) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS)
    pool = _pool(srv, tls_args, size=1)
    async with pool.session() as session:
        await pool.close()
        await session.send(message(1))  # still usable until returned
    assert session.closed
    assert pool.open_connections == 0
    assert await _closed_all(srv)
    assert len(srv.messages) == 1


@async_test
async def test_close_wakes_waiting_tasks_with_connect_error(
    smtpsec_server: ServerFactory, tls_args: dict[str, Any]
) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS)
    pool = _pool(srv, tls_args, size=1)
    async with pool.session():
        waiting = asyncio.create_task(pool.send(message(1)))
        await asyncio.sleep(0)  # the task now waits for the only session
        assert not waiting.done()
        await pool.close()
        with pytest.raises(smtpsec.ConnectError, match="closed"):
            await waiting
    assert srv.messages == []


# ---------------------------------------------------------------------------- cancellation


@async_test
async def test_cancel_during_the_health_check_frees_the_slot(
    smtpsec_server: ServerFactory, tls_args: dict[str, Any]
) -> None:
    """The NOOP gets no answer; cancelling closes that session and the pool stays usable."""
    srv = smtpsec_server(Security.IMPLICIT_TLS, replies={"NOOP": None})
    pool = _pool(srv, tls_args, size=1, health_check_after=0)
    await pool.send(message(1))
    task = asyncio.create_task(pool.send(message(2)))
    await eventually(lambda: "NOOP" in srv.connections[0].commands, "the health-check NOOP")
    assert await cancelled(task)
    assert pool.open_connections == 0
    assert await wait_closed(srv.connections[0])
    await asyncio.wait_for(pool.send(message(3)), 30)  # hang guard: the slot is free again
    await pool.close()
    assert [subject(m.data) for m in srv.messages] == ["message 1", "message 3"]


@async_test
async def test_cancel_during_a_pooled_send_drops_that_session(
    smtpsec_server: ServerFactory, tls_args: dict[str, Any]
) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS, replies={".": None})  # never confirms a message
    pool = _pool(srv, tls_args, size=2)
    task = asyncio.create_task(pool.send_many([message(i) for i in range(4)], batch=2))
    await eventually(
        lambda: sum("BDAT" in c.commands for c in srv.connections) == 2, "both batches on the wire"
    )
    assert await cancelled(task)
    assert pool.open_connections == 0
    assert await _closed_all(srv)
    await pool.close()


async def _unused_port() -> int:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port: int = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return port
