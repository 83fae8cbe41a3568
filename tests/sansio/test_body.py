"""Body encoders: line-end normalisation, dot-stuffing, BDAT framing.

R-5321-2.3.8-1 (no bare CR/LF, anti-smuggling), R-5321-4.5.2-1 (dot-stuffing,
terminator), R-3030-2-2 / R-3030-3-1 (BDAT sizes and normalisation).
"""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpsec.sansio._body import BdatEncoder, DataEncoder, LineNormalizer

SMUGGLING = b"a\nb\r.\r\nc\n.\nd\r.\re"


def normalise(data: bytes) -> bytes:
    """Reference normaliser, written differently from the implementation."""
    return re.sub(rb"\r\n|\r|\n", b"\r\n", data)


def encode_data(chunks: list[bytes]) -> tuple[bytes, int]:
    encoder = DataEncoder()
    out = b"".join(encoder.feed(chunk) for chunk in chunks) + encoder.finish()
    return out, encoder.body_octets


def unstuff(wire: bytes) -> bytes:
    """What a receiving server does (RFC 5321 §4.5.2): stop at the terminator, unstuff."""
    assert wire.endswith(b".\r\n")
    lines = wire.split(b"\r\n")
    assert lines[-1] == b""
    content: list[bytes] = []
    for index, line in enumerate(lines[:-1]):
        if line == b".":
            assert index == len(lines) - 2, "end-of-data before the real terminator"
            break
        content.append(line[1:] if line.startswith(b".") else line)
    return b"".join(line + b"\r\n" for line in content)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


# --------------------------------------------------------------------------- LineNormalizer


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([b"a\nb"], b"a\r\nb"),
        ([b"a\rb"], b"a\r\nb"),
        ([b"a\r\nb"], b"a\r\nb"),
        ([b"a\r", b"\nb"], b"a\r\nb"),  # one CRLF split over two chunks
        ([b"a\r", b"b"], b"a\r\nb"),
        ([b"a\r"], b"a\r\n"),  # flushed by finish()
        ([b"\r\r\n\n"], b"\r\n\r\n\r\n"),
        ([b"\r", b"\r", b"\n"], b"\r\n\r\n"),
        ([b"", b"x", b""], b"x"),
        ([], b""),
    ],
)
def test_r5321_2_3_8_1_line_normalizer(chunks: list[bytes], expected: bytes) -> None:
    normalizer = LineNormalizer()
    out = b"".join(normalizer.feed(chunk) for chunk in chunks) + normalizer.finish()
    assert out == expected


def test_line_normalizer_holds_back_trailing_cr() -> None:
    normalizer = LineNormalizer()
    assert normalizer.ends_with_crlf  # nothing emitted yet
    assert normalizer.feed(b"abc\r") == b"abc"
    assert not normalizer.ends_with_crlf
    assert normalizer.feed(b"\n") == b"\r\n"
    assert normalizer.ends_with_crlf
    assert normalizer.feed(b"\r") == b""
    assert normalizer.finish() == b"\r\n"
    assert normalizer.finish() == b""
    assert normalizer.ends_with_crlf


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=12))
def test_line_normalizer_chunking_invariance(data: bytes, cuts: list[int]) -> None:
    normalizer = LineNormalizer()
    out = b"".join(normalizer.feed(c) for c in split(data, cuts)) + normalizer.finish()
    assert out == normalise(data)
    assert normalizer.ends_with_crlf == (not out or out.endswith(b"\r\n"))


# --------------------------------------------------------------------------- DataEncoder


@pytest.mark.parametrize(
    ("body", "wire"),
    [
        (b"", b".\r\n"),
        (b"hello", b"hello\r\n.\r\n"),
        (b"hello\r\n", b"hello\r\n.\r\n"),
        (b"hello\n", b"hello\r\n.\r\n"),
        (b"\r\n", b"\r\n.\r\n"),
        (b".", b"..\r\n.\r\n"),
        (b".\r\n", b"..\r\n.\r\n"),
        (b"..x\r\n.hidden\r\n", b"...x\r\n..hidden\r\n.\r\n"),
        (b"a\r\n.\r\nb", b"a\r\n..\r\nb\r\n.\r\n"),
        (b"x.y\r\n", b"x.y\r\n.\r\n"),
    ],
)
def test_r5321_4_5_2_1_data_encoding(body: bytes, wire: bytes) -> None:
    """R-5321-4.5.2-1: dot-stuffing, one added CRLF at most, CRLF.CRLF terminator."""
    out, _ = encode_data([body])
    assert out == wire


def test_r5321_2_3_8_1_smuggling_vector() -> None:
    """R-5321-2.3.8-1: the checklist's vector gives CRLF-only lines and one end-of-data."""
    out, octets = encode_data([SMUGGLING])
    assert out == b"a\r\nb\r\n..\r\nc\r\n..\r\nd\r\n..\r\ne\r\n.\r\n"
    assert out.replace(b"\r\n", b"").count(b"\r") == 0
    assert out.replace(b"\r\n", b"").count(b"\n") == 0
    assert out.count(b"\r\n.\r\n") == 1
    assert out.endswith(b"\r\n.\r\n")
    assert octets == len(b"a\r\nb\r\n.\r\nc\r\n.\r\nd\r\n.\r\ne\r\n")


@pytest.mark.parametrize("cut", range(len(SMUGGLING) + 1))
def test_smuggling_vector_split_anywhere(cut: int) -> None:
    whole, _ = encode_data([SMUGGLING])
    split_out, _ = encode_data([SMUGGLING[:cut], SMUGGLING[cut:]])
    assert split_out == whole


def test_dot_at_line_start_split_across_chunks_is_stuffed() -> None:
    out, _ = encode_data([b"a\r\n", b".", b"\r\n"])
    assert out == b"a\r\n..\r\n.\r\n"
    out, _ = encode_data([b"a\r", b"\n.b"])
    assert out == b"a\r\n..b\r\n.\r\n"
    out, _ = encode_data([b".", b".", b"."])
    assert out == b"....\r\n.\r\n"


def test_body_octets_counts_normalised_content() -> None:
    encoder = DataEncoder()
    encoder.feed(b".a\n")
    assert encoder.body_octets == 4  # ".a\r\n", before stuffing
    encoder.feed(b"b")
    assert encoder.body_octets == 5
    encoder.finish()
    assert encoder.body_octets == 7  # plus the CRLF added at the end


_BODY = st.lists(
    st.sampled_from([b".", b"..", b"\r", b"\n", b"\r\n", b"a", b"b.c", b" ", b"\x00", b"\xff"]),
    max_size=40,
).map(b"".join) | st.binary(max_size=200)


@settings(max_examples=200, deadline=None)
@given(_BODY, st.lists(st.integers(0, 400), max_size=12))
def test_data_round_trip_and_chunking_invariance(body: bytes, cuts: list[int]) -> None:
    """Unstuffing gives the normalised input (+ CRLF if missing); no early end-of-data."""
    wire, octets = encode_data(split(body, cuts))
    whole, _ = encode_data([body])
    assert wire == whole
    expected = normalise(body)
    if expected and not expected.endswith(b"\r\n"):
        expected += b"\r\n"
    assert unstuff(wire) == expected  # also asserts no lone "." line before the end
    assert octets == len(expected)
    lines = wire.split(b"\r\n")
    assert b"\r" not in b"".join(lines)
    assert b"\n" not in b"".join(lines)
    assert lines[:-2].count(b".") == 0
    assert wire == b".\r\n" or wire.endswith(b"\r\n.\r\n")


# --------------------------------------------------------------------------- BdatEncoder


def test_r3030_2_2_frame() -> None:
    """R-3030-2-2: exact octet count, LAST on the final chunk."""
    assert BdatEncoder.frame(b"Hello world\n", last=True) == b"BDAT 12 LAST\r\nHello world\n"
    assert BdatEncoder.frame(b"abc", last=False) == b"BDAT 3\r\nabc"
    assert BdatEncoder.frame(b"", last=True) == b"BDAT 0 LAST\r\n"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", b""),
        (b"line\nline", b"line\r\nline\r\n"),
        (b".dots\r\n.\r\n", b".dots\r\n.\r\n"),  # no dot-stuffing for BDAT
        (SMUGGLING, b"a\r\nb\r\n.\r\nc\r\n.\r\nd\r\n.\r\ne\r\n"),
    ],
)
def test_r3030_3_1_bdat_normalises_without_stuffing(body: bytes, expected: bytes) -> None:
    """R-3030-3-1: BDAT content is CRLF-normalised (a relay may convert it to DATA)."""
    encoder = BdatEncoder()
    out = encoder.feed(body) + encoder.finish()
    assert out == expected
    assert encoder.body_octets == len(expected)


@settings(max_examples=200, deadline=None)
@given(_BODY, st.lists(st.integers(0, 400), max_size=12))
def test_bdat_chunking_invariance(body: bytes, cuts: list[int]) -> None:
    chunked = BdatEncoder()
    pieces = [chunked.feed(c) for c in split(body, cuts)] + [chunked.finish()]
    whole = BdatEncoder()
    assert b"".join(pieces) == whole.feed(body) + whole.finish()
    expected = normalise(body)
    if expected and not expected.endswith(b"\r\n"):
        expected += b"\r\n"
    assert b"".join(pieces) == expected
    # Framing each piece declares exactly its size (R-3030-2-2).
    framed = [BdatEncoder.frame(p, last=i == len(pieces) - 1) for i, p in enumerate(pieces)]
    for frame, piece in zip(framed, pieces, strict=True):
        header, _, payload = frame.partition(b"\r\n")
        assert payload == piece
        assert int(header.split()[1]) == len(piece)
    assert framed[-1].split(b"\r\n", 1)[0].endswith(b" LAST")
