"""smtpsec's native and asyncio clients against a real Postfix + Dovecot on loopback.

Each delivery is checked in the maildir (or the Postfix log), not just by the
client's view: implicit TLS and required STARTTLS, SASL PLAIN/LOGIN/SCRAM-SHA-256
through Dovecot, PIPELINING + CHUNKING, SMTPUTF8, SIZE and DSN.
"""

from __future__ import annotations

import asyncio
import uuid
from email.message import EmailMessage

import pytest
from interop_harness import PostfixServer

import smtpsec
import smtpsec.aio
from smtpsec import Security


def _policy(postfix: PostfixServer) -> smtpsec.Policy:
    return smtpsec.Policy(cafile=postfix.cafile)


def _message(postfix: PostfixServer, marker: str, **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = postfix.user
    msg["To"] = postfix.user
    msg["Subject"] = f"interop {marker}"
    for name, value in headers.items():
        msg[name] = value
    msg.set_content(f"body {marker}\n.a line that starts with a dot\n")
    return msg


def _connect(postfix: PostfixServer, implicit: bool, **kwargs: object) -> smtpsec.Session:
    port = postfix.implicit_port if implicit else postfix.starttls_port
    security = Security.IMPLICIT_TLS if implicit else Security.STARTTLS
    return smtpsec.connect(
        postfix.host,
        port,
        security=security,
        username=postfix.user,
        password=postfix.password,
        policy=_policy(postfix),
        timeout=20,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("implicit", [True, False], ids=["implicit-465", "starttls-587"])
@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "SCRAM-SHA-256"])
def test_submission_delivers_with_each_sasl_mechanism(
    postfix: PostfixServer, implicit: bool, mechanism: str
) -> None:
    """R-8314-3.3-2, R-4954-3-1: verified TLS, AUTH inside TLS, delivered by Postfix."""
    marker = uuid.uuid4().hex
    with _connect(postfix, implicit, auth=mechanism) as session:
        report = session.report
        result = session.send(_message(postfix, marker))
    assert report.mode is (Security.IMPLICIT_TLS if implicit else Security.STARTTLS)
    assert report.verified
    assert report.confidential
    assert report.mechanism == mechanism
    assert result.method == "BDAT"  # Postfix offers CHUNKING
    delivered = postfix.wait_for_delivery(marker)
    assert b".a line that starts with a dot" in delivered


def test_default_mechanism_is_scram_and_the_server_proves_itself(postfix: PostfixServer) -> None:
    """SCRAM-SHA-256 is preferred when offered; its server signature was verified."""
    with _connect(postfix, True) as session:
        assert session.report.mechanism == "SCRAM-SHA-256"
        assert "PIPELINING" in session.extensions
        assert "CHUNKING" in session.extensions


def test_wrong_password_is_authentication_error(postfix: PostfixServer) -> None:
    with pytest.raises(smtpsec.AuthenticationError) as info:
        smtpsec.connect(
            postfix.host,
            postfix.implicit_port,
            security=Security.IMPLICIT_TLS,
            username=postfix.user,
            password="not-the-password",
            auth="PLAIN",
            policy=_policy(postfix),
            timeout=20,
        )
    assert info.value.code == 535
    assert "not-the-password" not in str(info.value)


def test_refused_recipient_is_reported_and_the_rest_delivered(postfix: PostfixServer) -> None:
    """R-2920-3.1-3: one pipelined flight; the unknown user is refused, alice gets it."""
    marker = uuid.uuid4().hex
    msg = _message(postfix, marker)
    with _connect(postfix, True) as session:
        result = session.send(msg, recipients=[postfix.user, "nobody@example.test"])
    assert result.accepted == (postfix.user,)
    refusal = result.refused["nobody@example.test"]
    assert refusal.code == 550
    assert refusal.enhanced_status == "5.1.1"
    postfix.wait_for_delivery(marker)


def test_send_many_delivers_every_message(postfix: PostfixServer) -> None:
    markers = [uuid.uuid4().hex for _ in range(10)]
    with _connect(postfix, False) as session:
        outcomes = session.send_many([_message(postfix, m) for m in markers])
    assert all(isinstance(o, smtpsec.SendResult) for o in outcomes)
    for marker in markers:
        postfix.wait_for_delivery(marker)


def test_smtputf8_message_is_delivered(postfix: PostfixServer) -> None:
    """R-6531-3.4-1: a UTF-8 envelope sender goes with SMTPUTF8 + BODY=8BITMIME."""
    marker = uuid.uuid4().hex
    msg = _message(postfix, marker)
    msg.replace_header("From", "jörg@example.test")
    msg.set_content(f"Größe zählt {marker}\n")
    with _connect(postfix, True) as session:
        result = session.send(msg)
    assert result.accepted == (postfix.user,)
    delivered = postfix.wait_for_delivery(marker)
    assert "Return-Path: <jörg@example.test>".encode() in delivered
    assert "Größe".encode() in delivered


def test_message_over_size_fails_before_mail(postfix: PostfixServer) -> None:
    """R-1870-3: a message over the advertised SIZE never starts a transaction."""
    body = b"Subject: big\r\n\r\n" + b"x" * (postfix.size_limit + 10)
    offset = postfix.log_offset()
    with _connect(postfix, True) as session:
        with pytest.raises(smtpsec.CapabilityError, match="SIZE"):
            session.send(body, sender=postfix.user, recipients=[postfix.user])
        session.noop()  # the session is still usable
    assert not any("from=<" in line for line in postfix.log_lines_since(offset))


def test_dsn_options_are_accepted(postfix: PostfixServer) -> None:
    marker = uuid.uuid4().hex
    options = smtpsec.SendOptions(notify=("FAILURE",), ret="HDRS", envid=marker, orcpt=True)
    with _connect(postfix, True) as session:
        result = session.send(_message(postfix, marker), options=options)
    assert result.code == 250
    postfix.wait_for_delivery(marker)


def test_asyncio_client_delivers(postfix: PostfixServer) -> None:
    marker = uuid.uuid4().hex

    async def main() -> smtpsec.SecurityReport:
        async with smtpsec.aio.connect(
            postfix.host,
            postfix.starttls_port,
            security=Security.STARTTLS,
            username=postfix.user,
            password=postfix.password,
            policy=_policy(postfix),
            timeout=20,
        ) as session:
            await session.send(_message(postfix, marker))
            return session.report

    report = asyncio.run(main())
    assert report.confidential
    postfix.wait_for_delivery(marker)
