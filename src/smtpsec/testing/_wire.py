"""The fake server's socket: our own line buffer that records every ``recv()``.

The server must never hide what the client did on the wire, so it reads with
plain ``recv()`` calls into its own buffer (no ``makefile()``), records each
segment with its TLS flag, and at the STARTTLS switch hands back whatever was
already buffered instead of feeding it to the TLS layer (R-3207-4-3,
R-EAST-BC-1). Every write is bounded in bytes and interruptible by the stop
event, so hostile replies cannot outlive the server.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from typing import Final

from smtpsec.testing._capture import Capture
from smtpsec.testing._script import Drip, Endless, LongLine

__all__ = ["Closed", "LineTooLong", "Wire"]

_RECV_SIZE: Final = 65536
_STREAM_BLOCK: Final = 64 * 1024


class Closed(Exception):
    """The peer closed the connection, it timed out, or the server is stopping."""


class LineTooLong(Exception):
    """A line exceeded the limit before its line ending arrived."""


class Wire:
    """One client connection: buffered reads, recorded segments, bounded writes.

    Args:
        sock: the accepted socket (plain or already TLS-wrapped).
        capture: where segments and counters are recorded.
        stopping: set when the server shuts down.
    """

    def __init__(self, sock: socket.socket, capture: Capture, stopping: threading.Event) -> None:
        self.sock = sock
        self.tls = isinstance(sock, ssl.SSLSocket)
        self._capture = capture
        self._stopping = stopping
        self._buffer = bytearray()

    # ------------------------------------------------------------------ reading

    def _fill(self) -> None:
        if self._stopping.is_set():
            raise Closed("server stopping")
        try:
            data = self.sock.recv(_RECV_SIZE)
        except ssl.SSLEOFError as exc:
            # A TCP FIN without close_notify (suppress_ragged_eofs=False).
            raise Closed("EOF without close_notify") from exc
        except (TimeoutError, OSError) as exc:
            raise Closed(f"connection lost: {exc!r}") from exc
        if not data:
            if self.tls:
                # Only a close_notify alert makes an SSLSocket return b"" here.
                self._capture.close_notify = True
            raise Closed("EOF")
        self._capture.segments.append((self.tls, data))
        self._buffer += data

    def readline(self, limit: int) -> bytes:
        """Return the next line including its line ending.

        Args:
            limit: maximum line length in bytes.

        Raises:
            Closed: the connection ended first.
            LineTooLong: ``limit`` bytes arrived without a line feed.
        """
        start = 0
        while True:
            end = self._buffer.find(b"\n", start)
            if end >= 0:
                line = bytes(self._buffer[: end + 1])
                del self._buffer[: end + 1]
                return line
            if len(self._buffer) > limit:
                raise LineTooLong(f"line longer than {limit} bytes")
            start = len(self._buffer)
            self._fill()

    def read_exact(self, size: int) -> bytes:
        """Return exactly ``size`` bytes (a ``BDAT`` chunk).

        Raises:
            Closed: the connection ended first.
        """
        while len(self._buffer) < size:
            self._fill()
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def take_buffered(self) -> bytes:
        """Remove and return bytes already received but not yet consumed."""
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    def drain_until_eof(self, max_bytes: int) -> None:
        """Read (and record) until the peer closes, for at most ``max_bytes``."""
        with contextlib.suppress(Closed):
            received = 0
            while received <= max_bytes:
                self._fill()
                received += len(self._buffer)
                self._buffer.clear()

    # ------------------------------------------------------------------ writing

    def send(self, data: bytes) -> None:
        """Write ``data`` completely.

        Raises:
            Closed: the peer went away or the server is stopping.
        """
        if self._stopping.is_set():
            raise Closed("server stopping")
        try:
            self.sock.sendall(data)
        except (TimeoutError, OSError) as exc:
            raise Closed(f"connection lost: {exc!r}") from exc
        self._capture.bytes_sent += len(data)

    def drip(self, reply: Drip) -> None:
        """Send one byte per interval; interruptible by the stop event."""
        for index in range(len(reply.data)):
            self.send(reply.data[index : index + 1])
            if self._stopping.wait(reply.interval):
                raise Closed("server stopping")

    def stream(self, reply: Endless) -> None:
        """Repeat ``reply.line`` until the peer leaves or ``reply.max_bytes`` is reached."""
        repeat = max(1, _STREAM_BLOCK // max(1, len(reply.line)))
        block = reply.line * repeat
        sent = 0
        while sent < reply.max_bytes:
            chunk = block[: reply.max_bytes - sent]
            self.send(chunk)
            sent += len(chunk)

    def long_line(self, reply: LongLine) -> None:
        """Send ``reply.prefix`` and filler up to ``reply.size`` bytes, no line ending."""
        head = reply.prefix[: reply.size]
        self.send(head)
        remaining = reply.size - len(head)
        block = b"x" * _STREAM_BLOCK
        while remaining > 0:
            chunk = block[:remaining]
            self.send(chunk)
            remaining -= len(chunk)

    # ------------------------------------------------------------------ TLS

    def start_tls(self, ctx: ssl.SSLContext) -> ssl.SSLSocket:
        """Wrap the socket and complete a server-side handshake.

        Raises:
            ssl.SSLError, OSError: the handshake failed.
        """
        # suppress_ragged_eofs=False lets us tell close_notify (b"") from a
        # bare TCP FIN (SSLEOFError), which R-8314-3.4-1 tests depend on.
        tls_sock = ctx.wrap_socket(
            self.sock,
            server_side=True,
            do_handshake_on_connect=False,
            suppress_ragged_eofs=False,
        )
        self.sock = tls_sock
        tls_sock.do_handshake()
        self.tls = True
        return tls_sock

    def settimeout(self, timeout: float) -> None:
        """Set the socket timeout for every later read and write."""
        self.sock.settimeout(timeout)

    def abort(self) -> None:
        """Wake any blocked read or write by shutting the socket down (any thread)."""
        with contextlib.suppress(OSError):
            # socket.socket.shutdown, not SSLSocket.shutdown: the latter drops the
            # SSL object under the feet of the thread that is using it.
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)

    def close(self) -> None:
        """Close the socket, ignoring errors from an already dead peer."""
        with contextlib.suppress(OSError):
            self.sock.close()
