"""Mail transactions at the protocol's round-trip minimum (RFC 2920 PIPELINING, RFC 3030
CHUNKING), with lock-step fallback, streaming bodies and per-message outcomes.

With PIPELINING and CHUNKING a small message is one write (``MAIL``, every
``RCPT``, ``BDAT n LAST`` and the body) and many messages share a flight; with
PIPELINING alone the envelope and ``DATA`` share a write and each body's
terminator travels with the next envelope; without PIPELINING every command
waits for its reply. Replies are matched to commands by counting (RFC 2920
§3.1) and handled one by one, so each message gets its own outcome.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

from ..errors import (
    CapabilityError,
    ConnectError,
    DeliveryUnknown,
    InvalidArgumentError,
    RecipientsRefused,
    RemoteProtocolError,
    ReplyError,
    SenderRefused,
    ServerClosing,
    SMTPSecError,
)
from ..sansio import BdatEncoder, Command, DataEncoder, Extensions, Reply
from ..sending import RecipientRefusal, SendOptions, SendResult
from ._envelope import plan_envelope
from ._io import IO
from ._message import PreparedMessage
from ._phases import quit_quietly
from ._wire import Wire

__all__ = ["run_transactions"]

#: BDAT chunk size when streaming: big enough to amortise the command, small
#: enough that memory stays flat.
_BDAT_CHUNK: Final = 1024 * 1024
#: Replies allowed to be outstanding while streaming BDAT chunks (R-2920-3.1-5).
_BDAT_WINDOW: Final = 4
#: Bodies up to this size go in the same write as MAIL/RCPT (one flight).
_INLINE_BODY: Final = 256 * 1024
#: Bound on unanswered commands and unwritten bytes per flight. Over a
#: transport that reads while it writes (smtpsec's own), replies cannot pile up
#: against a blocked write, so a flight is bounded for memory only and a
#: 200-message window or a long recipient list is one round trip. Over any
#: other transport the replies a flight provokes must fit in socket buffers
#: while we are still writing (R-2920-3.1-5), hence the small bound.
_FLIGHT_COMMANDS: Final = 4096
_FLIGHT_COMMANDS_LOCKED_WRITE: Final = 256
_FLIGHT_BYTES: Final = 512 * 1024

_Handler = Callable[[Reply], None]


def _enh(reply: Reply) -> str | None:
    return str(reply.enhanced_status) if reply.enhanced_status else None


def _ignore(reply: Reply) -> None:
    """RSET's reply: a failure would show up on the MAIL that follows."""


@dataclass(eq=False)
class _Tx:
    """Book-keeping for one message."""

    msg: PreparedMessage
    mail: Command | None = None
    rcpts: list[Command] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    refused: dict[str, RecipientRefusal] = field(default_factory=dict)
    error: SMTPSecError | None = None
    result: SendResult | None = None
    size: int = 0
    delivered: list[str] = field(default_factory=list)  # LMTP: per-recipient successes
    go_ahead: bool = False  # 354 received
    over: bool = False  # the DATA terminator went: the transaction ends with its reply
    #: ``wire.writes`` when the message's last byte (DATA end, BDAT LAST) was
    #: queued: the flight that carries it is the next write.
    last_byte_queued_at: int | None = None
    #: Its first command went out while the previous message's final reply
    #: was still due (RFC 2920 allows that; some servers refuse it).
    behind_open_data: bool = False

    def fully_sent(self, writes: int) -> bool:
        """Whether a write carrying the message's last byte was attempted."""
        return self.last_byte_queued_at is not None and writes > self.last_byte_queued_at

    def failed(self) -> bool:
        # A method, not ``error is not None`` inline: replies handled inside a
        # call change it, which a type checker's narrowing would not expect.
        return self.error is not None

    @property
    def settled(self) -> bool:
        return self.error is not None or self.result is not None

    def fail(self, error: SMTPSecError) -> None:
        """Record the first failure only (later replies are its consequences)."""
        if self.error is None:
            self.error = error

    # ---------------------------------------------------------------- replies

    def on_mail(self, reply: Reply) -> None:
        if not reply.is_success:
            self.fail(
                SenderRefused(
                    f"the server refused sender {self.msg.sender!r}: {reply.code} "
                    f"{_enh(reply) or ''} {reply.text}; the message was not sent",
                    code=reply.code,
                    enhanced_status=_enh(reply),
                    text=reply.text,
                    sender=self.msg.sender,
                )
            )

    def on_rcpt(self, address: str, last: bool) -> _Handler:
        def handle(reply: Reply) -> None:
            if reply.is_success:
                self.accepted.append(address)
            else:
                self.refused[address] = RecipientRefusal(reply.code, _enh(reply), reply.text)
            # A 421 ends the session (RFC 5321 §3.8): with nothing accepted so far,
            # the message goes to none of its recipients.
            if (last or reply.code == 421) and not self.accepted:
                self._all_refused()

        return handle

    def _all_refused(self) -> None:
        first = next(iter(self.refused.values()))
        self.fail(
            RecipientsRefused(
                f"the server refused every recipient ({len(self.refused)}); the message "
                "was not sent: "
                + "; ".join(f"{r}: {v.code} {v.text}" for r, v in self.refused.items()),
                code=first.code,
                enhanced_status=first.enhanced_status,
                text=first.text,
                refused={r: (v.code, v.enhanced_status, v.text) for r, v in self.refused.items()},
            )
        )

    def on_data(self, reply: Reply) -> None:
        if reply.code == 354:
            self.go_ahead = True
        elif reply.is_transient or reply.is_permanent:
            self.fail(_refusal("the server refused DATA", reply))
        else:
            # Neither 354 nor a refusal: replies and commands are out of step
            # (an extra reply arrived earlier), R-LIB-DESYNC-1.
            raise RemoteProtocolError(
                f"the server answered DATA with {reply.code} instead of 354: replies and "
                "commands are out of step; the connection was closed"
            )

    def on_chunk(self, reply: Reply) -> None:
        if not reply.is_success:
            # R-3030-2-4: no further chunk after this one.
            self.fail(_refusal("the server refused a BDAT chunk", reply))

    def on_lmtp_final(self, address: str, last: bool) -> _Handler:
        """LMTP (RFC 2033 §4.2): the terminator gets one reply per accepted recipient."""

        def handle(reply: Reply) -> None:
            if reply.is_success:
                self.delivered.append(address)
            else:
                self.refused[address] = RecipientRefusal(reply.code, _enh(reply), reply.text)
            if not last:
                return
            if not self.delivered:
                self.fail(_refusal("the server refused the message for every recipient", reply))
                return
            self.accepted = self.delivered
            self.on_final("DATA")(reply if reply.is_success else _first_success(reply))

        return handle

    def on_final(self, method: str) -> _Handler:
        def handle(reply: Reply) -> None:
            if self.error is not None:
                return
            if not reply.is_success:
                self.fail(_refusal("the server did not accept the message", reply))
                return
            self.result = SendResult(
                sender=self.msg.sender,
                accepted=tuple(self.accepted),
                refused=dict(self.refused),
                code=reply.code,
                enhanced_status=_enh(reply),
                text=reply.text,
                size=self.size,
                method=method,
            )

        return handle


def _first_success(reply: Reply) -> Reply:
    """The reply a mixed LMTP outcome is summarised by (the message was delivered)."""
    return Reply(250, ("delivered to some recipients",))


def _refusal(what: str, reply: Reply) -> ReplyError:
    later = " (temporary: try again later)" if reply.is_transient else ""
    return ReplyError(
        f"{what}: {reply.code} {_enh(reply) or ''} {reply.text}; the message was not sent{later}",
        code=reply.code,
        enhanced_status=_enh(reply),
        text=reply.text,
    )


def _body_error(exc: Exception) -> SMTPSecError:
    if isinstance(exc, SMTPSecError):
        return exc
    error = InvalidArgumentError(
        f"the message body could not be read ({type(exc).__name__}: {exc}); the message "
        "was not sent"
    )
    error.__cause__ = exc
    return error


def _guard_8bit(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """For bodies of unknown content sent without 8BITMIME: stop at the first 8-bit octet."""
    for chunk in chunks:
        if not chunk.isascii():
            raise CapabilityError(
                "the streamed body contains 8-bit octets but the server does not offer "
                "8BITMIME; the transfer was stopped and the message was not delivered. "
                "Transfer-encode the body (quoted-printable/base64) or send an EmailMessage"
            )
        yield chunk


class _Engine:
    """One run of transactions over a wire, in flights of pipelined commands.

    Each command is queued on the wire with its reply handler as the tag, so
    the wire's connection is the only record of what is outstanding.
    """

    def __init__(self, wire: Wire, ext: Extensions, *, needs_rset: bool, lmtp: bool) -> None:
        self.wire = wire
        self.lmtp = lmtp
        self.pipelining = "PIPELINING" in ext
        # LMTP answers the end of the body once per recipient; DATA keeps that simple.
        self.chunking = "CHUNKING" in ext and not lmtp
        self.eight_bit_ok = "8BITMIME" in ext
        self._initial_rset = needs_rset
        reads_while_writing = getattr(type(wire.transport), "reads_while_writing", False)
        self._max_commands = (
            _FLIGHT_COMMANDS if reads_while_writing else _FLIGHT_COMMANDS_LOCKED_WRITE
        )
        self._previous: _Tx | None = None  # the last transaction that sent MAIL
        self._unwritten = 0  # commands queued since the last flight

    # ---------------------------------------------------------------- flights

    def _command(self, command: Command, handler: _Handler, payload: bytes = b"") -> None:
        """Queue ``command`` (and a BDAT payload, which must travel with it)."""
        self.wire.queue(command, tag=handler)
        if payload:
            self.wire.queue_content(payload)
            self.wire.log_content(len(payload))
        self._unwritten += 1

    def _boundary(self) -> IO[None]:
        """Settle now in lock-step mode, or when the flight reached its bounds."""
        if (
            not self.pipelining
            or self._unwritten >= self._max_commands
            or self.wire.unwritten >= _FLIGHT_BYTES
        ):
            yield from self._settle()

    def _write(self) -> IO[None]:
        yield from self.wire.flush()
        self._unwritten = 0

    def _settle(self, keep: int = 0) -> IO[None]:
        """Write the flight, then handle replies until at most ``keep`` are due."""
        yield from self._write()
        while self.wire.conn.awaiting > keep:
            response = yield from self.wire.read()
            handler = response.tag
            assert callable(handler), "every transaction command carries its handler"
            reply = response.reply
            # The reply is first the answer to its command (so the message
            # records which step was refused); a 421 then ends the session.
            handler(reply)
            if reply.code == 421:
                # RFC 5321 §3.8: the server is closing the channel.
                raise ServerClosing(
                    f"{self.wire.peer} closed the connection: {reply.code} {reply.text}; "
                    "the message in progress was not sent (temporary: try again later)",
                    code=reply.code,
                    command=response.command.verb if response.command is not None else "",
                    enhanced_status=_enh(reply),
                    text=reply.text,
                )

    # ---------------------------------------------------------------- transactions

    @property
    def needs_rset(self) -> bool:
        """Whether the server may hold an open transaction (RSET before the next MAIL).

        Unknown outcomes count as open: in a pipelined flight a speculative RSET
        costs a command, not a round trip (R-5321-3.3-1, R-3030-2-4).
        """
        prev = self._previous
        if prev is None:
            return self._initial_rset
        if prev.over or prev.result is not None:
            return False
        return not isinstance(prev.error, SenderRefused)  # a refused MAIL opens nothing

    def run(self, txs: Sequence[_Tx], *, then_quit: bool = False) -> IO[None]:
        for tx in txs:
            if tx.error is None:
                yield from self._transaction(tx)
        if then_quit and self.pipelining and self.chunking:
            # RFC 2920 §3.1: QUIT may end a group. After BDAT LAST (not after a
            # DATA terminator, behind which some servers refuse any command)
            # it rides in the message's last flight, and the 221 arrives with
            # the message's reply instead of one round trip later.
            self._command(Command("QUIT"), _ignore)
            yield from self._settle(keep=1)
            yield from quit_quietly(self.wire, written=True)
        else:
            yield from self._settle()

    def _transaction(self, tx: _Tx) -> IO[None]:
        assert tx.mail is not None
        inline: bytes | None = None
        chunks: Iterator[tuple[bytes, bool]] | None = None
        first: tuple[bytes, bool] | None = None
        raw: Iterator[bytes] | None = None
        try:
            # Read the body's start before any command: a body that cannot be
            # read at all then costs nothing on the wire.
            if self.chunking and tx.msg.size is not None and tx.msg.size <= _INLINE_BODY:
                inline = b"".join(data for data, _last in self._bdat_chunks(self._body(tx)))
            elif self.chunking:
                chunks = self._bdat_chunks(self._body(tx), _BDAT_CHUNK)
                first = next(chunks)
            else:
                body = self._body(tx)
                raw = itertools.chain(list(itertools.islice(body, 1)), body)
        except Exception as exc:
            tx.fail(_body_error(exc))
            return
        prev = self._previous
        behind = prev is not None and prev.last_byte_queued_at is not None and not prev.settled
        if behind and self.wire.lockstep_after_data:
            yield from self._settle()  # this server wants the final reply first
            behind = False
        tx.behind_open_data = behind
        if self.needs_rset:
            self._command(Command("RSET"), _ignore)
            yield from self._boundary()
        self._previous = tx
        self._command(tx.mail, tx.on_mail)
        yield from self._boundary()
        if tx.failed():
            return
        for index, rcpt in enumerate(tx.rcpts):
            self._command(rcpt, tx.on_rcpt(rcpt.argument, index == len(tx.rcpts) - 1))
            yield from self._boundary()
            if tx.failed():
                return
        if inline is not None:
            tx.size = len(inline)
            tx.last_byte_queued_at = self.wire.writes
            self._command(Command("BDAT", f"{len(inline)} LAST"), tx.on_final("BDAT"), inline)
            yield from self._boundary()
        elif chunks is not None and first is not None:
            yield from self._stream_bdat(tx, first, chunks)
        else:
            assert raw is not None
            yield from self._data(tx, raw)

    @staticmethod
    def _bdat_chunks(
        body: Iterator[bytes], size: int = _INLINE_BODY
    ) -> Iterator[tuple[bytes, bool]]:
        """Normalised body in chunks of about ``size``, each with a 'last' flag."""
        enc = BdatEncoder()
        buf = bytearray()
        pending: bytes | None = None
        for raw in body:
            buf += enc.feed(raw)
            while len(buf) >= size:
                if pending is not None:
                    yield pending, False
                pending = bytes(buf[:size])
                del buf[:size]
        buf += enc.finish()
        if pending is not None and buf:
            yield pending, False
            pending = None
        yield (bytes(buf) if pending is None else pending), True

    def _body(self, tx: _Tx) -> Iterator[bytes]:
        chunks = tx.msg.chunks()
        if tx.msg.eight_bit is None and not self.eight_bit_ok:
            chunks = _guard_8bit(chunks)
        return chunks

    def _stream_bdat(
        self, tx: _Tx, chunk: tuple[bytes, bool], rest: Iterator[tuple[bytes, bool]]
    ) -> IO[None]:
        """A large or unsized body: chunk after chunk, a few replies outstanding."""
        while True:
            data, last = chunk
            handler = tx.on_final("BDAT") if last else tx.on_chunk
            tx.size += len(data)
            if last:
                tx.last_byte_queued_at = self.wire.writes
            self._command(
                Command("BDAT", f"{len(data)} LAST" if last else str(len(data))), handler, data
            )
            if last:
                yield from self._boundary()
                return
            yield from self._settle(keep=_BDAT_WINDOW if self.pipelining else 0)
            if tx.failed():
                return  # refused envelope or chunk: R-3030-2-4, RSET comes next
            try:
                chunk = next(rest)
            except Exception as exc:
                # Chunks without LAST were sent: the next transaction's RSET
                # discards them, so nothing is delivered.
                tx.fail(_body_error(exc))
                return

    def _data(self, tx: _Tx, body: Iterator[bytes]) -> IO[None]:
        self._command(Command("DATA"), tx.on_data)
        yield from self._settle()  # DATA ends a group (RFC 2920 §3.1)
        if not tx.go_ahead:
            return  # RFC 5321 §3.3: no content without 354
        enc = DataEncoder()
        if tx.error is None:
            # R-2920-3.1-4: with every recipient refused only the terminator goes.
            try:
                for raw in body:
                    yield from self._content(enc.feed(raw))
            except Exception as exc:
                tx.fail(_body_error(exc))
                # A partial body can only be abandoned by closing the connection:
                # a terminator now would deliver a truncated message.
                raise ConnectError(
                    f"the connection to {self.wire.peer} was closed because a message body "
                    f"failed half-way ({exc}); later messages were not sent"
                ) from exc
        # Recorded before queueing: _content may already write the terminator.
        tx.last_byte_queued_at = self.wire.writes
        yield from self._content(enc.finish())
        tx.size = enc.body_octets
        self.wire.log_content(tx.size)
        if self.lmtp and tx.accepted:
            for index, address in enumerate(tx.accepted):
                last = index == len(tx.accepted) - 1
                self.wire.end_data(tag=tx.on_lmtp_final(address, last))
        else:
            self.wire.end_data(tag=tx.on_final("DATA"))
        self._unwritten += 1
        # The reply to the terminator ends a real transaction either way, so the
        # next envelope may follow in the same write (RFC 2920 §3.1). After a
        # bare terminator (nothing accepted) RSET comes first (R-2920-3.1-4).
        tx.over = tx.error is None
        yield from self._boundary()

    def _content(self, data: bytes) -> IO[None]:
        self.wire.queue_content(data)
        if self.wire.unwritten >= _FLIGHT_BYTES:
            yield from self._write()

    # ---------------------------------------------------------------- failure

    def abort(self, txs: Sequence[_Tx], cause: SMTPSecError) -> IO[None]:
        """The connection is unusable: close it and give each unsettled message its outcome.

        A message whose last byte went out may have been accepted:
        :class:`DeliveryUnknown`. Of the others, the first carries the cause
        and the rest a :class:`ConnectError` chained to it (none was sent).
        Replies that had already arrived (taken in while a long write waited,
        say) are handled first, so the messages they settle keep their outcome.
        """
        with contextlib.suppress(SMTPSecError):  # the connection is going anyway
            for response in (yield from self.wire.arrived()):
                if callable(response.tag):
                    response.tag(response.reply)
        yield from self.wire.close()
        first = True
        for tx in txs:
            if tx.settled:
                continue
            if tx.fully_sent(self.wire.writes) and not isinstance(cause, ServerClosing):
                tx.error = DeliveryUnknown(
                    f"the connection to {self.wire.peer} failed after the whole message was "
                    f"sent and before the server answered ({cause}); it may or may not have "
                    "been accepted, so sending it again may deliver it twice"
                )
            elif first:
                if isinstance(cause, ServerClosing):
                    cause.refused = {
                        r: (v.code, v.enhanced_status, v.text) for r, v in tx.refused.items()
                    }
                tx.error = cause
                first = False
                continue
            else:
                tx.error = ConnectError(
                    f"not sent: the connection failed before this message was accepted "
                    f"({cause}); send it again on a new connection"
                )
            tx.error.__cause__ = cause


def _refused_behind_open_data(tx: _Tx) -> bool:
    """A ``503`` to a ``MAIL`` pipelined behind the previous message's end: not accepted."""
    error = tx.error
    return tx.behind_open_data and isinstance(error, SenderRefused) and error.code == 503


def run_transactions(
    wire: Wire,
    ext: Extensions,
    messages: Sequence[PreparedMessage],
    opts: SendOptions,
    *,
    needs_rset: bool,
    lmtp: bool = False,
    then_quit: bool = False,
) -> IO[tuple[list[SendResult | SMTPSecError], bool]]:
    """Send ``messages`` on an open, authenticated session.

    Per-message failures (refusals, capability checks, unreadable bodies) and
    connection failures alike are returned as outcomes; after a connection
    failure ``wire.conn`` is closed, and the first unsettled message carries
    the cause while the rest carry a :class:`ConnectError` chained to it.

    Args:
        wire: the session's wire (after EHLO/AUTH).
        ext: the extensions of the post-TLS EHLO.
        messages: the prepared messages, in order.
        opts: ESMTP options for every message.
        needs_rset: a previous transaction may still be open on the server.
        lmtp: the server speaks LMTP (RFC 2033): one reply per accepted
            recipient after the body, each recorded per recipient.
        then_quit: the session ends after this one message: where the server
            allows it, ``QUIT`` goes in the message's last flight and the
            connection is closed here (a longer batch ignores it).

    Returns:
        One outcome per message (a result, or the error for that message), and
        whether the server side may still hold an open transaction (RSET needed).
    """
    info = wire.transport.tls
    verified = info is not None and info.verified
    txs: list[_Tx] = []
    for msg in messages:
        try:
            body, mail, rcpts = plan_envelope(msg, ext, opts, verified_tls=verified)
        except SMTPSecError as exc:
            txs.append(_Tx(msg, error=exc))
        else:
            txs.append(_Tx(body, mail, rcpts))
    engine = _Engine(wire, ext, needs_rset=needs_rset, lmtp=lmtp)
    try:
        # One message is never behind another's end, so never sent again below.
        yield from engine.run(txs, then_quit=then_quit and len(txs) == 1)
        again = [i for i, tx in enumerate(txs) if _refused_behind_open_data(tx)]
        if again:
            # The server refuses commands pipelined behind a message's end
            # (Haraka's 503). Those messages opened no transaction: send them
            # again, each MAIL after the previous final reply, and keep doing
            # so on this connection.
            wire.lockstep_after_data = True
            retry = [_Tx(txs[i].msg, txs[i].mail, txs[i].rcpts) for i in again]
            engine = _Engine(wire, ext, needs_rset=engine.needs_rset, lmtp=lmtp)
            for index, tx in zip(again, retry, strict=True):
                txs[index] = tx
            yield from engine.run(retry)
    except SMTPSecError as exc:
        yield from engine.abort(txs, exc)
    except BaseException:
        yield from engine.wire.close()
        raise
    outcomes: list[SendResult | SMTPSecError] = []
    for tx in txs:
        outcome = tx.result if tx.result is not None else tx.error
        assert outcome is not None
        outcomes.append(outcome)
    return outcomes, engine.needs_rset
