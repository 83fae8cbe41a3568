"""Round trips: what goes in one write with PIPELINING/CHUNKING, and lock-step without
(R-2920-3.1-1, R-2920-3.1-2, R-2920-3.1-5, R-3030-2-1, R-3030-2-2, R-3030-2-3)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from sending_helpers import CANARY, finished, flights, message, without

import smtpsec
from smtpsec.testing import DEFAULT_EXTENSIONS, ServerSession
from smtpsec.transports import SocketTransport, Transport, open_socket


def test_R_2920_3_1_1_envelope_and_data_in_one_write(serve: Any, connect: Any) -> None:
    srv = serve(extensions=without("CHUNKING"))
    with connect(srv) as session:
        result = session.send(message(to="bob@example.test, carl@example.test, dan@example.test"))
    assert result.method == "DATA"
    assert result.accepted == ("bob@example.test", "carl@example.test", "dan@example.test")
    first = flights(finished(srv))[0]
    assert first == (
        f"MAIL FROM:<ann@example.test> SIZE={result.size}\r\n".encode()
        + b"RCPT TO:<bob@example.test>\r\nRCPT TO:<carl@example.test>\r\n"
        + b"RCPT TO:<dan@example.test>\r\nDATA\r\n"
    )


def test_R_2920_3_1_2_nothing_follows_data_in_its_write(serve: Any, connect: Any) -> None:
    srv = serve(extensions=without("CHUNKING"))
    with connect(srv) as session:
        session.send(message())
    for segment in flights(finished(srv)):
        if b"DATA\r\n" in segment:
            assert segment.endswith(b"DATA\r\n")


def test_R_3030_2_2_small_message_is_one_write_with_bdat_last(serve: Any, connect: Any) -> None:
    srv = serve()
    with connect(srv) as session:
        result = session.send(message(to="bob@example.test, carl@example.test"))
    assert result.method == "BDAT"
    (delivered,) = srv.messages
    (only,) = flights(finished(srv))
    assert only == (
        f"MAIL FROM:<ann@example.test> SIZE={result.size}\r\n".encode()
        + b"RCPT TO:<bob@example.test>\r\nRCPT TO:<carl@example.test>\r\n"
        + f"BDAT {result.size} LAST\r\n".encode()
        + delivered.data
    )
    assert delivered.bdat_chunks == (result.size,)
    assert CANARY.encode() in delivered.data


def test_R_2920_3_1_1_lock_step_without_pipelining_data(serve: Any, connect: Any) -> None:
    srv = serve(extensions=without("PIPELINING", "CHUNKING"))
    with connect(srv) as session:
        session.send(message(to="bob@example.test, carl@example.test"))
    segments = flights(finished(srv))
    commands = [s for s in segments if CANARY.encode() not in s]
    assert [c[:4] for c in commands] == [b"MAIL", b"RCPT", b"RCPT", b"DATA"]
    assert all(c.count(b"\r\n") == 1 for c in commands)
    assert segments[-1].endswith(b"\r\n.\r\n")


def test_R_2920_3_1_1_lock_step_without_pipelining_bdat(serve: Any, connect: Any) -> None:
    srv = serve(extensions=without("PIPELINING"))
    with connect(srv) as session:
        result = session.send(message(to="bob@example.test, carl@example.test"))
    segments = flights(finished(srv))
    assert segments[:3] == [
        f"MAIL FROM:<ann@example.test> SIZE={result.size}\r\n".encode(),
        b"RCPT TO:<bob@example.test>\r\n",
        b"RCPT TO:<carl@example.test>\r\n",
    ]
    assert segments[3].startswith(f"BDAT {result.size} LAST\r\n".encode())
    assert len(segments) == 4


def test_R_2920_3_1_1_pipelining_only_before_tls_means_lock_step(serve: Any, connect: Any) -> None:
    srv = serve(
        pre_tls_extensions=("PIPELINING", "CHUNKING", "8BITMIME"),
        extensions=without("PIPELINING", "CHUNKING"),
    )
    with connect(srv) as session:
        session.send(message())
    capture = finished(srv)
    commands = [s for s in flights(capture) if CANARY.encode() not in s]
    assert all(c.count(b"\r\n") == 1 for c in commands)
    assert capture.commands_post_tls.count("BDAT") == 0


def test_R_3030_2_1_chunking_only_before_tls_means_data(serve: Any, connect: Any) -> None:
    srv = serve(pre_tls_extensions=("PIPELINING", "CHUNKING"), extensions=without("CHUNKING"))
    with connect(srv) as session:
        assert session.send(message()).method == "DATA"
    capture = finished(srv)
    assert "BDAT" not in capture.commands
    assert srv.messages[0].via == "DATA"


def test_R_3030_2_3_never_data_and_bdat_in_one_transaction(serve: Any, connect: Any) -> None:
    srv = serve()
    with connect(srv) as session:
        session.send_many([message(), message(body="x" * 400_000)])
    verbs = finished(srv).commands_post_tls
    assert "DATA" not in verbs
    assert verbs.count("BDAT") >= 2


def test_send_many_50_messages_in_one_flight(serve: Any, connect: Any) -> None:
    srv = serve()
    with connect(srv) as session:
        writes = session._wire.writes
        outcomes = session.send_many([message(subject=f"n{i}") for i in range(50)])
        assert session._wire.writes - writes == 1
    assert all(o.method == "BDAT" for o in outcomes)  # type: ignore[union-attr]
    assert [m.data.count(b"Subject: n") for m in srv.messages] == [1] * 50
    # TLS records may split one write into a few recv() segments, never 50.
    assert len(flights(finished(srv))) <= 4


def test_send_many_with_data_sends_terminator_with_the_next_envelope(
    serve: Any, connect: Any
) -> None:
    srv = serve(extensions=without("CHUNKING"))
    with connect(srv) as session:
        session.send_many([message(subject=f"n{i}") for i in range(3)])
    segments = flights(finished(srv))
    joined = [s for s in segments if s.startswith(b"From:") or b"\r\n.\r\n" in s]
    assert sum(b"\r\n.\r\nMAIL FROM:" in s for s in segments) == 2
    assert joined
    assert len(srv.messages) == 3
    # No RSET: each DATA transaction ended with its terminator's reply.
    assert "RSET" not in finished(srv).commands


def test_repeated_sends_do_not_rset_after_success(serve: Any, connect: Any) -> None:
    srv = serve()
    with connect(srv) as session:
        for _ in range(3):
            session.send(message())
    assert "RSET" not in finished(srv).commands
    assert len(srv.messages) == 3


def _big_rcpt_replies(session: ServerSession, line: str) -> bytes | None:
    # Every RCPT reply becomes ~8 KiB (continuation lines before the normal
    # final line): the server blocks writing them until the client reads.
    if line.upper().startswith("RCPT"):
        session.send((b"250-" + b"x" * 1000 + b"\r\n") * 8)
    return None


def test_R_2920_3_1_5_500_pipelined_recipients_complete(serve: Any, connect: Any) -> None:
    """500 recipients in one flight although the server blocks writing its 4 MiB of
    replies until the client reads them: smtpsec's transport reads while it writes."""
    srv = serve(on_command=_big_rcpt_replies)
    rcpts = [f"user{i}@example.test" for i in range(500)]
    with connect(srv) as session:
        before = session._wire.writes
        result = session.send(message(), recipients=rcpts)
        assert session._wire.writes - before == 1  # one flight for the whole transaction
    assert result.accepted == tuple(rcpts)
    assert srv.messages[0].recipients == tuple(rcpts)


class _CallersTransport:
    """A caller's own transport around smtpsec's: it does not say ``reads_while_writing``."""

    def __init__(self, inner: Transport) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def start_tls(self, *args: Any, **options: Any) -> Transport:
        return _CallersTransport(self._inner.start_tls(*args, **options))  # type: ignore[return-value]


def test_R_2920_3_1_5_flights_stay_small_over_a_callers_transport(serve: Any, cafile: Path) -> None:
    """Over a transport that may not read while it writes, each flight's replies must
    fit in socket buffers: the 500 recipients go in bounded flights, each answered
    before the next."""
    srv = serve(on_command=_big_rcpt_replies)
    rcpts = [f"user{i}@example.test" for i in range(500)]
    transport = _CallersTransport(
        SocketTransport(open_socket("127.0.0.1", srv.port, timeout=5), peer="p")
    )
    policy = smtpsec.Policy(cafile=str(cafile))
    with smtpsec.connect_transport(transport, "localhost", srv.port, policy=policy) as session:
        result = session.send(message(), recipients=rcpts)
    assert result.accepted == tuple(rcpts)
    rcpt_flights = [s.count(b"RCPT TO:") for s in flights(finished(srv)) if b"RCPT TO:" in s]
    assert sum(rcpt_flights) == 500
    assert max(rcpt_flights) <= 256


def test_pipelined_default_extensions_are_the_fast_path() -> None:
    assert {"PIPELINING", "CHUNKING"} <= {e.split()[0] for e in DEFAULT_EXTENSIONS}


def _half_kib_rcpt_replies(session: ServerSession, line: str) -> bytes | None:
    if line.upper().startswith("RCPT"):
        session.send(b"250-" + b"x" * 500 + b"\r\n")  # then the normal final line
    return None


def test_R_2920_3_1_5_one_flight_larger_than_every_socket_buffer(serve: Any, cafile: Path) -> None:
    """A flight of 4,000 RCPTs (about 100 KB) is larger than the server's read buffer
    (64 KiB) and both sides' socket buffers (8 KiB each) together, and the server writes
    each RCPT's reply (about half a KiB) before it reads on: unless the client's write
    reads meanwhile, both sides wait for each other until the timeout. It goes in one
    flight and completes."""
    srv = serve(on_command=_half_kib_rcpt_replies, socket_buffer=8192)
    sock = open_socket("127.0.0.1", srv.port, timeout=5)
    for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        sock.setsockopt(socket.SOL_SOCKET, option, 8192)
    rcpts = [f"user{i}@example.test" for i in range(4000)]
    policy = smtpsec.Policy(cafile=str(cafile))
    transport = SocketTransport(sock, peer=f"127.0.0.1:{srv.port}")
    with smtpsec.connect_transport(
        transport, "localhost", srv.port, policy=policy, timeout=20
    ) as session:
        before = session._wire.writes
        result = session.send(message(), recipients=rcpts)
        assert session._wire.writes - before == 1
    assert result.accepted == tuple(rcpts)
    assert srv.messages[0].recipients == tuple(rcpts)
