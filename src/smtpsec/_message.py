"""Turn what the caller passes (EmailMessage, bytes, file, iterable) into an envelope and a
re-iterable stream of body chunks, without holding the message in memory twice."""

from __future__ import annotations

import copy
import email.policy
import email.utils
import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage, Message
from typing import BinaryIO, Union

from ._types import BODY_CHUNK_SIZE
from .errors import InvalidArgumentError
from .sansio import LineNormalizer, mailbox_needs_smtputf8, validate_mailbox

__all__ = ["MessageInput", "PreparedMessage", "prepare_message"]

#: What ``Session.send`` accepts as a message.
MessageInput = Union[Message, bytes, bytearray, memoryview, BinaryIO, Iterable[bytes]]

_RECIPIENT_HEADERS = ("to", "cc", "bcc")
_RESENT_RECIPIENT_HEADERS = ("resent-to", "resent-cc", "resent-bcc")
#: A break that is not CRLF/LF followed by folding white space.
_BAD_BREAK = re.compile(r"\r(?!\n)|\n(?![ \t])")


@dataclass(frozen=True, slots=True)
class PreparedMessage:
    """A message ready for the wire.

    Attributes:
        sender: envelope sender ("" for the null sender).
        recipients: envelope recipients, in order, de-duplicated.
        chunks: yields the raw body in chunks (line ends not yet normalised).
        size: normalised size in octets when known in advance, else ``None``.
        eight_bit: the body has octets ≥ 0x80 (``None``: unknown, streamed).
        smtputf8: an address (or a header) needs SMTPUTF8.
    """

    sender: str
    recipients: tuple[str, ...]
    chunks: Callable[[], Iterator[bytes]]
    size: int | None
    eight_bit: bool | None
    smtputf8: bool


def _addresses(values: Iterable[str]) -> list[str]:
    return [addr for _name, addr in email.utils.getaddresses(list(values)) if addr]


def envelope_from_headers(msg: Message) -> tuple[str, list[str]]:
    """Sender and recipients from headers, as smtplib's ``send_message`` defines them."""
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


def _check_headers(msg: Message) -> None:
    # R-PY-18: a CR or LF in a header value that is not a fold would add a header.
    for name, value in msg.items():
        if _BAD_BREAK.search(str(value)):
            raise InvalidArgumentError(
                f"header {name!r} contains a line break that would start a new header "
                "(header injection); remove CR/LF from the value"
            )


def _serialise(msg: Message, *, utf8: bool) -> bytes:
    clone = copy.copy(msg)
    # Bcc must never be transmitted; ``del`` rebuilds the header list, so the
    # caller's object is untouched.
    del clone["Bcc"]
    del clone["Resent-Bcc"]
    # RFC 6409 §8: the submitting client should provide Date and Message-ID.
    if clone["Date"] is None:
        clone["Date"] = email.utils.formatdate(localtime=True)
    if clone["Message-ID"] is None:
        clone["Message-ID"] = email.utils.make_msgid(domain="smtpsec.invalid")
    policy = email.policy.SMTPUTF8 if utf8 else email.policy.SMTP
    if isinstance(msg, EmailMessage) or utf8:
        return clone.as_bytes(policy=policy)
    return clone.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def _normalised_size(data: bytes) -> int:
    norm = LineNormalizer()
    size = len(norm.feed(data))
    return size + len(norm.finish())


def _needs_utf8_headers(msg: Message) -> bool:
    return any(not str(v).isascii() for _k, v in msg.items())


def prepare_message(
    message: MessageInput,
    *,
    sender: str | None,
    recipients: Iterable[str] | None,
) -> PreparedMessage:
    """Validate the envelope and set up the body stream for ``message``.

    Raises:
        InvalidArgumentError: no recipients, an unsafe address, a header injection,
            or a message type smtpsec cannot send.
    """
    body: Callable[[], Iterator[bytes]]
    size: int | None = None
    eight_bit: bool | None
    header_utf8 = False
    untyped: object = message  # callers without a type checker may pass a str
    if isinstance(untyped, str):
        raise InvalidArgumentError(
            "a str message is ambiguous about its encoding; pass an EmailMessage or bytes"
        )
    if isinstance(message, Message):
        _check_headers(message)
        hdr_sender, hdr_rcpts = envelope_from_headers(message)
        sender = hdr_sender if sender is None else sender
        if recipients is None:
            recipients = hdr_rcpts
        header_utf8 = _needs_utf8_headers(message)
        envelope_utf8 = mailbox_needs_smtputf8(sender) or any(
            mailbox_needs_smtputf8(r) for r in recipients
        )
        data = _serialise(message, utf8=header_utf8 or envelope_utf8)
        body = _bytes_source(data)
        size = _normalised_size(data)
        eight_bit = not data.isascii()
    elif isinstance(message, (bytes, bytearray, memoryview)):
        data = bytes(message)
        body = _bytes_source(data)
        size = _normalised_size(data)
        eight_bit = not data.isascii()
    elif isinstance(message, io.IOBase) or hasattr(message, "read"):
        body, size, eight_bit = _file_source(message)  # type: ignore[arg-type]
    else:
        chunks = message
        used = False

        def once() -> Iterator[bytes]:
            nonlocal used
            if used:
                raise InvalidArgumentError(
                    "an iterable body can be sent only once; pass bytes or a seekable file to retry"
                )
            used = True
            for chunk in chunks:
                if not isinstance(chunk, (bytes, bytearray, memoryview)):
                    raise InvalidArgumentError(
                        f"message chunks must be bytes, got {type(chunk).__name__}"
                    )
                yield bytes(chunk)

        body, eight_bit = once, None
    if sender is None:
        raise InvalidArgumentError(
            "no envelope sender: pass sender= (or send an EmailMessage with a From header)"
        )
    rcpts = list(dict.fromkeys(recipients or ()))
    if not rcpts:
        raise InvalidArgumentError(
            "no recipients: pass recipients= (or an EmailMessage with To/Cc/Bcc headers)"
        )
    validate_mailbox(sender, allow_empty=True)
    for rcpt in rcpts:
        validate_mailbox(rcpt)
    smtputf8 = (
        header_utf8
        or mailbox_needs_smtputf8(sender)
        or any(mailbox_needs_smtputf8(r) for r in rcpts)
    )
    return PreparedMessage(sender, tuple(rcpts), body, size, eight_bit, smtputf8)


def _bytes_source(data: bytes) -> Callable[[], Iterator[bytes]]:
    def chunks() -> Iterator[bytes]:
        view = memoryview(data)
        for start in range(0, len(data), BODY_CHUNK_SIZE):
            yield bytes(view[start : start + BODY_CHUNK_SIZE])

    return chunks


def _file_source(fp: BinaryIO) -> tuple[Callable[[], Iterator[bytes]], int | None, bool | None]:
    seekable = fp.seekable() if hasattr(fp, "seekable") else False
    start = fp.tell() if seekable else 0
    size: int | None = None
    eight_bit: bool | None = None
    if seekable:
        # One cheap pass for SIZE and 8-bit detection, then rewind: nothing is kept.
        norm = LineNormalizer()
        size, eight_bit = 0, False
        while chunk := fp.read(BODY_CHUNK_SIZE):
            _check_binary(chunk)
            size += len(norm.feed(chunk))
            eight_bit = eight_bit or not chunk.isascii()
        size += len(norm.finish())

    def chunks() -> Iterator[bytes]:
        if seekable:
            fp.seek(start)
        while chunk := fp.read(BODY_CHUNK_SIZE):
            _check_binary(chunk)
            yield chunk

    return chunks, size, eight_bit


def _check_binary(chunk: object) -> None:
    if not isinstance(chunk, bytes):
        raise InvalidArgumentError(
            "the message file must be opened in binary mode ('rb'), not text mode"
        )
