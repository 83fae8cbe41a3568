"""Static types of ``smtpsec.smtplib``: checked by ``mypy --strict``, never executed.

The drop-in must type-check wherever the stdlib module did: same return types,
usable where a ``smtplib.SMTP`` is expected, exceptions from the same classes.
``# type: ignore`` lines are expected errors (``--strict`` reports unused ones).
"""

from __future__ import annotations

import smtplib as std
import ssl
from email.message import EmailMessage
from typing import Literal

from typing_extensions import assert_type

import smtpsec
from smtpsec import smtplib

Reply = tuple[int, bytes]
Refused = dict[str, tuple[int, bytes]]


def _implicit_tls(ctx: ssl.SSLContext, msg: EmailMessage) -> None:
    with smtplib.SMTP_SSL("smtp.example.com", 465, context=ctx) as s:
        assert_type(s, smtplib.SMTP_SSL)
        assert_type(s.login("ann", "pw"), Reply)
        assert_type(s.send_message(msg), Refused)
        assert_type(s.context, ssl.SSLContext)


def _starttls(ctx: ssl.SSLContext) -> None:
    s = smtplib.SMTP("smtp.example.com", 587, timeout=10.0)
    assert_type(s.ehlo(), Reply)
    assert_type(s.starttls(context=ctx), Reply)
    assert_type(s.starttls(), Reply)
    assert_type(s.has_extn("starttls"), bool)
    assert_type(s.esmtp_features, dict[str, str])
    assert_type(s.sendmail("a@example.com", ["b@example.com"], b"x"), Refused)
    assert_type(s.sendmail("a@example.com", "b@example.com", "x", ["SMTPUTF8"]), Refused)
    assert_type(s.mail("a@example.com", ["BODY=8BITMIME"]), Reply)
    assert_type(s.rcpt("b@example.com"), Reply)
    assert_type(s.data(b"x"), Reply)
    assert_type(s.getreply(), Reply)
    assert_type(s.docmd("NOOP"), Reply)
    assert_type(s.noop(), Reply)
    assert_type(s.quit(), Reply)
    s.set_debuglevel(1)
    s.putcmd("NOOP")


def _constructors() -> None:
    assert_type(smtplib.SMTP(), smtplib.SMTP)
    assert_type(smtplib.SMTP(allow_cleartext_auth=True), smtplib.SMTP)
    assert_type(smtplib.SMTP(timeout=None), smtplib.SMTP)
    assert_type(smtplib.LMTP("/run/dovecot/lmtp"), smtplib.LMTP)
    assert_type(smtplib.LMTP("lmtp.internal", 24, proxy="socks5h://127.0.0.1:1080"), smtplib.LMTP)
    assert_type(smtplib.SMTP_SSL(local_hostname="client.example.com"), smtplib.SMTP_SSL)
    assert_type(smtplib.SMTP().connect("smtp.example.com", 25), Reply)
    smtplib.SMTP(True, allow_cleartext_auth=False)  # type: ignore[arg-type]
    smtplib.SMTP("h", 25, None, 10.0, None, False)  # type: ignore[call-arg]  # keyword-only


def _drop_in(s: smtplib.SMTP, ssl_s: smtplib.SMTP_SSL, lmtp: smtplib.LMTP) -> None:
    # Existing code annotated with the stdlib classes accepts the drop-ins.
    as_std: std.SMTP = s
    as_std_ssl: std.SMTP_SSL = ssl_s
    as_std_lmtp: std.LMTP = lmtp
    del as_std, as_std_ssl, as_std_lmtp


def _exceptions(s: smtplib.SMTP) -> None:
    assert smtplib.SMTPException is std.SMTPException
    try:
        s.login("ann", "pw")
    except smtplib.SMTPAuthenticationError as exc:
        assert_type(exc.smtp_code, int)
        assert_type(exc.smtp_error, bytes | str)
    except smtplib.SMTPResponseException as exc:
        assert_type(exc.smtp_code, int)
    except smtpsec.InsecureAuthError as exc:
        assert_type(exc, smtpsec.InsecureAuthError)
    try:
        s.sendmail("a@example.com", ["b@example.com"], b"x")
    except smtplib.SMTPRecipientsRefused as exc:
        assert_type(exc.recipients, Refused)
    except smtplib.SMTPSenderRefused as exc:
        assert_type(exc.sender, str)


def _constants() -> None:
    assert_type(smtplib.SMTP_PORT, Literal[25])
    assert_type(smtplib.SMTP_SSL_PORT, Literal[465])
    assert_type(smtplib.LMTP_PORT, Literal[2003])
    assert_type(smtplib.CRLF, str)
    assert_type(smtplib.bCRLF, bytes)
    assert_type(smtplib.quoteaddr("a@example.com"), str)
    assert_type(smtplib.quotedata("x"), str)


def test_module_imports() -> None:
    """pytest collects this file; the checks above are for mypy only."""
    assert callable(_implicit_tls)
    assert set(std.__all__) <= set(smtplib.__all__)
