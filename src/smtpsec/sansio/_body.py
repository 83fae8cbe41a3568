"""Streaming message body encoders: DATA (normalise + dot-stuff) and BDAT framing."""

from __future__ import annotations

from typing import Final

__all__ = ["BdatEncoder", "DataEncoder", "LineNormalizer"]

_CR: Final = b"\r"
_LF: Final = b"\n"
_CRLF: Final = b"\r\n"


class LineNormalizer:
    """Rewrites every bare CR and bare LF to CRLF, across chunk boundaries.

    Prevents SMTP smuggling (R-5321-2.3.8-1). A CR at the end of a chunk is held
    back until the next byte (or :meth:`finish`) says whether an LF follows, so
    a CRLF split over two chunks stays one line end and every emitted piece
    holds only whole CRLF pairs.
    """

    __slots__ = ("_ends_with_crlf", "_held_cr")

    def __init__(self) -> None:
        self._held_cr = False
        self._ends_with_crlf = True

    def feed(self, chunk: bytes) -> bytes:
        """Normalise one chunk; may hold back a trailing CR."""
        data = bytes(chunk)
        if self._held_cr:
            data = _CR + data
        self._held_cr = data.endswith(_CR)
        if self._held_cr:
            data = data[:-1]
        if not data:
            return b""
        # Fold CRLF to LF, then every remaining (bare) CR to LF, then LF to CRLF:
        # three C-speed passes instead of a per-byte Python loop.
        out = data.replace(_CRLF, _LF).replace(_CR, _LF).replace(_LF, _CRLF)
        self._ends_with_crlf = out.endswith(_CRLF)
        return out

    def finish(self) -> bytes:
        """Flush what was held back (a lone CR becomes CRLF)."""
        if not self._held_cr:
            return b""
        self._held_cr = False
        self._ends_with_crlf = True
        return _CRLF

    @property
    def ends_with_crlf(self) -> bool:
        """True when everything emitted so far ends in CRLF (or nothing was emitted)."""
        return self._ends_with_crlf


class DataEncoder:
    """Encodes a body for ``DATA``: normalised line ends, dot-stuffing, terminator.

    ``b"".join(enc.feed(c) for c in chunks) + enc.finish()`` is the exact octet
    stream to send after the 354, including the final ``CRLF.CRLF``; a body that
    does not end in CRLF gets exactly one added (R-5321-4.5.2-1). Every line
    that starts with ``.`` gets a second one, even when the line starts in a
    new chunk, so no line before the terminator is a lone ``.``.

    An empty body produces just ``b".\\r\\n"``: the ``DATA`` command line already
    ended in CRLF, so that is the ``CRLF.CRLF`` sequence, and adding a CRLF
    first would invent an empty line the sender never wrote.
    """

    __slots__ = ("_at_line_start", "_normalizer", "_octets")

    def __init__(self) -> None:
        self._normalizer = LineNormalizer()
        self._at_line_start = True
        self._octets = 0

    def _stuff(self, data: bytes) -> bytes:
        # ``data`` comes from the normaliser, so it never splits a CRLF: a line
        # start is either right after a CRLF inside it or at its very beginning.
        if not data:
            return b""
        out = data.replace(b"\r\n.", b"\r\n..")
        if self._at_line_start and data.startswith(b"."):
            out = b"." + out
        self._at_line_start = data.endswith(_CRLF)
        self._octets += len(data)
        return out

    def feed(self, chunk: bytes) -> bytes:
        """Encode one chunk of the body (any size, any split point)."""
        return self._stuff(self._normalizer.feed(chunk))

    def finish(self) -> bytes:
        """The rest of the body, a CRLF if the content lacked one, and ``.CRLF``."""
        out = self._stuff(self._normalizer.finish())
        if not self._normalizer.ends_with_crlf:
            out += self._stuff(_CRLF)
        return out + b".\r\n"

    @property
    def body_octets(self) -> int:
        """Octets of normalised content so far (before stuffing: what SIZE counts).

        After :meth:`finish` this includes the CRLF added to an unterminated body,
        but never the dot-stuffing or the ``.CRLF`` terminator.
        """
        return self._octets


class BdatEncoder:
    """Normalises line ends for ``BDAT`` (no dot-stuffing) and frames chunks.

    :meth:`frame` returns ``b"BDAT <n>[ LAST]\\r\\n" + payload`` for one chunk of
    already-normalised bytes; :meth:`feed`/:meth:`finish` normalise like
    :class:`LineNormalizer` (the body must end with CRLF; one is added if not).
    BDAT carries octets verbatim, but a later relay may convert the message to
    ``DATA``, so line ends are normalised anyway (R-3030-3-1). An empty body
    stays empty (send ``BDAT 0 LAST``).
    """

    __slots__ = ("_normalizer", "_octets")

    def __init__(self) -> None:
        self._normalizer = LineNormalizer()
        self._octets = 0

    def feed(self, chunk: bytes) -> bytes:
        """Normalise one chunk; may hold back a trailing CR."""
        out = self._normalizer.feed(chunk)
        self._octets += len(out)
        return out

    def finish(self) -> bytes:
        """What was held back, plus a CRLF if the content lacked one."""
        out = self._normalizer.finish()
        if not self._normalizer.ends_with_crlf:
            out += _CRLF
        self._octets += len(out)
        return out

    @property
    def body_octets(self) -> int:
        """Octets of normalised content produced so far."""
        return self._octets

    @staticmethod
    def frame(payload: bytes, *, last: bool) -> bytes:
        """``BDAT`` command line with the exact octet count, then ``payload``.

        Args:
            payload: the chunk's octets, sent unchanged.
            last: add ``LAST`` (the final chunk; ``payload`` may be empty).
        """
        marker = b" LAST" if last else b""
        return b"BDAT %d%s\r\n" % (len(payload), marker) + bytes(payload)
