"""Mail transactions at the protocol's round-trip minimum (RFC 2920 PIPELINING, RFC 3030
CHUNKING), with lock-step fallback, streaming bodies and per-message outcomes."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from ._message import PreparedMessage
from .errors import (
    CapabilityError,
    ConnectError,
    RecipientsRefused,
    ReplyError,
    SenderRefused,
    SMTPSecError,
)
from .errors import TimeoutError as DeadlineError
from .sansio import BdatEncoder, Command, DataEncoder, Extensions, Reply, State
from ._wire import Wire

__all__ = ["RecipientRefusal", "SendOptions", "SendResult", "run_transactions"]

#: BDAT chunk size when streaming: big enough to amortise the command, small
#: enough that memory stays flat.
_BDAT_CHUNK: Final = 1024 * 1024
#: BDAT chunks allowed in flight before reading a reply (deadlock avoidance, R-2920-3.1-5).
_BDAT_WINDOW: Final = 4
#: Bodies up to this size go in the same write as MAIL/RCPT (one flight).
_INLINE_BODY: Final = 256 * 1024
#: Bound on unacknowledged commands/bytes per pipelined flight (R-2920-3.1-5).
_FLIGHT_COMMANDS: Final = 400
_FLIGHT_BYTES: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class RecipientRefusal:
    """Why the server refused one recipient."""

    code: int
    enhanced_status: str | None
    text: str

    @property
    def transient(self) -> bool:
        """4xx: the recipient may be accepted later."""
        return 400 <= self.code < 500


@dataclass(frozen=True, slots=True)
class SendResult:
    """The outcome of one accepted message.

    Attributes:
        sender: the envelope sender.
        accepted: recipients the server accepted.
        refused: recipient -> refusal, for recipients it refused (the message still
            went to ``accepted``).
        code: the final reply code (250).
        enhanced_status: its enhanced status, if any.
        text: its text (often a queue id).
        size: octets sent (normalised content).
        method: ``"DATA"`` or ``"BDAT"``.
    """

    sender: str
    accepted: tuple[str, ...]
    refused: Mapping[str, RecipientRefusal]
    code: int
    enhanced_status: str | None
    text: str
    size: int
    method: str


@dataclass(frozen=True, slots=True)
class SendOptions:
    """Per-send ESMTP options (used only when the server offers the extension).

    Attributes:
        notify: DSN ``NOTIFY`` values, e.g. ``("FAILURE", "DELAY")`` (RFC 3461).
        ret: DSN ``RET`` (``"FULL"`` or ``"HDRS"``).
        envid: DSN ``ENVID``.
        require_dsn: raise :class:`CapabilityError` when DSN is requested but not offered.
    """

    notify: tuple[str, ...] = ()
    ret: str | None = None
    envid: str | None = None
    require_dsn: bool = True
    mail_params: Mapping[str, str | None] = field(default_factory=dict)


def _enh(reply: Reply) -> str | None:
    return str(reply.enhanced_status) if reply.enhanced_status else None


def _mail_params(msg: PreparedMessage, ext: Extensions, opts: SendOptions) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    limit = ext.max_size
    if msg.size is not None and limit is not None and msg.size > limit:
        raise CapabilityError(
            f"the message is {msg.size} octets but the server accepts at most {limit} "
            "(SIZE); nothing was sent. Shrink the message or its attachments"
        )
    if msg.size is not None and "SIZE" in ext:
        params["SIZE"] = str(msg.size)
    if msg.smtputf8:
        if "SMTPUTF8" not in ext:
            raise CapabilityError(
                "an address or header needs SMTPUTF8, which the server does not offer after "
                "TLS; nothing was sent. Use ASCII addresses for this server"
            )
        params["SMTPUTF8"] = None
    if msg.eight_bit is not False and "8BITMIME" in ext:
        params["BODY"] = "8BITMIME"
    elif msg.eight_bit:
        raise CapabilityError(
            "the body contains 8-bit octets but the server does not offer 8BITMIME; "
            "nothing was sent. Send an EmailMessage (smtpsec then uses a 7-bit transfer "
            "encoding) or encode the body as quoted-printable/base64"
        )
    if opts.ret or opts.envid:
        if "DSN" not in ext:
            if opts.require_dsn:
                raise CapabilityError("DSN options were given but the server does not offer DSN")
        else:
            if opts.ret:
                params["RET"] = opts.ret
            if opts.envid:
                from .sansio import xtext

                params["ENVID"] = xtext(opts.envid)
    params.update(opts.mail_params)
    return params


def _rcpt_params(ext: Extensions, opts: SendOptions) -> dict[str, str | None]:
    if not opts.notify:
        return {}
    if "DSN" not in ext:
        if opts.require_dsn:
            raise CapabilityError("DSN NOTIFY was given but the server does not offer DSN")
        return {}
    return {"NOTIFY": ",".join(opts.notify)}


@dataclass
class _Tx:
    """Book-keeping for one message in flight."""

    msg: PreparedMessage
    mail: Command
    rcpts: list[Command]
    accepted: list[str] = field(default_factory=list)
    refused: dict[str, RecipientRefusal] = field(default_factory=dict)
    error: SMTPSecError | None = None
    result: SendResult | None = None
    size: int = 0
    sender_ok: bool = False


def run_transactions(
    wire: Wire,
    ext: Extensions,
    messages: Sequence[PreparedMessage],
    opts: SendOptions,
    *,
    needs_rset: bool,
) -> tuple[list[SendResult | SMTPSecError], bool]:
    """Send ``messages`` on an open, authenticated session.

    Returns:
        One outcome per message (a result, or the error for that message), and
        whether the server side may still hold an open transaction (RSET needed).

    Raises:
        SMTPSecError: only for failures that end the connection before any
            outcome could be recorded; per-message failures are returned.
    """
    txs: list[_Tx] = []
    outcomes: list[SendResult | SMTPSecError] = []
    rcpt_params = _rcpt_params(ext, opts)
    for msg in messages:
        try:
            mail = Command("MAIL", msg.sender, _mail_params(msg, ext, opts))
        except SMTPSecError as exc:
            txs.append(_Tx(msg, Command("MAIL"), [], error=exc))
            continue
        rcpts = [Command("RCPT", r, rcpt_params) for r in msg.recipients]
        txs.append(_Tx(msg, mail, rcpts))
    pipelining = "PIPELINING" in ext
    chunking = "CHUNKING" in ext
    try:
        if pipelining and chunking:
            needs_rset = _pipelined_bdat(wire, txs, needs_rset)
        else:
            for tx in txs:
                if tx.error is None:
                    needs_rset = _one_by_one(wire, tx, needs_rset, pipelining, chunking)
    except (ConnectError, DeadlineError, SMTPSecError) as exc:
        wire.conn.close()
        for tx in txs:
            if tx.result is None and tx.error is None:
                tx.error = ConnectError(
                    f"not sent: the connection failed before this message was accepted ({exc})"
                )
                tx.error.__cause__ = exc
        if len(txs) == 1:
            raise
    for tx in txs:
        outcomes.append(tx.result if tx.result is not None else tx.error)  # type: ignore[arg-type]
    return outcomes, needs_rset


def _record_envelope(tx: _Tx, replies: Iterator[Reply]) -> None:
    mail = next(replies)
    tx.sender_ok = mail.is_success
    if not mail.is_success:
        tx.error = SenderRefused(
            f"the server refused sender {tx.msg.sender!r}: {mail.code} {mail.text}",
            code=mail.code,
            enhanced_status=_enh(mail),
            text=mail.text,
            sender=tx.msg.sender,
        )
    for rcpt in tx.msg.recipients:
        reply = next(replies)
        if reply.is_success:
            tx.accepted.append(rcpt)
        else:
            tx.refused[rcpt] = RecipientRefusal(reply.code, _enh(reply), reply.text)
    if tx.error is None and not tx.accepted:
        first = next(iter(tx.refused.values()))
        tx.error = RecipientsRefused(
            f"the server refused every recipient ({len(tx.refused)}); the message was not sent: "
            + "; ".join(f"{r}: {v.code} {v.text}" for r, v in tx.refused.items()),
            code=first.code,
            enhanced_status=first.enhanced_status,
            text=first.text,
            refused={r: (v.code, v.enhanced_status, v.text) for r, v in tx.refused.items()},
        )


def _finish(tx: _Tx, reply: Reply, method: str) -> None:
    if tx.error is not None:
        return
    if reply.is_success:
        tx.result = SendResult(
            sender=tx.msg.sender,
            accepted=tuple(tx.accepted),
            refused=dict(tx.refused),
            code=reply.code,
            enhanced_status=_enh(reply),
            text=reply.text,
            size=tx.size,
            method=method,
        )
    else:
        tx.error = ReplyError(
            f"the server did not accept the message: {reply.code} {reply.text}"
            + (" (temporary: try again later)" if reply.is_transient else ""),
            code=reply.code,
            enhanced_status=_enh(reply),
            text=reply.text,
        )


def _bdat_chunks(tx: _Tx, size: int) -> Iterator[tuple[bytes, bool]]:
    """Normalised body in chunks of about ``size``, with a 'last' flag (one lookahead)."""
    enc = BdatEncoder()
    buf = bytearray()
    pending: bytes | None = None
    for raw in tx.msg.chunks():
        buf += enc.feed(raw)
        while len(buf) >= size:
            if pending is not None:
                yield pending, False
            pending, buf = bytes(buf[:size]), buf[size:]
    buf += enc.finish()
    if pending is not None:
        if buf:
            yield pending, False
            pending = bytes(buf)
        yield pending, True
    else:
        yield bytes(buf), True


def _pipelined_bdat(wire: Wire, txs: list[_Tx], needs_rset: bool) -> bool:
    """PIPELINING + CHUNKING: whole transactions, many messages, in few flights."""
    flight = bytearray()
    expected: list[tuple[_Tx | None, int]] = []  # (tx, replies) in order; None for RSET

    def flush() -> None:
        wire.write(bytes(flight))
        flight.clear()
        replies = iter([r.reply for r in wire.read(sum(n for _tx, n in expected))])
        for tx, _n in expected:
            if tx is None:
                next(replies)
                continue
            _record_envelope(tx, replies)
            _finish(tx, next(replies), "BDAT")
        expected.clear()

    for tx in (t for t in txs if t.error is None):
        if tx.msg.size is None or tx.msg.size > _INLINE_BODY:
            if expected:
                flush()
            _stream_bdat(wire, tx, needs_rset)
        else:
            if needs_rset:
                flight += wire.queue(Command("RSET"))
                expected.append((None, 1))
            ((data, _last),) = _bdat_chunks(tx, _INLINE_BODY + 2)
            flight += wire.queue(tx.mail, *tx.rcpts, Command("BDAT", f"{len(data)} LAST"))
            flight += data
            tx.size = len(data)
            expected.append((tx, 2 + len(tx.rcpts)))
            if len(flight) >= _FLIGHT_BYTES or sum(n for _t, n in expected) >= _FLIGHT_COMMANDS:
                flush()
        # Every later transaction starts with RSET: if this one fails half-way the
        # next one still begins from a clean state, at no extra round trip.
        needs_rset = True
    if expected:
        flush()
    return any(tx.result is None for tx in txs)


def _stream_bdat(wire: Wire, tx: _Tx, needs_rset: bool) -> None:
    """A large or unsized body: envelope + first chunk in one write, then a window of chunks."""
    head = [Command("RSET")] if needs_rset else []
    chunks = _bdat_chunks(tx, _BDAT_CHUNK)
    data, last = next(chunks)
    wire.write(
        wire.queue(*head, tx.mail, *tx.rcpts, Command("BDAT", f"{len(data)}{' LAST' * last}"))
        + data
    )
    tx.size = len(data)
    replies = [r.reply for r in wire.read(len(head) + 1 + len(tx.rcpts))]
    _record_envelope(tx, iter(replies[len(head) :]))
    outstanding = 1
    failed: Reply | None = None
    while not last and tx.error is None and failed is None:
        data, last = next(chunks)
        wire.send(Command("BDAT", f"{len(data)}{' LAST' * last}"))
        wire.body(data)
        tx.size += len(data)
        outstanding += 1
        if outstanding > _BDAT_WINDOW:
            reply = wire.read(1)[0].reply
            outstanding -= 1
            if not reply.is_success:
                failed = reply  # R-3030-2-4: no further chunks after a failure
    final = [r.reply for r in wire.read(outstanding)]
    failed = failed or next((r for r in final if not r.is_success), None)
    _finish(tx, failed or final[-1], "BDAT")


def _one_by_one(wire: Wire, tx: _Tx, needs_rset: bool, pipelining: bool, chunking: bool) -> bool:
    """One transaction: pipelined envelope when allowed, else lock-step."""
    if needs_rset:
        wire.send(Command("RSET"))
        wire.read(1)
    envelope = [tx.mail, *tx.rcpts]
    method = "BDAT" if chunking else "DATA"
    if pipelining and not chunking:
        wire.send(*envelope, Command("DATA"))
        replies = [r.reply for r in wire.read(len(envelope) + 1)]
        _record_envelope(tx, iter(replies))
        data_reply = replies[-1]
    else:
        replies = []
        for command in envelope:
            reply = wire.one(command)
            replies.append(reply)
            if command is tx.mail and not reply.is_success:
                break
        if len(replies) < len(envelope):
            _record_envelope(tx, iter(replies + [replies[0]] * len(tx.rcpts)))
            return True
        _record_envelope(tx, iter(replies))
        if tx.error is not None:
            return True
        if chunking:
            for data, last in _bdat_chunks(tx, _BDAT_CHUNK):
                wire.send(Command("BDAT", f"{len(data)}{' LAST' if last else ''}"))
                wire.body(data)
                tx.size += len(data)
                reply = wire.read(1)[0].reply
                if not reply.is_success or last:
                    _finish(tx, reply, method)
                    return tx.result is None
            return True  # pragma: no cover - the generator always ends with last=True
        data_reply = wire.one(Command("DATA"))
    if data_reply.code != 354:
        if tx.error is None:
            _finish(tx, data_reply, method)
        return True
    if wire.conn.state is not State.DATA:  # pragma: no cover - state table guarantees it
        raise ConnectError("internal error: 354 without DATA state")
    enc = DataEncoder()
    if tx.error is None:
        for raw in tx.msg.chunks():
            wire.body(enc.feed(raw))
        tx.size = enc.body_octets
    # R-2920-3.1-4: with no accepted recipient only the terminator goes out.
    wire.body(enc.finish())
    wire.conn.end_data()
    _finish(tx, wire.read(1)[0].reply, method)
    return tx.result is None
