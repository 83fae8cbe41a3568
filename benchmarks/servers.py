"""The servers the benchmarks talk to, and how a client reaches and trusts them.

* :func:`fake_servers` starts ``smtpsec.testing.SMTPServer`` twice (implicit TLS
  and STARTTLS) with one throwaway CA: a strict MSA that offers PIPELINING and
  CHUNKING and requires AUTH.
* :func:`postfix_target` describes the loopback Postfix + Dovecot started by
  ``tests/interop/postfix.sh``, when it runs.
* :class:`SinkServer` is a small, fast implicit-TLS sink for the 80 MiB test:
  the fake server caps messages at 64 MiB and records every byte, which would
  measure the server rather than the clients.
"""

from __future__ import annotations

import base64
import contextlib
import json
import multiprocessing
import os
import re
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from smtpsec import Security
from smtpsec.testing import CA, Script, SMTPServer

__all__ = ["SinkServer", "Target", "fake_servers", "postfix_target"]

USER: Final = "bench"
PASSWORD: Final = "bench-password"
#: Where tests/interop/postfix.sh writes its env file (its documented default state dir).
POSTFIX_ENV: Final = (
    Path(os.environ.get("SMTPSEC_INTEROP_DIR", "/tmp/smtpsec-interop"))  # noqa: S108
    / "env.json"
)
_RECV: Final = 256 * 1024
_BDAT: Final = re.compile(rb"BDAT ([0-9]+)( +LAST)? *\r?\n?", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Target:
    """One server: where it listens, how to trust it, whom to log in as.

    Attributes:
        name: shown in the results (``smtpsec.testing`` or ``postfix``).
        host: the address to connect to (also checked against the certificate).
        implicit_port: the implicit-TLS port.
        starttls_port: the STARTTLS port.
        cafile: a PEM file with the CA that issued the server certificate.
        username: the SMTP AUTH user.
        password: its password.
        sender: envelope sender for benchmark messages.
        recipient_domain: domain of benchmark recipients (the server must accept it).
    """

    name: str
    host: str
    implicit_port: int
    starttls_port: int
    cafile: str
    username: str
    password: str
    sender: str
    recipient_domain: str

    def client_context(self) -> ssl.SSLContext:
        """Return a verifying client context (hostname check, CERT_REQUIRED) trusting ``cafile``."""
        return ssl.create_default_context(cafile=self.cafile)

    def recipients(self, count: int) -> list[str]:
        """Return ``count`` distinct recipient addresses."""
        return [f"rcpt{i}@{self.recipient_domain}" for i in range(count)]


@contextlib.contextmanager
def serve_in_child(
    serve: Callable[..., None], *args: object, wait: float = 60.0
) -> Iterator[tuple[Connection, Any]]:
    """Run ``serve(pipe, *args)`` in a spawned process; yield the pipe and its first message.

    The server's CPU is then not the client's (``time.process_time()`` counts
    the client alone). ``serve`` sends one message when it is ready (its port,
    say), may answer requests on the pipe, and must return when it receives
    ``"stop"``, which is sent when the block ends.
    """
    context = multiprocessing.get_context("spawn")
    mine, theirs = context.Pipe()
    process = context.Process(target=serve, args=(theirs, *args), daemon=True)
    process.start()
    try:
        if not mine.poll(wait):
            raise RuntimeError(f"the benchmark server did not start within {wait:g} s")
        yield mine, mine.recv()
    finally:
        mine.send("stop")
        process.join(30)
        if process.is_alive():  # pragma: no cover - a stuck server thread
            process.terminate()


class _NoDelaySMTPServer(SMTPServer):
    """``SMTPServer`` whose connections send each reply at once (TCP_NODELAY).

    The fake server writes every reply to a pipelined group separately. With
    Nagle's algorithm on, the second reply waits for the ACK of the first, and
    the relay's delayed ACK turns that into a ~40 ms stall per group that no
    client causes. Production MTAs avoid it (Postfix, for one, flushes the replies to a
    pipelined group together), so the benchmark server does too.
    """

    def _spawn(self, conn: socket.socket, peer: tuple[Any, ...]) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super()._spawn(conn, peer)


@contextlib.contextmanager
def fake_servers(workdir: Path, *, extensions: tuple[str, ...] | None = None) -> Iterator[Target]:
    """Run ``smtpsec.testing.SMTPServer`` on two ports and yield its :class:`Target`.

    Args:
        workdir: where the CA file is written for the clients.
        extensions: what EHLO advertises, instead of the test server's defaults.
    """
    ca = CA.create("smtpsec benchmark CA")
    leaf = ca.issue("localhost", ips=("127.0.0.1",))
    cafile = ca.write_cafile(workdir / "fake-ca.pem")
    script = Script(users={USER: PASSWORD}, require_auth=True)
    if extensions is not None:
        script = script.replace(extensions=extensions)
    with (
        _NoDelaySMTPServer(leaf, tls=Security.IMPLICIT_TLS, script=script) as implicit,
        _NoDelaySMTPServer(leaf, tls=Security.STARTTLS, script=script) as starttls,
    ):
        yield Target(
            name="smtpsec.testing",
            host="127.0.0.1",
            implicit_port=implicit.port,
            starttls_port=starttls.port,
            cafile=str(cafile),
            username=USER,
            password=PASSWORD,
            sender="sender@bench.test",
            recipient_domain="bench.test",
        )


def postfix_target(env_file: Path = POSTFIX_ENV) -> Target | None:
    """Describe the interop Postfix if its env file exists and both ports accept.

    Recipients use a domain that this Postfix discards, so nothing piles up.
    """
    try:
        env = json.loads(env_file.read_text())
        host = str(env["SMTPSEC_INTEROP_HOST"])
        ports = (
            int(env["SMTPSEC_INTEROP_IMPLICIT_PORT"]),
            int(env["SMTPSEC_INTEROP_STARTTLS_PORT"]),
        )
        for port in ports:
            socket.create_connection((host, port), timeout=2.0).close()
    except (OSError, ValueError, KeyError):
        return None
    return Target(
        name="postfix",
        host=host,
        implicit_port=ports[0],
        starttls_port=ports[1],
        cafile=str(env["SMTPSEC_INTEROP_CAFILE"]),
        username=str(env["SMTPSEC_INTEROP_USER"]),
        password=str(env["SMTPSEC_INTEROP_PASSWORD"]),
        sender=str(env["SMTPSEC_INTEROP_USER"]),
        recipient_domain="bench.invalid",
    )


class SinkServer:
    """A minimal implicit-TLS SMTP sink that counts message octets and keeps none.

    It offers PIPELINING, CHUNKING, 8BITMIME and AUTH PLAIN/LOGIN without a
    size limit, answers every command in order from its buffer (so pipelined
    clients work), and accepts any credentials. One thread per connection.

    Args:
        workdir: where the CA file is written for the clients.
        coalesce: hold replies until the input buffer is drained and send them in
            one write, as Postfix does for a pipelined group (one TLS record per
            group instead of one per reply). Off by default: each reply is sent
            at once.
    """

    def __init__(self, workdir: Path, *, coalesce: bool = False) -> None:
        ca = CA.create("smtpsec benchmark sink CA")
        leaf = ca.issue("localhost", ips=("127.0.0.1",))
        self.cafile = str(ca.write_cafile(workdir / "sink-ca.pem"))
        self._ctx = leaf.server_context()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self.coalesce = coalesce
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        #: Octets received per accepted message (for DATA including the final dot line).
        self.message_sizes: list[int] = []

    def target(self) -> Target:
        """Return the :class:`Target` (both ports are the implicit-TLS port)."""
        return Target(
            name="sink",
            host="127.0.0.1",
            implicit_port=self.port,
            starttls_port=self.port,
            cafile=self.cafile,
            username=USER,
            password=PASSWORD,
            sender="sender@bench.test",
            recipient_domain="bench.test",
        )

    def __enter__(self) -> SinkServer:
        acceptor = threading.Thread(target=self._accept_loop, name="sink-accept", daemon=True)
        acceptor.start()
        self._threads.append(acceptor)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        for thread in list(self._threads):
            thread.join(5.0)
        self._listener.close()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _peer = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, raw: socket.socket) -> None:
        raw.settimeout(60.0)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as _NoDelaySMTPServer
        with (
            contextlib.suppress(OSError, ssl.SSLError, _Gone),
            self._ctx.wrap_socket(raw, server_side=True) as sock,
        ):
            _SinkSession(sock, self).run()
        raw.close()

    def _record(self, size: int) -> None:
        with self._lock:
            self.message_sizes.append(size)


class _Gone(Exception):
    """The client went away (or the sink is stopping)."""


class _SinkSession:
    """The command loop of one sink connection."""

    def __init__(self, sock: ssl.SSLSocket, sink: SinkServer) -> None:
        self.sock = sock
        self.sink = sink
        self.buf = bytearray()
        self.bdat_total = 0
        self.out = bytearray()  # replies held back when the sink coalesces

    def _send(self, reply: bytes) -> None:
        if self.sink.coalesce:
            self.out += reply
        else:
            self.sock.sendall(reply)

    def _flush(self) -> None:
        if self.out:
            self.sock.sendall(self.out)
            self.out.clear()

    def _fill(self) -> None:
        if self.sink._stop.is_set():
            raise _Gone
        self._flush()  # about to wait for the client: it must have every reply by now
        data = self.sock.recv(_RECV)
        if not data:
            raise _Gone
        self.buf += data

    def _line(self) -> bytes:
        while (end := self.buf.find(b"\n")) < 0:
            self._fill()
        line = bytes(self.buf[: end + 1])
        del self.buf[: end + 1]
        return line

    def run(self) -> None:
        send = self._send
        send(b"220 sink.bench.test ESMTP ready\r\n")
        while True:
            line = self._line()
            verb = line[:4].upper()
            if verb == b"EHLO":
                send(
                    b"250-sink.bench.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n"
                    b"250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 AUTH PLAIN LOGIN\r\n"
                )
            elif verb == b"AUTH":
                self._auth(line)
            elif verb == b"DATA":
                send(b"354 go ahead\r\n")
                self.sink._record(self._data())
                send(b"250 2.0.0 queued\r\n")
            elif verb == b"BDAT":
                self._bdat(line)
            elif verb == b"QUIT":
                send(b"221 2.0.0 bye\r\n")
                self._flush()
                return
            else:  # MAIL, RCPT, RSET, NOOP: accept everything
                send(b"250 2.0.0 ok\r\n")

    def _auth(self, line: bytes) -> None:
        words = line.split()
        if len(words) == 2 and words[1].upper() == b"LOGIN":
            for prompt in (b"Username:", b"Password:"):
                self._send(b"334 " + base64.b64encode(prompt) + b"\r\n")
                self._line()
        elif len(words) == 2:
            self._send(b"334 \r\n")
            self._line()
        self._send(b"235 2.7.0 ok\r\n")

    def _data(self) -> int:
        # Find CRLF.CRLF without keeping the body; the DATA line's CRLF counts as
        # the first CRLF so an empty body is recognised too.
        seen = b"\r\n"
        total = 0
        while True:
            if not self.buf:
                self._fill()
            chunk = bytes(self.buf)
            self.buf.clear()
            window = seen + chunk
            end = window.find(b"\r\n.\r\n")
            if end >= 0:
                stop = end + 5 - len(seen)
                self.buf += chunk[stop:]
                return total + stop
            total += len(chunk)
            seen = window[-4:]

    def _bdat(self, line: bytes) -> None:
        match = _BDAT.fullmatch(line)
        if match is None:
            self._send(b"501 5.5.4 syntax\r\n")
            return
        size = int(match.group(1))
        remaining = size
        while remaining:  # discard the chunk as it arrives: the sink keeps no body
            if not self.buf:
                self._fill()
            take = min(remaining, len(self.buf))
            del self.buf[:take]
            remaining -= take
        self.bdat_total += size
        if match.group(2):
            self.sink._record(self.bdat_total)
            self.bdat_total = 0
            self._send(b"250 2.0.0 queued\r\n")
        else:
            self._send(b"250 2.0.0 chunk ok\r\n")
