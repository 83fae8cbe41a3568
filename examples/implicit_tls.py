"""Send one message over implicit TLS (port 465) and print the security report.

Implicit TLS is what RFC 8314 prefers: TLS starts before any SMTP byte, so there
is no cleartext phase for an attacker to tamper with.

By default the script starts smtpsec's test server on loopback (implicit TLS,
with a throwaway CA that the client trusts through ``Policy(cafile=...)``) and
sends to it. To send a real message to yourself instead::

    SMTPSEC_HOST=smtp.example.com SMTPSEC_USER=ann@example.com \\
    SMTPSEC_PASSWORD='app password' python examples/implicit_tls.py

Optional: ``SMTPSEC_PORT`` (default 465), ``SMTPSEC_CAFILE`` (a private CA),
``SMTPSEC_TO`` (default: ``SMTPSEC_USER``).
"""

from __future__ import annotations

import os
import sys
import tempfile
from email.message import EmailMessage
from pathlib import Path

import smtpsec
from smtpsec import Security
from smtpsec.testing import SMTPServer


def send(host: str, port: int, user: str, password: str, to: str, cafile: str | None) -> None:
    """Connect with implicit TLS, send one message, print what protected it."""
    msg = EmailMessage()
    msg["From"] = user
    msg["To"] = to
    msg["Subject"] = "smtpsec: implicit TLS example"
    msg.set_content("This message travelled over implicit TLS with a verified certificate.")

    policy = smtpsec.Policy(cafile=cafile)  # cafile=None: certifi's public roots
    with smtpsec.connect(
        host,
        port,
        security=smtpsec.Security.IMPLICIT_TLS,
        username=user,
        password=password,
        policy=policy,
    ) as session:
        result = session.send(msg)
        print(session.report)
        print(f"accepted for {', '.join(result.accepted)}: {result.code} {result.text}")
        # The report is data: refuse to carry on if the hop was not confidential.
        assert session.report.confidential, "the submission hop was not confidential"


def main() -> int:
    """Send to SMTPSEC_HOST if set, else to a local test server."""
    host = os.environ.get("SMTPSEC_HOST")
    if host:
        user = os.environ["SMTPSEC_USER"]
        send(
            host,
            int(os.environ.get("SMTPSEC_PORT", "465")),
            user,
            os.environ["SMTPSEC_PASSWORD"],
            os.environ.get("SMTPSEC_TO", user),
            os.environ.get("SMTPSEC_CAFILE"),
        )
        return 0

    user, password = "ann@example.test", "demo-password"
    with (
        SMTPServer(tls=Security.IMPLICIT_TLS, users={user: password}) as server,
        tempfile.TemporaryDirectory() as tmp,
    ):
        # The server made a throwaway CA for itself: trust exactly that one.
        cafile = server.ca.write_cafile(Path(tmp) / "test-ca.pem")
        send("localhost", server.port, user, password, "bob@example.test", str(cafile))
    print(f"the test server received {len(server.messages)} message(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
