"""One bounded GET over verified HTTPS, for the autoconfig documents.

Deliberately small and strict: ``https`` only (a redirect to any other scheme
is a :class:`~smtpsec.errors.DowngradeError`), the TLS context comes from the
caller (built by :func:`smtpsec.tls.build_context`, so verification and a
private CA work exactly as for SMTP), a bounded number of redirects, one
deadline for the whole exchange, and a hard cap on the bytes read. The response
is read completely (under those bounds) before :mod:`http.client` parses it,
so a slow or endless server can neither hold the caller past the deadline nor
make it buffer more than the cap.

The TCP connection is opened by an injectable :data:`SocketOpener`; TLS, SNI and
the certificate's name check always use the real host name from the URL.
Every failure leaves as a typed smtpsec error; "nothing there" (no such host,
connection refused, an HTTP error status) is :class:`NotFound`, which callers
treat as an absent document rather than a fault.
"""

from __future__ import annotations

import builtins
import http.client
import io
import re
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, cast
from urllib.parse import urljoin, urlsplit

from ._version import __version__
from .errors import (
    CertificateError,
    DowngradeError,
    RemoteProtocolError,
    SecurityError,
    SMTPSecError,
    TimeoutError,
)

__all__ = ["NotFound", "SocketOpener", "fetch", "open_tcp"]

#: ``(host, port, timeout) -> connected socket``. The default resolves the name
#: with the system resolver; tests point it at a loopback server.
SocketOpener = Callable[[str, int, float], socket.socket]

#: Bytes allowed for the status line and headers on top of the body limit.
_HEADER_ALLOWANCE: Final = 16 * 1024
_RECV_SIZE: Final = 16 * 1024
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
#: A request target or Location we will send: visible ASCII only (no CR, LF, space).
_TARGET_RE: Final = re.compile(r"[\x21-\x7e]+")
_CONTENT_LENGTH_RE: Final = re.compile(rb"\r\ncontent-length:[ \t]*(\d{1,12})[ \t]*\r\n", re.I)


class NotFound(SMTPSecError):
    """No document at this URL: the host does not exist or refused, or HTTP said no."""


@dataclass(frozen=True, slots=True)
class Response:
    """A successful (``200``) response.

    Attributes:
        url: the URL the body was finally read from, after redirects.
        body: the decoded body (chunked transfer coding removed).
    """

    url: str
    body: bytes


def open_tcp(host: str, port: int, timeout: float) -> socket.socket:
    """The default :data:`SocketOpener`: :func:`socket.create_connection`."""
    return socket.create_connection((host, port), timeout=timeout)


def fetch(
    url: str,
    *,
    context: ssl.SSLContext,
    timeout: float,
    max_bytes: int,
    max_redirects: int,
    opener: SocketOpener = open_tcp,
) -> Response:
    """GET *url* over verified HTTPS, following at most *max_redirects* redirects.

    Args:
        url: an ``https://`` URL.
        context: a verifying client context (hostname checks on).
        timeout: seconds for the whole exchange, redirects included.
        max_bytes: largest body accepted.
        max_redirects: redirects followed before giving up.
        opener: opens the TCP connection (see :data:`SocketOpener`).

    Returns:
        The final ``200`` response.

    Raises:
        NotFound: no document here (unknown host, refused, HTTP 4xx/5xx).
        DowngradeError: a redirect to a non-``https`` URL.
        CertificateError: the server's certificate failed verification.
        SecurityError: the TLS handshake failed otherwise.
        RemoteProtocolError: a malformed or oversized response, or too many
            redirects.
        TimeoutError: the deadline passed.
    """
    deadline = time.monotonic() + timeout
    current = url
    for _ in range(max_redirects + 1):
        status, location, body = _exchange(current, context, opener, deadline, timeout, max_bytes)
        if status == http.client.OK:
            return Response(current, body)
        if status not in _REDIRECTS:
            raise NotFound(f"{current} answered HTTP {status}")
        if not location:
            raise RemoteProtocolError(
                f"{current} answered HTTP {status} without a Location header; the server "
                "is misconfigured, so configure the mail server by hand"
            )
        target = urljoin(current, location)
        if urlsplit(target).scheme.lower() != "https":
            raise DowngradeError(
                f"{current} redirected to {location!r}, which is not an https:// URL; "
                "smtpsec reads autoconfig documents only over verified HTTPS, so nothing "
                "was fetched from there. Ask the domain's administrator to serve it over "
                "HTTPS, or configure the mail server by hand"
            )
        current = target
    raise RemoteProtocolError(
        f"{url} redirected more than {max_redirects} times; smtpsec stops there. The "
        "server is misconfigured: configure the mail server by hand"
    )


def _split(url: str) -> tuple[str, int, str]:
    """``(host, port, request target)`` of an https URL, or RemoteProtocolError."""
    parts = urlsplit(url)
    try:
        port = parts.port or 443
    except ValueError:
        port = 0
    host = parts.hostname or ""
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    valid = (
        parts.scheme.lower() == "https"
        and port > 0
        and host.isascii()
        and _TARGET_RE.fullmatch(host)
        and parts.username is None
        and _TARGET_RE.fullmatch(target)
    )
    if not valid:
        raise RemoteProtocolError(
            f"{url!r} is not a usable https URL (bad host, port, credentials or "
            "characters); configure the mail server by hand"
        )
    return host, port, target


def _remaining(deadline: float, url: str, timeout: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError(
            f"fetching {url} did not finish within {timeout:g} s; check the network, "
            "pass a larger timeout=, or configure the mail server by hand"
        )
    return left


def _exchange(
    url: str,
    context: ssl.SSLContext,
    opener: SocketOpener,
    deadline: float,
    timeout: float,
    max_bytes: int,
) -> tuple[int, str | None, bytes]:
    """One request: ``(status, Location, body)``."""
    host, port, target = _split(url)
    try:
        raw = opener(host, port, _remaining(deadline, url, timeout))
    except SMTPSecError:
        raise  # smtplib.SMTPException is an OSError: keep ours as they are
    except builtins.TimeoutError as exc:
        raise TimeoutError(
            f"connecting to {host}:{port} for {url} timed out; check the network, pass a "
            "larger timeout=, or configure the mail server by hand"
        ) from exc
    except OSError as exc:  # no such host, refused, unreachable: nothing published here
        raise NotFound(f"{host}:{port} could not be reached ({exc})") from exc
    with raw:
        tls = _handshake(raw, context, host, url, deadline, timeout)
        with tls:
            host_header = host if port == 443 else f"{host}:{port}"
            request = (
                f"GET {target} HTTP/1.1\r\nHost: {host_header}\r\n"
                f"User-Agent: smtpsec/{__version__}\r\n"
                "Accept: application/xml, text/xml\r\nAccept-Encoding: identity\r\n"
                "Connection: close\r\n\r\n"
            )
            data = _read_all(tls, request.encode("ascii"), url, deadline, timeout, max_bytes)
    return _parse(data, url, max_bytes)


def _handshake(
    raw: socket.socket,
    context: ssl.SSLContext,
    host: str,
    url: str,
    deadline: float,
    timeout: float,
) -> ssl.SSLSocket:
    raw.settimeout(_remaining(deadline, url, timeout))
    try:
        # server_hostname is the real name: SNI and the certificate check use it
        # whatever address the opener connected to.
        return context.wrap_socket(raw, server_hostname=host)
    except ssl.SSLCertVerificationError as exc:
        detail = (exc.verify_message or str(exc)).rstrip(" .")
        raise CertificateError(
            f"the HTTPS certificate of {host} failed verification ({detail}), so the "
            f"autoconfig document at {url} was not read; configure the mail server by "
            "hand, or, if the server uses a private CA, trust it with Policy(cafile=...)"
        ) from exc
    except ssl.SSLError as exc:
        raise SecurityError(
            f"the TLS handshake with {host} for {url} failed ({exc.reason or exc}); nothing "
            "was read. The server must offer TLS 1.2 or newer on HTTPS; otherwise "
            "configure the mail server by hand"
        ) from exc
    except builtins.TimeoutError as exc:
        raise TimeoutError(
            f"the TLS handshake with {host} for {url} timed out; check the network, pass a "
            "larger timeout=, or configure the mail server by hand"
        ) from exc
    except OSError as exc:
        raise NotFound(f"{host} closed the connection during the TLS handshake ({exc})") from exc


def _read_all(
    tls: ssl.SSLSocket,
    request: bytes,
    url: str,
    deadline: float,
    timeout: float,
    max_bytes: int,
) -> bytes:
    """Send *request* and read the whole response under the deadline and size cap."""
    limit = max_bytes + _HEADER_ALLOWANCE
    data = bytearray()
    try:
        tls.settimeout(_remaining(deadline, url, timeout))
        tls.sendall(request)
        while not _complete(data):
            tls.settimeout(_remaining(deadline, url, timeout))
            chunk = tls.recv(_RECV_SIZE)
            if not chunk:
                break
            data += chunk
            if len(data) > limit:
                raise RemoteProtocolError(
                    f"the response from {url} is larger than {max_bytes} bytes; a genuine "
                    "autoconfig document is a few KiB, so it was not parsed. Configure the "
                    "mail server by hand"
                )
    except SMTPSecError:
        raise  # smtplib.SMTPException is an OSError: keep ours as they are
    except builtins.TimeoutError as exc:
        raise TimeoutError(
            f"fetching {url} did not finish within {timeout:g} s; check the network, pass "
            "a larger timeout=, or configure the mail server by hand"
        ) from exc
    except ssl.SSLError as exc:
        raise RemoteProtocolError(
            f"the TLS connection for {url} broke while reading ({exc.reason or exc}); "
            "try again later or configure the mail server by hand"
        ) from exc
    except OSError as exc:
        raise RemoteProtocolError(
            f"the connection for {url} broke while reading ({exc}); try again later or "
            "configure the mail server by hand"
        ) from exc
    return bytes(data)


def _complete(data: bytearray) -> bool:
    """True once a Content-Length-delimited response has fully arrived.

    Otherwise (chunked, or no length) the server's close ends the response:
    we asked for ``Connection: close``.
    """
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return False
    match = _CONTENT_LENGTH_RE.search(data, 0, end + 2)
    return match is not None and len(data) - (end + 4) >= int(match.group(1))


class _Replay:
    """A stand-in socket that gives :class:`http.client.HTTPResponse` bytes already read."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def makefile(self, mode: str) -> io.BytesIO:
        return io.BytesIO(self._data)


def _parse(data: bytes, url: str, max_bytes: int) -> tuple[int, str | None, bytes]:
    response = http.client.HTTPResponse(cast(socket.socket, _Replay(data)), method="GET")
    try:
        response.begin()
        body = response.read()
    except (http.client.HTTPException, ValueError) as exc:
        raise RemoteProtocolError(
            f"{url} sent a malformed HTTP response ({type(exc).__name__}: {exc}); "
            "configure the mail server by hand"
        ) from exc
    if len(body) > max_bytes:
        raise RemoteProtocolError(
            f"the response from {url} is larger than {max_bytes} bytes; a genuine "
            "autoconfig document is a few KiB, so it was not parsed. Configure the mail "
            "server by hand"
        )
    return response.status, response.getheader("Location"), body
