"""Send one message over STARTTLS on port 587, with TLS *required*.

``Security.STARTTLS`` (and ``Security.AUTO`` on any port but 465) never
continues without TLS: if the server does not advertise STARTTLS, or refuses it,
the connection ends before anything but ``EHLO`` and ``QUIT`` was sent. The
script also shows that everything the server said before TLS was discarded:
the capabilities printed come from the ``EHLO`` sent inside TLS.

By default it runs against smtpsec's test server on loopback (STARTTLS, with a
throwaway CA trusted through ``Policy(cafile=...)``). For a real server::

    SMTPSEC_HOST=smtp.example.com SMTPSEC_USER=ann@example.com \\
    SMTPSEC_PASSWORD='app password' python examples/starttls_required.py

Optional: ``SMTPSEC_PORT`` (default 587), ``SMTPSEC_CAFILE`` (a private CA),
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
    """Connect with required STARTTLS and send one message."""
    msg = EmailMessage()
    msg["From"] = user
    msg["To"] = to
    msg["Subject"] = "smtpsec: required STARTTLS example"
    msg.set_content("This message was sent only after STARTTLS succeeded.")

    with smtpsec.connect(
        host,
        port,
        security=smtpsec.Security.STARTTLS,
        username=user,
        password=password,
        policy=smtpsec.Policy(cafile=cafile),
    ) as session:
        print(session.report)
        print("capabilities after TLS:", ", ".join(sorted(session.extensions)))
        result = session.send(msg)
        print(f"sent with {result.method}: {result.code} {result.text}")


def main() -> int:
    """Send to SMTPSEC_HOST if set, else to a local test server."""
    host = os.environ.get("SMTPSEC_HOST")
    if host:
        user = os.environ["SMTPSEC_USER"]
        send(
            host,
            int(os.environ.get("SMTPSEC_PORT", "587")),
            user,
            os.environ["SMTPSEC_PASSWORD"],
            os.environ.get("SMTPSEC_TO", user),
            os.environ.get("SMTPSEC_CAFILE"),
        )
        return 0

    user, password = "ann@example.test", "demo-password"
    # Before TLS this server advertises AUTH PLAIN as bait; a correct client
    # ignores it and authenticates only inside TLS.
    with SMTPServer(
        tls=Security.STARTTLS, users={user: password}, pre_tls_auth=("PLAIN",)
    ) as server:
        with tempfile.TemporaryDirectory() as tmp:
            cafile = server.ca.write_cafile(Path(tmp) / "test-ca.pem")
            send("localhost", server.port, user, password, "bob@example.test", str(cafile))
        (conn,) = server.wait_for_connections(1)
    print("commands before TLS:", conn.commands_pre_tls)
    print("commands inside TLS:", conn.commands_post_tls)
    assert conn.pre_tls_verbs_subset_of({"EHLO", "STARTTLS", "QUIT"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
