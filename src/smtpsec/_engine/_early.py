"""What early pipelining remembers: servers that advertised ``PIPECONNECT``.

Exim's ``PIPECONNECT`` (draft-harris-early-pipe) lets a client that kept a
server's EHLO reply send its next EHLO before the greeting, with one command
(group) behind it. :data:`EHLO_REPLIES` keeps those replies for the process,
keyed by the server, the port, the way TLS starts there and the EHLO name, so
one-shot sends, pools and threads share what any of them learnt. Only replies
received over TLS whose certificate was verified are kept, and only with
``PIPECONNECT`` in them; a kept reply is a hint for what to send early, never
a substitute for the server's real reply, which the guard still checks.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Final

from ..sansio import Extensions

__all__ = ["EHLO_REPLIES", "EhloReplies", "advertises_early_pipelining"]

#: The EHLO keyword of early pipelining.
KEYWORD: Final = "PIPECONNECT"


def advertises_early_pipelining(extensions: Extensions) -> bool:
    """Whether an EHLO reply allows early pipelining on the next connection.

    ``PIPELINING`` too: what goes after the early EHLO is pipelined.
    """
    return KEYWORD in extensions and "PIPELINING" in extensions


class EhloReplies:
    """Recent servers' EHLO replies that advertised ``PIPECONNECT`` (thread-safe, bounded).

    Args:
        maxsize: most servers kept (the least recently used go first).
    """

    def __init__(self, maxsize: int = 256) -> None:
        self._maxsize = maxsize
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, int, bool, str], Extensions] = OrderedDict()

    @staticmethod
    def _key(host: str, port: int, implicit: bool, helo: str) -> tuple[str, int, bool, str]:
        return (host.lower().rstrip("."), port, implicit, helo)

    def get(self, host: str, port: int, implicit: bool, helo: str) -> Extensions | None:
        """The reply kept for this server and EHLO name, if any."""
        key = self._key(host, port, implicit, helo)
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def learn(
        self, host: str, port: int, implicit: bool, helo: str, extensions: Extensions
    ) -> None:
        """Keep ``extensions`` when they advertise early pipelining, else forget the server."""
        key = self._key(host, port, implicit, helo)
        with self._lock:
            if not advertises_early_pipelining(extensions):
                self._entries.pop(key, None)
                return
            self._entries[key] = extensions
            self._entries.move_to_end(key)
            while len(self._entries) > self._maxsize:
                self._entries.popitem(last=False)

    def forget(self, host: str, port: int, implicit: bool, helo: str) -> None:
        """Drop what was kept for this server (it refused early pipelining)."""
        with self._lock:
            self._entries.pop(self._key(host, port, implicit, helo), None)

    def clear(self) -> None:
        """Forget every server."""
        with self._lock:
            self._entries.clear()

    def after_fork(self) -> None:
        """Give the child of ``os.fork()`` a fresh lock."""
        # A lock held by another thread at fork() would never be released in
        # the child; the entries themselves are plain data and stay valid.
        self._lock = threading.Lock()


#: The process's memory of early-pipelining servers.
EHLO_REPLIES: Final = EhloReplies()
os.register_at_fork(after_in_child=EHLO_REPLIES.after_fork)
