"""smtpsec.aio.connect / AsyncSession / smtpsec.aio.send against real loopback servers.

The attack suite (tests/security) already runs against the asyncio client; this
file checks the asyncio API itself: both ways of connecting, both TLS modes,
the report, every message type, send_many outcomes, one-shot sending and AUTH.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest
from _aio_kit import (
    PASSWORD,
    USER,
    async_test,
    message,
    subject,
    wait_closed,
)

import smtpsec
import smtpsec.aio
from smtpsec import Security
from smtpsec.sansio import Reply
from smtpsec.testing import LeafCert
from smtpsec.testing.plugin import ServerFactory


@async_test
async def test_connect_by_await_implicit_tls_report(
    smtpsec_server: ServerFactory,
    smtpsec_cert: LeafCert,
    login_args: dict[str, Any],
    users: dict[str, str],
) -> None:
    """R-8314-3.3-1, R-8314-5.2-1: implicit TLS, verified, authenticated; R-8314-3.4-1 on close."""
    srv = smtpsec_server(Security.IMPLICIT_TLS, users=users)
    session = await smtpsec.aio.connect("localhost", srv.port, **login_args)
    assert isinstance(session, smtpsec.aio.AsyncSession)
    report = session.report
    assert report.mode is Security.IMPLICIT_TLS
    assert report.security is smtpsec.Security.IMPLICIT_TLS
    assert (report.host, report.port) == ("localhost", srv.port)
    assert report.tls_version in ("TLSv1.2", "TLSv1.3")
    assert report.cipher
    assert report.verified
    assert report.confidential
    assert report.spki_pin == smtpsec_cert.spki_sha256_pin
    assert (report.authenticated_as, report.mechanism) == (USER, "PLAIN")
    assert "PIPELINING" in session.extensions
    assert not session.closed

    await session.close()
    assert session.closed
    capture = srv.connections[0]
    assert await wait_closed(capture)
    assert capture.commands_post_tls[-1] == "QUIT"
    assert capture.close_notify  # clean TLS end, not a bare FIN
    await session.close()  # idempotent


@async_test
async def test_connect_with_async_with_starttls(
    smtpsec_server: ServerFactory, login_args: dict[str, Any], users: dict[str, str]
) -> None:
    """R-8314-5.2-4: STARTTLS required; nothing but EHLO/STARTTLS before TLS; closed on exit."""
    srv = smtpsec_server(Security.STARTTLS, users=users)
    args = {**login_args, "security": smtpsec.Security.STARTTLS}
    async with smtpsec.aio.connect("localhost", srv.port, **args) as session:
        assert session.report.mode is Security.STARTTLS
        assert session.report.verified and session.report.confidential
        assert session.report.authenticated_as == USER
        result = await session.send(message(1))
    assert session.closed
    capture = srv.connections[0]
    assert await wait_closed(capture)
    assert capture.commands_pre_tls == ["EHLO", "STARTTLS"]
    assert capture.secrets_leaked(PASSWORD) == []
    assert result.accepted == ("bob@example.test",)
    assert [m.tls for m in srv.messages] == [True]


@async_test
async def test_async_session_is_its_own_context_manager(
    smtpsec_server: ServerFactory, tls_args: dict[str, Any]
) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS)
    async with await smtpsec.aio.connect("localhost", srv.port, **tls_args) as session:
        reply = await session.noop()
        assert isinstance(reply, Reply)
        assert reply.code == 250
        await session.check_idle()  # nothing unsolicited arrived: no error
    assert session.closed
    assert await wait_closed(srv.connections[0])
    assert srv.connections[0].commands_post_tls == ["EHLO", "NOOP", "QUIT"]


@async_test
async def test_send_email_message_bytes_and_file(
    smtpsec_server: ServerFactory, login_args: dict[str, Any], users: dict[str, str]
) -> None:
    """Every message type of Session.send works the same way on the asyncio session."""
    srv = smtpsec_server(Security.IMPLICIT_TLS, users=users)
    raw = b"From: ann@example.test\r\nTo: bob@example.test\r\nSubject: raw\r\n\r\nbytes body\r\n"
    async with smtpsec.aio.connect("localhost", srv.port, **login_args) as session:
        first = await session.send(message(1))
        second = await session.send(raw, sender="ann@example.test", recipients=["bob@example.test"])
        third = await session.send(
            io.BytesIO(raw.replace(b"raw", b"file")),
            sender="ann@example.test",
            recipients=["carol@example.test"],
        )
    assert [r.code for r in (first, second, third)] == [250, 250, 250]
    assert third.accepted == ("carol@example.test",)
    assert first.method == "BDAT"  # the server offers CHUNKING
    got = srv.messages
    assert [subject(m.data) for m in got] == ["message 1", "raw", "file"]
    assert got[1].data.endswith(b"bytes body\r\n")
    assert got[2].recipients == ("carol@example.test",)
    assert len(srv.connections) == 1  # one connection for all three


@async_test
async def test_send_many_outcomes_in_order_with_a_refusal_in_the_middle(
    smtpsec_server: ServerFactory, login_args: dict[str, Any], users: dict[str, str]
) -> None:
    """R-2920-3.1-1: pipelined across messages; a refused message does not stop the rest."""
    refuse = {"gone@example.test": (550, "5.1.1 mailbox unavailable")}
    srv = smtpsec_server(Security.IMPLICIT_TLS, users=users, refuse_recipients=refuse)
    batch = [
        message(0),
        message(1, to="gone@example.test"),
        smtpsec.Outgoing(message(2), recipients=["carol@example.test"]),
        message(3),
    ]
    async with smtpsec.aio.connect("localhost", srv.port, **login_args) as session:
        outcomes = await session.send_many(batch)
    assert len(outcomes) == 4
    assert isinstance(outcomes[0], smtpsec.SendResult)
    assert isinstance(outcomes[1], smtpsec.RecipientsRefused)
    assert outcomes[1].code == 550
    assert isinstance(outcomes[2], smtpsec.SendResult)
    assert outcomes[2].accepted == ("carol@example.test",)
    assert isinstance(outcomes[3], smtpsec.SendResult)
    assert [subject(m.data) for m in srv.messages] == ["message 0", "message 2", "message 3"]


@async_test
async def test_send_many_reports_an_unsendable_message_without_touching_the_wire(
    smtpsec_server: ServerFactory, tls_args: dict[str, Any]
) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS)
    no_recipient = message(1)
    del no_recipient["To"]
    async with smtpsec.aio.connect("localhost", srv.port, **tls_args) as session:
        outcomes = await session.send_many([message(0), no_recipient])
        assert not session.closed
    assert isinstance(outcomes[0], smtpsec.SendResult)
    assert isinstance(outcomes[1], smtpsec.InvalidArgumentError)
    assert len(srv.messages) == 1


@async_test
async def test_one_shot_send(
    smtpsec_server: ServerFactory, login_args: dict[str, Any], users: dict[str, str]
) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS, users=users)
    result = await smtpsec.aio.send(message(7), host="localhost", port=srv.port, **login_args)
    assert isinstance(result, smtpsec.SendResult)
    assert result.accepted == ("bob@example.test",)
    capture = srv.connections[0]
    assert await wait_closed(capture)
    assert capture.commands_post_tls[-1] == "QUIT"
    assert [subject(m.data) for m in srv.messages] == ["message 7"]
    # R-2920-3.1-1: QUIT ends the message's last flight (after BDAT LAST).
    last = [data for tls, data in capture.segments if tls][-1]
    assert last.startswith(b"MAIL FROM:") and last.endswith(b"\r\nQUIT\r\n")


@async_test
async def test_one_shot_send_raises_the_refusal(
    smtpsec_server: ServerFactory, tls_args: dict[str, Any]
) -> None:
    srv = smtpsec_server(
        Security.IMPLICIT_TLS, refuse_recipients={"bob@example.test": (550, "5.1.1 no")}
    )
    with pytest.raises(smtpsec.RecipientsRefused) as caught:
        await smtpsec.aio.send(message(1), host="localhost", port=srv.port, **tls_args)
    assert caught.value.refused == {"bob@example.test": (550, "5.1.1", "no")}
    assert await wait_closed(srv.connections[0])  # closed although send raised


@async_test
async def test_auth_login_mechanism_on_request(
    smtpsec_server: ServerFactory, login_args: dict[str, Any], users: dict[str, str]
) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS, users=users)
    async with smtpsec.aio.connect("localhost", srv.port, auth="LOGIN", **login_args) as session:
        assert session.report.mechanism == "LOGIN"
    assert srv.connections[0].auth[0] == ("LOGIN", USER, True)


@async_test
async def test_auth_failure_raises_and_closes(
    smtpsec_server: ServerFactory, tls_args: dict[str, Any], users: dict[str, str]
) -> None:
    """R-4954-4-7: only 235 is success; a 535 is an AuthenticationError with a hint."""
    srv = smtpsec_server(Security.IMPLICIT_TLS, users=users)
    with pytest.raises(smtpsec.AuthenticationError) as caught:
        await smtpsec.aio.connect(
            "localhost", srv.port, username=USER, password="wrong", **tls_args
        )
    assert caught.value.code == 535
    assert caught.value.hint
    capture = srv.connections[0]
    assert await wait_closed(capture)
    assert capture.auth == [("PLAIN", USER, False)]
    assert capture.commands_post_tls[-1] == "QUIT"
    assert "MAIL" not in capture.commands_post_tls


@async_test
async def test_untrusted_certificate_is_refused(
    smtpsec_server: ServerFactory, tls_args: dict[str, Any]
) -> None:
    """R-8314-5.4-1 over the asyncio transport: nothing is sent, the error is typed."""
    srv = smtpsec_server(Security.IMPLICIT_TLS)
    args = {**tls_args, "policy": smtpsec.Policy()}  # certifi roots: the test CA is unknown
    with pytest.raises(smtpsec.CertificateError):
        await smtpsec.aio.connect("localhost", srv.port, **args)
    capture = srv.connections[0]
    assert await wait_closed(capture)
    assert capture.commands == []


@async_test
async def test_unreachable_port_is_a_connect_error(
    tls_args: dict[str, Any], refused_submission_ports: tuple[int, int]
) -> None:
    port = refused_submission_ports[0]  # bound by the test, never listening
    with pytest.raises(smtpsec.ConnectError, match=f"127.0.0.1:{port}"):
        await smtpsec.aio.connect("127.0.0.1", port, **tls_args)


@async_test
async def test_auto_without_port_tries_465_then_587(
    aio_cafile: Any, refused_submission_ports: tuple[int, int]
) -> None:
    """R-8314-3.3-2: both submission ports are tried; the error names both failures."""
    implicit, starttls = refused_submission_ports
    with pytest.raises(smtpsec.ConnectError, match="any submission port") as caught:
        await smtpsec.aio.connect("127.0.0.1", policy=smtpsec.Policy(cafile=aio_cafile))
    assert f":{implicit}" in str(caught.value)
    assert f":{starttls}" in str(caught.value)


@async_test
async def test_server_drop_while_idle_is_seen_by_check_idle(
    smtpsec_server: ServerFactory, tls_args: dict[str, Any]
) -> None:
    """R-LIB-DESYNC-1: a connection the server dropped is noticed before the next command."""
    srv = smtpsec_server(Security.IMPLICIT_TLS)
    session = await smtpsec.aio.connect("localhost", srv.port, **tls_args)
    srv.stop()  # drops every connection
    with pytest.raises(smtpsec.ConnectError, match="closed the connection"):
        await session.check_idle()
    assert session.closed
    await session.close()  # nothing left to do, and no error


@async_test
async def test_unsolicited_data_is_a_protocol_error(
    smtpsec_server: ServerFactory, tls_args: dict[str, Any]
) -> None:
    """R-LIB-DESYNC-1: two replies to one NOOP end the session, whenever the extra one arrives."""
    srv = smtpsec_server(
        Security.IMPLICIT_TLS, extra_replies_after=("NOOP", b"250 2.0.0 extra\r\n")
    )
    session = await smtpsec.aio.connect("localhost", srv.port, **tls_args)
    with pytest.raises(smtpsec.RemoteProtocolError, match="nobody asked for"):
        await _noop_then_watch(session)
    assert session.closed
    assert await wait_closed(srv.connections[0])


async def _noop_then_watch(session: smtpsec.aio.AsyncSession) -> None:
    # The extra reply arrives with the NOOP reply (NOOP raises) or after it
    # (check_idle raises once it is there).
    await session.noop()
    for _ in range(1000):
        await session.check_idle()
        await asyncio.sleep(0.01)
