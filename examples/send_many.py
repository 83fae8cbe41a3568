"""Send a batch of messages on one connection, with one outcome per message.

``Session.send_many()`` pipelines the messages (when the server offers
PIPELINING) and never lets one failure stop the rest: each element of the
returned list is either a ``SendResult`` (possibly with some recipients in
``result.refused``) or the exception for that message.

By default it runs against smtpsec's test server on loopback, which refuses one
recipient to show both kinds of outcome. For a real server, each message goes
to ``SMTPSEC_TO`` (default: yourself)::

    SMTPSEC_HOST=smtp.example.com SMTPSEC_USER=ann@example.com \\
    SMTPSEC_PASSWORD='app password' python examples/send_many.py

Optional: ``SMTPSEC_PORT`` (default 465), ``SMTPSEC_CAFILE``, ``SMTPSEC_TO``.
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


def newsletter(sender: str, recipients: list[str]) -> list[EmailMessage]:
    """One message per recipient, as a mailing job would build them."""
    batch: list[EmailMessage] = []
    for number, to in enumerate(recipients, start=1):
        msg = EmailMessage()
        msg["From"] = sender
        msg["To"] = to
        msg["Subject"] = f"smtpsec: batch example, message {number}"
        msg.set_content(f"Message {number} of {len(recipients)}.")
        batch.append(msg)
    return batch


def send(
    host: str, port: int, user: str, password: str, recipients: list[str], cafile: str | None
) -> None:
    """Send one message per recipient on a single session."""
    with smtpsec.connect(
        host, port, username=user, password=password, policy=smtpsec.Policy(cafile=cafile)
    ) as session:
        outcomes = session.send_many(newsletter(user, recipients))
    for to, outcome in zip(recipients, outcomes, strict=True):
        if isinstance(outcome, smtpsec.SMTPSecError):
            print(f"{to}: not sent ({type(outcome).__name__}: {outcome})")
        elif outcome.refused:
            print(f"{to}: refused by the server: {dict(outcome.refused)}")
        else:
            print(f"{to}: accepted ({outcome.code} {outcome.text})")


def main() -> int:
    """Send to SMTPSEC_HOST if set, else to a local test server."""
    host = os.environ.get("SMTPSEC_HOST")
    if host:
        user = os.environ["SMTPSEC_USER"]
        to = os.environ.get("SMTPSEC_TO", user)
        port = int(os.environ.get("SMTPSEC_PORT", "465"))
        send(
            host,
            port,
            user,
            os.environ["SMTPSEC_PASSWORD"],
            [to, to, to],
            os.environ.get("SMTPSEC_CAFILE"),
        )
        return 0

    user, password = "news@example.test", "demo-password"
    recipients = ["ann@example.test", "gone@example.test", "bob@example.test"]
    refuse = {"gone@example.test": (550, "5.1.1 mailbox unavailable")}
    with (
        SMTPServer(
            tls=Security.STARTTLS, users={user: password}, refuse_recipients=refuse
        ) as server,
        tempfile.TemporaryDirectory() as tmp,
    ):
        cafile = server.ca.write_cafile(Path(tmp) / "test-ca.pem")
        # An ephemeral port is not 465, so Security.AUTO requires STARTTLS.
        send("localhost", server.port, user, password, recipients, str(cafile))
    print(f"the test server accepted {len(server.messages)} of {len(recipients)} messages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
