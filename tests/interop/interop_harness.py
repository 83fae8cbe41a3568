"""What the interop tests know about the loopback Postfix server, and how they check it.

:class:`PostfixServer` is built from the ``env.json`` that ``postfix.sh start``
writes; its helpers read back delivered mail and the Postfix log. The
``postfix`` fixture in ``conftest.py`` hands it to tests.
"""

from __future__ import annotations

import json
import os
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

DEFAULT_STATE_DIR: Final = Path("/tmp/smtpsec-interop")
# Polling, not a performance bound: short enough that waits add no visible time.
POLL_INTERVAL: Final = 0.05
START_HINT: Final = "run tests/interop/postfix.sh start"


def state_dir() -> Path:
    """Return the harness state directory (``SMTPSEC_INTEROP_DIR`` or the default)."""
    return Path(os.environ.get("SMTPSEC_INTEROP_DIR") or DEFAULT_STATE_DIR)


@dataclass(frozen=True, slots=True)
class PostfixServer:
    """Where the loopback Postfix listens and how to check what it did.

    Attributes:
        host: Address both listeners are bound to (127.0.0.1).
        implicit_port: Submissions port speaking TLS from the first byte.
        starttls_port: Submission port that requires STARTTLS before anything else.
        cafile: PEM file of the throwaway CA that signed the server certificate.
        user: SASL user name, also the only address delivered to the maildir.
        password: The user's password.
        maildir: Maildir that receives mail for ``user``.
        log: Postfix log file (``maillog_file``).
        size_limit: Postfix ``message_size_limit`` in octets.
    """

    host: str
    implicit_port: int
    starttls_port: int
    cafile: Path
    user: str
    password: str
    maildir: Path
    log: Path
    size_limit: int

    @classmethod
    def from_env_file(cls, path: Path) -> PostfixServer:
        """Build a server description from the ``env.json`` written by ``postfix.sh``.

        Args:
            path: The ``env.json`` file.

        Returns:
            The parsed description.
        """
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            host=str(data["SMTPSEC_INTEROP_HOST"]),
            implicit_port=int(data["SMTPSEC_INTEROP_IMPLICIT_PORT"]),
            starttls_port=int(data["SMTPSEC_INTEROP_STARTTLS_PORT"]),
            cafile=Path(data["SMTPSEC_INTEROP_CAFILE"]),
            user=str(data["SMTPSEC_INTEROP_USER"]),
            password=str(data["SMTPSEC_INTEROP_PASSWORD"]),
            maildir=Path(data["SMTPSEC_INTEROP_MAILDIR"]),
            log=Path(data["SMTPSEC_INTEROP_LOG"]),
            size_limit=int(data["SMTPSEC_INTEROP_SIZE_LIMIT"]),
        )

    def ssl_context(self) -> ssl.SSLContext:
        """Return a client context that verifies the server against the harness CA only."""
        context = ssl.create_default_context(cafile=str(self.cafile))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def log_offset(self) -> int:
        """Return the current size of the Postfix log, for :meth:`log_lines_since`."""
        try:
            return self.log.stat().st_size
        except FileNotFoundError:
            return 0

    def log_lines_since(self, offset: int) -> list[str]:
        """Return the Postfix log lines written after byte ``offset``.

        Args:
            offset: A value previously returned by :meth:`log_offset`.

        Returns:
            Complete lines only; a line still being written is left for later.
        """
        try:
            with self.log.open("rb") as fh:
                fh.seek(offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        complete, _, _ = data.rpartition(b"\n")
        return complete.decode("utf-8", "replace").splitlines()

    def wait_for_log(self, *needles: str, since: int, timeout: float = 20.0) -> str:
        """Wait for a log line (after ``since``) that contains every one of ``needles``.

        Args:
            *needles: Substrings that must all occur in the same line.
            since: Log offset to start from (see :meth:`log_offset`).
            timeout: Seconds to wait before failing.

        Returns:
            The first matching line.

        Raises:
            AssertionError: No such line appeared in time; the message shows the
                lines that did appear.
        """
        deadline = time.monotonic() + timeout
        while True:
            lines = self.log_lines_since(since)
            for line in lines:
                if all(needle in line for needle in needles):
                    return line
            if time.monotonic() >= deadline:
                tail = "\n".join(lines[-20:])
                raise AssertionError(f"no log line with {needles!r} in {self.log}:\n{tail}")
            time.sleep(POLL_INTERVAL)

    def wait_for_delivery(self, marker: str, timeout: float = 20.0) -> bytes:
        """Wait until a message containing ``marker`` lands in the maildir.

        Args:
            marker: Text unique to the message (encoded as UTF-8 for the search).
            timeout: Seconds to wait before failing.

        Returns:
            The delivered file's bytes, exactly as Postfix stored them (LF line
            ends, with Postfix's ``Return-Path``/``Delivered-To``/``Received``
            headers prepended).

        Raises:
            AssertionError: Nothing arrived in time; the message shows the log tail.
        """
        needle = marker.encode("utf-8")
        checked: set[Path] = set()  # delivered maildir files never change
        deadline = time.monotonic() + timeout
        while True:
            for sub in ("new", "cur"):
                folder = self.maildir / sub
                if not folder.is_dir():
                    continue
                for path in folder.iterdir():
                    if path in checked:
                        continue
                    checked.add(path)
                    content = path.read_bytes()
                    if needle in content:
                        return content
            if time.monotonic() >= deadline:
                tail = "\n".join(self.log_lines_since(max(0, self.log_offset() - 4000)))
                raise AssertionError(
                    f"no message containing {marker!r} in {self.maildir}; log tail:\n{tail}"
                )
            time.sleep(POLL_INTERVAL)
