"""The small messages the throughput benchmarks send, built once here.

About 1 KiB of text, one recipient, with ``From``, ``To``, ``Subject``, ``Date``
and ``Message-ID`` (so no library has headers to add). Built before any timing.
"""

from __future__ import annotations

import email.policy
import email.utils
from email.message import EmailMessage
from typing import Final

__all__ = ["PAYLOADS", "SENDER", "Raw", "emails", "rendered"]

SENDER: Final = "sender@bench.test"
#: How each payload kind is named in the reports.
PAYLOADS: Final = {"email": "`EmailMessage`", "bytes": "bytes"}
_BODY: Final = "The quick brown fox jumps over the lazy dog.\n" * 23

#: ``(sender, recipients, content with CRLF)``: a message as ``sendmail`` takes it.
Raw = tuple[str, list[str], bytes]


def emails(
    count: int, *, subject: str, first: int = 0, mailboxes: int | None = None
) -> list[EmailMessage]:
    """``count`` fresh messages numbered from ``first``.

    Args:
        count: how many.
        subject: the subject's prefix (the number follows it).
        first: the number of the first message.
        mailboxes: cycle through this many recipient addresses; ``None`` gives
            every message an address of its own.
    """
    out = []
    for index in range(first, first + count):
        msg = EmailMessage()
        msg["From"] = SENDER
        msg["To"] = f"rcpt{index if mailboxes is None else index % mailboxes}@bench.test"
        msg["Subject"] = f"{subject} {index}"
        msg["Date"] = email.utils.formatdate(localtime=True)
        msg["Message-ID"] = email.utils.make_msgid(domain="bench.test")
        msg.set_content(_BODY)
        out.append(msg)
    return out


def rendered(messages: list[EmailMessage]) -> list[Raw]:
    """The same messages as bytes with their envelopes (for ``sendmail``/``Outgoing``)."""
    return [(SENDER, [str(m["To"])], m.as_bytes(policy=email.policy.SMTP)) for m in messages]
