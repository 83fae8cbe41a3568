"""Big bodies stream in chunks: an 80 MiB file never sits in memory (over BDAT and DATA).

``smtpsec.testing.SMTPServer`` keeps every received segment and every message
body (it is a capture tool), so it cannot take part in a memory measurement:
these tests use a tiny TLS sink on loopback that hashes what it receives and
keeps nothing.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import threading
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

import smtpsec
from smtpsec.testing import LeafCert

_MiB = 1024 * 1024
_LINE = b"x" * 78 + b"\r\n"


class _Sink(threading.Thread):
    """An implicit-TLS SMTP server that hashes message content and stores nothing."""

    def __init__(self, cert: LeafCert, *, chunking: bool) -> None:
        super().__init__(daemon=True)
        self._ctx = cert.server_context()
        self._chunking = chunking
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.digest = hashlib.sha256()
        self.octets = 0
        self.size_param = b""
        self.error: BaseException | None = None
        self._buf = bytearray()
        self._sock: ssl.SSLSocket | None = None

    def run(self) -> None:
        try:
            conn, _ = self._listener.accept()
            conn.settimeout(30)
            with self._ctx.wrap_socket(conn, server_side=True) as sock:
                self._sock = sock
                self._serve()
        except BaseException as exc:  # surfaced by the test
            self.error = exc
        finally:
            self._listener.close()

    def _recv(self) -> bytes:
        assert self._sock is not None
        data = self._sock.recv(65536)
        if not data:
            raise EOFError
        return data

    def _line(self) -> bytes:
        while b"\n" not in self._buf:
            self._buf += self._recv()
        line, _, rest = bytes(self._buf).partition(b"\n")
        self._buf[:] = rest
        return line.rstrip(b"\r")

    def _content(self, data: bytes) -> None:
        self.digest.update(data)
        self.octets += len(data)

    def _data(self) -> None:
        # ``pending`` holds bytes not yet counted; it starts with DATA's own
        # CRLF (``skip``), so an empty body's ".\r\n" is found too.
        pending, skip = b"\r\n", 2
        while True:
            window = pending + (bytes(self._buf) or self._recv())
            self._buf.clear()
            end = window.find(b"\r\n.\r\n")
            if end >= 0:
                self._content(window[skip : end + 2])
                self._buf += window[end + 5 :]
                return
            if len(window) - 4 >= skip:
                cut = len(window) - 4
                self._content(window[skip:cut])
                pending, skip = window[cut:], 0
            else:
                pending = window

    def _bdat(self, size: int) -> None:
        while size:
            data = bytes(self._buf) or self._recv()
            self._buf.clear()
            self._content(data[:size])
            self._buf += data[size:]
            size -= min(size, len(data))

    def _serve(self) -> None:
        assert self._sock is not None
        send = self._sock.sendall
        send(b"220 sink ready\r\n")
        while True:
            line = self._line()
            verb = line[:4].upper()
            if verb == b"EHLO":
                extra = b"250-CHUNKING\r\n" if self._chunking else b""
                send(
                    b"250-sink\r\n250-PIPELINING\r\n250-SIZE 200000000\r\n" + extra + b"250 OK\r\n"
                )
            elif verb == b"MAIL":
                self.size_param = line.partition(b"SIZE=")[2].split(b" ")[0]
                send(b"250 ok\r\n")
            elif verb == b"DATA":
                send(b"354 go\r\n")
                self._data()
                send(b"250 queued\r\n")
            elif verb == b"BDAT":
                self._bdat(int(line.split()[1]))
                send(b"250 chunk\r\n")
            elif verb == b"QUIT":
                send(b"221 bye\r\n")
                return
            else:
                send(b"250 ok\r\n")


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """An 80 MiB message file with CRLF lines (what is sent equals what is stored)."""
    path = tmp_path_factory.mktemp("big") / "big.eml"
    digest = hashlib.sha256()
    block = b"Subject: big\r\n\r\n"
    with path.open("wb") as fp:
        fp.write(block)
        digest.update(block)
        chunk = _LINE * 8192  # 640 KiB
        for _ in range(128):
            fp.write(chunk)
            digest.update(chunk)
    return path, digest.hexdigest()


@pytest.mark.parametrize("chunking", [True, False], ids=["bdat", "data"])
def test_80_mib_file_streams_in_flat_memory(
    big_file: tuple[Path, str], smtpsec_cert: LeafCert, cafile: Any, chunking: bool
) -> None:
    path, expected = big_file
    size = path.stat().st_size
    assert size > 80 * _MiB
    sink = _Sink(smtpsec_cert, chunking=chunking)
    sink.start()
    session = smtpsec.connect(
        "localhost",
        sink.port,
        security=smtpsec.Security.IMPLICIT_TLS,
        policy=smtpsec.Policy(cafile=str(cafile)),
    )
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        with session, path.open("rb") as fp:
            result = session.send(fp, sender="ann@example.test", recipients=["bob@example.test"])
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    sink.join(30)
    assert sink.error is None
    assert peak < 32 * _MiB, f"peak growth {peak / _MiB:.1f} MiB"
    assert result.method == ("BDAT" if chunking else "DATA")
    assert result.size == sink.octets == size == int(sink.size_param)
    assert sink.digest.hexdigest() == expected
