"""The native client against aiosmtpd, a friendly real server (R-8314-3.3-2, R-3207-4.2-1)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

import smtpsec
from netutil import start_aiosmtpd
from smtpsec import Security


class _Sink:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 2.0.0 queued"


def _authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data.login == b"ann" and data.password == b"s3cret"
    return AuthResult(success=ok, handled=False)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def aiosmtpd_server(ca: trustme.CA) -> Iterator[tuple[Controller, _Sink]]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    sink = _Sink()
    controller = start_aiosmtpd(
        sink,
        tls_context=ctx,
        require_starttls=True,
        auth_require_tls=True,
        authenticator=_authenticator,
        server_hostname="localhost",
    )
    try:
        yield controller, sink
    finally:
        controller.stop()


def _policy(ca: trustme.CA) -> smtpsec.Policy:
    return smtpsec.Policy(cadata=ca.cert_pem.bytes().decode())


def test_starttls_auth_and_send(aiosmtpd_server: tuple[Controller, _Sink], ca: trustme.CA) -> None:
    controller, sink = aiosmtpd_server
    msg = EmailMessage()
    msg["From"] = "ann@example.test"
    msg["To"] = "bob@example.test"
    msg["Bcc"] = "hidden@example.test"
    msg["Subject"] = "hello"
    msg.set_content("CANARY-BODY-1\n.leading dot\n")
    with smtpsec.connect(
        "localhost",
        controller.port,
        username="ann",
        password="s3cret",
        policy=_policy(ca),
        timeout=10,
    ) as session:
        result = session.send(msg)
        report = session.report
    assert report.mode is Security.STARTTLS
    assert report.verified and report.confidential
    assert report.mechanism in {"PLAIN", "LOGIN"}
    assert result.accepted == ("bob@example.test", "hidden@example.test")
    (sender, rcpts, content) = sink.messages[0]
    assert sender == "ann@example.test"
    assert rcpts == ["bob@example.test", "hidden@example.test"]
    assert b"CANARY-BODY-1" in content
    assert b"\n.leading dot" in content.replace(b"\r\n", b"\n")
    assert b"Bcc" not in content and b"hidden@" not in content


def test_wrong_password_is_authentication_error(
    aiosmtpd_server: tuple[Controller, _Sink], ca: trustme.CA
) -> None:
    controller, sink = aiosmtpd_server
    with pytest.raises(smtpsec.AuthenticationError) as info:
        smtpsec.connect(
            "localhost",
            controller.port,
            username="ann",
            password="wrong",
            policy=_policy(ca),
            timeout=3,
        )
    assert info.value.code == 535
    assert "wrong" not in str(info.value)
    assert sink.messages == []
