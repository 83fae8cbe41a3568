"""Send from asyncio code: one session, then a pool of connections for a batch.

``smtpsec.aio`` is the same client as ``smtpsec`` (same policy, guard, errors
and report) without blocking the event loop. The script first sends one message
on a session of its own, then a small newsletter through ``smtpsec.aio.Pool``,
which spreads pipelined batches over a few connections and returns one outcome
per message, in order.

By default it runs against smtpsec's test server on loopback (implicit TLS, a
throwaway CA trusted through ``Policy(cafile=...)``), which refuses one
recipient to show a per-message failure. For a real server, every message goes
to ``SMTPSEC_TO`` (default: yourself)::

    SMTPSEC_HOST=smtp.example.com SMTPSEC_USER=ann@example.com \\
    SMTPSEC_PASSWORD='app password' python examples/async_send.py

Optional: ``SMTPSEC_PORT`` (default 465), ``SMTPSEC_CAFILE``, ``SMTPSEC_TO``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import smtpsec
import smtpsec.aio
from smtpsec import Security
from smtpsec.testing import SMTPServer


def letter(sender: str, to: str, subject: str) -> EmailMessage:
    """A small text message."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(f"{subject}: sent with smtpsec.aio.")
    return msg


async def send(
    host: str, port: int, user: str, password: str, recipients: list[str], cafile: str | None
) -> None:
    """One message on a session of its own, then one per recipient through a pool."""
    options: dict[str, Any] = {
        "security": smtpsec.Security.IMPLICIT_TLS,
        "username": user,
        "password": password,
        "policy": smtpsec.Policy(cafile=cafile),  # cafile=None: certifi's public roots
        "timeout": 30.0,  # connect, TLS handshake, and each whole reply
    }
    async with smtpsec.aio.connect(host, port, **options) as session:
        result = await session.send(letter(user, recipients[0], "single message"))
        print(session.report)
        print(f"single message: accepted ({result.code} {result.text})")

    newsletter = [letter(user, to, f"newsletter {n}") for n, to in enumerate(recipients, 1)]
    async with smtpsec.aio.Pool(host, port, size=2, **options) as pool:
        outcomes = await pool.send_many(newsletter, batch=2)
    for to, outcome in zip(recipients, outcomes, strict=True):
        if isinstance(outcome, smtpsec.SMTPSecError):
            later = (
                " (temporary)"
                if isinstance(outcome, smtpsec.ReplyError) and outcome.transient
                else ""
            )
            print(f"{to}: not sent{later}: {type(outcome).__name__}")
        else:
            print(f"{to}: accepted ({outcome.code} {outcome.text})")


def main() -> int:
    """Send to SMTPSEC_HOST if set, else to a local test server."""
    host = os.environ.get("SMTPSEC_HOST")
    if host:
        user = os.environ["SMTPSEC_USER"]
        to = os.environ.get("SMTPSEC_TO", user)
        asyncio.run(
            send(
                host,
                int(os.environ.get("SMTPSEC_PORT", "465")),
                user,
                os.environ["SMTPSEC_PASSWORD"],
                [to, to, to],
                os.environ.get("SMTPSEC_CAFILE"),
            )
        )
        return 0

    user, password = "news@example.test", "demo-password"
    recipients = ["ann@example.test", "bob@example.test", "gone@example.test", "eve@example.test"]
    refuse = {"gone@example.test": (550, "5.1.1 mailbox unavailable")}
    with (
        SMTPServer(
            tls=Security.IMPLICIT_TLS, users={user: password}, refuse_recipients=refuse
        ) as server,
        tempfile.TemporaryDirectory() as tmp,
    ):
        cafile = server.ca.write_cafile(Path(tmp) / "test-ca.pem")
        asyncio.run(send("localhost", server.port, user, password, recipients, str(cafile)))
    print(
        f"the test server accepted {len(server.messages)} messages "
        f"on {len(server.connections)} connections"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
