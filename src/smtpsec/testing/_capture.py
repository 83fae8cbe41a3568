"""What the fake server saw: one :class:`Capture` per connection.

A capture records every byte the client sent, split at the TLS boundary and at
``recv()`` boundaries (checklist §0.2 item 1), the commands it issued in each
phase, the TLS facts of the session and the messages it delivered. Tests assert
on it after the dialogue; the helpers :meth:`Capture.secrets_leaked` and
:meth:`Capture.pre_tls_verbs_subset_of` encode the two "send nothing" checks of
the checklist (§0.2 item 3, R-8314-5.2-4).
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

__all__ = ["AuthAttempt", "Capture", "ReceivedMessage"]


class AuthAttempt(NamedTuple):
    """One ``AUTH`` exchange as the server judged it.

    Attributes:
        mechanism: the upper-case SASL mechanism name.
        username: the authentication identity, when one could be decoded.
        success: whether the server answered ``235``.
    """

    mechanism: str
    username: str | None
    success: bool


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """A message the server accepted (its final reply was ``250``).

    Attributes:
        sender: the ``MAIL FROM`` address (without angle brackets).
        recipients: accepted ``RCPT TO`` addresses, in order.
        data: the message content, dot-unstuffed, exactly as received
            (``DATA``: without the final ``.`` line; ``BDAT``: the joined chunks).
        mail_params: ``MAIL FROM`` parameters, upper-case keyword -> value
            (``None`` for a keyword without value).
        recipient_params: the parameters of each accepted ``RCPT``.
        via: ``"DATA"`` or ``"BDAT"``.
        bdat_chunks: the declared size of each ``BDAT`` chunk (empty for DATA).
        tls: whether the message arrived inside TLS.
    """

    sender: str
    recipients: tuple[str, ...]
    data: bytes
    mail_params: dict[str, str | None] = field(default_factory=dict)
    recipient_params: tuple[dict[str, str | None], ...] = ()
    via: Literal["DATA", "BDAT"] = "DATA"
    bdat_chunks: tuple[int, ...] = ()
    tls: bool = False


@dataclass(eq=False)
class Capture:
    """Everything one connection to the fake server did.

    The server thread appends while a test may read, so read the TLS-closure
    facts (``close_notify``, ``closed``) after :meth:`wait_closed` or after the
    server stopped; commands and messages are recorded *before* the server
    replies, so they are complete as soon as the client has its answer.

    Attributes:
        index: position in accept order (0-based).
        peer: the client's ``(host, port)``.
        segments: ``(tls, bytes)`` for every ``recv()``, in order.
        commands_pre_tls: upper-case verbs received before TLS.
        commands_post_tls: upper-case verbs received inside TLS.
        lines_pre_tls: every client line before TLS (commands and SASL
            responses, not message content), as text without CRLF.
        lines_post_tls: the same inside TLS.
        after_starttls: plaintext bytes that were already buffered after
            ``STARTTLS\\r\\n`` when the server answered it; a correct client
            sends none (R-3207-4-3, R-EAST-BC-1). The server discards them.
        sni: the server name the client sent in its ClientHello, if any.
        tls_version: e.g. ``"TLSv1.3"`` once a handshake completed.
        cipher: the negotiated cipher suite name.
        handshake_error: why the TLS handshake failed (e.g. the client's alert).
        client_cert_der: the certificate the client presented, if any.
        close_notify: whether the client ended TLS with a close_notify alert.
        messages: messages accepted on this connection.
        auth: ``AUTH`` attempts, in order.
        bytes_sent: total bytes the server wrote (bounded streams included).
        error: the network error that ended the session, if any.
        closed: whether the server has finished with this connection.
    """

    index: int = 0
    peer: tuple[str, int] = ("", 0)
    segments: list[tuple[bool, bytes]] = field(default_factory=list)
    commands_pre_tls: list[str] = field(default_factory=list)
    commands_post_tls: list[str] = field(default_factory=list)
    lines_pre_tls: list[str] = field(default_factory=list)
    lines_post_tls: list[str] = field(default_factory=list)
    after_starttls: bytes = b""
    sni: str | None = None
    tls_version: str | None = None
    cipher: str | None = None
    handshake_error: str | None = None
    client_cert_der: bytes | None = None
    close_notify: bool = False
    messages: list[ReceivedMessage] = field(default_factory=list)
    auth: list[AuthAttempt] = field(default_factory=list)
    bytes_sent: int = 0
    error: str | None = None
    closed: bool = False
    _done: threading.Event = field(default_factory=threading.Event, init=False, repr=False)

    # ------------------------------------------------------------------ views

    @property
    def pre_tls(self) -> bytes:
        """Every byte received before TLS started."""
        return b"".join(data for tls, data in list(self.segments) if not tls)

    @property
    def post_tls(self) -> bytes:
        """Every byte received inside TLS (decrypted)."""
        return b"".join(data for tls, data in list(self.segments) if tls)

    @property
    def commands(self) -> list[str]:
        """All verbs received, pre-TLS first."""
        return [*self.commands_pre_tls, *self.commands_post_tls]

    @property
    def tls(self) -> bool:
        """Whether a TLS handshake completed on this connection."""
        return self.tls_version is not None

    # ------------------------------------------------------------------ checks

    def secrets_leaked(self, *canaries: str) -> list[str]:
        """Return the canaries visible in the pre-TLS capture (checklist §0.2 item 3).

        Each canary is searched in the raw pre-TLS bytes, and in every line and
        every space-separated word of a line after base64 decoding, which is
        how SASL responses hide a password.

        Args:
            *canaries: secret strings that must never travel in cleartext.

        Returns:
            The canaries found, in the order given (empty when nothing leaked).
        """
        raw = self.pre_tls
        decoded = list(_base64_views(raw))
        found = []
        for canary in canaries:
            needle = canary.encode("utf-8")
            if needle in raw or any(needle in blob for blob in decoded):
                found.append(canary)
        return found

    def pre_tls_verbs_subset_of(self, allowed: Iterable[str]) -> bool:
        """Return whether every pre-TLS verb is in ``allowed``.

        Args:
            allowed: permitted verbs, e.g. ``{"EHLO", "STARTTLS", "QUIT"}``.
        """
        permitted = {verb.upper() for verb in allowed}
        return set(self.commands_pre_tls) <= permitted

    def wait_closed(self, timeout: float = 5.0) -> bool:
        """Block until the server finished this connection.

        Args:
            timeout: seconds to wait at most.

        Returns:
            Whether the connection is closed.
        """
        return self._done.wait(timeout)

    def _finish(self) -> None:
        self.closed = True
        self._done.set()


def _base64_views(raw: bytes) -> Iterable[bytes]:
    """Yield the base64 decoding of every word (of every line) that decodes."""
    for line in raw.split(b"\n"):
        for word in line.split():
            blob = _b64(word)
            if blob:
                yield blob


def _b64(candidate: bytes) -> bytes:
    # Pad generously: a client may strip padding, and a word is tried even if
    # it was never meant as base64, so failures are normal and silent.
    try:
        return base64.b64decode(candidate + b"=" * (-len(candidate) % 4), validate=True)
    except (binascii.Error, ValueError):
        return b""
