"""The Wire I/O loop over an in-memory transport: deadlines, closes, counters, transcript
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
    wire = Wire(transport, ClientConnection(tls_active=True), timeout=timeout, peer="srv:587")
    run_sync(wire.read(1))
    assert run_sync(wire.one(Command("EHLO", "[127.0.0.1]"))).code == 250
    return wire, transport


def test_counters_and_transcript(caplog: pytest.LogCaptureFixture) -> None:
    wire, transport = _wire(b"250 ok\r\n")
    caplog.set_level(logging.DEBUG, logger="smtpsec.transcript")
    writes, reads = wire.writes, wire.reads
    run_sync(wire.send(Command("NOOP")))
    run_sync(wire.body(b""))  # nothing to write
    run_sync(wire.write(b""))
    assert [r.reply.code for r in run_sync(wire.read(1))] == [250]
    run_sync(wire.body(b"secret content\r\n"))
    wire.log_content(42)
    assert (wire.writes - writes, wire.reads - reads) == (2, 1)
    assert transport.written[-1] == b"secret content\r\n"
    text = caplog.text
    assert "C: NOOP" in text and "S: 250 ok" in text
    assert "<message content, 16 octets>" in text and "<message content, 42 octets>" in text
    assert "secret content" not in text


def test_end_of_stream_while_a_reply_is_due() -> None:
    wire, _ = _wire(b"")
    run_sync(wire.send(Command("NOOP")))
    with pytest.raises(ConnectError, match="closed the connection"):
        run_sync(wire.read(1))
    with pytest.raises(ConnectError, match="closed the connection"):
        run_sync(wire.read(1))  # closed: fails at once, no read


def test_421_before_all_replies_arrived() -> None:
    wire, _ = _wire(b"250 ok\r\n421 4.3.2 bye\r\n")
    run_sync(wire.send(Command("RSET"), Command("RSET"), Command("RSET")))
    with pytest.raises(ConnectError, match="421 bye"):
        run_sync(wire.read(3))
    assert wire.conn.state.value == "closed"


def test_zero_deadline() -> None:
    wire, _ = _wire(b"250 ok\r\n")
    wire.timeout = 0
    run_sync(wire.send(Command("NOOP")))
    with pytest.raises(DeadlineError, match="no complete reply"):
        run_sync(wire.read(1))


def test_extra_reply_is_a_protocol_error() -> None:
    wire, _ = _wire(b"250 ok\r\n250 surplus\r\n")
    run_sync(wire.send(Command("NOOP")))
    with pytest.raises(RemoteProtocolError, match="nobody asked for"):
        run_sync(wire.read(1))
