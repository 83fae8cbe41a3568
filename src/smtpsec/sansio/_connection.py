"""The client dialogue as one state table: what may be sent when, and what replies mean.

``ClientConnection`` is I/O-free (h11's model): :meth:`ClientConnection.send`
validates a command against the state it *will* be in once everything already
queued succeeds (so pipelined groups are expressible) and returns the bytes to
write; :meth:`ClientConnection.receive_data` parses server bytes into
:class:`Response` events, matched to commands purely by counting
(R-2920-3.1-3), and moves the real state; :meth:`ClientConnection.next_response`
hands them out in order. The connection is the one place that counts what is
outstanding: commands not yet answered and answers not yet taken. Anything the
table does not allow is a :class:`~smtpsec.errors.LocalProtocolError`; a reply
nobody asked for is a :class:`~smtpsec.errors.RemoteProtocolError`
(R-LIB-DESYNC-1).
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from typing import Final

from ..errors import LocalProtocolError, RemoteProtocolError, ResponseInjectionError
from ._commands import Command, encode_command
from ._extensions import Extensions, parse_ehlo
from ._replies import Reply, ReplyParser

__all__ = ["ClientConnection", "Response", "State"]


class State(enum.Enum):
    """Where the dialogue stands."""

    GREETING = "greeting"  # connected, waiting for the 220
    NEED_EHLO = "need-ehlo"  # greeted (or TLS just started): only EHLO/HELO/QUIT
    READY = "ready"  # EHLO done, no mail transaction open
    AUTH = "auth"  # inside a SASL exchange (334 received)
    MAIL = "mail"  # MAIL accepted
    RCPT = "rcpt"  # at least one RCPT accepted
    DATA = "data"  # 354 received: the body is being sent
    TLS_PENDING = "tls-pending"  # 220 to STARTTLS: the handshake must happen now
    CLOSED = "closed"  # QUIT answered, 421, or a fatal error


#: Commands that may be sent in each state; the value is the state after success.
_TABLE: Final[dict[State, dict[str, State]]] = {
    State.NEED_EHLO: {"EHLO": State.READY, "HELO": State.READY, "LHLO": State.READY},
    State.READY: {
        # RFC 5321 §4.1.4: a client may say EHLO (or HELO) again; the server
        # answers as to a fresh one (or refuses: its reply decides).
        "EHLO": State.READY,
        "HELO": State.READY,
        "LHLO": State.READY,
        "STARTTLS": State.TLS_PENDING,
        "AUTH": State.READY,
        "MAIL": State.MAIL,
        "RSET": State.READY,
        "NOOP": State.READY,
    },
    State.AUTH: {"": State.READY},
    State.MAIL: {"RCPT": State.RCPT, "RSET": State.READY, "NOOP": State.MAIL},
    State.RCPT: {
        "RCPT": State.RCPT,
        "DATA": State.DATA,
        "BDAT": State.READY,  # BDAT ... LAST; non-LAST chunks stay in RCPT (see _advance)
        "RSET": State.READY,
        "NOOP": State.RCPT,
    },
}

#: Commands that change no state and may be sent whenever a command may
#: (RFC 5321 §4.1.4); verbs the table does not know (extensions driven through
#: the smtplib drop-in's ``docmd``) are treated the same way.
_NEUTRAL: Final = frozenset({"NOOP", "VRFY", "EXPN", "HELP"})
_COMMAND_STATES: Final = frozenset({State.NEED_EHLO, State.READY, State.MAIL, State.RCPT})

#: Before TLS, a TLS-required connection may only say these (R-8314-5.2-4).
_PRE_TLS_ALLOWED: Final = frozenset({"EHLO", "STARTTLS", "QUIT"})

#: After these, RFC 2920 §3.1 says wait for the reply before sending more.
_GROUP_ENDERS: Final = frozenset(
    {"EHLO", "HELO", "LHLO", "DATA", "QUIT", "NOOP", "STARTTLS", "AUTH", ""}
)
#: The verbs RFC 2920 lets a client pipeline (everything else ends a group too).
_PIPELINABLE: Final = frozenset({"MAIL", "RCPT", "RSET", "BDAT"})
#: Every verb the table gives a meaning to.
_KNOWN: Final = frozenset(
    {verb for moves in _TABLE.values() for verb in moves} | {"QUIT", "STARTTLS", "AUTH", ""}
)


@dataclass(frozen=True, slots=True)
class Response:
    """A reply matched to the command it answers.

    Attributes:
        command: the command, or ``None`` for the greeting and for the reply
            that ends the message body (``data_end`` is then true).
        reply: the server's reply.
        data_end: true for the reply to the end of a DATA body.
        tls: true when the reply arrived over TLS.
        tag: what the caller attached when sending the command (opaque here).
    """

    command: Command | None
    reply: Reply
    data_end: bool = False
    tls: bool = False
    tag: object = None


@dataclass(frozen=True, slots=True)
class _Pending:
    command: Command | None
    data_end: bool = False
    tag: object = None
    early: bool = False  # an EHLO sent under early pipelining: one command may follow it


class ClientConnection:
    """State machine for one SMTP client connection.

    Args:
        tls_active: true when the transport is already TLS (implicit TLS).
        require_tls: when true, the only commands allowed before TLS are
            ``EHLO``, ``STARTTLS`` and ``QUIT`` (R-8314-5.2-4): a second line of
            defence behind the client's guard.
        parser: a custom reply parser (limits); a default one otherwise.
    """

    def __init__(
        self,
        *,
        tls_active: bool = False,
        require_tls: bool = True,
        parser: ReplyParser | None = None,
    ) -> None:
        self._parser = parser or ReplyParser()
        self._state = State.GREETING
        self._projected = State.GREETING
        self._pending: deque[_Pending] = deque([_Pending(None)])
        self._ready: deque[Response] = deque()
        self._tls_active = tls_active
        self._require_tls = require_tls
        self._extensions: Extensions | None = None
        self._server_name = ""
        self._authenticated = False
        self._injected = b""
        self._early = False

    # ------------------------------------------------------------------ properties

    @property
    def state(self) -> State:
        """The state after every reply received so far."""
        return self._state

    @property
    def tls_active(self) -> bool:
        """True once the transport runs TLS."""
        return self._tls_active

    @property
    def authenticated(self) -> bool:
        """True after a ``235`` to AUTH on this connection."""
        return self._authenticated

    @property
    def extensions(self) -> Extensions | None:
        """Extensions from the latest EHLO, or ``None`` before one (and after STARTTLS)."""
        return self._extensions

    @property
    def server_name(self) -> str:
        """The name the server gave in its latest EHLO reply."""
        return self._server_name

    @property
    def awaiting(self) -> int:
        """Replies still outstanding: not yet received, or received and not yet taken."""
        return len(self._pending) + len(self._ready)

    @property
    def unanswered(self) -> int:
        """Commands (and body terminators) sent whose replies have not arrived."""
        return len(self._pending)

    @property
    def idle(self) -> bool:
        """Nothing outstanding and nothing half-received: any byte now is unsolicited."""
        return not self._pending and not self._ready and not self._parser.buffered

    @property
    def partial_reply(self) -> bytes:
        """Bytes of a reply that has started but not finished arriving."""
        return self._parser.buffered

    @property
    def injected_data(self) -> bytes:
        """Bytes that arrived after the ``220`` to STARTTLS (must be empty)."""
        return self._injected

    def check_no_injection(self, unread: bytes = b"", *, peer: str = "the server") -> None:
        """Refuse any byte between the ``220`` to STARTTLS and the handshake (R-EAST-BR-1).

        The one STARTTLS injection check: :meth:`tls_started` runs it, and the
        engine runs it before the handshake with ``unread``, the bytes its
        transport holds that never reached this parser.

        Raises:
            ResponseInjectionError: such bytes arrived (whole replies or fragments).
        """
        if self._injected or self._parser.buffered or unread:
            raise ResponseInjectionError(
                f"{peer} (or an attacker in the path) sent data after the 220 reply to "
                "STARTTLS and before the TLS handshake; the connection was aborted "
                "(response injection). A genuine server never does this"
            )

    # ------------------------------------------------------------------ sending

    def allow_early_pipelining(self) -> None:
        """Let the next EHLO go out early, as ``PIPECONNECT`` allows (draft-harris-early-pipe).

        The next EHLO may be sent before the greeting arrives (when the greeting
        is still due), and one command, or a group of pipelinable ones, may
        follow it before its reply. The caller uses this only for a server that
        advertised ``PIPECONNECT`` before; every other rule of :meth:`send`
        still holds (nothing but EHLO and STARTTLS before TLS, AUTH ends a group).

        Raises:
            LocalProtocolError: EHLO was already sent on this connection (or since TLS).
        """
        if self._projected not in (State.GREETING, State.NEED_EHLO):
            raise LocalProtocolError(
                "early pipelining applies to the first EHLO of a connection (or after TLS starts)"
            )
        self._early = True

    def send(self, command: Command, *, tag: object = None) -> bytes:
        """Validate ``command`` against the projected state and encode it.

        Args:
            command: what to send.
            tag: handed back on the :class:`Response` that answers it.

        Raises:
            LocalProtocolError: the command is not legal now.
            InvalidArgumentError: an argument cannot be sent safely.
        """
        verb = command.verb
        # The arguments first: an unsafe one is the caller's real problem,
        # whatever the state, and nothing changes before both checks pass.
        data = encode_command(command)
        if self._projected is State.CLOSED or self._projected is State.TLS_PENDING:
            raise LocalProtocolError(
                f"cannot send {verb or 'AUTH data'}: the connection is "
                f"{self._projected.value}; open a new connection"
            )
        behind = self._pending[-1] if self._pending else None
        if behind is not None and behind.command is not None:
            last = behind.command.verb
            if (last in _GROUP_ENDERS or last not in _PIPELINABLE) and not behind.early:
                raise LocalProtocolError(
                    f"cannot queue {verb or 'AUTH data'} behind {last or 'AUTH data'}: "
                    "RFC 2920 requires waiting for that reply first"
                )
        if self._require_tls and not self._tls_active and verb not in _PRE_TLS_ALLOWED:
            raise LocalProtocolError(
                f"refusing to send {verb or 'AUTH data'} before TLS: only EHLO, STARTTLS "
                "and QUIT may precede TLS (RFC 8314 §5.2)"
            )
        if verb == "STARTTLS" and self._tls_active:
            raise LocalProtocolError(
                "refusing STARTTLS on a connection that already runs TLS (RFC 3207 §4.2)"
            )
        if verb == "AUTH" and self._authenticated:
            raise LocalProtocolError("already authenticated; AUTH may be sent once (RFC 4954 §4)")
        early = self._early and verb in ("EHLO", "LHLO")
        if verb == "QUIT":
            nxt = State.CLOSED
        else:
            # An early EHLO is sent as if the greeting (still due) were a 220.
            now = (
                State.NEED_EHLO if early and self._projected is State.GREETING else self._projected
            )
            nxt = self._lookup(now, verb)
            if verb == "BDAT" and not _is_last_chunk(command):
                nxt = State.RCPT
        self._pending.append(_Pending(command, tag=tag, early=early))
        self._projected = nxt
        if early:
            self._early = False
        return data

    def end_data(self, *, tag: object = None, replies: int = 1) -> None:
        """Record that the body terminator was sent.

        Args:
            tag: handed back on the response(s) to the terminator.
            replies: how many replies the terminator gets: one for SMTP, one per
                accepted recipient for LMTP (RFC 2033 §4.2).
        """
        if self._state is not State.DATA:
            raise LocalProtocolError("no DATA body is open")
        if replies < 1:
            raise LocalProtocolError("the end of a message body is answered at least once")
        for _ in range(replies):
            self._pending.append(_Pending(None, data_end=True, tag=tag))
        self._projected = State.READY

    def tls_started(self) -> None:
        """Record that the TLS handshake completed after ``220`` to STARTTLS.

        Everything learnt before TLS is forgotten; a fresh EHLO is required
        (R-3207-4.2-1).

        Raises:
            ResponseInjectionError: bytes arrived between the 220 and the handshake.
            LocalProtocolError: no STARTTLS was accepted.
        """
        if self._state is not State.TLS_PENDING:
            raise LocalProtocolError("tls_started() without an accepted STARTTLS")
        self.check_no_injection()
        self._tls_active = True
        self._extensions = None
        self._server_name = ""
        self._state = self._projected = State.NEED_EHLO

    def close(self) -> None:
        """Mark the connection closed (transport gone); nothing more will arrive."""
        self._state = self._projected = State.CLOSED
        self._pending.clear()
        self._ready.clear()

    # ------------------------------------------------------------------ receiving

    def receive_data(self, data: bytes) -> None:
        """Feed server bytes; the responses they complete wait in :meth:`next_response`.

        Parsing happens here, so a reply nobody asked for fails at once, not
        when someone gets round to reading it.

        Raises:
            RemoteProtocolError: malformed reply, or a reply nobody asked for.
        """
        if self._state is State.TLS_PENDING:
            # Anything here is plaintext injected before the handshake.
            self._injected += data
            return
        replies = self._parser.feed(data)
        for index, reply in enumerate(replies):
            if not self._pending:
                self._state = self._projected = State.CLOSED
                raise RemoteProtocolError(
                    f"the server sent a reply nobody asked for ({reply.code}); "
                    "replies and commands are out of step, so the connection was closed "
                    "(possible injection)"
                )
            pending = self._pending.popleft()
            response = Response(
                pending.command,
                reply,
                data_end=pending.data_end,
                tls=self._tls_active,
                tag=pending.tag,
            )
            self._ready.append(response)
            self._advance(pending, reply)
            if self._state is State.CLOSED and (reply.code == 421 or pending.command is None):
                # A refusing greeting or a 421 ended the dialogue: whatever
                # follows it answers nothing that can still matter.
                self._parser.take_buffered()
                break
            if self._tls_pending():
                # Whatever followed the 220, whole replies or fragments, was sent
                # before TLS: keep it as evidence of injection (R-EAST-BR-1).
                leftover = b"".join(_reencode(r) for r in replies[index + 1 :])
                self._injected = leftover + self._parser.take_buffered()
                break
        if not self._pending and not self._tls_pending():
            # Everything is answered: what we expected no longer matters.
            self._projected = self._state

    def drain(self) -> list[Response]:
        """Take every complete response, in order (see :meth:`next_response`)."""
        out = list(self._ready)
        self._ready.clear()
        return out

    def next_response(self) -> Response | None:
        """The oldest response not yet taken, or ``None`` when none is complete."""
        return self._ready.popleft() if self._ready else None

    # ------------------------------------------------------------------ internals

    def _tls_pending(self) -> bool:
        return self._state is State.TLS_PENDING

    @staticmethod
    def _lookup(state: State, verb: str) -> State:
        if state in _COMMAND_STATES and (verb in _NEUTRAL or verb not in _KNOWN):
            return state
        if verb == "RSET" and state is State.NEED_EHLO:
            return state  # nothing to reset yet, and nothing changes
        allowed = _TABLE.get(state, {})
        if verb not in allowed:
            hint = ""
            if state is State.GREETING:
                hint = "; wait for the server greeting first"
            elif state is State.NEED_EHLO:
                hint = "; send EHLO first"
            raise LocalProtocolError(
                f"{verb or 'AUTH data'} is not allowed in state {state.value}{hint}"
            )
        return allowed[verb]

    def _advance(self, pending: _Pending, reply: Reply) -> None:
        command = pending.command
        if reply.code == 421:
            # RFC 5321 §3.8: the server is closing the channel.
            self._state = self._projected = State.CLOSED
            self._pending.clear()
            return
        if command is None:
            if pending.data_end:
                self._state = State.READY
            elif reply.code in (220, 554):
                # 554: "no service here", but the channel stays open for QUIT
                # (RFC 5321 §3.1); nothing else is legal because the client
                # refuses to go on (R-LIB-GREET-1).
                self._state = State.NEED_EHLO
                if self._projected is State.GREETING:
                    self._projected = State.NEED_EHLO
            else:
                # No session: nothing sent early behind the greeting counts.
                self._state = self._projected = State.CLOSED
                self._pending.clear()
            return
        verb = command.verb
        if verb == "QUIT":
            self._state = self._projected = State.CLOSED
            return
        if verb == "AUTH" or (verb == "" and self._state is State.AUTH):
            if reply.code == 334:
                self._state = self._projected = State.AUTH
            elif reply.code == 235 or self._state is State.AUTH:
                # Success, or the end of an exchange (refused, or cancelled).
                self._authenticated = reply.code == 235
                self._state = self._projected = State.READY
            # A refused first AUTH line leaves the state as it was: READY, or
            # NEED_EHLO when an early EHLO before it was refused too.
            return
        if verb == "STARTTLS":
            if reply.code == 220:
                self._state = State.TLS_PENDING
                self._projected = State.TLS_PENDING
                self._pending.clear()
            else:
                self._state = State.READY
                if self._projected is State.TLS_PENDING:
                    self._projected = State.READY
            return
        if verb == "DATA":
            # RFC 5321 §3.3: no content without 354; on any other reply the
            # transaction stays as it was and the client must RSET.
            if reply.code == 354:
                self._state = State.DATA
            return
        if not reply.is_success:
            # A refused command leaves the real state as it was (a refused MAIL
            # opens no transaction; a refused RCPT or BDAT keeps it, and the
            # client must RSET, RFC 3030 §2); pipelined commands behind it are
            # answered with failures and change nothing either.
            return
        if verb in ("EHLO", "HELO", "LHLO"):
            if verb != "HELO":
                self._server_name, self._extensions = parse_ehlo(reply)
            else:
                self._extensions = Extensions()
            self._state = State.READY
            return
        if verb == "BDAT" and not _is_last_chunk(command):
            return
        before = self._state
        try:
            self._state = self._lookup(before, verb)
        except LocalProtocolError:
            self._state = self._projected = State.CLOSED
            raise RemoteProtocolError(
                f"the server accepted {verb} out of sequence (state {before.value}); "
                "the dialogue is out of step, connection closed"
            ) from None


def _reencode(reply: Reply) -> bytes:
    lines = reply.lines or ("",)
    return b"".join(
        f"{reply.code}{'-' if i < len(lines) - 1 else ' '}{text}\r\n".encode("utf-8", "replace")
        for i, text in enumerate(lines)
    )


def _is_last_chunk(command: Command) -> bool:
    return command.argument.upper().endswith("LAST")
