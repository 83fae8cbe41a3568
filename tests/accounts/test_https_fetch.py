"""The bounded HTTPS GET behind autoconfig: every edge ends in a typed smtpsec error."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Iterator

import pytest
from https_server import HTTPSServer, Route, serve

from smtpsec._https_fetch import NotFound, fetch, open_tcp
from smtpsec.errors import RemoteProtocolError, SecurityError
from smtpsec.errors import TimeoutError as DeadlineError
from smtpsec.testing import CA, LeafCert

URL = "https://autoconfig.example.test/c.xml"


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA.create()


@pytest.fixture(scope="module")
def leaf(ca: CA) -> LeafCert:
    return ca.issue("autoconfig.example.test")


@pytest.fixture
def context(ca: CA) -> ssl.SSLContext:
    return ca.client_context()


@pytest.fixture
def web(leaf: LeafCert) -> Iterator[HTTPSServer]:
    yield from serve(leaf)


def get(
    web_opener: Callable[[str, int, float], socket.socket],
    context: ssl.SSLContext,
    url: str = URL,
    timeout: float = 5.0,
) -> bytes:
    return fetch(
        url, context=context, timeout=timeout, max_bytes=1024, max_redirects=2, opener=web_opener
    ).body


def test_default_opener_connects(web: HTTPSServer) -> None:
    with open_tcp("127.0.0.1", web.port, 2.0) as sock:
        assert sock.getpeername()[1] == web.port


def test_http_error_status_is_not_found(web: HTTPSServer, context: ssl.SSLContext) -> None:
    web.routes["/c.xml"] = Route(status=503, body=b"busy")
    with pytest.raises(NotFound, match="HTTP 503"):
        get(web.opener, context)


def test_redirect_without_location(web: HTTPSServer, context: ssl.SSLContext) -> None:
    web.routes["/c.xml"] = Route(status=302)
    with pytest.raises(RemoteProtocolError, match="without a Location"):
        get(web.opener, context)


@pytest.mark.parametrize(
    "location",
    [
        "https://user:pw@autoconfig.example.test/x",
        "https://autoconfig.example.test:99999/x",
        "https://autoconfig.example.test/a%20b c",
        "https://bücher.test/x",
    ],
)
def test_redirect_to_an_unusable_url(
    web: HTTPSServer, context: ssl.SSLContext, location: str
) -> None:
    web.routes["/c.xml"] = Route(status=302, headers={"Location": location})
    with pytest.raises(RemoteProtocolError, match="not a usable https URL"):
        get(web.opener, context)


def test_chunked_body_is_decoded(web: HTTPSServer, context: ssl.SSLContext) -> None:
    web.routes["/c.xml"] = Route(
        body=b"5\r\nhello\r\n0\r\n\r\n",
        headers={"Transfer-Encoding": "chunked"},
        content_length=False,
    )
    assert get(web.opener, context) == b"hello"


def test_truncated_body_is_a_protocol_error(web: HTTPSServer, context: ssl.SSLContext) -> None:
    web.routes["/c.xml"] = Route(
        body=b"short", headers={"Content-Length": "500"}, content_length=False
    )
    with pytest.raises(RemoteProtocolError, match="malformed HTTP response"):
        get(web.opener, context)


def test_body_over_the_raw_cap(web: HTTPSServer, context: ssl.SSLContext) -> None:
    web.routes["/c.xml"] = Route(body=b"x" * 40_000, content_length=False, chunks=20)
    with pytest.raises(RemoteProtocolError, match="larger than 1024 bytes"):
        get(web.opener, context)


def test_connect_timeout(context: ssl.SSLContext) -> None:
    def opener(host: str, port: int, timeout: float) -> socket.socket:
        raise TimeoutError("timed out")

    with pytest.raises(DeadlineError, match=r"connecting to autoconfig\.example\.test:443"):
        get(opener, context)


def test_unknown_host_is_not_found(context: ssl.SSLContext) -> None:
    def opener(host: str, port: int, timeout: float) -> socket.socket:
        raise socket.gaierror(-2, "Name or service not known")

    with pytest.raises(NotFound, match="could not be reached"):
        get(opener, context)


def _raw_server(
    handle: Callable[[socket.socket], None],
) -> tuple[Callable[[str, int, float], socket.socket], threading.Event]:
    """An opener whose peer is *handle*, run in a thread (no TLS unless it adds one)."""
    done = threading.Event()

    def opener(host: str, port: int, timeout: float) -> socket.socket:
        ours, theirs = socket.socketpair()
        ours.settimeout(timeout)

        def run() -> None:
            try:
                handle(theirs)
            finally:
                theirs.close()
                done.set()

        threading.Thread(target=run, daemon=True).start()
        return ours

    return opener, done


def test_silent_server_times_out_in_the_handshake(context: ssl.SSLContext) -> None:
    release = threading.Event()
    opener, done = _raw_server(lambda sock: release.wait(5))
    try:
        with pytest.raises(DeadlineError, match="TLS handshake"):
            get(opener, context, timeout=0.3)
    finally:
        release.set()
        done.wait(5)


def test_server_closing_during_handshake(context: ssl.SSLContext) -> None:
    opener, done = _raw_server(lambda sock: sock.recv(10))
    with pytest.raises((SecurityError, NotFound)):
        get(opener, context)
    done.wait(5)


def _tls_peer(
    leaf: LeafCert, payload: bytes, *, stall: threading.Event | None = None
) -> Callable[[socket.socket], None]:
    server_ctx = leaf.server_context()

    def handle(sock: socket.socket) -> None:
        try:
            with server_ctx.wrap_socket(sock, server_side=True) as tls:
                tls.recv(4096)
                tls.sendall(payload)
                if stall is not None:
                    stall.wait(5)
        except (ssl.SSLError, OSError):
            pass

    return handle


def test_garbage_status_line(leaf: LeafCert, context: ssl.SSLContext) -> None:
    opener, done = _raw_server(_tls_peer(leaf, b"SMTP? no.\r\n\r\n"))
    with pytest.raises(RemoteProtocolError, match="malformed HTTP response"):
        get(opener, context)
    done.wait(5)


def test_stalled_body_hits_the_deadline(leaf: LeafCert, context: ssl.SSLContext) -> None:
    stall = threading.Event()
    opener, done = _raw_server(
        _tls_peer(leaf, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial", stall=stall)
    )
    try:
        with pytest.raises(DeadlineError, match=r"within 0\.5 s"):
            get(opener, context, timeout=0.5)
    finally:
        stall.set()
        done.wait(5)
