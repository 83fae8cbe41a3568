"""Prove the Postfix + Dovecot interop harness is real, using only the stdlib client.

These tests talk to the server ``postfix.sh start`` runs, with :mod:`smtplib` and
an :mod:`ssl` context that verifies against the harness CA. They pin down what
the smtpsec interop tests will rely on: both submission modes deliver, AUTH is
hidden before TLS, the post-TLS extensions are there, and bad credentials and
oversize mail are refused with the codes RFC 4954 and RFC 1870 name.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import smtplib
import socket
import ssl
import uuid
from collections.abc import Iterator
from email.utils import formatdate

import pytest
from interop_harness import PostfixServer

from smtpsec import Security

TIMEOUT = 10.0
EHLO_NAME = "client.smtpsec.test"
DISCARD_RCPT = "nobody@discard.test"


def _marker() -> str:
    return f"smtpsec-{uuid.uuid4().hex}"


def _message(marker: str, *, sender: str, rcpt: str) -> bytes:
    """An RFC 5322 message complete enough that Postfix adds no headers of its own."""
    return (
        f"From: <{sender}>\r\n"
        f"To: <{rcpt}>\r\n"
        f"Subject: interop {marker}\r\n"
        f"Date: {formatdate(localtime=False)}\r\n"
        f"Message-ID: <{marker}@client.smtpsec.test>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n"
        f"body {marker}\r\n"
        ".leading dot survives dot-stuffing\r\n"
    ).encode("ascii")


def _stored_form(message: bytes) -> bytes:
    # Maildir files use the local newline convention.
    return message.replace(b"\r\n", b"\n")


@contextlib.contextmanager
def _implicit(postfix: PostfixServer) -> Iterator[smtplib.SMTP_SSL]:
    with smtplib.SMTP_SSL(
        postfix.host, postfix.implicit_port, context=postfix.ssl_context(), timeout=TIMEOUT
    ) as smtp:
        smtp.ehlo(EHLO_NAME)
        yield smtp


@contextlib.contextmanager
def _starttls(postfix: PostfixServer) -> Iterator[smtplib.SMTP]:
    with smtplib.SMTP(postfix.host, postfix.starttls_port, timeout=TIMEOUT) as smtp:
        smtp.ehlo(EHLO_NAME)
        smtp.starttls(context=postfix.ssl_context())
        smtp.ehlo(EHLO_NAME)
        yield smtp


@contextlib.contextmanager
def _session(postfix: PostfixServer, mode: str) -> Iterator[smtplib.SMTP]:
    opener = _implicit if mode is Security.IMPLICIT_TLS else _starttls
    with opener(postfix) as smtp:
        yield smtp


def _auth_plain(smtp: smtplib.SMTP, user: str, password: str) -> None:
    smtp.user, smtp.password = user, password
    smtp.auth("PLAIN", smtp.auth_plain)


def _handshake(postfix: PostfixServer, context: ssl.SSLContext, server_hostname: str) -> str:
    with (
        socket.create_connection((postfix.host, postfix.implicit_port), timeout=TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname=server_hostname) as tls,
    ):
        return str(tls.version())


# --- TLS identity ----------------------------------------------------------------


@pytest.mark.parametrize("server_hostname", ["127.0.0.1", "localhost"])
def test_certificate_verifies_for_ip_and_dns_name_r_8314_5_3_1(
    postfix: PostfixServer, server_hostname: str
) -> None:
    """The harness certificate carries IP and DNS SANs and TLS is 1.2+ (R-8314-5-5)."""
    assert _handshake(postfix, postfix.ssl_context(), server_hostname) in {"TLSv1.2", "TLSv1.3"}


def test_certificate_is_not_trusted_without_harness_ca_r_8314_5_3(
    postfix: PostfixServer,
) -> None:
    """System roots do not trust the throwaway CA, so verification is really on."""
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(postfix, ssl.create_default_context(), "localhost")


def test_certificate_does_not_match_other_names_r_7817_3_8(postfix: PostfixServer) -> None:
    """A name outside the SANs fails the hostname check."""
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        _handshake(postfix, postfix.ssl_context(), "mail.invalid")


# --- delivery ---------------------------------------------------------------------


def test_implicit_tls_auth_plain_delivers_byte_for_byte_r_8314_3_3_3(
    postfix: PostfixServer,
) -> None:
    """Port 10465: TLS first, EHLO, AUTH PLAIN, then the message lands unchanged."""
    marker = _marker()
    message = _message(marker, sender=postfix.user, rcpt=postfix.user)
    with _implicit(postfix) as smtp:
        _auth_plain(smtp, postfix.user, postfix.password)
        assert smtp.sendmail(postfix.user, [postfix.user], message) == {}
    delivered = postfix.wait_for_delivery(marker)
    assert delivered.endswith(_stored_form(message))
    assert b"(Authenticated sender: " + postfix.user.encode() + b")" in delivered
    assert b"(using TLSv1." in delivered


def test_starttls_auth_login_delivers_r_8314_3_3_2(postfix: PostfixServer) -> None:
    """Port 10587: EHLO, STARTTLS, EHLO again, AUTH LOGIN, then the message lands."""
    marker = _marker()
    message = _message(marker, sender=postfix.user, rcpt=postfix.user)
    with _starttls(postfix) as smtp:
        smtp.user, smtp.password = postfix.user, postfix.password
        code, _ = smtp.auth("LOGIN", smtp.auth_login, initial_response_ok=False)
        assert code == 235
        assert smtp.sendmail(postfix.user, [postfix.user], message) == {}
    assert postfix.wait_for_delivery(marker).endswith(_stored_form(message))


def test_smtputf8_8bitmime_message_delivers_r_6531_3_4_1(postfix: PostfixServer) -> None:
    """MAIL FROM with SMTPUTF8 BODY=8BITMIME carries raw UTF-8 headers and body intact."""
    marker = _marker()
    utf8_lines = f"Subject: Grüße ✉ {marker}\r\n\r\nKörper {marker} — ünïcödé\r\n"
    message = (
        f"From: <{postfix.user}>\r\nTo: <{postfix.user}>\r\nDate: {formatdate()}\r\n"
        f"Message-ID: <{marker}@client.smtpsec.test>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
        + utf8_lines
    ).encode("utf-8")
    with _implicit(postfix) as smtp:
        _auth_plain(smtp, postfix.user, postfix.password)
        smtp.sendmail(
            postfix.user, [postfix.user], message, mail_options=["SMTPUTF8", "BODY=8BITMIME"]
        )
    assert postfix.wait_for_delivery(marker).endswith(_stored_form(message))


def test_bdat_chunks_deliver_r_3030_2_2(postfix: PostfixServer) -> None:
    """CHUNKING works, not just advertised: two BDAT chunks reassemble exactly."""
    marker = _marker()
    message = _message(marker, sender=postfix.user, rcpt=postfix.user)
    first, last = message[:100], message[100:]
    with _implicit(postfix) as smtp:
        _auth_plain(smtp, postfix.user, postfix.password)
        assert smtp.mail(postfix.user)[0] == 250
        assert smtp.rcpt(postfix.user)[0] == 250
        smtp.send(f"BDAT {len(first)}\r\n".encode() + first)
        assert smtp.getreply()[0] == 250
        smtp.send(f"BDAT {len(last)} LAST\r\n".encode() + last)
        code, text = smtp.getreply()
    assert code == 250, text
    assert postfix.wait_for_delivery(marker).endswith(_stored_form(message))


def test_other_domains_are_accepted_and_discarded(postfix: PostfixServer) -> None:
    """Mail for any other domain is accepted when authenticated and never leaves the box."""
    marker = _marker()
    since = postfix.log_offset()
    with _implicit(postfix) as smtp:
        _auth_plain(smtp, postfix.user, postfix.password)
        assert smtp.mail(postfix.user)[0] == 250
        assert smtp.rcpt(DISCARD_RCPT)[0] == 250
        code, text = smtp.data(_message(marker, sender=postfix.user, rcpt=DISCARD_RCPT))
    assert code == 250
    queue_id = text.decode().rsplit(" ", 1)[-1]
    line = postfix.wait_for_log(f"{queue_id}: to=<{DISCARD_RCPT}>", "status=sent", since=since)
    assert "relay=none" in line


def test_unknown_user_in_local_domain_is_rejected(postfix: PostfixServer) -> None:
    """Only the test user exists in the delivery domain; others get 550 at RCPT."""
    domain = postfix.user.split("@", 1)[1]
    with _implicit(postfix) as smtp:
        _auth_plain(smtp, postfix.user, postfix.password)
        assert smtp.mail(postfix.user)[0] == 250
        code, text = smtp.rcpt(f"no-such-user@{domain}")
    assert code == 550
    assert text.startswith(b"5.1.1")


# --- what the server offers and refuses -----------------------------------------------


def test_cleartext_ehlo_hides_auth_and_mail_needs_tls_r_4954_9_1(
    postfix: PostfixServer,
) -> None:
    """Before STARTTLS: STARTTLS offered, AUTH not (smtpd_tls_auth_only), MAIL refused."""
    with smtplib.SMTP(postfix.host, postfix.starttls_port, timeout=TIMEOUT) as smtp:
        code, _ = smtp.ehlo(EHLO_NAME)
        assert code == 250
        assert smtp.has_extn("starttls")
        assert not smtp.has_extn("auth")
        code, text = smtp.mail(postfix.user)
    assert code == 530
    assert text.startswith(b"5.7.0")


@pytest.mark.parametrize("mode", ["implicit", "starttls"])
def test_post_tls_ehlo_extensions_r_4954_3_1(postfix: PostfixServer, mode: str) -> None:
    """After TLS both ports offer the extensions smtpsec's fast path and AUTH rely on."""
    with _session(postfix, mode) as smtp:
        features = smtp.esmtp_features
    for keyword in (
        "pipelining",
        "chunking",
        "smtputf8",
        "8bitmime",
        "dsn",
        "enhancedstatuscodes",
    ):
        assert keyword in features, keyword
    assert "starttls" not in features
    assert features["size"] == str(postfix.size_limit)
    assert set(features["auth"].split()) == {"PLAIN", "LOGIN", "SCRAM-SHA-256"}


@pytest.mark.parametrize("mode", ["implicit", "starttls"])
def test_wrong_password_gets_535_r_4954_6_1(postfix: PostfixServer, mode: str) -> None:
    """Bad credentials are refused with 535 5.7.8 on both ports."""
    with _session(postfix, mode) as smtp, pytest.raises(smtplib.SMTPAuthenticationError) as info:
        _auth_plain(smtp, postfix.user, postfix.password + "-wrong")
    assert info.value.smtp_code == 535
    error = info.value.smtp_error
    assert isinstance(error, bytes)
    assert error.startswith(b"5.7.8")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scram_sha_256(smtp: smtplib.SMTP, user: str, password: str) -> tuple[int, bytes]:
    """Run AUTH SCRAM-SHA-256 (RFC 5802 / RFC 7677) and return the final reply.

    smtplib has no SCRAM, so the exchange is spelled out here; it also checks
    the server's signature, which proves Dovecot derived the same salted key.
    """
    client_nonce = _b64(os.urandom(18))
    gs2_header = "n,,"
    client_first_bare = f"n={user.replace('=', '=3D').replace(',', '=2C')},r={client_nonce}"
    code, challenge = smtp.docmd(
        "AUTH", "SCRAM-SHA-256 " + _b64(b"n,," + client_first_bare.encode())
    )
    if code != 334:
        return code, challenge
    server_first = base64.b64decode(challenge).decode()
    attrs = dict(item.split("=", 1) for item in server_first.split(","))
    assert attrs["r"].startswith(client_nonce)
    salted = hashlib.pbkdf2_hmac(
        "sha256", password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"])
    )
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    final_bare = f"c={_b64(gs2_header.encode())},r={attrs['r']}"
    auth_message = f"{client_first_bare},{server_first},{final_bare}".encode()
    signature = hmac.digest(hashlib.sha256(client_key).digest(), auth_message, "sha256")
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    code, challenge = smtp.docmd(_b64(f"{final_bare},p={_b64(proof)}".encode()))
    if code != 334:
        return code, challenge
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    expected = "v=" + _b64(hmac.digest(server_key, auth_message, "sha256"))
    assert base64.b64decode(challenge).decode() == expected
    return smtp.docmd("")


def test_scram_sha_256_authenticates_and_delivers_r_4954_4_1(postfix: PostfixServer) -> None:
    """SCRAM-SHA-256 through Postfix to Dovecot succeeds and the session can send."""
    marker = _marker()
    with _starttls(postfix) as smtp:
        code, text = _scram_sha_256(smtp, postfix.user, postfix.password)
        assert code == 235, text
        smtp.sendmail(
            postfix.user, [postfix.user], _message(marker, sender=postfix.user, rcpt=postfix.user)
        )
    assert marker.encode() in postfix.wait_for_delivery(marker)


def test_scram_sha_256_wrong_password_gets_535(postfix: PostfixServer) -> None:
    """A wrong SCRAM proof is refused with 535."""
    with _implicit(postfix) as smtp:
        code, _ = _scram_sha_256(smtp, postfix.user, postfix.password + "-wrong")
    assert code == 535


def test_declared_size_over_limit_gets_552_r_1870_4(postfix: PostfixServer) -> None:
    """MAIL FROM with SIZE= above message_size_limit is refused with 552 5.3.4."""
    with _implicit(postfix) as smtp:
        _auth_plain(smtp, postfix.user, postfix.password)
        code, text = smtp.mail(postfix.user, [f"SIZE={postfix.size_limit + 1}"])
    assert code == 552
    assert text.startswith(b"5.3.4")


def test_undeclared_oversize_body_gets_552_r_1870_4(postfix: PostfixServer) -> None:
    """A body that exceeds the limit without a SIZE= hint is refused after DATA."""
    marker = _marker()
    line = b"x" * 998 + b"\r\n"
    padding = line * (postfix.size_limit // len(line) + 1)
    message = _message(marker, sender=postfix.user, rcpt=postfix.user) + padding
    with _implicit(postfix) as smtp:
        _auth_plain(smtp, postfix.user, postfix.password)
        assert smtp.mail(postfix.user)[0] == 250
        assert smtp.rcpt(postfix.user)[0] == 250
        code, text = smtp.data(message)
    assert code == 552
    assert text.startswith(b"5.3.4")
