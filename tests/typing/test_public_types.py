"""Static type checks of the public API in ``smtpsec/__init__.py`` (run by mypy --strict).

The checks live in a function nobody calls: pytest may collect this module
harmlessly, and mypy verifies every ``assert_type`` below. They pin down what
users' type checkers see: connect() → Session, send → SendResult, the report,
Policy fields, Security members and the attributes of the errors.
"""

from __future__ import annotations

import os
import smtplib
import ssl
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from email.message import EmailMessage
from typing import Literal

from typing_extensions import assert_type

import smtpsec
from smtpsec.sansio import Extensions, Reply


def _check_connect_and_session() -> None:  # pragma: no cover - type-checked only
    session = smtpsec.connect(
        "smtp.example.test",
        587,
        security=smtpsec.Security.STARTTLS,
        username="ann",
        password="pw",
        policy=smtpsec.Policy(cafile="ca.pem"),
        timeout=3.0,
        local_hostname="client.example.test",
    )
    assert_type(session, smtpsec.Session)
    with session as same:
        assert_type(same, smtpsec.Session)
    assert_type(session.report, smtpsec.SecurityReport)
    assert_type(session.extensions, Extensions)
    assert_type(session.closed, bool)
    assert_type(session.noop(), Reply)
    assert_type(session.close(), None)

    message = EmailMessage()
    result = session.send(message, sender="a@example.test", recipients=["b@example.test"])
    assert_type(result, smtpsec.SendResult)
    assert_type(session.send(b"raw message"), smtpsec.SendResult)
    assert_type(session.send(message, options=smtpsec.SendOptions()), smtpsec.SendResult)
    assert_type(
        session.send_many([message, message]), list[smtpsec.SendResult | smtpsec.SMTPSecError]
    )
    assert_type(smtpsec.send(message, host="smtp.example.test"), smtpsec.SendResult)


def _check_connect_option_typos() -> None:  # pragma: no cover - type-checked only
    # The connect options are one TypedDict (Unpack): a misspelt one is a type
    # error (each ignore below is required: --strict reports unused ones).
    smtpsec.connect("smtp.example.test", usernme="ann")  # type: ignore[call-arg]
    smtpsec.send(b"m", host="smtp.example.test", pasword="pw")  # type: ignore[call-arg]
    smtpsec.connect("smtp.example.test", timeout="3")  # type: ignore[arg-type]


def _check_send_result(result: smtpsec.SendResult) -> None:  # pragma: no cover
    assert_type(result.sender, str)
    assert_type(result.accepted, tuple[str, ...])
    assert_type(result.refused, Mapping[str, smtpsec.RecipientRefusal])
    assert_type(result.code, int)
    assert_type(result.enhanced_status, str | None)
    assert_type(result.text, str)
    assert_type(result.size, int)
    refusal = result.refused["b@example.test"]
    assert_type(refusal.code, int)
    assert_type(refusal.transient, bool)


def _check_report(report: smtpsec.SecurityReport) -> None:  # pragma: no cover
    assert_type(report.security, smtpsec.Security)
    assert_type(report.mode, smtpsec.Security)
    assert_type(report.reason, str)
    assert_type(report.host, str)
    assert_type(report.port, int)
    assert_type(report.tls_version, str | None)
    assert_type(report.cipher, str | None)
    assert_type(report.verified, bool)
    assert_type(report.spki_pin, str | None)
    assert_type(report.pinned, bool)
    assert_type(report.confidential, bool)
    assert_type(report.authenticated_as, str | None)
    assert_type(report.mechanism, str | None)
    assert_type(str(report), str)


def _check_tls_info(info: smtpsec.TLSInfo) -> None:  # pragma: no cover
    assert_type(info.version, str)
    assert_type(info.cipher, str)
    assert_type(info.verified, bool)
    assert_type(info.peer_certificate, bytes | None)
    assert_type(info.spki_pin, str | None)
    assert_type(info.tls_version, ssl.TLSVersion | None)


def _check_policy() -> None:  # pragma: no cover
    policy = smtpsec.Policy(
        cafile="ca.pem",
        min_tls_version=ssl.TLSVersion.TLSv1_3,
        pins=frozenset({"sha256/" + "A" * 43 + "="}),
        allow_cleartext_auth=False,
    )
    assert_type(policy.cafile, str | os.PathLike[str] | None)
    assert_type(policy.cadata, str | bytes | None)
    assert_type(policy.ssl_context, ssl.SSLContext | None)
    assert_type(policy.min_tls_version, ssl.TLSVersion)
    assert_type(policy.allow_legacy_tls, bool)
    assert_type(policy.client_cert, tuple[str, str] | tuple[str, str, str] | None)
    assert_type(policy.pins, AbstractSet[str])
    assert_type(policy.pinned_instead_of_ca, bool)
    assert_type(policy.memory, smtpsec.TLSMemory | None)
    assert_type(policy.allow_cleartext_auth, bool)
    assert_type(policy.allow_unverified_context, bool)
    assert_type(policy.verifies, bool)

    plan = smtpsec.select_plan("smtp.example.test", None, smtpsec.Security.AUTO)
    assert_type(plan.security, smtpsec.Security)
    assert_type(plan.reason, str)
    assert_type(plan.attempts[0].port, int)
    assert_type(plan.attempts[0].tls, smtpsec.Security)


def _check_security_members() -> None:  # pragma: no cover
    assert_type(smtpsec.Security.AUTO, Literal[smtpsec.Security.AUTO])
    assert_type(smtpsec.Security.IMPLICIT_TLS, Literal[smtpsec.Security.IMPLICIT_TLS])
    assert_type(smtpsec.Security.STARTTLS, Literal[smtpsec.Security.STARTTLS])
    assert_type(smtpsec.Security.OPPORTUNISTIC, Literal[smtpsec.Security.OPPORTUNISTIC])
    assert_type(smtpsec.Security.PLAINTEXT, Literal[smtpsec.Security.PLAINTEXT])
    assert_type(smtpsec.Security("auto"), smtpsec.Security)


def _check_errors(
    reply: smtpsec.ReplyError,
    auth: smtpsec.AuthenticationError,
    sender: smtpsec.SenderRefused,
    refused: smtpsec.RecipientsRefused,
) -> None:  # pragma: no cover
    assert_type(reply.code, int)
    assert_type(reply.enhanced_status, str | None)
    assert_type(reply.text, str)
    assert_type(reply.server_text_authenticated, bool)
    assert_type(reply.transient, bool)
    assert_type(reply.permanent, bool)
    assert_type(reply.smtp_code, int)
    assert_type(reply.smtp_error, bytes)
    assert_type(auth.hint, str)
    assert_type(sender.sender, str)
    assert_type(refused.refused, dict[str, tuple[int, str | None, str]])

    # The hierarchy users rely on in except clauses.
    root: smtplib.SMTPException = smtpsec.SMTPSecError("x")
    security: smtpsec.SecurityError = smtpsec.ResponseInjectionError("x")
    downgrade: smtpsec.DowngradeError = smtpsec.TLSUnavailableError("x")
    secure: smtpsec.SecurityError = smtpsec.CertificateError("x")
    pins: smtpsec.SecurityError = smtpsec.PinMismatchError("x")
    insecure: smtpsec.SecurityError = smtpsec.InsecureAuthError("x")
    version: smtpsec.SecurityError = smtpsec.TLSVersionError("x")
    protocol: smtpsec.ProtocolError = smtpsec.RemoteProtocolError("x")
    local: smtpsec.ProtocolError = smtpsec.LocalProtocolError("x")
    value: ValueError = smtpsec.PolicyError("x")
    argument: ValueError = smtpsec.InvalidArgumentError("x")
    connection: ConnectionError = smtpsec.ConnectError("x")
    timeout: TimeoutError = smtpsec.TimeoutError("x")
    warning: UserWarning = smtpsec.InsecureConfigurationWarning("x")
    upgrade: smtpsec.SMTPSecWarning = smtpsec.UpgradeAvailableWarning("x")
    del root, security, downgrade, secure, pins, insecure, version, protocol, local
    del value, argument, connection, timeout, warning, upgrade


def _check_pool() -> None:  # pragma: no cover - type-checked only
    pool = smtpsec.Pool(
        "smtp.example.test",
        587,
        size=3,
        max_messages_per_connection=100,
        messages_per_minute=30.0,
        health_check_after=10.0,
        max_idle=60.0,
        username="ann",
        password="pw",
    )
    assert_type(pool.size, int)
    assert_type(pool.open_connections, int)
    with pool as same:
        assert_type(same, smtpsec.Pool)
    with pool.session() as session:
        assert_type(session, smtpsec.Session)
    assert_type(pool.send(EmailMessage()), smtpsec.SendResult)
    batch: list[smtpsec.MessageInput] = [EmailMessage(), b"raw"]
    outcomes = pool.send_many(iter(batch), batch=25)
    assert_type(outcomes, list[smtpsec.SendResult | smtpsec.SMTPSecError])
    assert_type(smtpsec.Pool.shared("smtp.example.test", username="ann"), smtpsec.Pool)
    assert_type(smtpsec.Pool.close_shared(), None)
    assert_type(pool.close(), None)
    smtpsec.Pool("smtp.example.test", sise=2)  # type: ignore[call-arg]


def _check_delivery_unknown(error: smtpsec.DeliveryUnknown) -> None:  # pragma: no cover
    assert_type(error, smtpsec.DeliveryUnknown)
    assert isinstance(error, smtpsec.ConnectError)  # what pools and callers already catch
