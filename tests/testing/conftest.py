"""Shared helpers for the smtpsec.testing tests: a raw, byte-level SMTP client.

The fake server's misbehaviours live on the wire (segment boundaries, injected
bytes, dripped replies), so these tests talk to it with a plain socket instead
of a client that would hide exactly what we want to see.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterator

import pytest


class RawClient:
    """A minimal SMTP client that exposes every byte."""

    def __init__(self, host: str, port: int, *, timeout: float = 10.0) -> None:
        self.sock: socket.socket = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""

    def wrap(self, ctx: ssl.SSLContext, server_hostname: str | None = "localhost") -> None:
        assert self.buffer == b"", f"unread plaintext before TLS: {self.buffer!r}"
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname)

    def recv_some(self) -> bytes:
        if self.buffer:
            data, self.buffer = self.buffer, b""
            return data
        return self.sock.recv(65536)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_line(self) -> bytes:
        while b"\n" not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(f"EOF with {self.buffer!r} buffered")
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"

    def reply(self) -> tuple[int, list[str]]:
        """Read one (possibly multi-line) reply."""
        lines = []
        while True:
            line = self.read_line().decode().rstrip("\r\n")
            lines.append(line[4:])
            if line[3:4] != "-":
                return int(line[:3]), lines

    def cmd(self, line: str) -> tuple[int, list[str]]:
        self.send(line.encode() + b"\r\n")
        return self.reply()

    def read_until_eof(self, limit: int = 1 << 20) -> bytes:
        data = self.buffer
        self.buffer = b""
        while len(data) < limit:
            try:
                chunk = self.sock.recv(65536)
            except (ssl.SSLError, ConnectionError):
                break
            if not chunk:
                break
            data += chunk
        return data

    def close(self) -> None:
        self.sock.close()


RawFactory = Callable[..., RawClient]


@pytest.fixture
def raw() -> Iterator[RawFactory]:
    """Factory: ``raw(server)`` or ``raw(server, tls=ctx)`` opens a RawClient."""
    clients: list[RawClient] = []

    def connect(
        server: object,
        *,
        tls: ssl.SSLContext | None = None,
        server_hostname: str | None = "localhost",
        timeout: float = 10.0,
    ) -> RawClient:
        client = RawClient(server.host, server.port, timeout=timeout)  # type: ignore[attr-defined]
        if tls is not None:
            client.wrap(tls, server_hostname)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()
