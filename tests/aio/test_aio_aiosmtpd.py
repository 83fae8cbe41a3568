"""smtpsec.aio against aiosmtpd, a friendly real server without PIPELINING or CHUNKING.

aiosmtpd answers every command in turn, so the asyncio client takes the
lock-step DATA path here (the smtpsec.testing server pipelines), through one
session and through the pool (R-8314-3.3-2, R-3207-4.2-1).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from _aio_kit import async_test, message, subject
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

import smtpsec
import smtpsec.aio
from netutil import start_aiosmtpd
from smtpsec import Security
from smtpsec.testing import LeafCert

USER = "ann"
PASSWORD = "s3cret-aio"


class _Sink:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 2.0.0 queued"


def _authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def aiosmtpd(smtpsec_cert: LeafCert) -> Iterator[tuple[Controller, _Sink]]:
    """aiosmtpd requiring STARTTLS and AUTH, with the session CA's certificate."""
    sink = _Sink()
    controller = start_aiosmtpd(
        sink,
        tls_context=smtpsec_cert.server_context(),
        require_starttls=True,
        auth_require_tls=True,
        authenticator=_authenticator,
        server_hostname="localhost",
    )
    try:
        yield controller, sink
    finally:
        controller.stop()


@pytest.fixture
def starttls_args(aio_cafile: Any) -> dict[str, Any]:
    return {
        "security": smtpsec.Security.STARTTLS,
        "username": USER,
        "password": PASSWORD,
        "policy": smtpsec.Policy(cafile=aio_cafile),
        "timeout": 5.0,
    }


@async_test
async def test_session_over_starttls(
    aiosmtpd: tuple[Controller, _Sink], starttls_args: dict[str, Any]
) -> None:
    controller, sink = aiosmtpd
    async with smtpsec.aio.connect("localhost", controller.port, **starttls_args) as session:
        assert session.report.mode is Security.STARTTLS
        assert session.report.verified
        assert session.report.authenticated_as == USER
        assert "PIPELINING" not in session.extensions
        result = await session.send(message(1, body="first line\n.leading dot\n"))
    assert result.method == "DATA"
    ((sender, rcpts, content),) = sink.messages
    assert (sender, rcpts) == ("ann@example.test", ["bob@example.test"])
    assert b"\r\n.leading dot\r\n" in content  # dot-stuffed on the wire, unstuffed by aiosmtpd


@async_test
async def test_pool_send_many_lock_step(
    aiosmtpd: tuple[Controller, _Sink], starttls_args: dict[str, Any]
) -> None:
    controller, sink = aiosmtpd
    refused_login = {**starttls_args, "password": "wrong"}
    async with smtpsec.aio.Pool("localhost", controller.port, size=3, **starttls_args) as pool:
        outcomes = await pool.send_many([message(i) for i in range(12)], batch=4)
    assert all(isinstance(o, smtpsec.SendResult) for o in outcomes)
    assert sorted(subject(content) for _s, _r, content in sink.messages) == sorted(
        f"message {i}" for i in range(12)
    )
    async with smtpsec.aio.Pool("localhost", controller.port, size=1, **refused_login) as pool:
        (outcome,) = await pool.send_many([message(99)])
    assert isinstance(outcome, smtpsec.AuthenticationError)
    assert len(sink.messages) == 12
