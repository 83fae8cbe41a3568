"""Drives a sans-I/O ClientConnection over a Transport: writes, whole-reply deadlines, transcript."""

from __future__ import annotations

import logging
import time

from .errors import ConnectError, RemoteProtocolError
from .errors import TimeoutError as DeadlineError
from .sansio import ClientConnection, Command, Reply, Response
from .transports import Transport

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
    """

    def __init__(
        self, transport: Transport, conn: ClientConnection, *, timeout: float, peer: str
    ) -> None:
        self.transport = transport
        self.conn = conn
        self.timeout = timeout
        self.peer = peer
        self._ready: list[Response] = []

    def queue(self, *commands: Command) -> bytes:
        """Encode ``commands`` (validated by the state table) without writing them."""
        out = bytearray()
        for command in commands:
            out += self.conn.send(command)
            if transcript.isEnabledFor(logging.DEBUG):
                transcript.debug("C: %s", command.loggable())
        return bytes(out)

    def write(self, data: bytes) -> None:
        """Write bytes (commands and/or body) in one call."""
        if data:
            self.transport.write(data, timeout=self.timeout)

    def send(self, *commands: Command) -> None:
        """Encode and write ``commands`` in one write (a pipelined group)."""
        self.write(self.queue(*commands))

    def body(self, data: bytes) -> None:
        """Write message content (logged by size only, never by content)."""
        if data:
            if transcript.isEnabledFor(logging.DEBUG):
                transcript.debug("C: <message content, %d octets>", len(data))
            self.transport.write(data, timeout=self.timeout)

    def read(self, count: int = 1) -> list[Response]:
        """Read until ``count`` responses are complete; each gets its own deadline."""
        while len(self._ready) < count:
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
                data = self.transport.read(timeout=remaining)
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

    def one(self, command: Command) -> Reply:
        """Send one command and return its reply."""
        self.send(command)
        return self.read(1)[0].reply

    def ensure_drained(self) -> None:
        """Fail if a reply arrived that no command asked for."""
        if self._ready:
            raise RemoteProtocolError(
                f"{self.peer} sent more replies than commands; connection closed (R-LIB-DESYNC-1)"
            )
