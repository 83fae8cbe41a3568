"""Drives a sans-I/O ClientConnection over a Transport: writes, whole-reply deadlines,
transcript."""

from __future__ import annotations

import logging
import time

from ._io import IO, call
from .errors import ConnectError, RemoteProtocolError
from .errors import TimeoutError as DeadlineError
from .sansio import ClientConnection, Command, Reply, Response, State
from .transports import AnyTransport

__all__ = ["Wire"]

transcript = logging.getLogger("smtpsec.transcript")


class Wire:
    """One connection's I/O loop.

    Args:
        transport: the byte stream.
        conn: the protocol state machine.
        timeout: seconds allowed for each *whole* reply (a dripping server cannot
            stretch it) and for each write.
        peer: ``host:port`` for messages.

    Attributes:
        writes: how many writes (flights) went to the transport; with
            :attr:`reads`, lets tests and benchmarks count round trips.
        reads: how many reads the transport answered.
    """

    def __init__(
        self, transport: AnyTransport, conn: ClientConnection, *, timeout: float, peer: str
    ) -> None:
        self.transport = transport
        self.conn = conn
        self.timeout = timeout
        self.peer = peer
        self._ready: list[Response] = []
        self.writes = 0
        self.reads = 0

    def queue(self, *commands: Command) -> bytes:
        """Encode ``commands`` (validated by the state table) without writing them."""
        out = bytearray()
        for command in commands:
            out += self.conn.send(command)
            if transcript.isEnabledFor(logging.DEBUG):
                transcript.debug("C: %s", command.loggable())
        return bytes(out)

    def write(self, data: bytes) -> IO[None]:
        """Write bytes (commands and/or body) in one call."""
        if data:
            self.writes += 1
            yield from call(self.transport, "write", data, timeout=self.timeout)

    def send(self, *commands: Command) -> IO[None]:
        """Encode and write ``commands`` in one write (a pipelined group)."""
        if self.conn.awaiting == 0:
            yield from self.check_idle()
        yield from self.write(self.queue(*commands))

    def check_idle(self) -> IO[None]:
        """With no reply due, nothing may have arrived.

        A stale reply would otherwise be taken as the answer to the next command.
        A server that dropped an idle connection (EOF, or ``421`` then EOF) gives
        a :class:`ConnectError`, so pools can replace the connection.
        """
        early: bytes | None = yield from call(self.transport, "poll")
        if early is None:
            return
        self.conn.close()
        if not early or early.startswith(b"421"):
            text = early.decode("utf-8", "replace").strip()
            raise ConnectError(
                f"{self.peer} closed the connection{f' ({text})' if text else ''}; open a "
                "new session"
            )
        raise RemoteProtocolError(
            f"{self.peer} sent data nobody asked for ({early[:60]!r}); replies and commands "
            "would be out of step, so the connection was closed"
        )

    def log_content(self, octets: int) -> None:
        """Note in the transcript that message content went out (size only, never content)."""
        if transcript.isEnabledFor(logging.DEBUG):
            transcript.debug("C: <message content, %d octets>", octets)

    def body(self, data: bytes) -> IO[None]:
        """Write message content (logged by size only, never by content)."""
        if data:
            self.log_content(len(data))
            yield from self.write(data)

    def close(self) -> IO[None]:
        """Close the transport (TLS close_notify first, where TLS is active)."""
        self.conn.close()
        yield from call(self.transport, "close")

    def read(self, count: int = 1) -> IO[list[Response]]:
        """Read until ``count`` responses are complete; each gets its own deadline.

        Raises:
            ConnectError: the connection closed (or the server said 421, RFC 5321
                §3.8) before ``count`` replies arrived; nothing more can come.
            TimeoutError: a reply did not complete in time.
            RemoteProtocolError: a malformed or unsolicited reply.
        """
        while len(self._ready) < count:
            if self.conn.state is State.CLOSED:
                last = self._ready[-1].reply if self._ready else None
                why = f" ({last.code} {last.text})" if last is not None else ""
                raise ConnectError(
                    f"{self.peer} closed the connection{why} while replies were still due; "
                    "the command(s) in flight were not carried out"
                )
            deadline = time.monotonic() + self.timeout
            before = len(self._ready)
            while len(self._ready) == before:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DeadlineError(
                        f"no complete reply from {self.peer} within {self.timeout:g}s; "
                        "the server is stuck or sending too slowly (raise timeout= if it "
                        "is just slow)"
                    )
                data: bytes = yield from call(self.transport, "read", timeout=remaining)
                self.reads += 1
                if not data:
                    self.conn.close()
                    raise ConnectError(
                        f"{self.peer} closed the connection while a reply was due; the "
                        "message(s) in flight were not sent"
                    )
                for response in self.conn.receive_data(data):
                    if transcript.isEnabledFor(logging.DEBUG):
                        for line in response.reply.lines or ("",):
                            transcript.debug("S: %d %s", response.reply.code, line)
                    self._ready.append(response)
        out, self._ready = self._ready[:count], self._ready[count:]
        return out

    def one(self, command: Command) -> IO[Reply]:
        """Send one command and return its reply."""
        yield from self.send(command)
        (response,) = yield from self.read(1)
        return response.reply
