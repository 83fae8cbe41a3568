"""Wire helpers of the smtplib drop-in: bounded reply reading, argument checks, redaction.

smtplib reads replies line by line from ``sock.makefile()`` with no bound on the
number of lines and no deadline for a whole reply (R-PY-11). :class:`ReplyReader`
replaces that: every reply goes through smtpsec's strict
:class:`~smtpsec.sansio.ReplyParser` (line length, lines per reply, bytes per
reply) and must be complete before one deadline. Its buffer is thrown away at
the STARTTLS boundary, after checking that it is empty (R-PY-17, R-EAST-BR-1).
"""

from __future__ import annotations

import re
import socket
import time
from collections import deque
from collections.abc import Iterable
from smtplib import SMTPServerDisconnected
from typing import Final

from ._smtplib_errors import MalformedReply, ReplyTimeout
from .auth import decode_challenge
from .errors import InvalidArgumentError, RemoteProtocolError
from .sansio import Command, DataEncoder, LineNormalizer, Reply, ReplyParser

__all__ = [
    "DEFAULT_TIMEOUT",
    "ReplyReader",
    "check_address",
    "check_command",
    "check_options",
    "data_payload",
    "loggable",
    "message_bytes",
    "normalised",
    "plaintext_pending",
    "resolve_timeout",
    "success_data",
]

#: Used when the caller gives no timeout and no global socket default is set:
#: smtplib would wait forever (R-PY-11).
DEFAULT_TIMEOUT: Final = 60.0
_RECV_SIZE: Final = 64 * 1024
#: C0 controls except TAB, and DEL: none belongs in a command line (R-PY-9).
_COMMAND_BAD_RE: Final = re.compile("[\x00-\x08\x0a-\x1f\x7f]")
#: Anything that would end or split an envelope address or an ESMTP option.
_ARGUMENT_BAD_RE: Final = re.compile("[\x00-\x1f\x7f\u2028\u2029]")
#: A header line break that is not a fold (CRLF/LF followed by SP or HT).


def resolve_timeout(timeout: object) -> float:
    """The timeout to use: the caller's number, else the socket default, else 60 s.

    smtplib's "no timeout given" sentinel and ``None`` both mean "the default";
    smtpsec never blocks without a bound (R-PY-11).

    Raises:
        InvalidArgumentError: zero or a negative number (smtplib refuses
            non-blocking sockets too).
    """
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
        if timeout <= 0:
            raise InvalidArgumentError(
                f"timeout={timeout!r} is not supported: pass a positive number of "
                "seconds (or leave it out for the 60 s default)"
            )
        return float(timeout)
    default = socket.getdefaulttimeout()
    return default if default is not None else DEFAULT_TIMEOUT


class ReplyReader:
    """Reads whole, bounded replies from one socket (one reader per plaintext/TLS phase).

    Replies that arrive together (PIPELINING) are queued and handed out in order.
    """

    __slots__ = ("_parser", "_pending")

    def __init__(self) -> None:
        self._parser = ReplyParser()
        self._pending: deque[Reply] = deque()

    @property
    def has_buffered(self) -> bool:
        """True when bytes or replies were received but not yet handed out."""
        return bool(self._pending) or bool(self._parser.buffered)

    def read(self, sock: socket.socket, timeout: float, peer: str) -> Reply:
        """The next reply, complete within ``timeout`` seconds.

        Raises:
            ReplyTimeout: the reply was not complete in time.
            MalformedReply: the bytes break the grammar or a size limit.
            OSError: the socket failed or the server closed the connection
                (``ConnectionResetError`` with a message for end of file).
        """
        if self._pending:
            return self._pending.popleft()
        deadline = time.monotonic() + timeout
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _timeout(peer, timeout)
                sock.settimeout(remaining)
                try:
                    data = sock.recv(_RECV_SIZE)
                except TimeoutError:
                    raise _timeout(peer, timeout) from None
                if not data:
                    raise SMTPServerDisconnected("Connection unexpectedly closed")
                try:
                    replies = self._parser.feed(data)
                except RemoteProtocolError as exc:
                    raise MalformedReply(f"{peer}: {exc}") from None
                if replies:
                    self._pending.extend(replies[1:])
                    return replies[0]
        finally:
            sock.settimeout(timeout)


def _timeout(peer: str, timeout: float) -> ReplyTimeout:
    return ReplyTimeout(
        f"{peer} did not send a complete reply within {timeout:g} s (whole-reply "
        "deadline); the connection was closed. Pass a larger timeout= if the "
        "server is merely slow"
    )


def plaintext_pending(sock: socket.socket, timeout: float) -> bool:
    """True when the kernel already holds bytes for ``sock`` (peeked, not consumed)."""
    sock.settimeout(0.0)
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except OSError:  # BlockingIOError: nothing there; anything else: the handshake says
        return False
    finally:
        sock.settimeout(timeout)


# --------------------------------------------------------------------------- checks


def check_command(text: str) -> None:
    """Refuse a command line carrying CR, LF, NUL or another control.

    Raises:
        InvalidArgumentError: (a ``ValueError``, like smtplib's own check).
    """
    match = _COMMAND_BAD_RE.search(text)
    if match is not None:
        shown = text.replace("\r", "\\r").replace("\n", "\\n")[:80]
        raise InvalidArgumentError(
            f"the SMTP command contains the control character {ord(match.group()):#04x} "
            f"({shown!r}); it could inject extra commands, so nothing was sent. Remove "
            "CR, LF, NUL and other control characters from the arguments"
        )


def check_address(address: str, what: str) -> None:
    """Refuse an envelope address with CR, LF, NUL or other controls."""
    if not isinstance(address, str):
        raise InvalidArgumentError(f"the {what} address must be a str, not {type(address)!r}")
    if _ARGUMENT_BAD_RE.search(address):
        raise InvalidArgumentError(
            f"the {what} address {address[:80]!r} contains a line break or control "
            "character, which would inject SMTP commands; nothing was sent"
        )


def check_options(options: Iterable[str], what: str) -> list[str]:
    """Refuse ESMTP options with controls or spaces (one option = one parameter)."""
    checked = list(options)
    for option in checked:
        if not isinstance(option, str) or not option or _ARGUMENT_BAD_RE.search(option):
            raise InvalidArgumentError(
                f"{what} option {option!r} is empty or contains a line break or control "
                "character; nothing was sent"
            )
        if " " in option:
            raise InvalidArgumentError(
                f"{what} option {option!r} contains a space: give each ESMTP parameter as "
                "its own list item, e.g. ['BODY=8BITMIME', 'SMTPUTF8']"
            )
    return checked


# --------------------------------------------------------------------------- data


def message_bytes(msg: object) -> bytes:
    """smtplib's message argument as bytes: ``str`` must be ASCII, like in smtplib."""
    if isinstance(msg, str):
        return msg.encode("ascii")
    if isinstance(msg, (bytes, bytearray, memoryview)):
        return bytes(msg)
    raise TypeError(f"the message must be str or bytes-like, not {type(msg).__name__}")


def normalised(data: bytes) -> bytes:
    """Every bare CR and bare LF rewritten to CRLF (SMTP smuggling, R-PY-10)."""
    normalizer = LineNormalizer()
    return normalizer.feed(data) + normalizer.finish()


def data_payload(data: bytes) -> bytes:
    """What follows the 354: normalised, dot-stuffed, with the final ``CRLF.CRLF``."""
    encoder = DataEncoder()
    return encoder.feed(data) + encoder.finish()


# --------------------------------------------------------------------------- logging


def loggable(data: bytes | str) -> str:
    """Render a sent AUTH line for ``set_debuglevel()`` output with ``<redacted>`` payloads."""
    text = data if isinstance(data, str) else data.decode("ascii", "replace")
    line = text.rstrip("\r\n")
    verb, _, argument = line.partition(" ")
    if verb.upper() == "AUTH":
        return Command("AUTH", argument, redact=True).loggable() + "\r\n"
    if line == "*":
        return text  # the cancel line carries nothing secret
    return Command("", line, redact=True).loggable() + "\r\n"


def success_data(reply: Reply) -> bytes | None:
    """SASL additional data in a 235 (SCRAM's server-final), when it is one base64 word."""
    text = reply.lines[0].strip() if reply.lines else ""
    if not text or " " in text:
        return None
    try:
        return decode_challenge(text)
    except RemoteProtocolError:
        return None
