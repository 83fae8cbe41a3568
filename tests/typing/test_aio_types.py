"""Static type checks of the asyncio API, ``smtpsec.aio`` (run by mypy --strict).

The checks live in coroutine functions nobody awaits: pytest may collect this
module harmlessly, and mypy verifies every ``assert_type`` below. They pin down
what users' type checkers see: ``connect()`` → ``Connecting``, awaitable and an
async context manager, both giving an ``AsyncSession``; the session's
coroutines; the one-shot ``send``; and the ``Pool``.
"""

from __future__ import annotations

import ssl
from email.message import EmailMessage

from typing_extensions import assert_type

import smtpsec
import smtpsec.aio
import smtpsec.transports
from smtpsec.sansio import Extensions, Reply


async def _check_connect() -> None:  # pragma: no cover - type-checked only
    connecting = smtpsec.aio.connect(
        "smtp.example.test",
        587,
        security=smtpsec.Security.STARTTLS,
        username="ann",
        password="pw",
        policy=smtpsec.Policy(cafile="ca.pem"),
        timeout=3.0,
        local_hostname="client.example.test",
    )
    assert_type(connecting, smtpsec.aio.Connecting)
    assert_type(await connecting, smtpsec.aio.AsyncSession)
    async with smtpsec.aio.connect("smtp.example.test", token=lambda: "tok") as session:
        assert_type(session, smtpsec.aio.AsyncSession)
    session = await smtpsec.aio.connect("smtp.example.test", 465)
    async with session as same:
        assert_type(same, smtpsec.aio.AsyncSession)


async def _check_session(session: smtpsec.aio.AsyncSession) -> None:  # pragma: no cover
    message = EmailMessage()
    assert_type(session.report, smtpsec.SecurityReport)
    assert_type(session.extensions, Extensions)
    assert_type(session.closed, bool)
    assert_type(await session.send(message), smtpsec.SendResult)
    assert_type(
        await session.send(b"raw", sender="a@example.test", recipients=["b@example.test"]),
        smtpsec.SendResult,
    )
    assert_type(await session.send(message, options=smtpsec.SendOptions()), smtpsec.SendResult)
    outcomes = await session.send_many(
        [message, smtpsec.Outgoing(b"raw", "a@example.test", ["b@example.test"])]
    )
    assert_type(outcomes, list[smtpsec.SendResult | smtpsec.SMTPSecError])
    assert_type(await session.noop(), Reply)
    assert_type(await session.check_idle(), None)
    assert_type(await session.close(), None)


async def _check_one_shot() -> None:  # pragma: no cover
    result = await smtpsec.aio.send(
        EmailMessage(),
        host="smtp.example.test",
        port=465,
        username="ann",
        password="pw",
        sender="a@example.test",
        recipients=["b@example.test"],
    )
    assert_type(result, smtpsec.SendResult)


async def _check_pool() -> None:  # pragma: no cover
    pool = smtpsec.aio.Pool(
        "smtp.example.test",
        465,
        size=8,
        max_messages_per_connection=100,
        messages_per_minute=30.0,
        health_check_after=10.0,
        max_idle=60.0,
        username="ann",
        password="pw",
    )
    assert_type(pool.size, int)
    assert_type(pool.open_connections, int)
    async with pool as same:
        assert_type(same, smtpsec.aio.Pool)
    async with pool.session() as session:
        assert_type(session, smtpsec.aio.AsyncSession)
    assert_type(await pool.send(EmailMessage()), smtpsec.SendResult)
    outcomes = await pool.send_many([EmailMessage(), b"raw"], batch=25)
    assert_type(outcomes, list[smtpsec.SendResult | smtpsec.SMTPSecError])
    assert_type(await pool.close(), None)


async def _check_transport(
    transport: smtpsec.transports.AsyncTransport,
) -> None:  # pragma: no cover
    assert_type(transport.tls, smtpsec.TLSInfo | None)
    assert_type(await transport.read(timeout=1.0), bytes)
    assert_type(await transport.poll(), bytes | None)
    assert_type(await transport.pending_plaintext(), bytes)
    assert_type(await transport.write(b"NOOP\r\n", timeout=1.0), None)
    tls = await transport.start_tls(
        ssl.create_default_context(), server_hostname="smtp.example.test", timeout=1.0
    )
    assert_type(tls, smtpsec.transports.AsyncTransport)
    assert_type(await transport.close(), None)


async def _check_option_typos() -> None:  # pragma: no cover - type-checked only
    # Each ignore is required (--strict reports unused ones): a typo is a type error.
    await smtpsec.aio.connect("smtp.example.test", usernme="ann")  # type: ignore[call-arg]
    await smtpsec.aio.send(b"m", host="smtp.example.test", pasword="pw")  # type: ignore[call-arg]
    smtpsec.aio.Pool("smtp.example.test", sise=2)  # type: ignore[call-arg]
