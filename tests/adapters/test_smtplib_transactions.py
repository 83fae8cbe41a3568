"""``sendmail()`` failure semantics of the smtplib drop-in, and LMTP.

smtplib's contract is kept exactly: a dict of refused recipients, and
``SMTPSenderRefused`` / ``SMTPRecipientsRefused`` / ``SMTPDataError`` (each
also the matching smtpsec error), with ``RSET`` after a failure and the
connection closed after ``421``. Every case runs both one command at a time
and pipelined (RFC 2920), since the two paths read replies differently.
LMTP runs against aiosmtpd's LMTP server, over TCP and over a Unix socket.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest

import smtpsec
from netutil import start_aiosmtpd
from smtpsec import Security, smtplib

BODY = b"Subject: x\r\n\r\nhello\r\n"
NO_PIPELINING = ("SIZE 1000000", "8BITMIME", "ENHANCEDSTATUSCODES")
#: With CHUNKING the engine sends BDAT, not DATA: these cases are about DATA.
PIPELINING_NO_CHUNKING = ("PIPELINING", *NO_PIPELINING)
PATHS = pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-by-one"])


def _server(factory, pipelining: bool, **options: Any):
    options.setdefault("extensions", PIPELINING_NO_CHUNKING if pipelining else NO_PIPELINING)
    return factory(Security.IMPLICIT_TLS, **options)


def _connect(srv, ctx) -> smtplib.SMTP_SSL:
    return smtplib.SMTP_SSL("127.0.0.1", srv.port, context=ctx)


@PATHS
def test_sender_refused(smtpsec_server, smtpsec_client_context, pipelining: bool) -> None:
    srv = _server(smtpsec_server, pipelining, replies={"MAIL": (550, "5.7.1 sender denied")})
    with _connect(srv, smtpsec_client_context) as s:
        with pytest.raises(smtplib.SMTPSenderRefused) as info:
            s.sendmail("ann@example.com", ["bob@example.com", "carl@example.com"], BODY)
        assert s.noop()[0] == 250  # still usable after the RSET
    error = info.value
    assert isinstance(error, smtpsec.SenderRefused)
    assert error.args == (550, b"5.7.1 sender denied", "ann@example.com")
    assert (error.sender, error.code, error.enhanced_status) == ("ann@example.com", 550, "5.7.1")
    assert "ann@example.com" in str(error)
    assert "RSET" in srv.connections[0].commands
    assert srv.messages == []


@PATHS
def test_sender_refused_with_421_closes(
    smtpsec_server, smtpsec_client_context, pipelining: bool
) -> None:
    srv = _server(smtpsec_server, pipelining, replies={"MAIL": (421, "4.3.2 shutting down")})
    s = _connect(srv, smtpsec_client_context)
    with pytest.raises(smtplib.SMTPSenderRefused):
        s.sendmail("ann@example.com", ["bob@example.com"], BODY)
    assert s.sock is None


@PATHS
def test_all_recipients_refused(smtpsec_server, smtpsec_client_context, pipelining: bool) -> None:
    refuse = {
        "bob@example.com": (550, "5.1.1 no such user"),
        "carl@example.com": (450, "4.2.1 try later"),
    }
    srv = _server(smtpsec_server, pipelining, refuse_recipients=refuse)
    with _connect(srv, smtpsec_client_context) as s:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
            s.sendmail("ann@example.com", ["bob@example.com", "carl@example.com"], BODY)
    error = info.value
    assert isinstance(error, smtpsec.RecipientsRefused)
    assert error.recipients == {
        "bob@example.com": (550, b"5.1.1 no such user"),
        "carl@example.com": (450, b"4.2.1 try later"),
    }
    assert error.refused["carl@example.com"] == (450, "4.2.1", "try later")
    assert error.args == (error.recipients,)
    assert "bob@example.com: 550" in str(error)
    assert "RSET" in srv.connections[0].commands
    assert srv.messages == []


@PATHS
def test_recipient_421_closes(smtpsec_server, smtpsec_client_context, pipelining: bool) -> None:
    srv = _server(
        smtpsec_server, pipelining, refuse_recipients={"bob@example.com": (421, "4.3.2 bye")}
    )
    s = _connect(srv, smtpsec_client_context)
    with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
        s.sendmail("ann@example.com", ["bob@example.com", "carl@example.com"], BODY)
    assert info.value.recipients == {"bob@example.com": (421, b"4.3.2 bye")}
    assert s.sock is None


@PATHS
def test_data_command_refused(smtpsec_server, smtpsec_client_context, pipelining: bool) -> None:
    srv = _server(smtpsec_server, pipelining, replies={"DATA": (451, "4.3.0 not now")})
    with _connect(srv, smtpsec_client_context) as s:
        with pytest.raises(smtplib.SMTPDataError) as info:
            s.sendmail("ann@example.com", ["bob@example.com"], BODY)
    assert isinstance(info.value, smtpsec.ReplyError)
    assert info.value.transient
    assert "DATA" in str(info.value)


@PATHS
@pytest.mark.parametrize("code", [554, 421])
def test_message_refused(
    smtpsec_server, smtpsec_client_context, pipelining: bool, code: int
) -> None:
    srv = _server(smtpsec_server, pipelining, replies={".": (code, "5.6.0 looks like spam")})
    s = _connect(srv, smtpsec_client_context)
    with pytest.raises(smtplib.SMTPDataError) as info:
        s.sendmail("ann@example.com", ["bob@example.com"], BODY)
    assert info.value.smtp_code == code
    if code == 421:
        assert s.sock is None
    else:
        assert s.noop()[0] == 250
        s.quit()


def test_pipelined_data_accepted_without_recipients(smtpsec_server, smtpsec_client_context) -> None:
    """RFC 2920 §3.1: a server that starts DATA anyway gets an empty message end."""
    srv = smtpsec_server(
        Security.IMPLICIT_TLS,
        extensions=PIPELINING_NO_CHUNKING,
        refuse_recipients={"bob@example.com": (550, "5.1.1 no")},
        replies={"DATA": (354, "go ahead")},
    )
    with _connect(srv, smtpsec_client_context) as s:
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            s.sendmail("ann@example.com", ["bob@example.com"], BODY)
    lines = srv.connections[0].lines_post_tls
    assert lines[lines.index("DATA") + 1] == "."
    assert srv.messages == []


def test_no_recipients(smtpsec_server, smtpsec_client_context) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS)
    with _connect(srv, smtpsec_client_context) as s:
        with pytest.raises(smtplib.SMTPRecipientsRefused, match="no recipients"):
            s.sendmail("ann@example.com", [], BODY)
    assert "MAIL" not in srv.connections[0].commands


def test_pipelining_without_size_or_options(smtpsec_server, smtpsec_client_context) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS, extensions=("PIPELINING",))
    with _connect(srv, smtpsec_client_context) as s:
        assert s.sendmail("ann@example.com", "bob@example.com", BODY) == {}
        s.mail("ann@example.com")
        s.rcpt("bob@example.com")
        assert s.data(BODY) == (250, b"2.0.0 Ok: queued as 1")
    assert srv.messages[0].mail_params == {}
    assert [m.data for m in srv.messages] == [BODY, BODY]


def test_connect_uses_default_port(smtpsec_server) -> None:
    srv = smtpsec_server(Security.PLAINTEXT)
    s = smtplib.SMTP()
    s.default_port = srv.port
    assert s.connect("127.0.0.1")[0] == 220
    s.quit()


# --------------------------------------------------------------------------- LMTP


class _Handler:
    """aiosmtpd handler answering DATA with one reply per recipient (RFC 2033 §4.2)."""

    def __init__(self, refuse: set[str]) -> None:
        self.refuse = refuse
        self.delivered: list[tuple[str, bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        lines = []
        for rcpt in envelope.rcpt_tos:
            if rcpt in self.refuse:
                lines.append(f"550 5.2.1 mailbox of {rcpt} is full")
            else:
                self.delivered.append((rcpt, envelope.original_content))
                lines.append(f"250 2.0.0 delivered to {rcpt}")
        return "\r\n".join(lines)


@pytest.fixture(params=["tcp", "unix"])
def lmtp_server(request, tmp_path) -> Iterator[tuple[str, int, _Handler]]:
    from aiosmtpd.controller import Controller, UnixSocketController
    from aiosmtpd.lmtp import LMTP as LMTPServer

    if request.param == "unix" and sys.platform == "win32":  # pragma: no cover
        pytest.skip("no Unix sockets")
    handler = _Handler(refuse={"full@example.com"})
    base = Controller if request.param == "tcp" else UnixSocketController

    class LMTPController(base):  # type: ignore[misc, valid-type]
        def factory(self) -> LMTPServer:
            return LMTPServer(self.handler, **self.SMTP_kwargs)

    if request.param == "tcp":
        controller = start_aiosmtpd(handler, controller=LMTPController)
        host, port = "127.0.0.1", controller.port
    else:
        port = 0
        host = str(tmp_path / "lmtp.sock")
        controller = LMTPController(handler, unix_socket=host)
        controller.start()
    try:
        yield host, port, handler
    finally:
        controller.stop()


def test_lmtp_delivery_and_per_recipient_replies(lmtp_server) -> None:
    host, port, handler = lmtp_server
    with smtplib.LMTP(host, port) as s:
        refused = s.sendmail(
            "ann@example.com",
            ["bob@example.com", "full@example.com", "carl@example.com"],
            b"Subject: x\n\nhello\n",
        )
        assert refused == {"full@example.com": (550, b"5.2.1 mailbox of full@example.com is full")}
        # The session stays in step: every per-recipient reply was read.
        assert s.noop()[0] == 250
        s.mail("ann@example.com")
        s.rcpt("full@example.com")
        s.rcpt("bob@example.com")
        code, msg = s.data(b"again\r\n")
        assert (code, msg) == (550, b"5.2.1 mailbox of full@example.com is full")
        with pytest.raises(smtplib.SMTPDataError, match="every recipient"):
            s.sendmail("ann@example.com", ["full@example.com", "full@example.com"], b"x")
        assert s.noop()[0] == 250
    assert [rcpt for rcpt, _ in handler.delivered] == [
        "bob@example.com",
        "carl@example.com",
        "bob@example.com",
    ]
    assert handler.delivered[0][1] == b"Subject: x\r\n\r\nhello\r\n"


def test_lmtp_connect_later(lmtp_server, capsys) -> None:
    host, port, _ = lmtp_server
    s = smtplib.LMTP()
    s.set_debuglevel(1)
    assert s.connect(host, port)[0] == 220
    assert s.ehlo()[0] == 250
    assert s.ehlo_msg == "lhlo"
    s.quit()
    assert "connect:" in capsys.readouterr().err


def test_lmtp_unix_socket_missing(tmp_path, capsys) -> None:
    s = smtplib.LMTP()
    s.set_debuglevel(1)
    with pytest.raises(OSError):
        s.connect(str(tmp_path / "missing.sock"))
    assert s.sock is None
    assert "connect fail:" in capsys.readouterr().err
