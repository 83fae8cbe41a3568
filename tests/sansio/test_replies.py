"""ReplyParser, Reply and EnhancedStatus (R-5321-4.2-1, R-5321-4.2-2, R-5321-4.5.3.1-2)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpsec.errors import RemoteProtocolError
from smtpsec.sansio._replies import EnhancedStatus, Reply, ReplyParser


def parse(data: bytes, **limits: int) -> list[Reply]:
    parser = ReplyParser(**limits)
    replies = parser.feed(data)
    assert parser.buffered == b""
    return replies


# --------------------------------------------------------------------------- valid


@pytest.mark.parametrize(
    ("wire", "code", "lines"),
    [
        (b"250 OK\r\n", 250, ("OK",)),
        (b"220 mx.example.test ESMTP ready\r\n", 220, ("mx.example.test ESMTP ready",)),
        (b"220-mx.example.test ESMTP\r\n220 no UCE\r\n", 220, ("mx.example.test ESMTP", "no UCE")),
        (
            b"250-mx.example.test Hello\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n"
            b"250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n",
            250,
            (
                "mx.example.test Hello",
                "PIPELINING",
                "SIZE 10240000",
                "AUTH PLAIN LOGIN",
                "8BITMIME",
            ),
        ),
        (b"334\r\n", 334, ("",)),  # R-4954-4-4: bare 334
        (b"334 \r\n", 334, ("",)),
        (b"334 VXNlcm5hbWU6\r\n", 334, ("VXNlcm5hbWU6",)),
        (b"354 End data with <CR><LF>.<CR><LF>\r\n", 354, ("End data with <CR><LF>.<CR><LF>",)),
        (b"221 2.0.0 Bye\r\n", 221, ("2.0.0 Bye",)),
        (b"421 4.3.2 Service shutting down\r\n", 421, ("4.3.2 Service shutting down",)),
        (b"250-\r\n250 \r\n", 250, ("", "")),
        (b"299 odd but fine\r\n", 299, ("odd but fine",)),  # R-5321-4.2-2
        (b"250 tab\there\r\n", 250, ("tab\there",)),
    ],
)
def test_rfc5321_4_2_1_valid_replies_parse(wire: bytes, code: int, lines: tuple[str, ...]) -> None:
    """R-5321-4.2-1: single-line, multi-line, greeting and bare-334 replies."""
    (reply,) = parse(wire)
    assert reply.code == code
    assert reply.lines == lines


def test_several_replies_in_one_feed_are_returned_in_order() -> None:
    replies = parse(b"250 a\r\n251 b\r\n550 c\r\n")
    assert [r.code for r in replies] == [250, 251, 550]


def test_utf8_text_is_decoded_and_invalid_utf8_replaced() -> None:
    """R-6531-3.7.4-1: UTF-8 in replies never crashes."""
    (reply,) = parse("251 2.1.5 用户@例子.测试 will forward\r\n".encode())
    assert reply.text == "用户@例子.测试 will forward"
    (bad,) = parse(b"250 caf\xc3 \xff\r\n")
    assert bad.lines == ("caf\ufffd \ufffd",)


def test_reply_classification() -> None:
    def make(code: int) -> Reply:
        return Reply(code, ("x",))

    assert make(250).is_success
    assert not make(250).is_intermediate
    assert make(354).is_intermediate
    assert make(451).is_transient
    assert make(554).is_permanent
    assert not make(554).is_success
    assert not make(451).is_permanent


# --------------------------------------------------------------------------- enhanced status


@pytest.mark.parametrize(
    ("wire", "status", "text"),
    [
        (b"250 2.1.0 Ok\r\n", EnhancedStatus(2, 1, 0), "Ok"),
        (
            b"535 5.7.8 Error: authentication failed\r\n",
            EnhancedStatus(5, 7, 8),
            "Error: authentication failed",
        ),
        (b"452 4.3.1 Insufficient storage\r\n", EnhancedStatus(4, 3, 1), "Insufficient storage"),
        (b"550 5.999.999 max\r\n", EnhancedStatus(5, 999, 999), "max"),
        (b"250 2.0.0\r\n", EnhancedStatus(2, 0, 0), ""),
        (
            b"550-5.1.1 The email account does not exist.\r\n550 5.1.1 Try again.\r\n",
            EnhancedStatus(5, 1, 1),
            "The email account does not exist.\nTry again.",
        ),
        (b"550-5.1.1 first\r\n550 second\r\n", EnhancedStatus(5, 1, 1), "first\nsecond"),
        # Class must match the code's first digit.
        (b"250 5.1.1 mismatch\r\n", None, "5.1.1 mismatch"),
        (b"550 2.0.0 mismatch\r\n", None, "2.0.0 mismatch"),
        # 3yz has no enhanced status class.
        (b"354 3.0.0 go ahead\r\n", None, "3.0.0 go ahead"),
        # Out of range or not followed by a space.
        (b"550 5.1000.1 x\r\n", None, "5.1000.1 x"),
        (b"550 5.1.1000 x\r\n", None, "5.1.1000 x"),
        (b"550 5.1.1x y\r\n", None, "5.1.1x y"),
        (b"550 5.1 x\r\n", None, "5.1 x"),
        (b"550 x 5.1.1\r\n", None, "x 5.1.1"),
        # Only the first line decides.
        (b"550-first\r\n550 5.1.1 second\r\n", None, "first\n5.1.1 second"),
    ],
)
def test_rfc3463_enhanced_status(wire: bytes, status: EnhancedStatus | None, text: str) -> None:
    (reply,) = parse(wire)
    assert reply.enhanced_status == status
    assert reply.text == text


def test_enhanced_status_str() -> None:
    assert str(EnhancedStatus(5, 7, 8)) == "5.7.8"


# --------------------------------------------------------------------------- grammar violations


@pytest.mark.parametrize(
    ("wire", "fragment"),
    [
        (b"250-a\r\n251 b\r\n", "code changed from 250 to 251"),
        (b"2500 ok\r\n", "more than three digits"),
        (b"abc\r\n", "not three digits"),
        (b"25 ok\r\n", "not three digits"),
        (b"25\r\n", "not three digits"),
        (b"2a0 ok\r\n", "not three digits"),
        (b"250-a\r\n\r\n250 b\r\n", "empty line"),
        (b"\r\n", "empty line"),
        (b"199 x\r\n", "must start with 2, 3, 4 or 5"),
        (b"699 x\r\n", "must start with 2, 3, 4 or 5"),
        (b"099 x\r\n", "must start with 2, 3, 4 or 5"),
        (b"250 ok\n", "bare LF"),
        (b"250-a\n250 b\r\n", "bare LF"),
        (b"250 o\rk\r\n", "bare CR"),
        (b"250 ok\r\r\n", "bare CR"),
        (b"250 o\x00k\r\n", "NUL"),
        (b"250_ok\r\n", "followed by '-', a space or CRLF"),
        (b"250\tok\r\n", "followed by '-', a space or CRLF"),
        ("２５０ ok\r\n".encode(), "not three digits"),  # full-width digits
    ],
)
def test_rfc5321_4_2_1_grammar_violations_raise(wire: bytes, fragment: str) -> None:
    """R-5321-4.2-1 / R-5321-4.2-2: anything but the strict grammar is fatal."""
    with pytest.raises(RemoteProtocolError) as info:
        ReplyParser().feed(wire)
    message = str(info.value)
    assert fragment in message
    assert "broken" in message
    assert "tampering" in message


@pytest.mark.parametrize(
    "wire",
    [b"250 o\rk", b"2x", b"1", b"2500", b"250 a\x00", b"250-a\r\n251"],
)
def test_violation_detected_before_the_line_ends(wire: bytes) -> None:
    """A partial line that can never be valid fails at once (no waiting for CRLF)."""
    with pytest.raises(RemoteProtocolError):
        ReplyParser().feed(wire)


def test_partial_line_that_may_still_be_valid_waits() -> None:
    parser = ReplyParser()
    for piece in (b"2", b"5", b"0", b"-", b"x", b"\r"):
        assert parser.feed(piece) == []
    assert parser.buffered == b"250-x\r"
    assert parser.feed(b"\n250 y\r\n") == [Reply(250, ("x", "y"))]


def test_partial_empty_line_then_data_is_bare_cr() -> None:
    parser = ReplyParser()
    assert parser.feed(b"\r") == []
    with pytest.raises(RemoteProtocolError, match="bare CR"):
        parser.feed(b"x")


def test_parser_stays_failed() -> None:
    parser = ReplyParser()
    with pytest.raises(RemoteProtocolError):
        parser.feed(b"abc\r\n")
    with pytest.raises(RemoteProtocolError, match="already failed"):
        parser.feed(b"250 ok\r\n")
    with pytest.raises(RemoteProtocolError, match="already failed"):
        parser.feed(b"")


def test_error_after_complete_reply_in_same_feed_wins() -> None:
    """The stream is untrusted from the error on: no replies from that feed."""
    parser = ReplyParser()
    with pytest.raises(RemoteProtocolError):
        parser.feed(b"250 ok\r\nabc\r\n")


def test_too_small_limits_are_rejected() -> None:
    with pytest.raises(ValueError, match="too small"):
        ReplyParser(max_line_length=4)
    with pytest.raises(ValueError, match="too small"):
        ReplyParser(max_lines=0)
    with pytest.raises(ValueError, match="too small"):
        ReplyParser(max_reply_bytes=4)


# --------------------------------------------------------------------------- limits


def test_line_length_limit_includes_crlf() -> None:
    """R-5321-4.5.3.1-2: lines over 512 accepted up to the cap, not beyond."""
    line = b"250 " + b"x" * 596 + b"\r\n"  # 602 octets: over 512, under the cap
    assert parse(line)[0].code == 250
    exact = b"250 " + b"x" * 4 + b"\r\n"
    assert parse(exact, max_line_length=10)[0].lines == ("xxxx",)
    with pytest.raises(RemoteProtocolError, match="longer than 10 octets"):
        ReplyParser(max_line_length=10).feed(b"250 " + b"x" * 5 + b"\r\n")


def feed_bounded(parser: ReplyParser, chunks: Iterable[bytes], bound: int) -> int:
    """Feed every chunk, checking the parser's buffer never exceeds ``bound``.

    Returns the number of chunks fed (only reached when no error is raised).
    """
    fed = 0
    for chunk in chunks:
        parser.feed(chunk)
        fed += 1
        assert len(parser.buffered) <= bound
    return fed


def test_ten_mib_without_crlf_fails_once_past_the_line_limit() -> None:
    """R-5321-4.5.3.1-2: a server streaming without CRLF cannot grow memory."""
    parser = ReplyParser()
    chunk = b"250 " + b"x" * 1020
    chunks = itertools.repeat(chunk, 10 * 1024)  # 10 MiB in 1 KiB reads
    with pytest.raises(RemoteProtocolError, match="longer than 4096 octets"):
        feed_bounded(parser, chunks, 4096)
    # The failing read was the fifth: 4 KiB held at most, never 10 MiB.
    assert parser.buffered == chunk * 4
    with pytest.raises(RemoteProtocolError, match="already failed"):
        parser.feed(b"x")


def test_one_huge_read_without_crlf_fails_without_copying_it() -> None:
    parser = ReplyParser()
    with pytest.raises(RemoteProtocolError, match="longer than 4096 octets"):
        parser.feed(b"250 " + b"x" * (10 * 1024 * 1024))
    assert parser.buffered == b""


def test_slow_stream_without_crlf_fails_at_the_line_limit() -> None:
    parser = ReplyParser(max_line_length=100)
    parser.feed(b"250 ")
    with pytest.raises(RemoteProtocolError, match="longer than 100"):
        feed_bounded(parser, itertools.repeat(b"x", 10 * 1024 * 1024), 100)
    assert len(parser.buffered) == 100


def test_million_continuation_lines_fail_with_bounded_memory() -> None:
    """R-5321-4.5.3.1-2: 10**6 ``250-x`` lines raise after the line cap."""
    parser = ReplyParser()
    block = b"250-x\r\n" * 100
    with pytest.raises(RemoteProtocolError, match="more than 1000 lines"):
        feed_bounded(parser, itertools.repeat(block, 10_000), 64 * 1024)  # 10**6 lines
    # Ten blocks held the first 1,000 lines; the eleventh broke the cap.
    assert parser.buffered == block * 10


def test_reply_byte_limit() -> None:
    parser = ReplyParser(max_reply_bytes=100)
    parser.feed(b"250-" + b"x" * 40 + b"\r\n")
    parser.feed(b"250-" + b"x" * 40 + b"\r\n")
    with pytest.raises(RemoteProtocolError, match="larger than 100 octets"):
        parser.feed(b"250-xxxxxxxxxxxxxx")


def test_reply_byte_limit_resets_between_replies() -> None:
    parser = ReplyParser(max_reply_bytes=50)
    for _ in range(20):
        assert parser.feed(b"250-" + b"x" * 10 + b"\r\n250 " + b"y" * 10 + b"\r\n")


def test_max_lines_exact() -> None:
    assert parse(b"250-a\r\n250-b\r\n250 c\r\n", max_lines=3)[0].lines == ("a", "b", "c")
    with pytest.raises(RemoteProtocolError, match="more than 2 lines"):
        ReplyParser(max_lines=2).feed(b"250-a\r\n250-b\r\n250 c\r\n")


# --------------------------------------------------------------------------- STARTTLS boundary


def test_buffered_and_take_buffered() -> None:
    """Bytes after a complete reply stay visible (STARTTLS injection, R-EAST-BR-1)."""
    parser = ReplyParser()
    replies = parser.feed(b"220 go ahead\r\n250-injected\r\n250 AUTH PL")
    assert [r.code for r in replies] == [220]
    assert parser.buffered == b"250-injected\r\n250 AUTH PL"
    assert parser.take_buffered() == b"250-injected\r\n250 AUTH PL"
    assert parser.buffered == b""
    # The partial reply was discarded with the bytes: a fresh reply parses cleanly.
    assert parser.feed(b"251 fresh\r\n") == [Reply(251, ("fresh",))]


# --------------------------------------------------------------------------- properties

_TEXT = st.binary(max_size=30).map(
    lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b"\x00", b"")
)


@st.composite
def _replies(draw: st.DrawFn) -> bytes:
    code = draw(st.integers(200, 599))
    texts = draw(st.lists(_TEXT, min_size=1, max_size=5))
    out = b""
    for index, text in enumerate(texts):
        last = index == len(texts) - 1
        if last and not text and draw(st.booleans()):
            out += b"%d\r\n" % code
        else:
            out += b"%d%s%s\r\n" % (code, b" " if last else b"-", text)
    return out


@st.composite
def _chunked(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    stream = b"".join(draw(st.lists(_replies(), min_size=1, max_size=6)))
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=20)))
    bounds = [0, *cuts, len(stream)]
    return stream, [stream[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=200, deadline=None)
@given(_chunked())
def test_any_chunking_gives_the_same_replies(case: tuple[bytes, list[bytes]]) -> None:
    stream, chunks = case
    whole = ReplyParser().feed(stream)
    parser = ReplyParser()
    pieces = [reply for chunk in chunks for reply in parser.feed(chunk)]
    assert pieces == whole
    assert parser.buffered == b""
    assert len(whole) >= 1


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.lists(st.integers(0, 200), max_size=10))
def test_random_bytes_give_replies_or_remote_protocol_error(data: bytes, cuts: list[int]) -> None:
    """Garbage yields only replies or RemoteProtocolError, whatever the chunking."""
    bounds = [0, *sorted(c for c in cuts if c <= len(data)), len(data)]
    chunked: list[Reply] = []
    chunked_failed = False
    parser = ReplyParser(max_line_length=64, max_lines=4, max_reply_bytes=128)
    try:
        for a, b in itertools.pairwise(bounds):
            chunked.extend(parser.feed(data[a:b]))
    except RemoteProtocolError:
        chunked_failed = True
    whole: list[Reply] = []
    whole_failed = False
    try:
        whole = ReplyParser(max_line_length=64, max_lines=4, max_reply_bytes=128).feed(data)
    except RemoteProtocolError:
        whole_failed = True
    assert chunked_failed == whole_failed
    if not whole_failed:
        assert chunked == whole
    else:
        # Replies handed out before the error are a prefix of the valid stream.
        assert all(isinstance(r, Reply) and 200 <= r.code <= 599 for r in chunked)


@settings(max_examples=200, deadline=None)
@given(_chunked(), st.binary(min_size=1, max_size=20))
def test_garbage_after_valid_replies(case: tuple[bytes, list[bytes]], junk: bytes) -> None:
    """Valid replies come out unchanged before trailing junk is judged."""
    stream, _ = case
    expected = ReplyParser().feed(stream)
    parser = ReplyParser()
    got = parser.feed(stream)
    try:
        got += parser.feed(junk)
    except RemoteProtocolError:
        assert got == expected
        return
    assert got[: len(expected)] == expected
