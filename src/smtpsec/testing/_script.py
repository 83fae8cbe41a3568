"""What the fake server says: the :class:`Script` that turns a good MSA hostile.

Every misbehaviour in the attack catalogue (checklist §3 and §5) is a field of
one frozen dataclass, so a test reads as data: ``Script(strip_starttls=True)``
instead of a subclass per attack. Replies are plain values too (a
``(code, text)`` pair, raw bytes, or one of the shaped replies :class:`Drip`,
:class:`Endless` and :class:`LongLine`), and every shaped reply is bounded in
time and bytes so a test can never hang the suite.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

from smtpsec.testing._capture import Capture

__all__ = [
    "DEFAULT_EXTENSIONS",
    "DEFAULT_GREETING",
    "SUPPORTED_MECHANISMS",
    "CommandHook",
    "Drip",
    "Endless",
    "HookSession",
    "LongLine",
    "Reply",
    "Script",
]

#: What a well-configured MSA advertises inside TLS (RFC 6409 + common extensions).
#: ``AUTH`` is added from :attr:`Script.auth_mechanisms`.
DEFAULT_EXTENSIONS: Final[tuple[str, ...]] = (
    "PIPELINING",
    "SIZE 10485760",
    "8BITMIME",
    "SMTPUTF8",
    "ENHANCEDSTATUSCODES",
    "DSN",
    "CHUNKING",
)

#: The greeting a good MSA sends.
DEFAULT_GREETING: Final = (220, "smtp.example.test ESMTP smtpsec.testing ready")

#: SASL mechanisms the fake server can actually verify (others may still be
#: *advertised*, e.g. as bait; using them gets ``504``).
SUPPORTED_MECHANISMS: Final = frozenset(
    {"PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2", "OAUTHBEARER", "EXTERNAL", "SCRAM-SHA-256"}
)

#: Upper bound on any streamed reply, so a test that forgets to disconnect
#: still ends (64 MiB is far beyond every client limit worth testing).
_STREAM_CAP: Final = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Drip:
    """Send ``data`` one byte at a time, waiting ``interval`` seconds between bytes.

    Models a byte-dribbling server that keeps a connection alive without ever
    finishing a reply (R-5321-4.5.3.2-1). The wait is interrupted when the
    server stops.

    Attributes:
        data: the bytes to trickle, e.g. ``b"220 slow\\r\\n"``.
        interval: seconds between two bytes.
    """

    data: bytes
    interval: float = 0.05


@dataclass(frozen=True, slots=True)
class Endless:
    """Stream a multi-line reply that never ends (``250-x`` forever).

    The stream stops when the client disconnects, when the server stops, or
    after ``max_bytes`` (R-5321-4.5.3.1-2).

    Attributes:
        line: one continuation line, repeated.
        max_bytes: hard cap on the bytes streamed.
    """

    line: bytes = b"250-x\r\n"
    max_bytes: int = _STREAM_CAP


@dataclass(frozen=True, slots=True)
class LongLine:
    """Send one reply line of ``size`` bytes with no line ending at all.

    Attributes:
        size: total length of the line, including the code prefix.
        prefix: how the line starts (the rest is ``x`` bytes).
    """

    size: int
    prefix: bytes = b"250 "


#: A reply the server can send: ``(code, text)`` (``text`` may hold ``\\n`` for a
#: multi-line reply; a ``421`` also closes the connection), raw bytes sent
#: verbatim, a shaped reply, or ``None`` for "do not answer at all".
Reply = tuple[int, str] | bytes | Drip | Endless | LongLine | None


class HookSession(Protocol):
    """What an ``on_command`` hook may use of the server session that calls it."""

    capture: Capture
    tls_active: bool
    user: str | None

    def send(self, data: bytes) -> None:
        """Write raw bytes to the client."""

    def close(self) -> None:
        """End the session after the current command, without a reply."""


#: Escape hatch: called with the session and the command line (text, no CRLF)
#: before anything else; returning bytes sends them instead of the normal reply.
CommandHook = Callable[[HookSession, str], bytes | None]


def _upper_keys(value: Mapping[str, Reply]) -> Mapping[str, Reply]:
    # Upper-case keys once so lookups by verb need no normalisation later.
    return {key.upper(): reply for key, reply in value.items()}


@dataclass(frozen=True, slots=True, kw_only=True)
class Script:
    """How the fake server behaves; the defaults make a correct, strict MSA.

    Reply overrides replace the server's processing of that command entirely:
    the server sends the given reply and changes no state (a ``BDAT`` chunk is
    still consumed first so the stream stays in sync). The key ``"."`` names
    the final reply to a message (after ``DATA``'s dot or ``BDAT … LAST``).

    Attributes:
        greeting: the connection greeting (``None``: never greet, stay silent).
        hostname: the name the server gives in its ``EHLO`` reply.
        extensions: ``EHLO`` keywords advertised inside TLS (and on a
            ``Security.PLAINTEXT`` server); ``SIZE n`` here is also enforced.
        pre_tls_extensions: what a STARTTLS server advertises before TLS;
            ``None`` means ``extensions`` without ``AUTH``. ``STARTTLS`` is
            appended automatically unless ``strip_starttls``.
        auth_mechanisms: mechanisms offered (and accepted) inside TLS; an
            ``AUTH`` line is added to ``extensions`` unless one is present.
        pre_tls_auth: mechanisms advertised *and accepted* before STARTTLS, as
            bait (EAST ``setup_opportunistic_encryption``, R-EAST-NS-4).
        users: user name -> password, for PLAIN, LOGIN, CRAM-MD5, SCRAM.
        tokens: user name -> bearer token, for XOAUTH2 and OAUTHBEARER.
        require_auth: answer ``MAIL`` with ``530 5.7.0`` until authenticated.
        require_tls: on a STARTTLS server, answer ``MAIL`` (and ``AUTH``, unless
            ``pre_tls_auth`` is set) with ``530 5.7.0`` before TLS.
        refuse_recipients: address -> ``(code, text)`` answered to its ``RCPT``.
        max_recipients: answer further ``RCPT`` with ``452 4.5.3`` past this many.
        greeting_raw: shortcut: raw greeting bytes (wins over ``greeting``).
        ehlo_reply: shortcut for ``replies["EHLO"]`` (both phases).
        auth_reply: shortcut for ``replies["AUTH"]``, e.g. ``(503, "5.5.1 already
            authenticated")`` (R-4954-4-6); no SASL exchange happens.
        strip_starttls: omit ``STARTTLS`` from ``EHLO`` and answer it ``502``.
        starttls_reply: shortcut for ``replies["STARTTLS"]``: answer with this
            reply and stay in plaintext.
        starttls_inject: bytes sent in the same write as the ``220`` to
            ``STARTTLS`` (response injection, R-EAST-BR-1).
        starttls_no_handshake: after the ``220``, skip the handshake and keep
            talking plaintext; ``True`` writes ``250 2.0.0 ok``, bytes write those.
        post_tls_ehlo_silent: never answer ``EHLO`` once TLS is active (EAST B_1).
        replies: verb -> reply override, in every phase.
        pre_tls_replies: verb -> reply override before TLS only (wins over ``replies``).
        post_tls_replies: verb -> reply override inside TLS only (wins over ``replies``).
        extra_replies_after: ``(verb, bytes)``: after the normal reply to
            ``verb``, also send these bytes (a reply-count desync).
        close_after: drop the connection, unanswered, when this verb arrives.
        drip: shortcut that sends the greeting as ``Drip(data, interval)``.
        endless_multiline: shortcut for an endless ``220-`` greeting.
        long_line: shortcut for a greeting of this many bytes with no CRLF.
        on_command: escape hatch, see :data:`CommandHook`.
        socket_buffer: bytes for each connection's kernel send and receive
            buffers (``SO_SNDBUF``/``SO_RCVBUF``), to make flow control bite
            with small amounts of data; ``None`` leaves the system's.
    """

    greeting: Reply = DEFAULT_GREETING
    hostname: str = "smtp.example.test"
    extensions: tuple[str, ...] = DEFAULT_EXTENSIONS
    pre_tls_extensions: tuple[str, ...] | None = None
    auth_mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN")
    pre_tls_auth: tuple[str, ...] = ()
    users: Mapping[str, str] = field(default_factory=dict)
    tokens: Mapping[str, str] = field(default_factory=dict)
    require_auth: bool = False
    require_tls: bool = True
    refuse_recipients: Mapping[str, tuple[int, str]] = field(default_factory=dict)
    max_recipients: int | None = None
    greeting_raw: bytes | None = None
    ehlo_reply: Reply = None
    auth_reply: Reply = None
    strip_starttls: bool = False
    starttls_reply: Reply = None
    starttls_inject: bytes = b""
    starttls_no_handshake: bool | bytes = False
    post_tls_ehlo_silent: bool = False
    replies: Mapping[str, Reply] = field(default_factory=dict)
    pre_tls_replies: Mapping[str, Reply] = field(default_factory=dict)
    post_tls_replies: Mapping[str, Reply] = field(default_factory=dict)
    extra_replies_after: tuple[str, bytes] | None = None
    close_after: str | None = None
    drip: tuple[bytes, float] | None = None
    endless_multiline: bool = False
    long_line: int | None = None
    on_command: CommandHook | None = None
    socket_buffer: int | None = None

    def __post_init__(self) -> None:
        for name in ("replies", "pre_tls_replies", "post_tls_replies"):
            object.__setattr__(self, name, _upper_keys(getattr(self, name)))
        if self.close_after is not None:
            object.__setattr__(self, "close_after", self.close_after.upper())
        if self.extra_replies_after is not None:
            verb, data = self.extra_replies_after
            object.__setattr__(self, "extra_replies_after", (verb.upper(), data))

    # ------------------------------------------------------------------ queries

    def effective_greeting(self) -> Reply:
        """Return the greeting after applying the greeting shortcuts.

        ``greeting_raw``, ``drip``, ``endless_multiline`` and ``long_line`` all
        shape the greeting (the first thing a client reads); to shape another
        reply, put a :class:`Drip`, :class:`Endless` or :class:`LongLine` into
        ``replies``.
        """
        if self.greeting_raw is not None:
            return self.greeting_raw
        if self.drip is not None:
            return Drip(*self.drip)
        if self.endless_multiline:
            return Endless(line=b"220-x\r\n")
        if self.long_line is not None:
            return LongLine(self.long_line, prefix=b"220 ")
        return self.greeting

    def override(self, verb: str, *, tls_active: bool) -> tuple[bool, Reply]:
        """Look up a reply override for ``verb``.

        Args:
            verb: the upper-case command verb (or ``"."`` for end of data).
            tls_active: whether the session is inside TLS.

        Returns:
            ``(found, reply)``; ``found`` is ``False`` when no override applies.
        """
        phase = self.post_tls_replies if tls_active else self.pre_tls_replies
        if verb in phase:
            return True, phase[verb]
        if verb == "EHLO" and tls_active and self.post_tls_ehlo_silent:
            return True, None
        if verb in self.replies:
            return True, self.replies[verb]
        # Shortcut fields are resolved here, not merged at construction, so
        # replace(ehlo_reply=None) really removes the override.
        shortcut = {"EHLO": self.ehlo_reply, "AUTH": self.auth_reply}.get(verb)
        if verb == "STARTTLS":
            shortcut = self.starttls_reply
        return shortcut is not None, shortcut

    def advertised(self, *, starttls_mode: bool, tls_active: bool) -> tuple[str, ...]:
        """Return the ``EHLO`` keywords for this phase of the session.

        Args:
            starttls_mode: whether the server runs with ``tls=Security.STARTTLS``.
            tls_active: whether TLS is up on this connection.

        Returns:
            The extension lines, without the leading hostname line.
        """
        if starttls_mode and not tls_active:
            if self.pre_tls_extensions is not None:
                base = list(self.pre_tls_extensions)
            else:
                base = [e for e in self.extensions if not _is_auth(e)]
            if self.pre_tls_auth and not any(_is_auth(e) for e in base):
                base.append("AUTH " + " ".join(self.pre_tls_auth))
            if self.strip_starttls:
                base = [e for e in base if e.upper() != "STARTTLS"]
            elif "STARTTLS" not in (e.upper() for e in base):
                base.append("STARTTLS")
            return tuple(base)
        base = list(self.extensions)
        if self.auth_mechanisms and not any(_is_auth(e) for e in base):
            base.append("AUTH " + " ".join(self.auth_mechanisms))
        return tuple(base)

    def offered_mechanisms(self, *, starttls_mode: bool, tls_active: bool) -> tuple[str, ...]:
        """Return the SASL mechanisms the server accepts in this phase.

        Args:
            starttls_mode: whether the server runs with ``tls=Security.STARTTLS``.
            tls_active: whether TLS is up on this connection.

        Returns:
            Upper-case mechanism names from the advertised ``AUTH`` line.
        """
        for ext in self.advertised(starttls_mode=starttls_mode, tls_active=tls_active):
            if _is_auth(ext):
                return tuple(m.upper() for m in ext.split()[1:])
        return ()

    def size_limit(self, *, starttls_mode: bool, tls_active: bool) -> int:
        """Return the advertised ``SIZE`` limit (0 when absent or unlimited)."""
        for ext in self.advertised(starttls_mode=starttls_mode, tls_active=tls_active):
            parts = ext.split()
            if parts[0].upper() == "SIZE" and len(parts) > 1 and parts[1].isdigit():
                return int(parts[1])
        return 0

    def replace(self, **changes: object) -> Script:
        """Return a copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def _is_auth(extension: str) -> bool:
    return extension.upper().split(" ", 1)[0] == "AUTH"
