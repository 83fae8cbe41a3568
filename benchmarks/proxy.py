"""A loopback TCP relay that adds latency and counts SMTP round trips.

The relay sits between a client and a server and forwards bytes unchanged, so
it works for plaintext, STARTTLS and implicit TLS alike. Every chunk it
receives is released to the other side only after ``one_way_delay`` seconds,
which turns loopback into a link with ``2 * one_way_delay`` of round-trip time.

A *round trip* is counted each time, on one connection, the relay receives
bytes from the server after the last bytes it received came from the client:
a client flight answered by a server flight. A pipelining client that writes
many commands and then waits is charged one round trip; a lock-step client is
charged one per command. The server's unsolicited greeting (before the client
said anything) and the TCP handshake are not counted, for every client alike.

Everything runs on one asyncio loop in a daemon thread; :meth:`DelayProxy.stop`
closes every connection and joins the thread against a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass
from types import TracebackType
from typing import Final

__all__ = ["DelayProxy", "Traffic"]

_READ_SIZE: Final = 256 * 1024
#: Sentinel queued after the last chunk of one direction: "half-close now".
_EOF: Final = b""


@dataclass(frozen=True, slots=True)
class Traffic:
    """Counters of a :class:`DelayProxy`, summed over all its connections.

    Attributes:
        round_trips: client flights that were answered by a server flight.
        client_bytes: bytes relayed from clients to the server.
        server_bytes: bytes relayed from the server to clients.
        connections: connections accepted so far.
    """

    round_trips: int = 0
    client_bytes: int = 0
    server_bytes: int = 0
    connections: int = 0

    def __sub__(self, earlier: Traffic) -> Traffic:
        """Return the traffic between the snapshot ``earlier`` and this one."""
        return Traffic(
            round_trips=self.round_trips - earlier.round_trips,
            client_bytes=self.client_bytes - earlier.client_bytes,
            server_bytes=self.server_bytes - earlier.server_bytes,
            connections=self.connections - earlier.connections,
        )


class _Link:
    """Direction bookkeeping for one relayed connection."""

    __slots__ = ("last_from_client",)

    def __init__(self) -> None:
        # None until someone spoke: the server's greeting is not an answer.
        self.last_from_client: bool | None = None


class DelayProxy:
    """Relay ``127.0.0.1:<port>`` to ``target`` with a fixed delay each way.

    Example:
        >>> with DelayProxy(("127.0.0.1", 465), one_way_delay=0.025) as proxy:
        ...     before = proxy.traffic()
        ...     ...  # talk to proxy.address
        ...     spent = proxy.traffic() - before

    Args:
        target: the server's ``(host, port)``.
        one_way_delay: seconds added to every chunk in each direction (the
            round-trip time is twice this).
        host: the loopback address to listen on.
    """

    def __init__(
        self, target: tuple[str, int], *, one_way_delay: float = 0.025, host: str = "127.0.0.1"
    ) -> None:
        if one_way_delay < 0:
            raise ValueError("one_way_delay must be >= 0 seconds")
        self.target = target
        self.one_way_delay = one_way_delay
        self._host = host
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._active = 0
        self._totals = Traffic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._port = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 5.0) -> DelayProxy:
        """Start listening (idempotent); return the proxy."""
        if self._thread is not None:
            return self
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            self._server = loop.run_until_complete(
                asyncio.start_server(self._accept, self._host, 0)
            )
            self._port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="delay-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError("the delay proxy did not start in time")
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close the listener and every relayed connection; join the loop thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        with contextlib.suppress(Exception):
            future.result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        # Aborted transports end every read with EOF, so the relays finish on
        # their own within one delay; cancel only what is still stuck after that.
        tasks = list(self._tasks)
        if tasks:
            _done, stuck = await asyncio.wait(tasks, timeout=self.one_way_delay + 1.0)
            for task in stuck:
                task.cancel()

    def __enter__(self) -> DelayProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ facts

    @property
    def address(self) -> tuple[str, int]:
        """Where clients connect: ``(host, port)``."""
        if not self._port:
            raise RuntimeError("the proxy is not started")
        return self._host, self._port

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every relayed connection has finished in both directions.

        Call it after a client closed, so the teardown of one measured
        connection cannot leak into the next measurement.

        Returns:
            Whether the proxy became idle within ``timeout`` seconds.
        """
        with self._idle:
            return self._idle.wait_for(lambda: self._active == 0, timeout)

    def traffic(self) -> Traffic:
        """Return a snapshot of the counters (subtract two snapshots for a delta)."""
        with self._lock:
            return self._totals

    # ------------------------------------------------------------------ relaying

    def _note(self, link: _Link, *, from_client: bool, size: int) -> None:
        with self._lock:
            t = self._totals
            answered = not from_client and link.last_from_client is True
            self._totals = Traffic(
                round_trips=t.round_trips + answered,
                client_bytes=t.client_bytes + size * from_client,
                server_bytes=t.server_bytes + size * (not from_client),
                connections=t.connections,
            )
        link.last_from_client = from_client

    async def _accept(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        writers = [c_writer]
        self._writers.add(c_writer)
        with self._lock:
            t = self._totals
            self._totals = Traffic(t.round_trips, t.client_bytes, t.server_bytes, t.connections + 1)
            self._active += 1
        try:
            s_reader, s_writer = await asyncio.open_connection(*self.target)
            writers.append(s_writer)
            self._writers.add(s_writer)
            link = _Link()
            await asyncio.gather(
                self._direction(c_reader, s_writer, link, from_client=True),
                self._direction(s_reader, c_writer, link, from_client=False),
            )
        except OSError:
            pass  # the server refused or reset: the client just sees its side closed
        finally:
            for writer in writers:
                writer.transport.abort()
                self._writers.discard(writer)
            self._tasks.discard(task)
            with self._idle:
                self._active -= 1
                self._idle.notify_all()

    async def _direction(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        link: _Link,
        *,
        from_client: bool,
    ) -> None:
        """Relay one direction: read, stamp, and release each chunk after the delay."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def release() -> None:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:  # _EOF: the sender half-closed
                    with contextlib.suppress(OSError, RuntimeError):
                        if writer.can_write_eof():
                            writer.write_eof()
                    return
                writer.write(data)
                try:
                    await writer.drain()
                except (ConnectionError, OSError):
                    return

        releaser = asyncio.ensure_future(release())
        try:
            while True:
                try:
                    data = await reader.read(_READ_SIZE)
                except (ConnectionError, OSError):
                    data = _EOF
                if data:
                    self._note(link, from_client=from_client, size=len(data))
                queue.put_nowait((loop.time() + self.one_way_delay, data))
                if not data:
                    break
            await releaser
        finally:
            releaser.cancel()
