"""Incremental, strict, bounded SMTP reply parser (RFC 5321 §4.2, RFC 3463)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from .._types import MAX_REPLY_BYTES, MAX_REPLY_LINE, MAX_REPLY_LINES
from ..errors import RemoteProtocolError

__all__ = ["EnhancedStatus", "Reply", "ReplyParser", "split_enhanced_status"]

# RFC 3463: class "." subject "." detail, followed by a space or the end of the
# text. The class must agree with the reply code (checked by the caller).
_ENHANCED_RE: Final = re.compile(r"([245])\.([0-9]{1,3})\.([0-9]{1,3})(?: |\Z)", re.ASCII)

# Appended to every parse error: the reader needs to know this is not their bug
# and that continuing would mean trusting a stream that is known to be wrong.
_BROKEN_PEER: Final = (
    "; a correct SMTP server never sends this, so the server is broken or something "
    "in the network path is tampering with the connection. The session was stopped; "
    "check the server (or the network) before retrying"
)

#: How much of an offending line to quote in an error message (repr-escaped).
_QUOTE_LIMIT: Final = 60


@dataclass(frozen=True, slots=True)
class EnhancedStatus:
    """An RFC 3463 enhanced status code such as ``5.7.8``.

    Attributes:
        klass: the class digit: 2 (success), 4 (persistent transient failure) or
            5 (permanent failure).
        subject: the subject number (0-999).
        detail: the detail number (0-999).
    """

    klass: int
    subject: int
    detail: int

    def __str__(self) -> str:
        return f"{self.klass}.{self.subject}.{self.detail}"


def split_enhanced_status(text: str, code: int) -> tuple[EnhancedStatus | None, str]:
    """Split a leading RFC 3463 enhanced status whose class matches ``code`` from ``text``.

    The one reading of enhanced status codes: replies parsed here and the
    smtplib drop-in's ``(code, msg)`` pairs both use it.

    Returns ``(status, rest)``; ``(None, text)`` when there is none (or its
    class disagrees with the reply code, e.g. ``4.1.1`` on a ``550``).
    """
    match = _ENHANCED_RE.match(text)
    if match is None or int(match.group(1)) != code // 100:
        return None, text
    status = EnhancedStatus(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    return status, text[match.end() :]


@dataclass(frozen=True, slots=True)
class Reply:
    """One complete (possibly multi-line) server reply.

    Attributes:
        code: the three-digit reply code.
        lines: the text of each line, after the code and separator, decoded as
            UTF-8 with replacement (R-6531-3.7.4-1), enhanced status left in place.
        enhanced_status: the enhanced status code parsed from the first line when
            the code class matches (2.x.x for 2yz, 4.x.x for 4yz, 5.x.x for 5yz).
    """

    code: int
    lines: tuple[str, ...]
    enhanced_status: EnhancedStatus | None = None

    @property
    def text(self) -> str:
        """The reply text, one line per line, with the enhanced status removed.

        Lines are joined with ``"\\n"``. When the reply has an enhanced status,
        a matching-class status at the start of *any* line is removed (servers
        such as Gmail repeat it on every line of a multi-line reply).
        """
        if self.enhanced_status is None:
            return "\n".join(self.lines)
        return "\n".join(split_enhanced_status(line, self.code)[1] for line in self.lines)

    @property
    def is_success(self) -> bool:
        """2yz: positive completion."""
        return 200 <= self.code < 300

    @property
    def is_intermediate(self) -> bool:
        """3yz: positive intermediate (354, 334)."""
        return 300 <= self.code < 400

    @property
    def is_transient(self) -> bool:
        """4yz: transient negative completion."""
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        """5yz: permanent negative completion."""
        return 500 <= self.code < 600


def _quote(raw: bytes) -> str:
    """A short, escaped rendering of hostile bytes, safe to put in a message."""
    if len(raw) > _QUOTE_LIMIT:
        return repr(raw[:_QUOTE_LIMIT]) + "..."
    return repr(raw)


class ReplyParser:
    """Turns bytes from the server into :class:`Reply` objects.

    Feeding the same bytes in any chunking yields the same replies. Violations of
    the grammar (non-digit or 4-digit code, first digit outside 2-5, code
    changing inside a multi-line reply, bare LF, bare CR, NUL, empty line,
    separator other than ``-``/SP/end of line) and of the limits raise
    :class:`~smtpsec.errors.RemoteProtocolError` (R-5321-4.2-1, R-5321-4.2-2,
    R-5321-4.5.3.1-2); after an error the parser stays failed (every further
    ``feed`` raises again). A bare ``334`` (no text) is a valid reply
    (R-4954-4-4).

    Memory stays bounded whatever the server sends: the partial line is checked
    against ``max_line_length`` and the partial reply against
    ``max_reply_bytes`` as bytes arrive, not only when a line ends.

    When one ``feed`` both completes replies and hits an error, the error wins
    and those replies are not returned: the stream is untrustworthy from then on.

    Args:
        max_line_length: longest accepted line in octets, CRLF included.
        max_lines: most lines in one reply.
        max_reply_bytes: most octets in one reply.
    """

    __slots__ = (
        "_code",
        "_error",
        "_lines",
        "_max_line",
        "_max_lines",
        "_max_reply",
        "_partial",
        "_reply_raw",
    )

    def __init__(
        self,
        *,
        max_line_length: int = MAX_REPLY_LINE,
        max_lines: int = MAX_REPLY_LINES,
        max_reply_bytes: int = MAX_REPLY_BYTES,
    ) -> None:
        if max_line_length < 5 or max_lines < 1 or max_reply_bytes < 5:
            # "334\r\n" is the shortest possible reply; smaller limits reject everything.
            raise ValueError("ReplyParser limits are too small to accept any reply")
        self._max_line = max_line_length
        self._max_lines = max_lines
        self._max_reply = max_reply_bytes
        #: Bytes of the current line not yet ended by LF.
        self._partial = bytearray()
        #: Raw bytes of the complete lines of the reply in progress.
        self._reply_raw = bytearray()
        #: Decoded text of those lines, and their common code.
        self._lines: list[str] = []
        self._code = 0
        #: Message of the first error; set once, never cleared.
        self._error: str | None = None

    # ------------------------------------------------------------------ public API

    def feed(self, data: bytes) -> list[Reply]:
        """Add bytes; return every reply they complete, in order.

        Raises:
            RemoteProtocolError: the bytes break the reply grammar or a limit (or
                an earlier call already did).
        """
        if self._error is not None:
            raise RemoteProtocolError(f"reply parser already failed: {self._error}")
        try:
            return self._feed(bytes(data))
        except RemoteProtocolError as exc:
            self._error = str(exc)
            raise

    @property
    def buffered(self) -> bytes:
        """Bytes received that are not (yet) part of a complete reply."""
        return bytes(self._reply_raw + self._partial)

    def take_buffered(self) -> bytes:
        """Return and clear :attr:`buffered` (and any partial reply).

        Used at the STARTTLS boundary: anything here arrived after the ``220``
        and before the handshake, which a genuine server never sends.
        """
        data = self.buffered
        self._partial.clear()
        self._reset_reply()
        return data

    # ------------------------------------------------------------------ internals

    def _fail(self, what: str, raw: bytes | None = None) -> RemoteProtocolError:
        where = f" (line {_quote(raw)})" if raw is not None else ""
        return RemoteProtocolError(
            f"invalid SMTP reply from the server: {what}{where}{_BROKEN_PEER}"
        )

    def _reset_reply(self) -> None:
        self._reply_raw.clear()
        self._lines.clear()
        self._code = 0

    def _feed(self, data: bytes) -> list[Reply]:
        replies: list[Reply] = []
        start = 0
        end = len(data)
        while start < end:
            newline = data.find(b"\n", start)
            stop = end if newline < 0 else newline + 1
            # Check sizes before copying, so one huge chunk cannot make us
            # allocate a huge line.
            length = len(self._partial) + stop - start
            if length > self._max_line:
                raise self._fail(
                    f"line longer than {self._max_line} octets",
                    bytes(self._partial[:_QUOTE_LIMIT]) + data[start : start + _QUOTE_LIMIT],
                )
            if len(self._reply_raw) + length > self._max_reply:
                raise self._fail(f"reply larger than {self._max_reply} octets")
            self._partial += data[start:stop]
            start = stop
            if newline < 0:
                self._check_partial()
                break
            line = bytes(self._partial)
            self._partial.clear()
            reply = self._line(line)
            if reply is not None:
                replies.append(reply)
        return replies

    def _check_partial(self) -> None:
        """Fail early on an unfinished line that can already never be valid."""
        part = bytes(self._partial)
        if b"\x00" in part:
            raise self._fail("NUL byte in a reply line", part)
        # A CR is fine only as the very last byte (its LF may be in the next chunk).
        if b"\r" in part[:-1]:
            raise self._fail("bare CR (not followed by LF) in a reply line", part)
        self._check_header(part.rstrip(b"\r"), complete=False)

    def _check_header(self, body: bytes, *, complete: bool) -> None:
        """Validate the code and separator of ``body`` (a line without CRLF).

        With ``complete=False`` only the bytes present so far are checked.
        """
        if not body:
            return  # only a CR so far: the complete-line check decides
        head = body[:3]
        if not head.isdigit():
            raise self._fail("reply code is not three digits", body)
        if head[:1] not in (b"2", b"3", b"4", b"5"):
            raise self._fail("reply code must start with 2, 3, 4 or 5", body)
        if complete and len(body) < 3:
            raise self._fail("reply code is not three digits", body)
        if len(body) > 3 and body[3:4] not in (b"-", b" "):
            if body[3:4].isdigit():
                raise self._fail("reply code has more than three digits", body)
            raise self._fail("reply code must be followed by '-', a space or CRLF", body)
        if self._code and len(head) == 3 and int(head) != self._code:
            raise self._fail(
                f"code changed from {self._code} to {int(head)} inside a multi-line reply",
                body,
            )

    def _line(self, line: bytes) -> Reply | None:
        """Parse one complete line (LF included); return the reply it ends, if any."""
        if not line.endswith(b"\r\n"):
            raise self._fail("bare LF (line ends without CR)", line)
        body = line[:-2]
        if b"\x00" in body:
            raise self._fail("NUL byte in a reply line", line)
        if b"\r" in body:
            raise self._fail("bare CR (not followed by LF) in a reply line", line)
        if not body:
            raise self._fail("empty line inside a reply")
        self._check_header(body, complete=True)
        if len(self._lines) >= self._max_lines:
            raise self._fail(f"more than {self._max_lines} lines in one reply")
        self._code = int(body[:3])
        self._reply_raw += line
        self._lines.append(body[4:].decode("utf-8", errors="replace"))
        if body[3:4] == b"-":
            return None
        code = self._code
        lines = tuple(self._lines)
        self._reset_reply()
        status, _ = split_enhanced_status(lines[0], code)
        return Reply(code, lines, status)
