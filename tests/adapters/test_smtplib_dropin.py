"""``from smtpsec import smtplib``: existing smtplib code runs unchanged, safely.

The usage patterns below are written exactly as smtplib users write them; only
the import differs. Every server is a real loopback server from
:mod:`smtpsec.testing` (R-LIB-GUARD-4: the adapters use the same guard).
"""

from __future__ import annotations

import smtplib as std_smtplib
import socket
import ssl
import warnings
from email.message import EmailMessage

import pytest

import smtpsec
from smtpsec import Security, smtplib
from smtpsec.smtplib._errors import split_status

USER, PASSWORD = "ann", "canary-Pa55word"


def _message() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "ann@example.com"
    msg["To"] = "bob@example.com"
    msg["Subject"] = "hello"
    msg.set_content("Hi Bob,\n.\nbye\n")
    return msg


# --------------------------------------------------------------------------- API surface


def test_module_reexports_the_stdlib_public_api() -> None:
    assert set(std_smtplib.__all__) <= set(smtplib.__all__)
    # The rest are the drop-in's own exception classes, public and documented:
    # each is both a stdlib smtplib exception and an smtpsec one.
    for name in set(smtplib.__all__) - set(std_smtplib.__all__) - {"LMTP"}:
        cls = getattr(smtplib, name)
        assert issubclass(cls, smtpsec.SMTPSecError), name
        assert any(
            issubclass(cls, base) and base is not std_smtplib.SMTPException
            for base in (getattr(std_smtplib, n) for n in std_smtplib.__all__)
            if isinstance(base, type) and issubclass(base, Exception)
        ) or issubclass(cls, OSError), name
        assert cls.__module__ == "smtpsec.smtplib", name
        assert cls.__doc__, name
    for name in std_smtplib.__all__:
        if name not in {"SMTP", "SMTP_SSL"}:
            assert getattr(smtplib, name) is getattr(std_smtplib, name), name
    for name in ("SMTP_PORT", "SMTP_SSL_PORT", "LMTP_PORT", "CRLF", "bCRLF", "OLDSTYLE_AUTH"):
        assert getattr(smtplib, name) == getattr(std_smtplib, name), name
    assert issubclass(smtplib.SMTP, std_smtplib.SMTP)
    assert issubclass(smtplib.SMTP_SSL, std_smtplib.SMTP_SSL)
    assert issubclass(smtplib.LMTP, std_smtplib.LMTP)


def test_plain_import_inside_the_package_is_the_stdlib() -> None:
    # The drop-in says "import smtplib": with absolute imports that is the
    # standard library, never the drop-in package itself.
    from smtpsec.smtplib import _client

    assert _client._std is std_smtplib
    assert _client._std is not smtplib


def test_no_socket_and_no_fqdn_lookup_without_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """R-PY-12: the EHLO name never comes from socket.getfqdn()."""

    def boom() -> str:
        raise AssertionError("getfqdn must not be called")

    monkeypatch.setattr(socket, "getfqdn", boom)
    s = smtplib.SMTP()
    assert s.sock is None
    assert s.local_hostname == "[127.0.0.1]"
    # As smtplib, the name is kept as given; it is checked (and IDNA-encoded)
    # when EHLO uses it.
    assert smtplib.SMTP(local_hostname="bücher.example").local_hostname == "bücher.example"


def test_local_hostname_is_checked_and_idna_encoded_by_ehlo(smtpsec_server) -> None:
    srv = smtpsec_server(Security.PLAINTEXT)
    with smtplib.SMTP("127.0.0.1", srv.port, local_hostname="bücher.example") as s:
        assert s.ehlo()[0] == 250
    with smtplib.SMTP("127.0.0.1", srv.port, local_hostname="bad name") as s:
        with pytest.raises(smtpsec.InvalidArgumentError, match="EHLO name"):
            s.ehlo()
        assert s.noop()[0] == 250  # nothing was sent
    first, second = srv.wait_for_connections(2)
    assert first.lines_pre_tls[0] == "EHLO xn--bcher-kva.example"
    assert second.commands == ["NOOP", "QUIT"]


def test_timeout_defaults_to_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """R-PY-11: no timeout given means 60 s (or the socket default), never forever."""
    assert smtplib.SMTP().timeout == 60.0
    assert smtplib.SMTP(timeout=None).timeout == 60.0
    assert smtplib.SMTP(timeout=socket._GLOBAL_DEFAULT_TIMEOUT).timeout == 60.0  # type: ignore[attr-defined]
    assert smtplib.SMTP(timeout=2).timeout == 2.0
    monkeypatch.setattr(socket, "getdefaulttimeout", lambda: 7.5)
    assert smtplib.SMTP().timeout == 7.5
    with pytest.raises(smtpsec.InvalidArgumentError, match="positive"):
        smtplib.SMTP(timeout=0)


# --------------------------------------------------------------------------- usage patterns


def test_smtp_ssl_context_manager_pattern(smtpsec_server, smtpsec_client_context) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS, users={USER: PASSWORD})
    host, port, ctx = srv.host, srv.port, smtpsec_client_context
    u, p, msg = USER, PASSWORD, _message()

    with smtplib.SMTP_SSL(host, port, context=ctx) as s:
        s.login(u, p)
        s.send_message(msg)

    (received,) = srv.messages
    assert received.tls
    assert received.recipients == ("bob@example.com",)
    assert b"\r\n.\r\nbye\r\n" in received.data  # dot-stuffed on the wire, one message
    assert srv.connections[0].auth[0].success


def test_starttls_pattern(smtpsec_server, smtpsec_client_context) -> None:
    srv = smtpsec_server(Security.STARTTLS, users={USER: PASSWORD})

    server = smtplib.SMTP(srv.host, srv.port)
    server.ehlo()
    server.starttls(context=smtpsec_client_context)
    server.ehlo()
    server.login(USER, PASSWORD)
    refused = server.sendmail("ann@example.com", ["bob@example.com"], "Subject: hi\n\nbody\n")
    server.quit()

    assert refused == {}
    capture = srv.connections[0]
    # R-PY-7: the adapter re-EHLOs right after the handshake, before anything else.
    assert capture.commands_post_tls[0] == "EHLO"
    assert capture.pre_tls_verbs_subset_of({"EHLO", "STARTTLS"})
    assert srv.messages[0].data == b"Subject: hi\r\n\r\nbody\r\n"


def test_connect_later_pattern_sends_sni(smtpsec_server, smtpsec_client_context) -> None:
    """smtplib forgets the host given to connect(); the adapter uses it for TLS."""
    srv = smtpsec_server(Security.STARTTLS, users={USER: PASSWORD})
    s = smtplib.SMTP()
    code, _ = s.connect("localhost", srv.port)
    assert code == 220
    s.starttls(context=smtpsec_client_context)
    s.login(USER, PASSWORD)
    s.sendmail("ann@example.com", "bob@example.com", b"Subject: x\r\n\r\nhi\r\n")
    s.quit()
    assert srv.connections[0].sni == "localhost"
    assert len(srv.messages) == 1


def test_host_port_suffix_and_bad_port(smtpsec_server) -> None:
    srv = smtpsec_server(Security.PLAINTEXT)
    with smtplib.SMTP(f"127.0.0.1:{srv.port}") as s:
        assert s.noop()[0] == 250
    with pytest.raises(OSError, match="nonnumeric port"):
        smtplib.SMTP("127.0.0.1:smtp")


def test_reconnect_closes_the_previous_socket(smtpsec_server) -> None:
    srv = smtpsec_server(Security.PLAINTEXT)
    s = smtplib.SMTP("127.0.0.1", srv.port)
    first = s.sock
    assert first is not None
    s.connect("127.0.0.1", srv.port)
    assert first.fileno() == -1
    s.quit()
    assert len(srv.wait_for_connections(2)) == 2


def test_has_extn_and_features(smtpsec_server, smtpsec_client_context) -> None:
    srv = smtpsec_server(Security.STARTTLS, users={USER: PASSWORD})
    s = smtplib.SMTP("127.0.0.1", srv.port)
    s.ehlo()
    assert s.has_extn("starttls")
    assert s.does_esmtp
    s.starttls(context=smtpsec_client_context)
    # RFC 3207: what was learnt before TLS is forgotten; as in smtplib, the
    # caller asks again, and the fresh EHLO lists AUTH.
    assert not s.has_extn("starttls") and not s.does_esmtp
    assert s.ehlo()[0] == 250
    assert not s.has_extn("starttls")
    assert s.has_extn("auth")
    assert "PLAIN" in s.esmtp_features["auth"]
    s.quit()


def test_debuglevel_redacts_credentials(smtpsec_server, smtpsec_client_context, capsys) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS, users={USER: PASSWORD})
    s = smtplib.SMTP_SSL(context=smtpsec_client_context)
    s.set_debuglevel(1)
    s.connect("127.0.0.1", srv.port)
    s.login(USER, PASSWORD)
    s.set_debuglevel(2)  # timestamps, like smtplib
    s.noop()
    s.quit()
    err = capsys.readouterr().err
    assert "AUTH PLAIN <redacted>" in err
    assert "connect: to" in err
    assert PASSWORD not in err
    assert "Y2FuYXJ5" not in err  # base64 of "canary" in any alignment of PLAIN
    assert "retcode (235)" in err


def test_debuglevel_redacts_every_sasl_line(smtpsec_server, smtpsec_client_context, capsys) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS, users={USER: PASSWORD}, auth_mechanisms=("LOGIN",))
    with smtplib.SMTP_SSL("127.0.0.1", srv.port, context=smtpsec_client_context) as s:
        s.set_debuglevel(1)
        s.login(USER, PASSWORD)
    err = capsys.readouterr().err
    assert "send: 'AUTH LOGIN\\r\\n'" in err
    assert err.count("send: '<redacted>\\r\\n'") == 2  # user name, then password
    assert "Y2FuYXJ5LVBhNTV3b3Jk" not in err  # base64("canary-Pa55word")


def test_login_mechanisms_and_initial_response(smtpsec_server, smtpsec_client_context) -> None:
    for mechs, initial in ((("LOGIN",), True), (("PLAIN",), False), (("SCRAM-SHA-256",), True)):
        srv = smtpsec_server(Security.IMPLICIT_TLS, users={USER: PASSWORD}, auth_mechanisms=mechs)
        with smtplib.SMTP_SSL("127.0.0.1", srv.port, context=smtpsec_client_context) as s:
            code, _ = s.login(USER, PASSWORD, initial_response_ok=initial)
        assert code == 235
        assert srv.connections[0].auth == [smtpsec.testing.AuthAttempt(mechs[0], USER, True)]


def test_cram_md5_is_a_last_resort(smtpsec_server, smtpsec_client_context) -> None:
    srv = smtpsec_server(
        Security.IMPLICIT_TLS, users={USER: PASSWORD}, auth_mechanisms=("CRAM-MD5",)
    )
    with smtplib.SMTP_SSL("127.0.0.1", srv.port, context=smtpsec_client_context) as s:
        assert s.login(USER, PASSWORD)[0] == 235
    assert [a.mechanism for a in srv.connections[0].auth] == ["CRAM-MD5"]


def test_low_level_auth_with_stdlib_authobjects(smtpsec_server, smtpsec_client_context) -> None:
    cases = (("PLAIN", True), ("LOGIN", False), ("LOGIN", True), ("CRAM-MD5", True))
    for mechanism, initial in cases:
        srv = smtpsec_server(
            Security.IMPLICIT_TLS, users={USER: PASSWORD}, auth_mechanisms=(mechanism,)
        )
        with smtplib.SMTP_SSL("127.0.0.1", srv.port, context=smtpsec_client_context) as s:
            s.ehlo()
            s.user, s.password = USER, PASSWORD
            authobject = getattr(s, "auth_" + mechanism.lower().replace("-", "_"))
            code, _ = s.auth(mechanism, authobject, initial_response_ok=initial)
        assert code == 235, mechanism
        assert srv.connections[0].auth[0].success


def test_sendmail_returns_refused_recipients(smtpsec_server, smtpsec_client_context) -> None:
    no_user = (550, "5.1.1 no such user")
    for extensions in (None, ("SIZE 1000000", "8BITMIME")):  # pipelined and one by one
        options = {} if extensions is None else {"extensions": extensions}
        srv = smtpsec_server(
            Security.IMPLICIT_TLS, refuse_recipients={"x@example.com": no_user}, **options
        )
        with smtplib.SMTP_SSL("127.0.0.1", srv.port, context=smtpsec_client_context) as s:
            refused = s.sendmail(
                "ann@example.com",
                ["bob@example.com", "x@example.com"],
                b"Subject: x\r\n\r\nhi\r\n",
                mail_options=["BODY=8BITMIME"],
            )
        assert refused == {"x@example.com": (550, b"5.1.1 no such user")}
        assert srv.messages[0].recipients == ("bob@example.com",)
        assert srv.messages[0].mail_params["BODY"] == "8BITMIME"


def test_pipelining_sends_the_envelope_in_one_write(smtpsec_server, smtpsec_client_context) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS)
    with smtplib.SMTP_SSL("127.0.0.1", srv.port, context=smtpsec_client_context) as s:
        s.ehlo()
        s.sendmail("a@example.com", ["b@example.com", "c@example.com"], b"x\r\n")
    segments = [data for _, data in srv.connections[0].segments]
    # MAIL, both RCPTs and the body (BDAT with CHUNKING) leave in one write.
    assert any(
        seg.startswith(b"MAIL FROM:") and seg.count(b"RCPT TO:") == 2 and b"BDAT" in seg
        for seg in segments
    )


def test_smtputf8_option(smtpsec_server, smtpsec_client_context) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS)
    with smtplib.SMTP_SSL("127.0.0.1", srv.port, context=smtpsec_client_context) as s:
        s.sendmail("änn@example.com", ["bob@example.com"], b"x\r\n", mail_options=["SMTPUTF8"])
    assert srv.messages[0].sender == "änn@example.com"
    srv = smtpsec_server(Security.IMPLICIT_TLS, extensions=("PIPELINING",))
    with smtplib.SMTP_SSL("127.0.0.1", srv.port, context=smtpsec_client_context) as s:
        with pytest.raises(smtplib.SMTPNotSupportedError):
            s.sendmail("a@example.com", ["b@example.com"], b"x\r\n", mail_options=["SMTPUTF8"])
    assert "MAIL" not in srv.connections[0].commands


def test_low_level_mail_rcpt_data(smtpsec_server, smtpsec_client_context, capsys) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS)
    with smtplib.SMTP_SSL("127.0.0.1", srv.port, context=smtpsec_client_context) as s:
        s.ehlo()
        assert s.mail("a@example.com")[0] == 250
        assert s.rcpt("b@example.com")[0] == 250
        s.set_debuglevel(1)
        code, _ = s.data(b"line one\nline two")  # bare LF, no final line end
        assert code == 250
        assert s.rset()[0] == 250
        assert s.verify("b@example.com")[0] in (250, 252, 502)
        assert s.help()
        assert s.docmd("NOOP")[0] == 250
    assert srv.messages[0].data == b"line one\r\nline two\r\n"
    assert "data: (354" in capsys.readouterr().err


def test_data_refusals(smtpsec_server, smtpsec_client_context) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS, replies={"DATA": (451, "4.3.0 try later")})
    with smtplib.SMTP_SSL("127.0.0.1", srv.port, context=smtpsec_client_context) as s:
        s.ehlo()
        s.mail("a@example.com")
        s.rcpt("b@example.com")
        with pytest.raises(smtplib.SMTPDataError) as info:
            s.data("x")
    assert isinstance(info.value, smtpsec.ReplyError)
    assert (info.value.smtp_code, info.value.enhanced_status) == (451, "4.3.0")
    assert info.value.args == (451, b"4.3.0 try later")
    assert "451" in str(info.value)


def test_helo_fallback_only_in_plaintext(smtpsec_server) -> None:
    srv = smtpsec_server(Security.PLAINTEXT, replies={"EHLO": (502, "5.5.2 EHLO not implemented")})
    with smtplib.SMTP("127.0.0.1", srv.port) as s:
        assert s.sendmail("a@example.com", ["b@example.com"], b"x") == {}
        assert not s.does_esmtp
    assert srv.connections[0].commands[:2] == ["EHLO", "HELO"]
    srv = smtpsec_server(
        Security.PLAINTEXT, replies={"EHLO": (502, "5.5.2 no"), "HELO": (502, "5.5.2 no either")}
    )
    with smtplib.SMTP("127.0.0.1", srv.port) as s, pytest.raises(smtplib.SMTPHeloError):
        s.sendmail("a@example.com", ["b@example.com"], b"x")


def test_greeting_other_than_220(smtpsec_server) -> None:
    srv = smtpsec_server(Security.PLAINTEXT, greeting=(554, "5.3.2 no service here"))
    with pytest.raises(smtplib.SMTPConnectError) as info:
        smtplib.SMTP("127.0.0.1", srv.port)
    assert isinstance(info.value, smtpsec.ReplyError)
    assert info.value.smtp_code == 554
    assert not info.value.server_text_authenticated
    # connect() itself returns the code, like smtplib.
    s = smtplib.SMTP()
    assert s.connect("127.0.0.1", srv.port)[0] == 554
    s.close()


def test_allow_cleartext_auth_on_loopback(smtpsec_server) -> None:
    srv = smtpsec_server(Security.PLAINTEXT, users={USER: PASSWORD})
    with smtplib.SMTP("127.0.0.1", srv.port, allow_cleartext_auth=True) as s:
        with pytest.warns(smtpsec.InsecureConfigurationWarning, match="allow_cleartext_auth"):
            assert s.login(USER, PASSWORD)[0] == 235
        # R-4954-4-5: a second AUTH on the same session is refused locally.
        with pytest.raises(smtpsec.LocalProtocolError, match="already authenticated"):
            s.login(USER, PASSWORD)
    assert len(srv.connections[0].auth) == 1


def test_cleartext_mail_to_a_network_host_warns_once(
    smtpsec_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    from smtpsec.smtplib import _session as compat

    srv = smtpsec_server(Security.PLAINTEXT)
    # Treat 127.0.0.1 as if it were a network host (tests may only use loopback).
    monkeypatch.setattr(compat, "is_loopback", lambda host: False)
    with pytest.raises(smtpsec.PolicyError, match="loopback"):
        smtplib.SMTP("127.0.0.1", srv.port, allow_cleartext_auth=True)
    with smtplib.SMTP("127.0.0.1", srv.port) as s:
        with pytest.warns(smtpsec.InsecureConfigurationWarning, match="without TLS"):
            s.sendmail("a@example.com", ["b@example.com"], b"x")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            s.sendmail("a@example.com", ["b@example.com"], b"y")
            s.mail("a@example.com")
    assert len(srv.messages) == 2


def test_client_certificate_via_deprecated_keyfile(
    smtpsec_ca, smtpsec_server, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R-PY-15: keyfile/certfile still work, loaded into the verifying context."""
    import certifi

    monkeypatch.setattr(certifi, "where", lambda: str(smtpsec_ca.write_cafile(tmp_path / "ca")))
    certfile, keyfile = smtpsec_ca.issue_client("ann@example.com").write(tmp_path, stem="client")
    srv = smtpsec_server(Security.IMPLICIT_TLS, request_client_cert=True)
    with pytest.warns(DeprecationWarning, match="keyfile and certfile"):
        s = smtplib.SMTP_SSL("127.0.0.1", srv.port, keyfile=str(keyfile), certfile=str(certfile))
    assert s.noop()[0] == 250
    s.quit()
    assert srv.connections[0].client_cert_der is not None
    with pytest.raises(ValueError, match="mutually exclusive"):
        smtplib.SMTP_SSL(keyfile=str(keyfile), context=ssl.create_default_context())
    with (
        pytest.warns(DeprecationWarning, match="keyfile and certfile"),
        pytest.raises(ValueError, match="needs certfile"),
    ):
        smtplib.SMTP_SSL(keyfile=str(keyfile))


def test_split_status() -> None:
    assert split_status(550, b"5.1.1 no such user") == ("5.1.1", "no such user")
    assert split_status(550, b"4.1.1 wrong class") == (None, "4.1.1 wrong class")
    assert split_status(250, b"ok") == (None, "ok")
