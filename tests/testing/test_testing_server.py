"""The fake server as a good MSA: real stdlib clients can submit through it.

Covers implicit TLS, STARTTLS and plaintext submission, AUTH PLAIN/LOGIN,
the pre/post-TLS capture split, SNI, close_notify, DATA transparency, BDAT,
ESMTP parameter checks and the server lifecycle.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import threading

import pytest

from smtpsec import Security
from smtpsec.testing import (
    CA,
    DEFAULT_EXTENSIONS,
    Behaviour,
    Endless,
    LeafCert,
    ReceivedMessage,
    Script,
    SMTPServer,
    format_reply,
)

PASSWORD = "CANARY-PW-5f1c"
BODY = b"Subject: canary\r\n\r\nCANARY-BODY-77aa\r\n"


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA.create()


@pytest.fixture(scope="module")
def leaf(ca: CA) -> LeafCert:
    return ca.issue("localhost", ips=("127.0.0.1",))


def test_implicit_tls_submission_with_smtplib(leaf: LeafCert, ca: CA) -> None:
    """R-8314-3.3-3: EHLO then AUTH inside TLS before MAIL."""
    with SMTPServer(leaf, users={"ann": PASSWORD}, require_auth=True) as srv:
        with smtplib.SMTP_SSL("localhost", srv.port, context=ca.client_context()) as client:
            client.login("ann", PASSWORD)
            refused = client.sendmail("ann@example.test", ["bob@example.test"], BODY)
        assert refused == {}
        (capture,) = srv.wait_for_connections(1)
    assert capture.pre_tls == b""
    assert capture.commands_post_tls == ["EHLO", "AUTH", "MAIL", "RCPT", "DATA", "QUIT"]
    assert capture.sni == "localhost"
    assert capture.tls_version in {"TLSv1.2", "TLSv1.3"}
    assert capture.cipher
    assert capture.auth[0] == ("PLAIN", "ann", True)
    assert capture.tls
    (message,) = srv.messages
    assert message == ReceivedMessage(
        sender="ann@example.test",
        recipients=("bob@example.test",),
        data=BODY,
        mail_params={"SIZE": str(len(BODY))},
        recipient_params=({},),
        via="DATA",
        tls=True,
    )


def test_starttls_submission_splits_the_capture(leaf: LeafCert, ca: CA) -> None:
    """R-8314-5.2-4: before TLS only EHLO and STARTTLS; the canary travels only inside."""
    with SMTPServer(leaf, tls=Security.STARTTLS, users={"ann": PASSWORD}) as srv:
        with smtplib.SMTP("localhost", srv.port) as client:
            code, caps = client.ehlo()
            assert code == 250
            assert b"STARTTLS" in caps
            assert b"AUTH" not in caps  # a good MSA hides AUTH before TLS
            client.starttls(context=ca.client_context())
            client.ehlo()
            assert client.has_extn("auth")
            assert not client.has_extn("starttls")
            client.login("ann", PASSWORD)
            client.sendmail("ann@example.test", ["bob@example.test"], BODY)
        (capture,) = srv.wait_for_connections(1)
    assert capture.commands_pre_tls == ["EHLO", "STARTTLS"]
    assert capture.lines_pre_tls[1] == "STARTTLS"
    assert capture.commands_post_tls[:2] == ["EHLO", "AUTH"]
    assert capture.pre_tls_verbs_subset_of({"ehlo", "starttls", "quit"})
    assert capture.secrets_leaked(PASSWORD, "CANARY-BODY-77aa") == []
    assert b"CANARY-BODY-77aa" in capture.post_tls
    assert capture.after_starttls == b""
    assert capture.segments[1] == (False, b"STARTTLS\r\n")
    assert all(tls for tls, _ in capture.segments[2:])
    assert capture.sni == "localhost"
    assert capture.commands == capture.commands_pre_tls + capture.commands_post_tls


def test_plaintext_submission(leaf: LeafCert) -> None:
    with SMTPServer(tls=Security.PLAINTEXT, users={"ann": PASSWORD}) as srv:
        assert srv.ssl_context is None
        with smtplib.SMTP(srv.host, srv.port) as client:
            client.ehlo()
            assert client.has_extn("auth")  # a plaintext server offers AUTH (tests decide)
            assert not client.has_extn("starttls")
            client.login("ann", PASSWORD)
            client.sendmail("a@example.test", ["b@example.test"], BODY)
        (capture,) = srv.wait_for_connections(1)
    assert capture.post_tls == b""
    assert capture.secrets_leaked(PASSWORD, "CANARY-BODY-77aa", "absent") == [
        PASSWORD,
        "CANARY-BODY-77aa",
    ]
    assert not capture.pre_tls_verbs_subset_of({"EHLO", "STARTTLS", "QUIT"})
    assert srv.messages[0].tls is False
    with pytest.raises(ValueError, match="no LeafCert"):
        srv.client_context()


def test_auth_login_success_and_failure(leaf: LeafCert, ca: CA) -> None:
    with SMTPServer(leaf, users={"ann": PASSWORD}, auth_mechanisms=("LOGIN",)) as srv:
        with smtplib.SMTP_SSL("localhost", srv.port, context=ca.client_context()) as client:
            with pytest.raises(smtplib.SMTPAuthenticationError) as info:
                client.login("ann", "wrong")
            assert info.value.smtp_code == 535
            assert info.value.smtp_error.startswith(b"5.7.8")
        with smtplib.SMTP_SSL("localhost", srv.port, context=ca.client_context()) as client:
            client.login("ann", PASSWORD)
        first, second = srv.wait_for_connections(2)
    assert first.auth == [("LOGIN", "ann", False)]
    assert second.auth == [("LOGIN", "ann", True)]
    # smtplib sends the user name as an initial response, then the password on 334.
    assert second.lines_post_tls[1].startswith("AUTH LOGIN ")
    assert len(second.lines_post_tls) >= 3


def test_auth_plain_failure_is_535(leaf: LeafCert, ca: CA) -> None:
    with SMTPServer(leaf, users={"ann": PASSWORD}) as srv:
        with smtplib.SMTP_SSL("localhost", srv.port, context=ca.client_context()) as client:
            with pytest.raises(smtplib.SMTPAuthenticationError) as info:
                client.login("nobody", PASSWORD)
        (capture,) = srv.wait_for_connections(1)
    assert info.value.smtp_code == 535
    assert capture.auth[0] == ("PLAIN", "nobody", False)  # smtplib then tries LOGIN too


def test_verifying_client_rejects_plaintext_on_an_implicit_port(leaf: LeafCert, ca: CA) -> None:
    """R-8314-3.3-1: a plaintext greeting where TLS is expected fails the handshake."""
    with SMTPServer(tls=Security.PLAINTEXT) as srv:
        with pytest.raises(ssl.SSLError):
            smtplib.SMTP_SSL("localhost", srv.port, context=ca.client_context(), timeout=10)
        (capture,) = srv.wait_for_connections(1)
    assert "EHLO" not in capture.commands
    assert capture.pre_tls.startswith(b"\x16\x03")  # the ClientHello, recorded raw


def test_default_server_builds_its_own_ca() -> None:
    with SMTPServer() as srv:
        assert srv.cert is not None
        assert srv.cert.issuer_pem == srv.ca.cert_pem
        with smtplib.SMTP_SSL("127.0.0.1", srv.port, context=srv.client_context()) as client:
            assert client.noop()[0] == 250
        assert "IMPLICIT_TLS" in repr(srv)
    assert "unbound" in repr(SMTPServer(tls=Security.PLAINTEXT))


def test_ehlo_advertises_the_default_msa_extensions(leaf: LeafCert, ca: CA, raw) -> None:
    with SMTPServer(leaf) as srv:
        client = raw(srv, tls=ca.client_context())
        assert client.reply()[0] == 220
        code, lines = client.cmd("EHLO client.example.test")
    assert code == 250
    assert lines[0] == "smtp.example.test greets client.example.test"
    assert lines[1:] == [*DEFAULT_EXTENSIONS, "AUTH PLAIN LOGIN"]


def test_dot_stuffing_and_bare_lf_are_kept_visible(leaf: LeafCert, ca: CA, raw) -> None:
    """R-5321-4.5.2-1 / R-5321-2.3.8-1: only CRLF.CRLF ends the data."""
    with SMTPServer(leaf) as srv:
        client = raw(srv, tls=ca.client_context())
        client.reply()
        client.cmd("EHLO c")
        client.cmd("MAIL FROM:<a@example.test>")
        client.cmd("RCPT TO:<b@example.test>")
        assert client.cmd("DATA")[0] == 354
        client.send(b"..x\r\nsmuggled\n.\nstill\r.\r\n...\r\n.\r\n")
        assert client.reply()[0] == 250
    (message,) = srv.messages
    assert message.data == b".x\r\nsmuggled\n.\nstill\r.\r\n..\r\n"


def test_pipelined_transaction_is_answered_in_order(leaf: LeafCert, ca: CA, raw) -> None:
    """R-2920-3.1-3: MAIL, 3×RCPT, DATA in one write; replies by counting."""
    refuse = {"x1@example.test": (550, "5.1.1 no such user"), "x3@example.test": (551, "nope")}
    with SMTPServer(leaf, refuse_recipients=refuse) as srv:
        client = raw(srv, tls=ca.client_context())
        client.reply()
        client.cmd("EHLO c")
        client.send(
            b"MAIL FROM:<a@example.test>\r\nRCPT TO:<x1@example.test>\r\n"
            b"RCPT TO:<x2@example.test>\r\nRCPT TO:<x3@example.test>\r\nDATA\r\n"
        )
        codes = [client.reply()[0] for _ in range(5)]
        client.send(b"hello\r\n.\r\n")
        assert client.reply()[0] == 250
        assert client.cmd("QUIT")[0] == 221
    assert codes == [250, 550, 250, 551, 354]
    assert srv.messages[0].recipients == ("x2@example.test",)


def test_bdat_chunks_are_counted(leaf: LeafCert, ca: CA, raw) -> None:
    """R-3030-2-2: exact octet counts, LAST on the final chunk, no dot-stuffing."""
    with SMTPServer(leaf) as srv:
        client = raw(srv, tls=ca.client_context())
        client.reply()
        client.cmd("EHLO c")
        client.cmd("MAIL FROM:<a@example.test> BODY=8BITMIME SMTPUTF8")
        client.cmd("RCPT TO:<b@example.test> NOTIFY=NEVER")
        client.send(b"BDAT 7\r\n.line\r\n")
        assert client.reply() == (250, ["2.0.0 7 octets received"])
        assert client.cmd("DATA")[0] == 503  # never mix DATA and BDAT (R-3030-2-3)
        client.send(b"BDAT 3 LAST\r\nend")
        assert client.reply()[0] == 250
    (message,) = srv.messages
    assert message.via == "BDAT"
    assert message.bdat_chunks == (7, 3)
    assert message.data == b".line\r\nend"
    assert message.mail_params == {"BODY": "8BITMIME", "SMTPUTF8": None}
    assert message.recipient_params == ({"NOTIFY": "NEVER"},)


def test_bdat_errors_consume_the_chunk(leaf: LeafCert, ca: CA, raw) -> None:
    with SMTPServer(leaf, extensions=("PIPELINING",)) as srv:
        client = raw(srv, tls=ca.client_context())
        client.reply()
        client.cmd("EHLO c")
        client.send(b"BDAT 4\r\nMAIL")  # CHUNKING not offered: chunk still consumed
        assert client.reply()[0] == 503
        assert client.cmd("BDAT nope")[0] == 501
        assert client.cmd("NOOP")[0] == 250
    with SMTPServer(leaf) as srv:
        client = raw(srv, tls=ca.client_context())
        client.reply()
        client.cmd("EHLO c")
        client.send(b"BDAT 4\r\nRSET")
        assert client.reply() == (503, ["5.5.1 Error: need MAIL command"])
        client.cmd("MAIL FROM:<a@example.test>")
        client.send(b"BDAT 2 LAST\r\nhi")
        assert client.reply()[0] == 554  # no recipients
        assert client.cmd("NOOP")[0] == 250
    assert srv.messages == []


def test_size_limit_is_enforced(leaf: LeafCert, ca: CA, raw) -> None:
    """R-1870-2/3: SIZE= above the limit gets 552, and so does an oversized body."""
    with SMTPServer(leaf, extensions=("SIZE 10", "CHUNKING")) as srv:
        client = raw(srv, tls=ca.client_context())
        client.reply()
        client.cmd("EHLO c")
        assert client.cmd("MAIL FROM:<a@example.test> SIZE=11")[0] == 552
        assert client.cmd("MAIL FROM:<a@example.test> SIZE=10")[0] == 250
        client.cmd("RCPT TO:<b@example.test>")
        client.cmd("DATA")
        client.send(b"01234567890123\r\n.\r\n")
        assert client.reply()[0] == 552
        client.cmd("MAIL FROM:<a@example.test>")
        client.cmd("RCPT TO:<b@example.test>")
        client.send(b"BDAT 11 LAST\r\n01234567890")
        assert client.reply()[0] == 552
    assert srv.messages == []


def test_mail_and_rcpt_validation(leaf: LeafCert, ca: CA, raw) -> None:
    with SMTPServer(leaf, extensions=("PIPELINING",), auth_mechanisms=()) as srv:
        client = raw(srv, tls=ca.client_context())
        client.reply()
        assert client.cmd("MAIL FROM:<a@example.test>")[0] == 503  # EHLO first
        assert client.cmd("EHLO")[0] == 501
        assert client.cmd("HELO")[0] == 501
        assert client.cmd("HELO c")[0] == 250
        assert client.cmd("RCPT TO:<b@example.test>")[0] == 503  # MAIL first
        assert client.cmd("DATA")[0] == 503
        assert client.cmd("MAIL FROM:a@example.test")[0] == 501
        assert client.cmd("MAIL FROM:<a@example.test> =bad")[0] == 501
        assert client.cmd("MAIL FROM:<a@example.test> SIZE=1")[0] == 555  # SIZE not offered
        assert client.cmd("MAIL FROM:<a@example.test> BODY=8BITMIME")[0] == 555
        assert client.cmd("MAIL FROM:<a@example.test> XFOO")[0] == 555
        assert client.cmd("MAIL FROM:<用户@example.test>")[0] == 553
        assert client.cmd("MAIL FROM:<a@example.test> BODY=7BIT")[0] == 250
        assert client.cmd("MAIL FROM:<a@example.test>")[0] == 503  # nested
        assert client.cmd("RCPT TO:b@example.test")[0] == 501
        assert client.cmd("RCPT TO:<b@example.test> NOTIFY=NEVER")[0] == 555
        assert client.cmd("RCPT TO:<用户@example.test>")[0] == 553
        assert client.cmd("DATA")[0] == 554  # no valid recipients
        assert client.cmd("DATA now")[0] == 501
        assert client.cmd("RSET")[0] == 250
        assert client.cmd("VRFY ann")[0] == 252
        assert client.cmd("HELP")[0] == 214
        assert client.cmd("EXPN list")[0] == 500
        assert client.cmd("")[0] == 500


def test_utf8_envelope_with_smtputf8(leaf: LeafCert, ca: CA, raw) -> None:
    with SMTPServer(leaf) as srv:
        client = raw(srv, tls=ca.client_context())
        client.reply()
        client.cmd("EHLO c")
        assert client.cmd("MAIL FROM:<用户@example.test> SMTPUTF8")[0] == 250
        assert client.cmd("RCPT TO:<收件人@例子.测试>")[0] == 250
    assert srv.connections[0].lines_post_tls[1] == "MAIL FROM:<用户@example.test> SMTPUTF8"


def test_max_recipients_answers_452(leaf: LeafCert, ca: CA, raw) -> None:
    with SMTPServer(leaf, max_recipients=1) as srv:
        client = raw(srv, tls=ca.client_context())
        client.reply()
        client.cmd("EHLO c")
        client.cmd("MAIL FROM:<a@example.test>")
        assert client.cmd("RCPT TO:<b@example.test>")[0] == 250
        assert client.cmd("RCPT TO:<c@example.test>") == (452, ["4.5.3 Error: too many recipients"])


def test_require_auth_and_require_tls(leaf: LeafCert, ca: CA, raw) -> None:
    with SMTPServer(leaf, tls=Security.STARTTLS, require_auth=True, users={"ann": PASSWORD}) as srv:
        client = raw(srv)
        client.reply()
        client.cmd("EHLO c")
        assert client.cmd("MAIL FROM:<a@example.test>")[0] == 530
        assert client.cmd("AUTH PLAIN")[0] == 530  # AUTH only after STARTTLS
        assert client.cmd("STARTTLS x")[0] == 501
        assert client.cmd("STARTTLS")[0] == 220
        client.wrap(ca.client_context())
        client.cmd("EHLO c")
        assert client.cmd("MAIL FROM:<a@example.test>") == (530, ["5.7.0 Authentication required"])
        assert client.cmd("STARTTLS")[0] == 554  # TLS already active
    with SMTPServer(leaf, tls=Security.STARTTLS, require_tls=False) as srv:
        client = raw(srv)
        client.reply()
        client.cmd("EHLO c")
        assert client.cmd("AUTH PLAIN")[0] == 504  # not advertised before TLS
        assert client.cmd("MAIL FROM:<a@example.test>")[0] == 250
    with SMTPServer(leaf, tls=Security.STARTTLS, pre_tls_auth=("PLAIN",)) as srv:
        client = raw(srv)
        client.reply()
        client.cmd("EHLO c")
        assert client.cmd("AUTH PLAIN")[0] == 334  # bait: accepted in cleartext
        assert client.cmd("*")[0] == 501
        assert client.cmd("MAIL FROM:<a@example.test>")[0] == 530  # mail still needs TLS


def test_starttls_refused_on_implicit_and_plain_servers(leaf: LeafCert, ca: CA, raw) -> None:
    with SMTPServer(leaf) as srv:
        client = raw(srv, tls=ca.client_context())
        client.reply()
        assert client.cmd("STARTTLS")[0] == 554
    with SMTPServer(tls=Security.PLAINTEXT) as srv:
        client = raw(srv)
        client.reply()
        assert client.cmd("STARTTLS")[0] == 502


def test_close_notify_is_recorded(leaf: LeafCert, ca: CA, raw) -> None:
    """R-8314-3.4-1: a client that unwraps after 221 is seen sending close_notify."""
    with SMTPServer(leaf) as srv:
        client = raw(srv, tls=ca.client_context())
        client.reply()
        assert client.cmd("QUIT")[0] == 221
        assert isinstance(client.sock, ssl.SSLSocket)
        client.sock.unwrap()
        polite = srv.wait_for_connections(1)[0]
        with smtplib.SMTP_SSL("localhost", srv.port, context=ca.client_context()) as rude:
            rude.noop()
        captures = srv.wait_for_connections(2)
    assert polite.close_notify is True
    assert captures[1].close_notify is False  # smtplib closes without close_notify


def test_close_notify_without_quit(leaf: LeafCert, ca: CA, raw) -> None:
    with SMTPServer(leaf) as srv:
        client = raw(srv, tls=ca.client_context())
        client.reply()
        assert isinstance(client.sock, ssl.SSLSocket)
        client.sock.unwrap()
        (capture,) = srv.wait_for_connections(1)
    assert capture.close_notify is True
    assert capture.error is None


def test_bare_tcp_fin_inside_tls_is_not_a_close_notify(leaf: LeafCert, ca: CA, raw) -> None:
    """R-8314-3.4-1: a FIN without the alert is recorded as an unclean close."""
    with SMTPServer(leaf) as srv:
        client = raw(srv, tls=ca.client_context())
        client.reply()
        socket.socket.shutdown(client.sock, socket.SHUT_WR)  # FIN, no close_notify
        assert client.read_until_eof() == b""
        (capture,) = srv.wait_for_connections(1)
    assert capture.close_notify is False
    assert capture.error == "EOF without close_notify"


def test_client_certificate_is_recorded(leaf: LeafCert, ca: CA) -> None:
    """R-8314-5.5-1: the server sees which certificate (if any) was presented."""
    ann = ca.issue_client("ann@example.test")
    with SMTPServer(leaf, request_client_cert=True) as srv:
        with_cert = ca.client_context()
        ann.load_into(with_cert)
        with smtplib.SMTP_SSL("localhost", srv.port, context=with_cert) as client:
            client.noop()
        with smtplib.SMTP_SSL("localhost", srv.port, context=ca.client_context()) as client:
            client.noop()
        first, second = srv.wait_for_connections(2)
    assert first.client_cert_der == ann.cert_der
    assert second.client_cert_der is None


@pytest.mark.parametrize("as_pem", [False, True])
def test_client_ca_can_differ_from_the_server_issuer(leaf: LeafCert, ca: CA, as_pem: bool) -> None:
    other = CA.create("client CA")
    bob = other.issue_client("bob@example.test")
    client_ca = other.cert_pem if as_pem else other
    with SMTPServer(leaf, request_client_cert=True, client_ca=client_ca) as srv:
        ctx = ca.client_context()
        bob.load_into(ctx)
        with smtplib.SMTP_SSL("localhost", srv.port, context=ctx) as client:
            client.noop()
        assert srv.wait_for_connections(1)[0].client_cert_der == bob.cert_der


def test_ssl_context_server_keeps_caller_sni_callback(leaf: LeafCert, ca: CA) -> None:
    ctx = leaf.server_context()
    seen: list[str | None] = []
    ctx.sni_callback = lambda sock, name, c: seen.append(name)  # type: ignore[assignment,func-returns-value]
    with SMTPServer(
        ctx, max_version=ssl.TLSVersion.TLSv1_2, min_version=ssl.TLSVersion.TLSv1_2
    ) as srv:
        with smtplib.SMTP_SSL("localhost", srv.port, context=ca.client_context()) as client:
            client.noop()
        (capture,) = srv.wait_for_connections(1)
        with pytest.raises(ValueError, match="no LeafCert"):
            srv.client_context()
    assert seen == ["localhost"]
    assert capture.sni == "localhost"
    assert capture.tls_version == "TLSv1.2"
    assert SMTPServer(ctx).ssl_context is ctx  # re-using the context does not re-wrap


def test_tls10_only_server_is_best_effort(ca: CA) -> None:
    """Checklist §0.2 item 2: TLS 1.0/1.1 need @SECLEVEL=0 even to be offered."""
    leaf = ca.issue("localhost")
    with SMTPServer(leaf, max_version=ssl.TLSVersion.TLSv1) as srv:
        with pytest.raises(ssl.SSLError):
            smtplib.SMTP_SSL("localhost", srv.port, context=ca.client_context(), timeout=10)
        legacy = ca.client_context()
        legacy.set_ciphers("DEFAULT:@SECLEVEL=0")
        legacy.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        try:
            with smtplib.SMTP_SSL("localhost", srv.port, context=legacy) as client:
                client.noop()
        except ssl.SSLError:  # pragma: no cover - an OpenSSL build without TLS 1.0
            pytest.skip("this OpenSSL refuses TLS 1.0 even at SECLEVEL=0")
        refused, accepted = srv.wait_for_connections(2)
    assert refused.handshake_error
    assert refused.tls_version is None
    assert accepted.tls_version == "TLSv1"


def test_stop_returns_with_clients_still_connected(leaf: LeafCert, ca: CA, raw) -> None:
    """Blocked in recv, in a TLS handshake and in a write: stop() ends them all."""
    srv = SMTPServer(leaf, tls=Security.STARTTLS, timeout=600, replies={"NOOP": Endless()}).start()
    idle = raw(srv)
    assert idle.reply()[0] == 220  # the server now waits for a command
    mid_tls = raw(srv)
    mid_tls.reply()
    assert mid_tls.cmd("STARTTLS")[0] == 220  # the server now waits for a ClientHello
    flooded = raw(srv)
    flooded.reply()
    flooded.send(b"NOOP\r\n")  # endless reply that we never read: the server's write blocks
    assert flooded.recv_some().startswith(b"250-x")
    captures = srv.connections
    srv.stop()
    srv.stop()  # idempotent
    assert len(captures) == 3
    assert all(c.closed for c in captures)
    assert idle.read_until_eof() == b""
    with pytest.raises(OSError):
        socket.create_connection((srv.host, srv.port), timeout=5).recv(1)


def test_address_before_start_is_an_error() -> None:
    srv = SMTPServer(tls=Security.PLAINTEXT)
    with pytest.raises(RuntimeError, match="not started"):
        _ = srv.port
    srv.stop()  # stopping a never-started server is a no-op
    assert srv.start() is srv.start()
    srv.stop()


def test_ipv6_loopback(leaf: LeafCert) -> None:
    if not socket.has_ipv6:  # pragma: no cover - IPv6-less hosts
        pytest.skip("no IPv6")
    try:
        srv = SMTPServer(tls=Security.PLAINTEXT, host="::1").start()
    except OSError:  # pragma: no cover - ::1 not configured
        pytest.skip("::1 not available")
    with srv, smtplib.SMTP("::1", srv.port) as client:
        assert client.noop()[0] == 250
    assert srv.host == "::1"


def test_wait_for_connections_times_out_with_a_hint() -> None:
    with SMTPServer(tls=Security.PLAINTEXT) as srv, pytest.raises(TimeoutError, match="port"):
        srv.wait_for_connections(1, timeout=0.1)


def test_unknown_mode_and_unknown_option_fail_clearly() -> None:
    with pytest.raises(ValueError, match="tls must be one of"):
        SMTPServer(tls="ssl")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        SMTPServer(tls=Security.PLAINTEXT, no_such_option=True)


def test_script_object_and_overrides_compose() -> None:
    base = Script(hostname="mx.example.test", users={"ann": "pw"})
    srv = SMTPServer(tls=Security.PLAINTEXT, script=base, require_auth=True)
    assert srv.script.hostname == "mx.example.test"
    assert srv.script.require_auth
    assert Behaviour is Script
    assert SMTPServer(tls=Security.PLAINTEXT, script=base).script is base


def test_format_reply_multiline() -> None:
    assert format_reply(250, "a\nb") == b"250-a\r\n250 b\r\n"
    assert format_reply(334, "") == b"334 \r\n"


def test_concurrent_connections_are_captured_in_accept_order(leaf: LeafCert) -> None:
    with SMTPServer(tls=Security.PLAINTEXT) as srv:
        barrier = threading.Barrier(4)

        def one(i: int) -> None:
            with smtplib.SMTP(srv.host, srv.port) as client:
                barrier.wait(timeout=10)
                client.sendmail(f"s{i}@example.test", ["r@example.test"], b"x\r\n")

        threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        captures = srv.wait_for_connections(4)
    assert [c.index for c in captures] == [0, 1, 2, 3]
    assert sorted(m.sender for m in srv.messages) == [f"s{i}@example.test" for i in range(4)]


def test_advertised_lists_per_phase() -> None:
    script = Script(
        pre_tls_extensions=("AUTH LOGIN", "STARTTLS"),
        pre_tls_auth=("PLAIN",),
        extensions=("AUTH XOAUTH2", "SIZE nope"),
    )
    assert script.advertised(starttls_mode=True, tls_active=False) == ("AUTH LOGIN", "STARTTLS")
    assert script.advertised(starttls_mode=True, tls_active=True) == ("AUTH XOAUTH2", "SIZE nope")
    assert script.offered_mechanisms(starttls_mode=True, tls_active=True) == ("XOAUTH2",)
    assert script.size_limit(starttls_mode=True, tls_active=True) == 0
    stripped = script.replace(strip_starttls=True)
    assert stripped.advertised(starttls_mode=True, tls_active=False) == ("AUTH LOGIN",)
    assert Script(auth_mechanisms=()).offered_mechanisms(starttls_mode=False, tls_active=True) == ()


def test_ca_is_the_issuer_and_trusting_it_verifies() -> None:
    """``srv.ca`` is non-optional: what a client under test trusts, typed as ``CA``."""
    with SMTPServer(tls=Security.STARTTLS) as srv:
        ctx = srv.ca.client_context()
        with smtplib.SMTP("localhost", srv.port, timeout=10) as client:
            client.starttls(context=ctx)
            assert client.noop()[0] == 250


def test_ca_given_with_no_cert_issues_the_leaf(ca: CA) -> None:
    srv = SMTPServer(ca=ca)
    assert srv.ca is ca
    assert srv.cert is not None and srv.cert.issuer_pem == ca.cert_pem


def test_ca_given_with_its_cert(leaf: LeafCert, ca: CA) -> None:
    assert SMTPServer(leaf, ca=ca).ca is ca


def test_ca_that_did_not_issue_the_cert_is_refused(leaf: LeafCert) -> None:
    with pytest.raises(ValueError, match="did not issue"):
        SMTPServer(leaf, ca=CA.create("another CA"))


def test_ca_unknown_says_what_to_pass(leaf: LeafCert) -> None:
    srv = SMTPServer(leaf)
    with pytest.raises(ValueError, match=r"cert= without the CA.*ca=ca"):
        srv.ca  # noqa: B018 - the property is the test


def test_plaintext_server_has_no_ca() -> None:
    with pytest.raises(ValueError, match="PLAINTEXT server has no certificate"):
        SMTPServer(tls=Security.PLAINTEXT).ca  # noqa: B018 - the property is the test
