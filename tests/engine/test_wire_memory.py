"""The Wire over an in-memory transport: deadlines, closes, counters, transcript
(R-5321-3.8-1, R-LIB-DESYNC-1).

These drive edge cases a real server cannot produce on demand (a read that
returns end-of-stream between replies, a zero deadline); everything else is
tested against the loopback fake server.
"""

from __future__ import annotations

import logging

import pytest

from smtpsec._engine import Wire, run_sync
from smtpsec.errors import ConnectError, RemoteProtocolError
from smtpsec.errors import TimeoutError as DeadlineError
from smtpsec.sansio import ClientConnection, Command
from smtpsec.transports import MemoryTransport

_READY = [b"220 hi\r\n", b"250-x\r\n250 PIPELINING\r\n"]


def _wire(*incoming: bytes, timeout: float = 5.0) -> tuple[Wire, MemoryTransport]:
    transport = MemoryTransport([*_READY, *incoming])
    wire = Wire(transport, ClientConnection(tls_active=True), timeout=timeout, host="srv", port=587)
    run_sync(wire.read())
    assert run_sync(wire.command(Command("EHLO", "[127.0.0.1]"))).code == 250
    return wire, transport


def test_counters_and_transcript(caplog: pytest.LogCaptureFixture) -> None:
    wire, transport = _wire(b"250 ok\r\n")
    caplog.set_level(logging.DEBUG, logger="smtpsec.transcript")
    writes, reads = wire.writes, wire.reads
    wire.queue(Command("NOOP"))
    run_sync(wire.flush())
    run_sync(wire.flush())  # nothing queued: nothing to write
    assert run_sync(wire.read()).reply.code == 250
    wire.queue_content(b"secret content\r\n")
    wire.log_content(16)
    run_sync(wire.flush())
    assert (wire.writes - writes, wire.reads - reads) == (2, 1)
    assert transport.written[-1] == b"secret content\r\n"
    text = caplog.text
    assert "C: NOOP" in text and "S: 250 ok" in text
    assert "<message content, 16 octets>" in text
    assert "secret content" not in text


def test_end_of_stream_while_a_reply_is_due() -> None:
    wire, _ = _wire(b"")
    wire.queue(Command("NOOP"))
    with pytest.raises(ConnectError, match="closed the connection"):
        run_sync(wire.read())
    with pytest.raises(ConnectError, match="closed the connection"):
        run_sync(wire.read())  # closed: fails at once, no read


def test_421_before_all_replies_arrived() -> None:
    """RFC 5321 §3.8: after 421 nothing more can come; the 421 itself is handed out."""
    wire, _ = _wire(b"250 ok\r\n421 4.3.2 bye\r\n")
    for _ in range(3):
        wire.queue(Command("RSET"))
    assert run_sync(wire.read()).reply.code == 250
    assert run_sync(wire.read()).reply.code == 421
    assert wire.conn.state.value == "closed"
    with pytest.raises(ConnectError, match="closed the connection"):
        run_sync(wire.read())


def test_zero_deadline() -> None:
    wire, _ = _wire(b"250 ok\r\n")
    wire.timeout = 0
    wire.queue(Command("NOOP"))
    with pytest.raises(DeadlineError, match="no reply from srv:587 within 0s"):
        run_sync(wire.read())


def test_extra_reply_is_a_protocol_error() -> None:
    wire, transport = _wire(b"250 ok\r\n250 surplus\r\n")
    wire.queue(Command("NOOP"))
    with pytest.raises(RemoteProtocolError, match="nobody asked for"):
        run_sync(wire.read())
    assert transport.closed  # nothing read from then on could be trusted


def test_read_with_nothing_due_is_the_callers_mistake() -> None:
    wire, _ = _wire()
    with pytest.raises(Exception, match="no reply is due"):
        run_sync(wire.read())
