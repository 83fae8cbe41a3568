"""Cancellation and deadlines in smtpsec.aio: nothing half-open, nothing left running.

Every test cancels (or times out) at a point where the client waits for the
server, then checks three things: the exception propagates, the server saw
the connection end (no half-open TLS session), and no task is left behind
(``async_test`` checks ``asyncio.all_tasks()`` after each test as well).
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import pytest
from _aio_kit import (
    assert_no_leaked_tasks,
    async_test,
    cancelled,
    eventually,
    first_capture,
    message,
    wait_closed,
)

import smtpsec
import smtpsec.aio
from smtpsec import Security
from smtpsec.testing import Drip, SMTPServer
from smtpsec.testing.plugin import ServerFactory

#: A short whole-reply deadline for the timeout tests.
SHORT: Final = 0.5

#: The server offers no CHUNKING, so the client uses DATA.
NO_CHUNKING: Final = ("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES")


async def _connect_to(port: int, args: dict[str, Any]) -> smtpsec.aio.AsyncSession:
    return await smtpsec.aio.connect("localhost", port, **args)


async def _connected(srv: SMTPServer, tls_args: dict[str, Any]) -> smtpsec.aio.AsyncSession:
    return await _connect_to(srv.port, tls_args)


def _saw(srv: SMTPServer, verb: str) -> bool:
    return bool(srv.connections) and verb in srv.connections[0].commands


# ---------------------------------------------------------------------------- connect


@async_test
async def test_cancel_while_waiting_for_the_greeting_closes_tls(
    smtpsec_server: ServerFactory, tls_args: dict[str, Any]
) -> None:
    """The TLS handshake is done, the server never greets: cancel → connection closed."""
    srv = smtpsec_server(Security.IMPLICIT_TLS, greeting=None)
    task = asyncio.create_task(_connected(srv, tls_args))
    capture = await first_capture(srv)
    await eventually(lambda: capture.tls, "the TLS handshake")
    assert await cancelled(task)
    assert await wait_closed(capture)
    assert capture.commands == []
    assert_no_leaked_tasks()


@async_test
async def test_cancel_while_the_server_drips_its_greeting(
    smtpsec_server: ServerFactory, tls_args: dict[str, Any]
) -> None:
    srv = smtpsec_server(Security.STARTTLS, drip=(b"220 " + b"x" * 200 + b"\r\n", 0.02))
    args = {**tls_args, "security": smtpsec.Security.STARTTLS}
    task = asyncio.create_task(_connect_to(srv.port, args))
    capture = await first_capture(srv)
    await eventually(lambda: capture.bytes_sent > 0, "the first dripped byte")
    assert await cancelled(task)
    assert await wait_closed(capture)
    assert capture.commands == []


@async_test
async def test_cancel_during_the_tls_handshake(tls_args: dict[str, Any]) -> None:
    """A peer that accepts TCP but never answers the ClientHello: cancel → the socket closes."""
    ended = asyncio.Event()
    hello: list[bytes] = []

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hello.append(await reader.read(1))  # the ClientHello starts
        await reader.read()  # returns at EOF: the client closed
        ended.set()
        writer.close()

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    task = asyncio.create_task(_connect_to(port, tls_args))
    await eventually(lambda: bool(hello), "the ClientHello")
    assert await cancelled(task)
    await asyncio.wait_for(ended.wait(), 10)  # hang guard, not a timing check
    server.close()
    await server.wait_closed()
    assert hello == [b"\x16"]  # a TLS handshake record


@async_test
async def test_cancelled_connects_leave_no_task_after_gather(
    smtpsec_server: ServerFactory, tls_args: dict[str, Any]
) -> None:
    """smtpsec starts no background task: once the cancelled tasks are gathered, none is left."""
    srv = smtpsec_server(Security.IMPLICIT_TLS, greeting=None)
    tasks = [asyncio.create_task(_connected(srv, tls_args)) for _ in range(3)]
    await eventually(
        lambda: len(srv.connections) == 3 and all(c.tls for c in srv.connections),
        "three handshakes",
    )
    for task in tasks:
        task.cancel()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(o, asyncio.CancelledError) for o in outcomes)
    assert_no_leaked_tasks()
    assert all([await wait_closed(c) for c in srv.connections])


# ---------------------------------------------------------------------------- session


@async_test
async def test_cancel_while_the_server_is_slow_on_data(
    smtpsec_server: ServerFactory, tls_args: dict[str, Any]
) -> None:
    """Cancelled while DATA waits for 354: CancelledError, session closed, no message."""
    srv = smtpsec_server(Security.IMPLICIT_TLS, extensions=NO_CHUNKING, replies={"DATA": None})
    session = await _connected(srv, tls_args)
    task = asyncio.create_task(session.send(message(1)))
    await eventually(lambda: _saw(srv, "DATA"), "the DATA command")
    assert await cancelled(task)
    assert session.closed
    assert await wait_closed(srv.connections[0])
    assert srv.messages == []
    with pytest.raises(smtpsec.LocalProtocolError, match="closed"):
        await session.send(message(2))


@async_test
async def test_cancel_while_waiting_for_the_final_reply_of_send_many(
    smtpsec_server: ServerFactory, tls_args: dict[str, Any]
) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS, replies={".": None})  # never confirms a message
    session = await _connected(srv, tls_args)
    task = asyncio.create_task(session.send_many([message(1), message(2)]))
    await eventually(lambda: _saw(srv, "BDAT"), "the message content")
    assert await cancelled(task)
    assert session.closed
    assert await wait_closed(srv.connections[0])


@async_test
async def test_cancel_during_noop_closes_the_session(
    smtpsec_server: ServerFactory, tls_args: dict[str, Any]
) -> None:
    """The NOOP reply is still due: the session must not be reused (R-LIB-DESYNC-1)."""
    srv = smtpsec_server(Security.IMPLICIT_TLS, replies={"NOOP": None})
    session = await _connected(srv, tls_args)
    task = asyncio.create_task(session.noop())
    await eventually(lambda: _saw(srv, "NOOP"), "the NOOP command")
    assert await cancelled(task)
    assert session.closed
    assert await wait_closed(srv.connections[0])


@async_test
async def test_cancel_during_close_still_closes(
    smtpsec_server: ServerFactory, tls_args: dict[str, Any]
) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS, replies={"QUIT": None})  # no 221, ever
    session = await _connected(srv, tls_args)
    task = asyncio.create_task(session.close())
    await eventually(lambda: _saw(srv, "QUIT"), "the QUIT command")
    assert await cancelled(task)
    assert session.closed
    assert await wait_closed(srv.connections[0])


@async_test
async def test_async_with_body_cancelled_closes_the_session(
    smtpsec_server: ServerFactory, tls_args: dict[str, Any]
) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS)
    entered = asyncio.Event()

    async def user_code() -> None:
        async with smtpsec.aio.connect("localhost", srv.port, **tls_args):
            entered.set()
            await asyncio.Event().wait()  # forever, until cancelled

    task = asyncio.create_task(user_code())
    await entered.wait()
    assert await cancelled(task)
    capture = srv.connections[0]
    assert await wait_closed(capture)
    assert capture.commands_post_tls == ["EHLO", "QUIT"]
    assert capture.close_notify


# ---------------------------------------------------------------------------- deadlines


@async_test
async def test_dripping_greeting_trips_the_whole_reply_deadline(
    smtpsec_server: ServerFactory, tls_args: dict[str, Any]
) -> None:
    """R-5321-4.5.3.2-1: each byte is on time, the whole reply is not → TimeoutError."""
    srv = smtpsec_server(Security.IMPLICIT_TLS, drip=(b"220 " + b"x" * 200 + b"\r\n", 0.02))
    with pytest.raises(smtpsec.TimeoutError, match=r"within 0\.5s"):
        await smtpsec.aio.connect("localhost", srv.port, **{**tls_args, "timeout": SHORT})
    assert await wait_closed(srv.connections[0])


@async_test
async def test_silent_server_times_out(
    smtpsec_server: ServerFactory, tls_args: dict[str, Any]
) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS, greeting=None)
    with pytest.raises(smtpsec.TimeoutError):
        await smtpsec.aio.connect("localhost", srv.port, **{**tls_args, "timeout": SHORT})
    assert await wait_closed(srv.connections[0])


@async_test
async def test_dripping_reply_on_an_open_session_times_out_and_closes(
    smtpsec_server: ServerFactory, tls_args: dict[str, Any]
) -> None:
    srv = smtpsec_server(
        Security.IMPLICIT_TLS, replies={"NOOP": Drip(b"250 " + b"x" * 200 + b"\r\n", 0.02)}
    )
    session = await smtpsec.aio.connect("localhost", srv.port, **{**tls_args, "timeout": SHORT})
    with pytest.raises(smtpsec.TimeoutError):
        await session.noop()
    assert session.closed  # the late reply can never be taken for another command's
    assert await wait_closed(srv.connections[0])


@async_test
async def test_dripping_final_reply_makes_the_message_a_timeout_outcome(
    smtpsec_server: ServerFactory, tls_args: dict[str, Any]
) -> None:
    srv = smtpsec_server(
        Security.IMPLICIT_TLS, replies={".": Drip(b"250 " + b"x" * 200 + b"\r\n", 0.02)}
    )
    session = await smtpsec.aio.connect("localhost", srv.port, **{**tls_args, "timeout": SHORT})
    (outcome,) = await session.send_many([message(1)])
    # The message went out whole; only its reply is late: it may have been taken.
    assert isinstance(outcome, smtpsec.DeliveryUnknown)
    assert isinstance(outcome.__cause__, smtpsec.TimeoutError)
    assert session.closed
    assert await wait_closed(srv.connections[0])


@async_test
async def test_tls_handshake_deadline(tls_args: dict[str, Any]) -> None:
    """A peer that never answers the ClientHello: a TimeoutError, and the socket is closed."""
    ended = asyncio.Event()

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # returns at EOF: the client closed
        ended.set()
        writer.close()

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with pytest.raises(smtpsec.TimeoutError, match="TLS handshake"):
        await smtpsec.aio.connect("localhost", port, **{**tls_args, "timeout": SHORT})
    await asyncio.wait_for(ended.wait(), 10)  # hang guard, not a timing check
    server.close()
    await server.wait_closed()
