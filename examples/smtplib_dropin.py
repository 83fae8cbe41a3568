"""Make existing ``smtplib`` code safe by changing one import.

``from smtpsec import smtplib`` provides the standard module's classes and
exceptions, with smtpsec's rules underneath: ``SMTP_SSL`` and ``starttls()``
verify the certificate even without a ``context``, a missing or refused
STARTTLS raises instead of continuing, ``login()`` refuses to send credentials
without verified TLS, and every reply has a timeout. The code below is
ordinary smtplib code otherwise.

By default it runs against smtpsec's test server on loopback, once with
``SMTP_SSL`` (implicit TLS) and once with ``SMTP`` + ``starttls()``. The private
test CA is trusted the stdlib way, with ``ssl.create_default_context(cafile=...)``.
For a real server::

    SMTPSEC_HOST=smtp.example.com SMTPSEC_USER=ann@example.com \\
    SMTPSEC_PASSWORD='app password' python examples/smtplib_dropin.py

Optional: ``SMTPSEC_PORT`` (465: ``SMTP_SSL``; anything else: ``SMTP`` +
``starttls()``; default 465), ``SMTPSEC_CAFILE``, ``SMTPSEC_TO``.
"""

from __future__ import annotations

import os
import ssl
import sys
import tempfile
from email.message import EmailMessage
from pathlib import Path

from smtpsec import (
    Security,
    smtplib,  # was: import smtplib
)
from smtpsec.testing import SMTPServer


def make_message(sender: str, to: str) -> EmailMessage:
    """Build the message both variants send."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = "smtpsec: smtplib drop-in example"
    msg.set_content("Sent by unchanged smtplib code, with verified TLS underneath.")
    return msg


def send(
    host: str, port: int, user: str, password: str, to: str, cafile: str | None, *, implicit: bool
) -> None:
    """Send with SMTP_SSL (implicit TLS) or with SMTP + starttls()."""
    # None means smtpsec's own verifying context (certifi roots); the stdlib
    # would have used an unverified one here.
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    msg = make_message(user, to)
    if implicit:
        with smtplib.SMTP_SSL(host, port, context=context, timeout=30) as smtp:
            smtp.login(user, password)
            smtp.send_message(msg)
    else:
        with smtplib.SMTP(host, port, timeout=30) as smtp:
            smtp.starttls(context=context)
            smtp.login(user, password)
            smtp.send_message(msg)
    print(f"sent to {host}:{port} with {'SMTP_SSL' if implicit else 'SMTP + starttls()'}")


def main() -> int:
    """Send to SMTPSEC_HOST if set, else to local test servers."""
    host = os.environ.get("SMTPSEC_HOST")
    if host:
        user = os.environ["SMTPSEC_USER"]
        port = int(os.environ.get("SMTPSEC_PORT", "465"))
        send(
            host,
            port,
            user,
            os.environ["SMTPSEC_PASSWORD"],
            os.environ.get("SMTPSEC_TO", user),
            os.environ.get("SMTPSEC_CAFILE"),
            implicit=port == 465,
        )
        return 0

    user, password = "ann@example.test", "demo-password"
    for tls in (Security.IMPLICIT_TLS, Security.STARTTLS):
        with SMTPServer(tls=tls, users={user: password}) as server:
            with tempfile.TemporaryDirectory() as tmp:
                cafile = str(server.ca.write_cafile(Path(tmp) / "test-ca.pem"))
                send(
                    "localhost",
                    server.port,
                    user,
                    password,
                    "bob@example.test",
                    cafile,
                    implicit=tls is Security.IMPLICIT_TLS,
                )
            assert len(server.messages) == 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
