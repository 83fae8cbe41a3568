"""Attacks on the smtplib drop-in: each one fails closed, with a typed error.

Checklist §6 (R-PY-1..R-PY-17) and the EAST attack classes, run through
``from smtpsec import smtplib`` against hostile loopback servers
(R-LIB-GUARD-4). Where the stdlib behaves differently, a test shows that too.
"""

from __future__ import annotations

import datetime
import smtplib as std_smtplib
import ssl
import warnings
from collections.abc import Callable
from email.message import Message

import pytest

import smtpsec
from smtpsec import Security, smtplib
from smtpsec.testing import CA, Drip, LeafCert

USER, PASSWORD = "ann", "canary-Pa55word"
NOW = datetime.datetime.now(datetime.timezone.utc)


@pytest.fixture
def default_roots_are(monkeypatch: pytest.MonkeyPatch, tmp_path) -> Callable[[CA], None]:
    """Make the test CA the *default* trust store (what certifi is in production).

    Then ``context=None`` is exercised for real: a good certificate passes, and
    the bad ones fail for their own reason rather than for an unknown issuer.
    """
    import certifi

    def install(ca: CA) -> None:
        path = ca.write_cafile(tmp_path / "roots.pem")
        monkeypatch.setattr(certifi, "where", lambda: str(path))

    return install


# --------------------------------------------------------------------------- certificates


def test_default_context_verifies_and_accepts_a_good_certificate(
    smtpsec_ca, smtpsec_server, default_roots_are
) -> None:
    default_roots_are(smtpsec_ca)
    srv = smtpsec_server(Security.IMPLICIT_TLS, users={USER: PASSWORD})
    with smtplib.SMTP_SSL("localhost", srv.port) as s:
        s.login(USER, PASSWORD)
    assert srv.connections[0].auth[0].success


@pytest.mark.parametrize(
    ("leaf_kind", "reason"),
    [("self-signed", "self-signed"), ("expired", "expired"), ("wrong-name", "mismatch")],
)
@pytest.mark.parametrize("mode", [Security.IMPLICIT_TLS, Security.STARTTLS])
def test_bad_certificate_without_context_is_refused(
    smtpsec_ca, smtpsec_server, default_roots_are, leaf_kind: str, reason: str, mode: str
) -> None:
    """R-PY-1, R-EAST-T-1: context=None verifies; nothing follows a failed handshake."""
    default_roots_are(smtpsec_ca)
    leaf: LeafCert
    if leaf_kind == "self-signed":
        leaf = CA.self_signed("localhost")
    elif leaf_kind == "expired":
        leaf = smtpsec_ca.issue(
            "localhost",
            not_before=NOW - datetime.timedelta(days=30),
            not_after=NOW - datetime.timedelta(days=1),
        )
    else:
        leaf = smtpsec_ca.issue("mail.other.test")
    srv = smtpsec_server(mode, cert=leaf, users={USER: PASSWORD})
    if mode is Security.IMPLICIT_TLS:
        with pytest.raises(smtpsec.CertificateError) as info:
            smtplib.SMTP_SSL("localhost", srv.port)
    else:
        s = smtplib.SMTP("localhost", srv.port)
        with pytest.raises(smtpsec.CertificateError) as info:
            s.starttls()
        assert s.sock is None  # closed: nothing can be sent after the failure
    error = info.value
    assert isinstance(error, ssl.SSLCertVerificationError)
    assert isinstance(error, smtplib.SMTPException)
    assert isinstance(error.__cause__, ssl.SSLCertVerificationError)
    assert error.verify_code == error.__cause__.verify_code
    assert reason in str(error).lower()
    assert srv.connections[0].commands_post_tls == []


def test_stdlib_without_context_accepts_a_self_signed_server(smtpsec_server) -> None:
    """The pitfall the adapter removes (R-PY-1): the stdlib does not verify."""
    srv = smtpsec_server(Security.IMPLICIT_TLS, cert=CA.self_signed("localhost"))
    with std_smtplib.SMTP_SSL("127.0.0.1", srv.port, local_hostname="client.test") as s:
        assert s.noop()[0] == 250
    with pytest.raises(smtpsec.CertificateError):
        smtplib.SMTP_SSL("127.0.0.1", srv.port)


def test_implicit_tls_to_a_plaintext_port(smtpsec_server) -> None:
    srv = smtpsec_server(Security.PLAINTEXT)
    with pytest.raises(smtpsec.TLSUnavailableError, match="plaintext"):
        smtplib.SMTP_SSL("127.0.0.1", srv.port)


def test_tls_below_1_2_is_refused_even_with_a_callers_context(smtpsec_ca, smtpsec_server) -> None:
    leaf = smtpsec_ca.issue("localhost", ips=("127.0.0.1",))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0/1.1 constants
        server_ctx = leaf.server_context(
            min_version=ssl.TLSVersion.TLSv1, max_version=ssl.TLSVersion.TLSv1_1
        )
        server_ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        legacy = smtpsec_ca.client_context()
        legacy.minimum_version = ssl.TLSVersion.TLSv1
        legacy.set_ciphers("DEFAULT:@SECLEVEL=0")
    srv = smtpsec_server(Security.IMPLICIT_TLS, cert=server_ctx)
    with pytest.raises(smtpsec.TLSVersionError, match=r"TLS 1\.2 floor"):
        smtplib.SMTP_SSL("127.0.0.1", srv.port, context=legacy)
    with pytest.raises(smtpsec.TLSVersionError):
        smtplib.SMTP_SSL("127.0.0.1", srv.port, context=smtpsec_ca.client_context())


def test_handshake_timeout(smtpsec_server) -> None:
    srv = smtpsec_server(Security.PLAINTEXT, greeting=None)
    with pytest.raises(smtpsec.TimeoutError) as info:
        smtplib.SMTP_SSL("127.0.0.1", srv.port, timeout=0.3)
    assert isinstance(info.value, smtplib.SMTPServerDisconnected)


# --------------------------------------------------------------------------- STARTTLS


def test_starttls_stripped(smtpsec_server, smtpsec_client_context) -> None:
    """R-PY-2/R-PY-6: a stripped STARTTLS raises, old except clauses still catch it."""
    srv = smtpsec_server(Security.STARTTLS, strip_starttls=True, users={USER: PASSWORD})
    s = smtplib.SMTP("127.0.0.1", srv.port)
    with pytest.raises(smtplib.SMTPNotSupportedError) as info:
        s.starttls(context=smtpsec_client_context)
    assert isinstance(info.value, smtpsec.DowngradeError)
    assert isinstance(info.value, smtpsec.TLSUnavailableError)
    assert s.sock is None
    with pytest.raises(smtplib.SMTPServerDisconnected):
        s.login(USER, PASSWORD)
    assert srv.connections[0].commands == ["EHLO"]


def test_opportunistic_idiom_never_sends_credentials(smtpsec_server) -> None:
    """R-PY-6: 'if s.has_extn("starttls"): s.starttls()' on a stripped server."""
    srv = smtpsec_server(Security.STARTTLS, strip_starttls=True, users={USER: PASSWORD})
    s = smtplib.SMTP("127.0.0.1", srv.port)
    s.ehlo()
    if s.has_extn("starttls"):
        s.starttls()
    with pytest.raises(smtpsec.InsecureAuthError, match="cleartext"):
        s.login(USER, PASSWORD)
    s.quit()
    capture = srv.connections[0]
    assert "AUTH" not in capture.commands
    assert capture.secrets_leaked(PASSWORD) == []


def test_starttls_refused_with_454(smtpsec_server, smtpsec_client_context) -> None:
    srv = smtpsec_server(
        Security.STARTTLS, starttls_reply=(454, "4.7.0 Visit http://evil.test to fix your account")
    )
    s = smtplib.SMTP("127.0.0.1", srv.port)
    with pytest.raises(smtplib.SMTPResponseException) as info:
        s.starttls(context=smtpsec_client_context)
    error = info.value
    assert isinstance(error, smtpsec.DowngradeError)
    assert (error.smtp_code, error.args[0]) == (454, 454)
    assert b"evil.test" in error.smtp_error
    assert "unverified server text" in str(error)
    assert s.sock is None


def test_response_injection_after_220(smtpsec_server, smtpsec_client_context) -> None:
    """R-EAST-BR-1, R-PY-17: bytes after the 220 end the connection; no AUTH."""
    srv = smtpsec_server(
        Security.STARTTLS,
        users={USER: PASSWORD},
        starttls_inject=b"250-evil.test\r\n250 AUTH PLAIN\r\n",
    )
    s = smtplib.SMTP("127.0.0.1", srv.port)
    with pytest.raises(smtpsec.ResponseInjectionError):
        s.starttls(context=smtpsec_client_context)
    assert s.sock is None
    with pytest.raises(smtplib.SMTPServerDisconnected):
        s.login(USER, PASSWORD)
    capture = srv.connections[0]
    assert "AUTH" not in capture.commands
    assert capture.secrets_leaked(PASSWORD) == []


def test_plaintext_pending_sees_kernel_buffered_bytes() -> None:
    """The STARTTLS switch's injection check also sees bytes still in the kernel."""
    import socket

    from smtpsec.transports import SocketTransport

    left, right = socket.socketpair()
    with left, right:
        left.settimeout(5.0)
        transport = SocketTransport(left)
        assert transport.pending_plaintext() == b""
        right.sendall(b"250 injected\r\n")
        right.shutdown(socket.SHUT_WR)  # the bytes are in left's kernel buffer now
        assert left.recv(0) == b""
        assert transport.pending_plaintext() == b"250 injected\r\n"
        assert left.gettimeout() == 5.0
        assert left.recv(100) == b"250 injected\r\n"  # peeked, not consumed


def test_starttls_without_handshake_is_not_continued(
    smtpsec_server, smtpsec_client_context
) -> None:
    srv = smtpsec_server(Security.STARTTLS, starttls_no_handshake=True)
    s = smtplib.SMTP("127.0.0.1", srv.port, timeout=5)
    with pytest.raises((smtpsec.ResponseInjectionError, smtpsec.TLSUnavailableError)):
        s.starttls(context=smtpsec_client_context)
    assert s.sock is None


def test_ehlo_refused_before_starttls_gives_no_helo(smtpsec_server, smtpsec_client_context) -> None:
    """R-PY-8: EHLO -> 500 before STARTTLS raises; HELO (which cannot offer STARTTLS) is
    never sent."""
    srv = smtpsec_server(
        Security.STARTTLS, users={USER: PASSWORD}, pre_tls_replies={"EHLO": (500, "5.5.1 no")}
    )
    s = smtplib.SMTP("127.0.0.1", srv.port)
    with pytest.raises(smtplib.SMTPHeloError) as info:
        s.starttls(context=smtpsec_client_context)
    assert isinstance(info.value, smtpsec.ReplyError)
    assert info.value.server_text_authenticated is False
    assert "HELO" not in srv.connections[0].commands
    assert s.sock is None


def test_ehlo_refused_after_starttls_gives_no_helo(smtpsec_server, smtpsec_client_context) -> None:
    """R-PY-8: inside TLS, EHLO -> 500 raises at the first command that needs it; no HELO.

    starttls() sends no EHLO itself (as smtplib): the caller's next ehlo(), or
    the one login()/sendmail() send, is the only one.
    """
    srv = smtpsec_server(
        Security.STARTTLS, users={USER: PASSWORD}, post_tls_replies={"EHLO": (500, "5.5.1 no")}
    )
    s = smtplib.SMTP("127.0.0.1", srv.port)
    s.starttls(context=smtpsec_client_context)
    with pytest.raises(smtplib.SMTPHeloError) as info:
        s.login(USER, PASSWORD)
    assert isinstance(info.value, smtpsec.ReplyError)
    assert info.value.server_text_authenticated is True
    assert "HELO" not in srv.connections[0].commands
    assert "AUTH" not in srv.connections[0].commands
    assert s.sock is None


def test_ehlo_refused_inside_implicit_tls(smtpsec_server, smtpsec_client_context) -> None:
    srv = smtpsec_server(
        Security.IMPLICIT_TLS, users={USER: PASSWORD}, replies={"EHLO": (500, "no")}
    )
    s = smtplib.SMTP_SSL("127.0.0.1", srv.port, context=smtpsec_client_context)
    with pytest.raises(smtplib.SMTPHeloError):
        s.login(USER, PASSWORD)
    assert srv.connections[0].commands == ["EHLO"]


def test_silent_post_tls_ehlo_times_out(smtpsec_server, smtpsec_client_context) -> None:
    """R-EAST-BR-2: a server that never answers the post-TLS EHLO cannot make progress."""
    srv = smtpsec_server(Security.STARTTLS, users={USER: PASSWORD}, post_tls_ehlo_silent=True)
    s = smtplib.SMTP("127.0.0.1", srv.port, timeout=0.3)
    s.starttls(context=smtpsec_client_context)
    with pytest.raises(smtpsec.TimeoutError):
        s.login(USER, PASSWORD)
    assert "AUTH" not in srv.connections[0].commands


def test_starttls_inside_tls_is_refused(smtpsec_server, smtpsec_client_context) -> None:
    srv = smtpsec_server(Security.STARTTLS)
    s = smtplib.SMTP("127.0.0.1", srv.port)
    s.starttls(context=smtpsec_client_context)
    with pytest.raises(smtpsec.LocalProtocolError, match="already uses TLS"):
        s.starttls(context=smtpsec_client_context)
    s.quit()
    srv = smtpsec_server(Security.IMPLICIT_TLS)
    with smtplib.SMTP_SSL("127.0.0.1", srv.port, context=smtpsec_client_context) as ssl_s:
        with pytest.raises(smtpsec.LocalProtocolError, match="first byte"):
            ssl_s.starttls()
    assert srv.connections[0].commands == ["QUIT"]


# --------------------------------------------------------------------------- AUTH


def test_login_without_tls_sends_nothing(smtpsec_server) -> None:
    """R-PY-3: credentials never leave in cleartext."""
    srv = smtpsec_server(Security.PLAINTEXT, users={USER: PASSWORD})
    s = smtplib.SMTP("127.0.0.1", srv.port)
    with pytest.raises(smtpsec.InsecureAuthError) as info:
        s.login(USER, PASSWORD)
    assert isinstance(info.value, smtplib.SMTPException)
    with pytest.raises(smtpsec.InsecureAuthError):
        s.auth("PLAIN", s.auth_plain)
    s.quit()
    capture = srv.connections[0]
    assert "AUTH" not in capture.commands
    assert capture.secrets_leaked(PASSWORD) == []


def test_login_over_unverified_tls_is_refused(smtpsec_server) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS, users={USER: PASSWORD})
    unverified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP_SSL("127.0.0.1", srv.port, context=unverified) as s:
        with pytest.raises(smtpsec.InsecureAuthError, match="certificate was not verified"):
            s.login(USER, PASSWORD)
    assert "AUTH" not in srv.connections[0].commands


def test_login_before_connect() -> None:
    with pytest.raises(smtplib.SMTPServerDisconnected):
        smtplib.SMTP().login(USER, PASSWORD)


def test_503_to_auth_is_not_success(smtpsec_server, smtpsec_client_context) -> None:
    """R-PY-4, R-4954-4-6: the stdlib returns (503, ...) here; the adapter raises."""
    srv = smtpsec_server(
        Security.IMPLICIT_TLS, replies={"AUTH": (503, "5.5.1 already authenticated")}
    )
    s = smtplib.SMTP_SSL("127.0.0.1", srv.port, context=smtpsec_client_context)
    with pytest.raises(smtplib.SMTPAuthenticationError) as info:
        s.login(USER, PASSWORD)
    assert isinstance(info.value, smtpsec.ProtocolError)
    assert isinstance(info.value, smtpsec.AuthenticationError)
    assert info.value.smtp_code == 503
    assert s.sock is None
    assert srv.connections[0].commands == ["EHLO", "AUTH", "QUIT"]


def test_cram_md5_failure_does_not_fall_back(smtpsec_server, smtpsec_client_context) -> None:
    """R-PY-5: one mechanism, one attempt; the stdlib would go on to PLAIN and LOGIN."""
    srv = smtpsec_server(
        Security.IMPLICIT_TLS, users={USER: "right"}, auth_mechanisms=("CRAM-MD5",)
    )
    s = smtplib.SMTP_SSL("127.0.0.1", srv.port, context=smtpsec_client_context)
    with pytest.raises(smtplib.SMTPAuthenticationError) as info:
        s.login(USER, PASSWORD)
    assert isinstance(info.value, smtpsec.AuthenticationError)
    assert info.value.code == 535
    assert "password" in info.value.hint
    assert str(info.value).startswith("authentication with CRAM-MD5 failed: 535")
    s.quit()
    srv2 = smtpsec_server(
        Security.IMPLICIT_TLS, users={USER: "right"}, auth_mechanisms=("CRAM-MD5", "PLAIN", "LOGIN")
    )
    s = smtplib.SMTP_SSL("127.0.0.1", srv2.port, context=smtpsec_client_context)
    with pytest.raises(smtpsec.AuthenticationError):
        s.login(USER, PASSWORD)
    s.quit()
    assert [a.mechanism for a in srv.connections[0].auth] == ["CRAM-MD5"]
    assert [a.mechanism for a in srv2.connections[0].auth] == ["PLAIN"]
    assert srv2.connections[0].commands.count("AUTH") == 1


def test_no_auth_offered(smtpsec_server, smtpsec_client_context) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS, auth_mechanisms=())
    with smtplib.SMTP_SSL("127.0.0.1", srv.port, context=smtpsec_client_context) as s:
        with pytest.raises(smtplib.SMTPNotSupportedError) as info:
            s.login(USER, PASSWORD)
    assert isinstance(info.value, smtpsec.CapabilityError)


def _endless_challenges(session, line: str) -> bytes | None:
    verb = line.split(" ", 1)[0].upper()
    if verb in {"EHLO", "QUIT"}:
        return None
    return b"501 5.7.0 cancelled\r\n" if line == "*" else b"334 \r\n"


def _bad_challenge(session, line: str) -> bytes | None:
    if line.upper().startswith("AUTH"):
        return b"334 not*base64!\r\n"
    return b"501 5.7.0 cancelled\r\n" if line == "*" else None


def test_bad_challenge_is_cancelled(smtpsec_server, smtpsec_client_context) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS, users={USER: PASSWORD}, on_command=_bad_challenge)
    with smtplib.SMTP_SSL("127.0.0.1", srv.port, context=smtpsec_client_context) as s:
        with pytest.raises(smtpsec.RemoteProtocolError, match="base64"):
            s.login(USER, PASSWORD, initial_response_ok=False)
    assert srv.connections[0].lines_post_tls[-2:] == ["*", "QUIT"]


def test_endless_challenges_are_cancelled(smtpsec_server, smtpsec_client_context) -> None:
    """smtplib's own bound on challenge rounds is kept, and the exchange is cancelled."""
    srv = smtpsec_server(Security.IMPLICIT_TLS, on_command=_endless_challenges)

    def authobject(challenge: bytes | None = None) -> str | None:
        return None if challenge is None else "answer"

    with smtplib.SMTP_SSL("127.0.0.1", srv.port, context=smtpsec_client_context) as s:
        with pytest.raises(smtpsec.RemoteProtocolError, match="more than 5"):
            s.auth("X-TEST", authobject)
    lines = srv.connections[0].lines_post_tls
    # Inside TLS the first command that needs EHLO sends it first (R-PY-7).
    assert lines[:2] == ["EHLO [127.0.0.1]", "AUTH X-TEST"]
    assert lines[-2:] == ["*", "QUIT"]


# --------------------------------------------------------------------------- injection


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.sendmail("a@example.com\r\nRCPT TO:<evil@x.test>", ["b@example.com"], b"x"),
        lambda s: s.sendmail("a@example.com", ["b@example.com\nDATA"], b"x"),
        lambda s: s.sendmail("a@example.com", ["b@example.com\x00"], b"x"),
        lambda s: s.sendmail("a@example.com", ["b@example.com"], b"x", ["SIZE=1\r\nRSET"]),
        lambda s: s.sendmail("a@example.com", ["b@example.com"], b"x", rcpt_options=["A B"]),
        lambda s: s.sendmail("a@example.com", ["b@example.com"], b"x", [""]),
        lambda s: s.sendmail(b"a@example.com", ["b@example.com"], b"x"),
        lambda s: s.mail("a@example.com\r\nRSET"),
        lambda s: s.rcpt("b@example.com", ["NOTIFY=NEVER\r\nRSET"]),
        lambda s: s.putcmd("NOOP\r\nRSET"),
        lambda s: s.docmd("VRFY", "x\x00y"),
    ],
)
def test_crlf_injection_is_refused_before_sending(
    smtpsec_server, smtpsec_client_context, call
) -> None:
    """R-PY-9: CR/LF/NUL in addresses, options or commands -> InvalidArgumentError."""
    srv = smtpsec_server(Security.IMPLICIT_TLS)
    with smtplib.SMTP_SSL("127.0.0.1", srv.port, context=smtpsec_client_context) as s:
        s.ehlo()
        with pytest.raises(smtpsec.InvalidArgumentError) as info:
            call(s)
        assert isinstance(info.value, ValueError)
        assert s.noop()[0] == 250  # nothing half-sent: the session is still in sync
    assert srv.connections[0].commands == ["EHLO", "NOOP", "QUIT"]


def test_header_injection_is_refused(smtpsec_server, smtpsec_client_context) -> None:
    """R-PY-18: a header value with CRLF would smuggle a Bcc."""
    msg = Message()
    msg["From"] = "a@example.com"
    msg["To"] = "b@example.com"
    msg["Subject"] = "hi\r\nBcc: evil@x.test"
    srv = smtpsec_server(Security.IMPLICIT_TLS)
    with smtplib.SMTP_SSL("127.0.0.1", srv.port, context=smtpsec_client_context) as s:
        with pytest.raises(smtpsec.InvalidArgumentError, match="header injection"):
            s.send_message(msg)
    assert srv.messages == []


@pytest.mark.parametrize(
    "body",
    [
        b"Subject: x\r\n\r\nhello\r.\rMAIL FROM:<evil@x.test>\r\n",
        b"Subject: x\n\nhello\n.\nMAIL FROM:<evil@x.test>\n",
        b"Subject: x\r\n\r\nhello\n.\r\nMAIL FROM:<evil@x.test>",
    ],
)
def test_smuggling_vectors_are_normalised(smtpsec_server, smtpsec_client_context, body) -> None:
    """R-PY-10: bytes are normalised to CRLF; the server sees exactly one message."""
    srv = smtpsec_server(Security.IMPLICIT_TLS)
    with smtplib.SMTP_SSL("127.0.0.1", srv.port, context=smtpsec_client_context) as s:
        s.sendmail("a@example.com", ["b@example.com"], body)
    (message,) = srv.messages
    assert message.data == b"Subject: x\r\n\r\nhello\r\n.\r\nMAIL FROM:<evil@x.test>\r\n"
    assert srv.connections[0].commands.count("MAIL") == 1


def test_message_type_is_checked(smtpsec_server, smtpsec_client_context) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS)
    with smtplib.SMTP_SSL("127.0.0.1", srv.port, context=smtpsec_client_context) as s:
        assert s.sendmail("a@example.com", ["b@example.com"], bytearray(b"x\r\n")) == {}
        with pytest.raises(TypeError, match="str or bytes"):
            s.sendmail("a@example.com", ["b@example.com"], 42)  # type: ignore[arg-type]
        with pytest.raises(UnicodeEncodeError):
            # as smtplib: str messages must be ASCII
            s.sendmail("a@example.com", ["b@example.com"], "non-ASCII é")
    assert [m.data for m in srv.messages] == [b"x\r\n"]


# --------------------------------------------------------------------------- replies


def test_endless_multiline_reply_is_bounded(smtpsec_server) -> None:
    """R-PY-11: smtplib would read forever; the adapter stops at the line limit."""
    srv = smtpsec_server(Security.PLAINTEXT, endless_multiline=True)
    with pytest.raises(smtpsec.ProtocolError, match="more than 1000 lines") as info:
        smtplib.SMTP("127.0.0.1", srv.port)
    # smtplib raises SMTPConnectError for a greeting it cannot use.
    assert isinstance(info.value, smtplib.SMTPConnectError)


def test_overlong_line_is_bounded(smtpsec_server) -> None:
    srv = smtpsec_server(Security.PLAINTEXT, long_line=100_000)
    with pytest.raises(smtpsec.RemoteProtocolError, match="longer than"):
        smtplib.SMTP("127.0.0.1", srv.port)


def test_dripping_server_times_out(smtpsec_server) -> None:
    """R-PY-11: the timeout bounds the whole reply, not each byte."""
    srv = smtpsec_server(Security.PLAINTEXT, greeting=Drip(b"220 " + b"x" * 500 + b"\r\n", 0.02))
    with pytest.raises(smtpsec.TimeoutError) as info:
        smtplib.SMTP("127.0.0.1", srv.port, timeout=0.3)
    assert isinstance(info.value, smtplib.SMTPServerDisconnected)
    assert "did not finish it within 0.3s" in str(info.value)


def test_server_closing_the_connection(smtpsec_server) -> None:
    srv = smtpsec_server(Security.PLAINTEXT, close_after="NOOP")
    s = smtplib.SMTP("127.0.0.1", srv.port)
    with pytest.raises(smtplib.SMTPServerDisconnected, match="unexpectedly closed"):
        s.noop()
    assert s.sock is None
    with pytest.raises(smtplib.SMTPServerDisconnected, match="connect"):
        s.getreply()


def test_socket_errors_become_disconnects(smtpsec_server) -> None:
    srv = smtpsec_server(Security.PLAINTEXT)
    s = smtplib.SMTP("127.0.0.1", srv.port)
    assert s.sock is not None
    s.sock.close()  # the socket dies underneath the session
    with pytest.raises(smtplib.SMTPServerDisconnected, match="unexpectedly closed") as info:
        s.noop()  # seen before anything is written: the check before each flight
    assert isinstance(info.value, smtpsec.ConnectError)
    assert s.sock is None
    s.connect("127.0.0.1", srv.port)
    s.putcmd("NOOP")
    s.sock.close()
    with pytest.raises(smtplib.SMTPServerDisconnected, match="unexpectedly closed"):
        s.getreply()


def test_set_raw_header_injection_is_refused_r_py_18(smtpsec_server) -> None:
    """A break stored with set_raw (hidden by items()) is refused; nothing is sent."""
    from email.message import EmailMessage

    srv = smtpsec_server(Security.PLAINTEXT)
    msg = EmailMessage()
    msg["From"] = "a@example.test"
    msg["To"] = "b@example.test"
    msg.set_raw("Subject", "hi\r\nBcc: secret-bcc@example.test")
    msg.set_content("body\n")
    s = smtplib.SMTP("127.0.0.1", srv.port)
    with pytest.raises(smtpsec.InvalidArgumentError, match="header injection"):
        s.send_message(msg)
    s.quit()
    capture = srv.connections[0]
    assert "MAIL" not in capture.commands
    assert srv.messages == []
