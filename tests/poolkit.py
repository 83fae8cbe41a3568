"""Server-side helpers for the pool tests (blocking and asyncio)."""

from __future__ import annotations

import threading
from typing import Any

import smtpsec
from smtpsec.testing import Capture, ServerSession, SMTPServer


def finished(server: SMTPServer, count: int) -> list[Capture]:
    """The server's first ``count`` connections, once the shared pools let them end.

    Code that sends through :meth:`smtpsec.Pool.shared` (the Django backend,
    the logging handler) keeps its session open for the next message; closing
    the shared pools ends it, so the capture is complete.
    """
    smtpsec.Pool.close_shared()
    return server.wait_for_connections(count)


class Admission:
    """Server side: admit at most ``limit`` connections at once, ``421`` the rest.

    Used as ``on_command``: at a connection's first ``EHLO`` it counts the
    admitted connections that are still open. It also records the peak.
    """

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit
        self.server: SMTPServer | None = None
        self.peak = 0
        self.refused = 0
        self._admitted: list[Any] = []
        self._lock = threading.Lock()

    def __call__(self, session: ServerSession, line: str) -> bytes | None:
        if not line.upper().startswith("EHLO") or session.capture in self._admitted:
            return None
        with self._lock:
            live = [c for c in self._admitted if not c.closed]
            if self.limit is not None and len(live) >= self.limit:
                self.refused += 1
                session.close()
                return b"421 4.7.0 Error: too many connections from 127.0.0.1\r\n"
            self._admitted.append(session.capture)
            self.peak = max(self.peak, len(live) + 1)
        return None
