"""Turn what the caller passes (EmailMessage, bytes, file, iterable) into an envelope and a
re-iterable stream of body chunks, without holding the message in memory twice."""

from __future__ import annotations

import copy
import email.generator
import email.policy
import email.utils
import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from email.message import Message
from typing import BinaryIO, Final

from .._types import BODY_CHUNK_SIZE
from ..errors import InvalidArgumentError
from ..sansio import BdatEncoder, mailbox_needs_smtputf8, validate_mailbox
from ..sending import MessageInput

__all__ = [
    "PreparedMessage",
    "check_headers",
    "envelope_from_headers",
    "flatten",
    "prepare_message",
]


_RECIPIENT_HEADERS: Final = ("to", "cc", "bcc")
_RESENT_RECIPIENT_HEADERS: Final = ("resent-to", "resent-cc", "resent-bcc")
#: Headers whose addr-specs cannot be RFC 2047-encoded: non-ASCII there needs SMTPUTF8.
_ADDRESS_HEADERS: Final = (
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "bcc",
    "resent-from",
    "resent-sender",
    "resent-to",
    "resent-cc",
    "resent-bcc",
)
#: A break that is not CRLF/LF followed by folding white space.
_BAD_BREAK: Final = re.compile(r"\r(?!\n)|\n(?![ \t])")
#: RFC 5322 §2.2 field-name: printable ASCII except ":".
_FIELD_NAME: Final = re.compile(r"[\x21-\x39\x3b-\x7e]+")
#: A ``Bcc:`` line at the start of the serialised header block or after a line end.
_BCC_LINE: Final = re.compile(rb"(?:^|\n)(?:resent-)?bcc[ \t]*:", re.IGNORECASE)
_HEADER_END: Final = re.compile(rb"\r\n\r\n")

#: A body source: chunk factory, sent size, 8-bitness.
_Body = tuple[Callable[[], Iterator[bytes]], int, bool]


@dataclass(frozen=True, slots=True)
class PreparedMessage:
    """A message ready for the wire.

    Attributes:
        sender: envelope sender ("" for the null sender).
        recipients: envelope recipients, in order, de-duplicated.
        chunks: yields the raw body in chunks (line ends not yet normalised).
        size: the octets that will be sent, when known in advance: line ends
            normalised to CRLF and a final CRLF added if missing, without
            dot-stuffing or the terminator (RFC 1870 ``SIZE``). ``None``: unknown.
        eight_bit: the body has octets ≥ 0x80 (``None``: unknown, streamed).
        smtputf8: an address (envelope or address header) needs SMTPUTF8.
        seven_bit: when the body is 8-bit and can be re-encoded (a
            ``Message``), renders the 7-bit-safe form of the same message for
            servers without 8BITMIME (see :meth:`as_seven_bit`); else ``None``.
        unqualified: the envelope may hold bare local parts (the smtplib
            drop-in's compatibility rule, see ``sansio.validate_mailbox``).
    """

    sender: str
    recipients: tuple[str, ...]
    chunks: Callable[[], Iterator[bytes]]
    size: int | None
    eight_bit: bool | None
    smtputf8: bool
    seven_bit: Callable[[], _Body] | None = None
    unqualified: bool = False

    def as_seven_bit(self) -> PreparedMessage:
        """The same message with every 8-bit part transfer-encoded (base64/QP).

        Raises:
            InvalidArgumentError: the message cannot be re-encoded (raw bytes).
        """
        if self.seven_bit is None:
            raise InvalidArgumentError("only a Message can be re-encoded to 7 bit")
        chunks, size, eight_bit = self.seven_bit()
        return replace(self, chunks=chunks, size=size, eight_bit=eight_bit, seven_bit=None)


def _addresses(values: Iterable[str]) -> list[str]:
    return [addr for _name, addr in email.utils.getaddresses(list(values)) if addr]


def envelope_from_headers(msg: Message) -> tuple[str, list[str]]:
    """Sender and recipients from headers, as smtplib's ``send_message`` defines them.

    Raises:
        InvalidArgumentError: the message has several ``Resent-`` blocks.
    """
    resent = msg.get_all("Resent-Date")
    if resent is not None and len(resent) > 1:
        raise InvalidArgumentError(
            "the message has several Resent- blocks; pass sender= and recipients= explicitly"
        )
    if resent:
        senders = msg.get_all("Resent-Sender") or msg.get_all("Resent-From") or []
        headers = _RESENT_RECIPIENT_HEADERS
    else:
        senders = msg.get_all("Sender") or msg.get_all("From") or []
        headers = _RECIPIENT_HEADERS
    found = _addresses(str(v) for v in senders)
    sender = found[0] if found else ""
    recipients = _addresses(str(v) for h in headers for v in (msg.get_all(h) or []))
    return sender, recipients


def check_headers(msg: Message) -> None:
    """Refuse header names and stored values that would inject headers."""
    # R-PY-18: a CR or LF in a header value that is not a fold would add a header.
    # The *stored* values are checked (raw_items): ``set_raw`` bypasses the checks
    # that ``msg[name] = value`` makes, and ``items()`` hides the break.
    for part in msg.walk():
        for name, value in part.raw_items():
            if not _FIELD_NAME.fullmatch(name):
                raise InvalidArgumentError(
                    f"header name {name!r} is invalid (RFC 5322 §2.2: printable ASCII, no "
                    "colon); nothing was sent. Fix the header name"
                )
            if _BAD_BREAK.search(str(value)):
                raise InvalidArgumentError(
                    f"header {name!r} contains a line break that would start a new header "
                    "(header injection); nothing was sent. Remove CR/LF from the value"
                )


def _needs_utf8(msg: Message) -> bool:
    """True when an address header holds a non-ASCII addr-spec (RFC 2047 cannot encode it)."""
    # Only a value with non-ASCII text can hold one, so the all-ASCII common
    # case costs no address parsing.
    values = [str(v) for name in _ADDRESS_HEADERS for v in (msg.get_all(name) or [])]
    return any(not addr.isascii() for addr in _addresses(v for v in values if not v.isascii()))


def _submission_copy(msg: Message, sender: str) -> Message:
    clone = copy.copy(msg)
    # Bcc must never be transmitted; ``del`` rebuilds the header list, so the
    # caller's object is untouched.
    del clone["Bcc"]
    del clone["Resent-Bcc"]
    # RFC 6409 §8: the submitting client should provide Date and Message-ID.
    if clone["Date"] is None:
        clone["Date"] = email.utils.formatdate(localtime=True)
    if clone["Message-ID"] is None:
        # The sender's domain, never the machine's FQDN (make_msgid's default).
        domain = sender.rpartition("@")[2]
        if not domain.isascii() or not domain:
            domain = "smtpsec.invalid"
        clone["Message-ID"] = email.utils.make_msgid(domain=domain)
    return clone


def _policy(msg: Message, *, utf8: bool, seven_bit: bool = False) -> email.policy.Policy:
    base = msg.policy
    if isinstance(base, email.policy.EmailPolicy):
        policy: email.policy.Policy = base.clone(linesep="\r\n", utf8=utf8)
    elif utf8:
        policy = email.policy.SMTPUTF8
    else:
        policy = base.clone(linesep="\r\n")
    # cte_type="7bit" makes the generator re-encode 8-bit parts (base64/QP).
    return policy.clone(cte_type="7bit") if seven_bit else policy


def _render(msg: Message, policy: email.policy.Policy) -> bytes:
    buf = io.BytesIO()
    try:
        email.generator.BytesGenerator(buf, mangle_from_=False, policy=policy).flatten(msg)
    except Exception as exc:  # the email package's own refusals (encoding, defects)
        raise InvalidArgumentError(
            f"the message could not be serialised ({type(exc).__name__}: {exc}); nothing "
            "was sent. Fix the message (headers, charsets, transfer encodings)"
        ) from exc
    # ``getvalue()`` hands over BytesIO's own buffer without copying it (CPython
    # shares it when nothing else exported it). Never ``getbuffer()``: a view
    # that outlives its BytesIO in a reference cycle crashes the collector on
    # CPython 3.12 (gh-111049) and raises BufferError on 3.13 (gh-111331).
    data = buf.getvalue()
    buf.close()
    head = _HEADER_END.search(data)
    if _BCC_LINE.search(data, 0, head.end() if head else len(data)):
        # Defence in depth: Bcc was deleted, so a Bcc line here was injected.
        raise InvalidArgumentError(
            "the serialised message contains a Bcc header although Bcc is removed before "
            "sending: a header value injected it; nothing was sent"
        )
    return data


def flatten(msg: Message, *, utf8: bool, seven_bit: bool) -> bytes:
    """``msg`` as smtplib's ``send_message`` serialises it, with smtpsec's checks.

    Bcc and Resent-Bcc are removed (on a copy), the result is checked for an
    injected Bcc line, and with ``seven_bit`` an 8-bit rendering is redone with
    every 8-bit part transfer-encoded (for servers without 8BITMIME). Unlike
    :func:`prepare_message`, no Date or Message-ID is added: the drop-in sends
    what smtplib would.

    Raises:
        InvalidArgumentError: the message cannot be serialised, or a header
            value injected a Bcc line.
    """
    clone = copy.copy(msg)
    del clone["Bcc"]
    del clone["Resent-Bcc"]
    data = _render(clone, _policy(msg, utf8=utf8))
    if seven_bit and not data.isascii():
        data = _render(clone, _policy(msg, utf8=False, seven_bit=True))
    return data


def _envelope_of(
    message: Message, sender: str | None, recipients: Iterable[str] | None
) -> tuple[str | None, Iterable[str]]:
    """The envelope of a Message: what the caller gave, the rest from the headers."""
    if sender is not None and recipients is not None:
        return sender, recipients
    # Headers give the envelope only where the caller did not (so a message
    # with ambiguous Resent- blocks is fine once both are passed).
    hdr_sender, hdr_rcpts = envelope_from_headers(message)
    if sender is None and hdr_sender:
        # No From/Sender leaves ``sender`` None (an error later), never the null
        # sender: ``<>`` must be asked for explicitly with sender="".
        sender = hdr_sender
    return sender, hdr_rcpts if recipients is None else recipients


def _from_message(message: Message, sender: str, *, envelope_utf8: bool) -> PreparedMessage:
    """Render a checked message for a checked envelope (Bcc removed, Date and Message-ID added)."""
    utf8 = envelope_utf8 or _needs_utf8(message)
    clone = _submission_copy(message, sender)
    data = _render(clone, _policy(message, utf8=utf8))
    size, eight_bit = _scan(_bytes_source(data)())
    seven: Callable[[], _Body] | None = None
    if eight_bit and not utf8:

        def seven() -> _Body:
            text = _render(clone, _policy(message, utf8=False, seven_bit=True))
            return (_bytes_source(text), *_scan(_bytes_source(text)()))

    return PreparedMessage("", (), _bytes_source(data), size, eight_bit, utf8, seven)


def prepare_message(
    message: MessageInput,
    *,
    sender: str | None,
    recipients: Iterable[str] | None,
    allow_unqualified: bool = False,
) -> PreparedMessage:
    """Validate the envelope and set up the body stream for ``message``.

    Args:
        message: an :class:`email.message.Message` (``EmailMessage`` or compat32),
            bytes-like, a binary file object, or an iterable of ``bytes`` chunks.
        sender: envelope sender; ``None`` takes it from the message's headers.
        recipients: envelope recipients; ``None`` takes To/Cc/Bcc.
        allow_unqualified: accept bare local parts (``root``) in the envelope,
            as smtplib does (the drop-in's compatibility rule).

    Raises:
        InvalidArgumentError: no recipients, an unsafe address, a header injection,
            or a message type smtpsec cannot send.
    """
    untyped: object = message  # callers without a type checker may pass a str
    if isinstance(untyped, str):
        raise InvalidArgumentError(
            "a str message is ambiguous about its encoding; pass an EmailMessage or bytes"
        )
    if isinstance(message, Message):
        check_headers(message)
        sender, recipients = _envelope_of(message, sender, recipients)
    # The envelope is checked before anything is built from it: the sender's
    # domain goes into the Message-ID added to a Message.
    sender, rcpts = _checked_envelope(sender, recipients, allow_unqualified=allow_unqualified)
    envelope_utf8 = mailbox_needs_smtputf8(sender) or any(map(mailbox_needs_smtputf8, rcpts))
    if isinstance(message, Message):
        prepared = _from_message(message, sender, envelope_utf8=envelope_utf8)
    elif isinstance(message, (bytes, bytearray, memoryview)):
        octets = _as_bytes(message)
        size, eight_bit = _scan(_bytes_source(octets)())
        prepared = PreparedMessage("", (), _bytes_source(octets), size, eight_bit, False)
    elif isinstance(message, io.IOBase) or hasattr(message, "read"):
        body, file_size, eight = _file_source(message)  # type: ignore[arg-type]
        prepared = PreparedMessage("", (), body, file_size, eight, False)
    elif isinstance(untyped, Iterable):
        prepared = PreparedMessage("", (), _iterable_source(message), None, None, False)
    else:
        raise InvalidArgumentError(
            f"cannot send a {type(untyped).__name__}: pass an EmailMessage, bytes, a binary "
            "file or an iterable of bytes"
        )
    return replace(
        prepared,
        sender=sender,
        recipients=rcpts,
        smtputf8=prepared.smtputf8 or envelope_utf8,
        unqualified=allow_unqualified,
    )


def _checked_envelope(
    sender: str | None, recipients: Iterable[str] | None, *, allow_unqualified: bool
) -> tuple[str, tuple[str, ...]]:
    """The sender and the recipients (duplicates dropped), each a safe envelope address.

    Raises:
        InvalidArgumentError: no sender or recipients, a non-str address, or an
            address that ``validate_mailbox`` refuses.
    """
    if sender is None:
        raise InvalidArgumentError(
            "no envelope sender: pass sender= (or send an EmailMessage with a From header)"
        )
    # A str is one address, not its characters; any other iterable is read once.
    listed = [recipients] if isinstance(recipients, str) else list(recipients or ())
    given: list[object] = [sender, *listed]  # callers may pass anything
    for address in given:
        if not isinstance(address, str):
            raise InvalidArgumentError(
                f"envelope addresses must be str, not {type(address).__name__} ({address!r})"
            )
    rcpts = tuple(dict.fromkeys(listed))
    if not rcpts:
        raise InvalidArgumentError(
            "no recipients: pass recipients= (or an EmailMessage with To/Cc/Bcc headers)"
        )
    validate_mailbox(sender, allow_empty=True, allow_unqualified=allow_unqualified)
    for rcpt in rcpts:
        validate_mailbox(rcpt, allow_unqualified=allow_unqualified)
    return sender, rcpts


def _as_bytes(data: bytes | bytearray | memoryview) -> bytes:
    """The message octets as ``bytes``, never a view of a buffer the caller owns.

    ``bytes`` is used as is (immutable, no copy). A ``bytearray`` or
    ``memoryview`` is copied once: a view of the caller's buffer kept by an
    outcome or a traceback would stop the caller from resizing it
    (``BufferError``) for as long as that object lives.
    """
    if isinstance(data, bytes):
        return data
    with memoryview(data) as view:
        return view.tobytes()


def _scan(chunks: Iterable[bytes]) -> tuple[int, bool]:
    """One streaming pass: the size actually sent (as BDAT/DATA count it) and 8-bitness.

    The encoder is the one the wire uses, so the count includes the CRLF added
    to a body that does not end with one (R-1870-2).
    """
    enc = BdatEncoder()
    eight_bit = False
    for chunk in chunks:
        enc.feed(chunk)
        eight_bit = eight_bit or not chunk.isascii()
    enc.finish()
    return enc.body_octets, eight_bit


def _bytes_source(data: bytes) -> Callable[[], Iterator[bytes]]:
    def chunks() -> Iterator[bytes]:
        if len(data) <= BODY_CHUNK_SIZE:
            yield data  # the common small message: no copy at all
            return
        for start in range(0, len(data), BODY_CHUNK_SIZE):
            yield data[start : start + BODY_CHUNK_SIZE]

    return chunks


def _iterable_source(source: Iterable[bytes]) -> Callable[[], Iterator[bytes]]:
    used = False

    def once() -> Iterator[bytes]:
        nonlocal used
        if used:
            raise InvalidArgumentError(
                "an iterable body can be sent only once; pass bytes or a seekable file to retry"
            )
        used = True
        for chunk in source:
            if not isinstance(chunk, (bytes, bytearray, memoryview)):
                raise InvalidArgumentError(
                    f"message chunks must be bytes, got {type(chunk).__name__}; nothing more "
                    "of this message was sent"
                )
            yield bytes(chunk)

    return once


def _file_source(fp: BinaryIO) -> tuple[Callable[[], Iterator[bytes]], int | None, bool | None]:
    seekable = fp.seekable() if hasattr(fp, "seekable") else False
    start = fp.tell() if seekable else 0

    def chunks() -> Iterator[bytes]:
        if seekable:
            fp.seek(start)
        while chunk := fp.read(BODY_CHUNK_SIZE):
            _check_binary(chunk)
            yield chunk

    if not seekable:
        return chunks, None, None
    # One cheap pass for SIZE and 8-bit detection (nothing is kept), then the
    # send rewinds to ``start``.
    size, eight_bit = _scan(chunks())
    return chunks, size, eight_bit


def _check_binary(chunk: object) -> None:
    if not isinstance(chunk, bytes):
        raise InvalidArgumentError(
            "the message file must be opened in binary mode ('rb'), not text mode"
        )
