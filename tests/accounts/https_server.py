"""A tiny HTTPS server on 127.0.0.1 for the autoconfig tests (real TLS, the test CA).

Routes map a path (query stripped) to a canned response; every request and the
SNI name of every handshake are recorded. ``opener`` connects any host name to
this server, so the client still sends SNI and checks the certificate for the
real name (``autoconfig.example.test``) while the bytes go to loopback.
"""

from __future__ import annotations

import http.server
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from smtpsec.testing import LeafCert


@dataclass
class Route:
    """A canned response; ``chunks`` are sent with a pause between them."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_length: bool = True
    delay: float = 0.0
    chunks: int = 1


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    owner: HTTPSServer

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Handshake in the handler thread, so a client that rejects the
        # certificate cannot stall the accept loop.
        try:
            tls = self.owner.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            tls.close()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        owner = self.server.owner
        owner.requests.append((self.headers.get("Host", ""), self.path))
        route = owner.routes.get(self.path.partition("?")[0], Route(status=404, body=b"nope"))
        self.send_response(route.status)
        for name, value in route.headers.items():
            self.send_header(name, value)
        if route.content_length:
            self.send_header("Content-Length", str(len(route.body)))
        self.end_headers()
        if route.delay:
            time.sleep(route.delay)
        step = max(1, len(route.body) // route.chunks)
        try:
            for start in range(0, len(route.body), step):
                self.wfile.write(route.body[start : start + step])
                self.wfile.flush()
        except OSError:
            pass  # the client gave up (size cap, deadline): that is the point


class HTTPSServer:
    """Serve ``routes`` over TLS with ``leaf`` on 127.0.0.1 (port 0)."""

    def __init__(self, leaf: LeafCert) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, str]] = []
        self.sni: list[str | None] = []
        self.connects: list[tuple[str, int]] = []
        self.context = leaf.server_context()
        self.context.sni_callback = self._record_sni
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def _record_sni(self, _sock: Any, name: str | None, _ctx: ssl.SSLContext) -> None:
        self.sni.append(name)

    def opener(self, host: str, port: int, timeout: float) -> socket.socket:
        """A :data:`smtpsec.autoconfig.SocketOpener` that reaches this server."""
        self.connects.append((host, port))
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def serve(leaf: LeafCert) -> Iterator[HTTPSServer]:
    server = HTTPSServer(leaf)
    try:
        yield server
    finally:
        server.close()
