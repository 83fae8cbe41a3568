"""Helpers for the sending-engine tests (imported by the test modules)."""

from __future__ import annotations

from email.message import EmailMessage

from smtpsec.testing import DEFAULT_EXTENSIONS, Capture, SMTPServer

CANARY = "CANARY-7f3a9c"


def without(*names: str) -> tuple[str, ...]:
    """DEFAULT_EXTENSIONS minus the given keywords."""
    drop = {name.upper() for name in names}
    return tuple(ext for ext in DEFAULT_EXTENSIONS if ext.split()[0].upper() not in drop)


def message(
    body: str = f"Hello\n{CANARY}\n",
    *,
    to: str = "bob@example.test",
    sender: str = "ann@example.test",
    subject: str = "test",
) -> EmailMessage:
    """A small EmailMessage."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(body)
    return msg


def flights(capture: Capture) -> list[bytes]:
    """Post-TLS segments after the EHLO, without the final QUIT."""
    segments = [data for tls, data in capture.segments if tls]
    assert segments[0].startswith(b"EHLO")
    return [s for s in segments[1:] if s != b"QUIT\r\n"]


def finished(server: SMTPServer) -> Capture:
    """The first connection's capture, once the server is done with it."""
    return server.wait_for_connections(1)[0]
