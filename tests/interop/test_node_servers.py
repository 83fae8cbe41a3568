"""Interop with real Node.js servers: Haraka (pipelining after DATA) and smtp-server (REQUIRETLS).

Haraka, since its SMTP-smuggling fixes, answers ``503 Bad sequence of
commands`` to anything pipelined behind the end of a message, which RFC 2920
allows a client to send. A good message must never be reported as refused
for that: smtpsec sends those messages again, each after the previous final
reply, and keeps doing so on that connection. nodemailer's smtp-server
offers REQUIRETLS (RFC 8689) after TLS when configured to.
"""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from typing import Any

import pytest
from node_servers import PASSWORD, USER, smtp_server_records

import smtpsec
import smtpsec.aio
from smtpsec import Security, smtplib


def _message(n: int) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "ann@example.test", "bob@example.test", f"n{n}"
    msg.set_content(f"message {n}\n")
    return msg


def _haraka_options(haraka: Any) -> dict[str, Any]:
    return {
        "security": Security.STARTTLS,
        "username": USER,
        "password": PASSWORD,
        "policy": smtpsec.Policy(cafile=haraka.cafile),
        "timeout": 20.0,
    }


def _subjects(haraka: Any) -> list[str]:
    found = []
    for path in haraka.accepted():
        for line in path.read_bytes().splitlines():
            if line.startswith(b"Subject: "):
                found.append(line[9:].decode())
                break
    return found


def test_send_many_to_haraka_delivers_every_message_exactly_once(haraka: Any) -> None:
    before = set(_subjects(haraka))
    with smtpsec.connect("localhost", haraka.port, **_haraka_options(haraka)) as session:
        assert "PIPELINING" in session.extensions
        outcomes = session.send_many([_message(n) for n in range(20)])
        # The session learnt Haraka's rule: a second batch goes in lock-step at once.
        again = session.send_many([_message(n) for n in range(20, 25)])
    assert [type(o).__name__ for o in outcomes + again] == ["SendResult"] * 25
    delivered = [s for s in _subjects(haraka) if s not in before]
    assert sorted(delivered) == sorted(f"n{n}" for n in range(25))  # each exactly once


def test_asyncio_send_many_to_haraka(haraka: Any) -> None:
    before = set(_subjects(haraka))

    async def run() -> list[Any]:
        async with smtpsec.aio.connect(
            "localhost", haraka.port, **_haraka_options(haraka)
        ) as session:
            return await session.send_many([_message(n) for n in range(100, 110)])

    outcomes = asyncio.run(run())
    assert all(isinstance(o, smtpsec.SendResult) for o in outcomes)
    delivered = [s for s in _subjects(haraka) if s not in before]
    assert sorted(delivered) == sorted(f"n{n}" for n in range(100, 110))


def test_drop_in_to_haraka(haraka: Any) -> None:
    import ssl

    context = ssl.create_default_context(cafile=str(haraka.cafile))
    with smtplib.SMTP("localhost", haraka.port, timeout=20) as client:
        client.starttls(context=context)
        client.login(USER, PASSWORD)
        for n in range(200, 203):
            msg = _message(n)
            assert client.send_message(msg) == {}
    assert {"n200", "n201", "n202"} <= set(_subjects(haraka))


def _smtp_server_options(server: Any) -> dict[str, Any]:
    return {
        "security": Security.IMPLICIT_TLS,
        "username": USER,
        "password": PASSWORD,
        "policy": smtpsec.Policy(cafile=server.cafile),
        "timeout": 20.0,
    }


def test_requiretls_is_sent_when_offered(smtp_server_js: Any) -> None:
    server = smtp_server_js(requiretls=True)
    options = smtpsec.SendOptions(require_tls=True)
    with smtpsec.connect("localhost", server.port, **_smtp_server_options(server)) as session:
        assert "REQUIRETLS" in session.extensions
        result = session.send(_message(1), options=options)
    assert result.accepted == ("bob@example.test",)
    (record,) = smtp_server_records(server)
    assert record["params"].get("REQUIRETLS") is True  # type: ignore[union-attr]


def test_requiretls_refused_before_anything_when_not_offered(smtp_server_js: Any) -> None:
    server = smtp_server_js(requiretls=False)
    options = smtpsec.SendOptions(require_tls=True)
    with smtpsec.connect("localhost", server.port, **_smtp_server_options(server)) as session:
        assert "REQUIRETLS" not in session.extensions
        with pytest.raises(smtpsec.CapabilityError, match="REQUIRETLS"):
            session.send(_message(2), options=options)
        session.send(_message(3))  # the session is still usable
    assert [r["data"].count("n3") for r in smtp_server_records(server)] == [1]


def test_requiretls_through_the_drop_in(smtp_server_js: Any) -> None:
    import ssl

    server = smtp_server_js(requiretls=True)
    context = ssl.create_default_context(cafile=str(server.cafile))
    with smtplib.SMTP_SSL("localhost", server.port, context=context, timeout=20) as client:
        client.login(USER, PASSWORD)
        client.sendmail(
            "ann@example.test",
            ["bob@example.test"],
            b"Subject: x\r\n\r\nhi\r\n",
            mail_options=["REQUIRETLS"],
        )
    (record,) = smtp_server_records(server)
    assert record["params"].get("REQUIRETLS") is True  # type: ignore[union-attr]
