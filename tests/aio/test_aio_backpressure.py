"""A flooding server meets TCP backpressure, not unbounded client memory (review finding)."""

from __future__ import annotations

import asyncio

from _aio_kit import async_test, eventually

from smtpsec.transports._asyncio import _BUFFER_LIMIT, open_connection

FLOOD = 16 * 1024 * 1024  # far more than the client may hold (4 MiB)


@async_test
async def test_unread_data_pauses_reading_at_the_buffer_limit() -> None:
    sent = asyncio.Event()

    async def flood(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"250-" + b"A" * (FLOOD - 6) + b"\r\n")
        sent.set()
        try:
            await writer.drain()  # blocks once the client stops reading: backpressure
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(flood, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = await open_connection("127.0.0.1", port, timeout=5)
    try:
        await sent.wait()
        await eventually(lambda: transport._protocol._paused, "reading to pause")
        # Held back in the kernel, not in Python: the buffer stays near the limit.
        await asyncio.sleep(0.05)
        assert len(transport._protocol.buffer) < _BUFFER_LIMIT + 512 * 1024
        received = 0
        while received < FLOOD:
            chunk = await transport.read(timeout=5)
            assert chunk
            received += len(chunk)
            assert len(chunk) < _BUFFER_LIMIT + 512 * 1024
        assert received == FLOOD
    finally:
        await transport.close()
        server.close()
        await server.wait_closed()
