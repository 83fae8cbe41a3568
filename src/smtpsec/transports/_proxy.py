"""Proxies: the :class:`Proxy` value and the one sans-I/O proxy handshake.

SOCKS5 (RFC 1928, with RFC 1929 user/password), SOCKS4a and HTTP CONNECT
(RFC 9110 §9.3.6, with Basic credentials, RFC 7617) are written here once, as
a state machine that takes bytes in and gives bytes out
(:class:`ProxyHandshake`); the blocking and the asyncio transports only move
those bytes. Nothing here opens a socket, reads a clock or logs.

The proxy is as untrusted as the network: it always resolves the mail
server's name itself (so no DNS query leaks from this machine and no local
resolver picks the address), TLS is verified against the mail server's name
afterwards exactly as without a proxy, and the proxy's credentials never
appear in a ``repr``, a log line or an error message.
"""

from __future__ import annotations

import base64
import enum
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import unquote, urlsplit

from ..errors import InvalidArgumentError, PolicyError, ProxyError

__all__ = ["Proxy", "ProxyHandshake", "ProxyScheme", "as_proxy"]


class ProxyScheme(enum.Enum):
    """The proxy protocols smtpsec speaks.

    ``SOCKS5`` and ``SOCKS5H`` behave the same: smtpsec always sends the mail
    server's *name* and lets the proxy resolve it (``socks5h`` in curl's
    words), so a name never leaks to the local resolver.
    """

    SOCKS5 = "socks5"
    SOCKS5H = "socks5h"
    SOCKS4A = "socks4a"
    HTTP = "http"


#: Schemes people write that smtpsec refuses, and why.
_REFUSED_SCHEMES: Final = {
    "socks4": "socks4 resolves names on this machine (a DNS leak) and has no IPv6; "
    "use socks4a:// or socks5h://",
    "https": "TLS to the proxy itself is not supported; use http:// (the mail "
    "session is TLS end to end through the tunnel anyway)",
}

#: What a host name sent to a proxy may contain (no spaces, controls, colons).
_HOST_NAME: Final = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252}[A-Za-z0-9_.])?\Z")
#: RFC 1929 / SOCKS5 length fields are one octet.
_MAX_FIELD: Final = 255
#: An HTTP proxy's reply head (status line and headers) larger than this is refused.
_MAX_HTTP_HEAD: Final = 16 * 1024


@dataclass(frozen=True, slots=True)
class Proxy:
    """A proxy between this client and the mail server.

    Build it from a URL with :meth:`from_url` (``socks5h://user:pw@127.0.0.1:1080``,
    ``socks4a://127.0.0.1:1080``, ``http://proxy.example:3128``) or directly.
    The ``repr`` and :attr:`display` never show the credentials.

    Attributes:
        scheme: the proxy protocol.
        host: the proxy's host name or address.
        port: the proxy's port.
        username: SOCKS5 user (RFC 1929), SOCKS4a user id, or HTTP Basic user.
        password: SOCKS5 or HTTP Basic password (SOCKS4a has none).
    """

    scheme: ProxyScheme
    host: str
    port: int
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.scheme, ProxyScheme):
            raise PolicyError(f"Proxy(scheme={self.scheme!r}): pass a smtpsec.ProxyScheme")
        if (
            not isinstance(self.port, int)
            or isinstance(self.port, bool)
            or not (0 < self.port < 65536)
        ):
            raise PolicyError(f"Proxy(port={self.port!r}): pass a port in 1..65535")
        if not self.host:
            raise PolicyError("Proxy(host=''): name the proxy's host")
        if self.password is not None and self.username is None:
            raise PolicyError("a proxy password needs a proxy user name")
        if self.scheme is ProxyScheme.SOCKS4A and self.password is not None:
            raise PolicyError(
                "SOCKS4a has no passwords (only a user id); use socks5h:// for "
                "user/password authentication"
            )
        for name, value in (("user name", self.username), ("password", self.password)):
            if value is None:
                continue
            if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
                raise PolicyError(f"the proxy {name} contains a control character")
            if self.scheme is not ProxyScheme.HTTP and len(value.encode("utf-8")) > _MAX_FIELD:
                raise PolicyError(f"the proxy {name} is longer than SOCKS allows (255 octets)")
        if self.scheme is ProxyScheme.HTTP and self.username and ":" in self.username:
            raise PolicyError("an HTTP Basic user name cannot contain ':' (RFC 7617)")

    @classmethod
    def from_url(cls, url: str) -> Proxy:
        """Parse ``scheme://[user[:password]@]host:port`` (percent-escapes allowed).

        Raises:
            PolicyError: not a proxy URL smtpsec can use; the message never
                repeats the URL (it may hold a password).
        """
        if not isinstance(url, str):
            raise PolicyError(f"proxy={type(url).__name__}: pass a URL string or a smtpsec.Proxy")
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError:
            raise PolicyError(
                "the proxy URL is malformed (bad port or brackets); write it as "
                "socks5h://[user:password@]host:port"
            ) from None
        scheme = parts.scheme.lower()
        if scheme in _REFUSED_SCHEMES:
            raise PolicyError(f"proxy scheme {scheme}://: {_REFUSED_SCHEMES[scheme]}")
        try:
            kind = ProxyScheme(scheme)
        except ValueError:
            raise PolicyError(
                f"proxy scheme {scheme or '(none)'}:// is not supported; use socks5h://, "
                "socks5://, socks4a:// or http://"
            ) from None
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise PolicyError(f"a {scheme}:// proxy URL has no path, query or fragment")
        if not parts.hostname or port is None:
            raise PolicyError(f"the {scheme}:// proxy URL needs a host and a port (host:port)")
        username = unquote(parts.username) if parts.username is not None else None
        password = unquote(parts.password) if parts.password is not None else None
        return cls(kind, parts.hostname, port, username, password)

    @property
    def display(self) -> str:
        """``scheme://host:port``: how messages and reports name the proxy (no credentials)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme.value}://{host}:{self.port}"

    @property
    def kind(self) -> str:
        """The protocol in words: ``"SOCKS5"``, ``"SOCKS4a"``, ``"HTTP"``."""
        return {"socks5": "SOCKS5", "socks5h": "SOCKS5", "socks4a": "SOCKS4a", "http": "HTTP"}[
            self.scheme.value
        ]

    def __repr__(self) -> str:
        secret = ", credentials=<hidden>" if self.username is not None else ""
        return f"Proxy({self.display!r}{secret})"


def as_proxy(value: object) -> Proxy | None:
    """``proxy=`` as given by a caller (a URL, a :class:`Proxy` or ``None``) → a :class:`Proxy`.

    Raises:
        PolicyError: neither a usable URL nor a :class:`Proxy`.
    """
    if value is None or isinstance(value, Proxy):
        return value
    return Proxy.from_url(value)  # type: ignore[arg-type]  # from_url checks the type


def _target_host(host: str) -> tuple[str, ipaddress.IPv4Address | ipaddress.IPv6Address | None]:
    """The mail server's name as sent to the proxy, or its address when it is a literal.

    Raises:
        InvalidArgumentError: a name with characters no DNS name has (it would
            be written into the proxy request).
    """
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return bare, ipaddress.ip_address(bare)
    except ValueError:
        pass
    try:
        ascii_name = bare.encode("idna").decode("ascii")
    except UnicodeError:
        ascii_name = ""
    if not _HOST_NAME.match(ascii_name):
        raise InvalidArgumentError(
            f"{host!r} is not a host name that can be sent to a proxy; pass a DNS name "
            "or an IP address"
        )
    return ascii_name, None


class _Step(enum.Enum):
    SOCKS5_METHOD = enum.auto()
    SOCKS5_AUTH = enum.auto()
    SOCKS5_CONNECT = enum.auto()
    SOCKS4_REPLY = enum.auto()
    HTTP_HEAD = enum.auto()
    DONE = enum.auto()


_SOCKS5_REPLIES: Final = {
    1: ("general SOCKS server failure", False),
    2: ("connection not allowed by the proxy's rules", False),
    3: ("network unreachable", True),
    4: ("host unreachable", True),
    5: ("connection refused", True),
    6: ("TTL expired", True),
    7: ("command not supported", False),
    8: ("address type not supported", False),
}
_SOCKS4_REPLIES: Final = {
    91: "request rejected or failed",
    92: "request rejected: the proxy cannot reach this client's identd",
    93: "request rejected: identd reports a different user id",
}


class ProxyHandshake:
    """The proxy dialogue as a sans-I/O state machine (one per connection).

    Usage by a transport::

        handshake = ProxyHandshake(proxy, "smtp.example.com", 465)
        send(handshake.start())
        while not handshake.done:
            send(handshake.receive(read()))   # raises ProxyError on failure
        leftover = handshake.leftover        # the mail server's first bytes, if any

    Args:
        proxy: the proxy.
        host: the mail server's name (sent as a name: the proxy resolves it).
        port: the mail server's port.

    Raises:
        InvalidArgumentError: ``host`` cannot be written into a proxy request.
        PolicyError: SOCKS4a cannot address an IPv6 literal.
    """

    def __init__(self, proxy: Proxy, host: str, port: int) -> None:
        self._proxy = proxy
        self._port = port
        self._name, self._address = _target_host(host)
        self._target = f"[{self._name}]:{port}" if ":" in self._name else f"{self._name}:{port}"
        if proxy.scheme is ProxyScheme.SOCKS4A and isinstance(self._address, ipaddress.IPv6Address):
            raise PolicyError("SOCKS4a cannot reach an IPv6 address; use socks5h://")
        self._buffer = bytearray()
        self._step = _Step.DONE
        #: Bytes that arrived after the proxy's reply: the mail server's first bytes.
        self.leftover = b""

    @property
    def done(self) -> bool:
        """The tunnel is open: bytes now go to and come from the mail server."""
        return self._step is _Step.DONE

    def start(self) -> bytes:
        """The first bytes to send to the proxy."""
        scheme = self._proxy.scheme
        if scheme in (ProxyScheme.SOCKS5, ProxyScheme.SOCKS5H):
            self._step = _Step.SOCKS5_METHOD
            # 0x00: no authentication; 0x02: user/password (RFC 1929), offered
            # only when there are credentials.
            methods = b"\x00\x02" if self._proxy.username is not None else b"\x00"
            return b"\x05" + bytes([len(methods)]) + methods
        if scheme is ProxyScheme.SOCKS4A:
            self._step = _Step.SOCKS4_REPLY
            user = (self._proxy.username or "").encode("utf-8")
            if isinstance(self._address, ipaddress.IPv4Address):
                return (
                    b"\x04\x01"
                    + self._port.to_bytes(2, "big")
                    + self._address.packed
                    + user
                    + b"\x00"
                )
            # 0.0.0.x (x != 0) asks the proxy to resolve the name that follows.
            return (
                b"\x04\x01"
                + self._port.to_bytes(2, "big")
                + b"\x00\x00\x00\x01"
                + user
                + b"\x00"
                + self._name.encode("ascii")
                + b"\x00"
            )
        self._step = _Step.HTTP_HEAD
        lines = [f"CONNECT {self._target} HTTP/1.1", f"Host: {self._target}"]
        if self._proxy.username is not None:
            pair = f"{self._proxy.username}:{self._proxy.password or ''}".encode()
            lines.append(f"Proxy-Authorization: Basic {base64.b64encode(pair).decode('ascii')}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")

    def receive(self, data: bytes) -> bytes:
        """Take bytes from the proxy; return what to send next (often ``b""``).

        Raises:
            ProxyError: the proxy refused, failed, or broke its protocol; or
                it closed the connection (``data == b""``).
        """
        if self._step is _Step.DONE:
            self.leftover += data
            return b""
        if not data:
            raise self._error("closed the connection during its handshake")
        self._buffer += data
        out = bytearray()
        while not self.done:
            sent = self._advance()
            if sent is None:
                break
            out += sent
        if self.done:
            self.leftover = bytes(self._buffer)
            self._buffer.clear()
        return bytes(out)

    # ------------------------------------------------------------------ steps

    def _take(self, size: int) -> bytes | None:
        if len(self._buffer) < size:
            return None
        chunk = bytes(self._buffer[:size])
        del self._buffer[:size]
        return chunk

    def _advance(self) -> bytes | None:
        """One step; ``None`` when more bytes are needed."""
        step = self._step
        if step is _Step.SOCKS5_METHOD:
            return self._socks5_method()
        if step is _Step.SOCKS5_AUTH:
            return self._socks5_auth()
        if step is _Step.SOCKS5_CONNECT:
            return self._socks5_connect()
        if step is _Step.SOCKS4_REPLY:
            return self._socks4_reply()
        return self._http_head()

    def _socks5_method(self) -> bytes | None:
        reply = self._take(2)
        if reply is None:
            return None
        if reply[0] != 5:
            raise self._error("did not answer as a SOCKS5 proxy (check the scheme and port)")
        method = reply[1]
        if method == 0x00:
            return self._socks5_request()
        if method == 0x02 and self._proxy.username is not None:
            user = self._proxy.username.encode("utf-8")
            password = (self._proxy.password or "").encode("utf-8")
            self._step = _Step.SOCKS5_AUTH
            return b"\x01" + bytes([len(user)]) + user + bytes([len(password)]) + password
        if method == 0xFF:
            need = "" if self._proxy.username is not None else "; it may need a user and password"
            raise self._error(f"accepts none of the offered authentication methods{need}")
        raise self._error(f"chose authentication method {method:#04x}, which was not offered")

    def _socks5_auth(self) -> bytes | None:
        reply = self._take(2)
        if reply is None:
            return None
        if reply[0] != 1:
            raise self._error("answered the user/password step with a malformed reply")
        if reply[1] != 0:
            raise self._error("refused the proxy user name or password")
        return self._socks5_request()

    def _socks5_request(self) -> bytes:
        self._step = _Step.SOCKS5_CONNECT
        address = self._address
        if isinstance(address, ipaddress.IPv4Address):
            where = b"\x01" + address.packed
        elif isinstance(address, ipaddress.IPv6Address):
            where = b"\x04" + address.packed
        else:
            name = self._name.encode("ascii")
            where = b"\x03" + bytes([len(name)]) + name  # the proxy resolves it
        return b"\x05\x01\x00" + where + self._port.to_bytes(2, "big")

    def _socks5_connect(self) -> bytes | None:
        if len(self._buffer) < 5:
            return None
        version, code, _reserved, kind, first = self._buffer[:5]
        if version != 5:
            raise self._error("answered the CONNECT request with a malformed reply")
        if code != 0:
            what, unreachable = _SOCKS5_REPLIES.get(code, (f"reply code {code}", False))
            if unreachable:
                raise self._error(f"could not reach {self._target}: {what}", unreachable=True)
            raise self._error(f"refused the connection to {self._target}: {what}")
        sizes = {1: 4, 4: 16, 3: 1 + first}
        if kind not in sizes:
            raise self._error("answered with an unknown address type")
        if self._take(4 + sizes[kind] + 2) is None:
            return None
        self._step = _Step.DONE
        return b""

    def _socks4_reply(self) -> bytes | None:
        reply = self._take(8)
        if reply is None:
            return None
        if reply[0] not in (0, 4):  # 0 per the spec; some servers echo 4
            raise self._error("did not answer as a SOCKS4a proxy (check the scheme and port)")
        code = reply[1]
        if code == 90:
            self._step = _Step.DONE
            return b""
        what = _SOCKS4_REPLIES.get(code, f"reply code {code}")
        # SOCKS4 does not tell "cannot reach" from "not allowed": 91 counts as
        # unreachable so another port of the plan is still tried.
        raise self._error(f"could not connect to {self._target}: {what}", unreachable=code == 91)

    def _http_head(self) -> bytes | None:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > _MAX_HTTP_HEAD:
                raise self._error("sent a reply head longer than 16 KiB")
            if self._buffer and not self._buffer.startswith(b"HTTP/"[: len(self._buffer)]):
                raise self._error("did not answer as an HTTP proxy (check the scheme and port)")
            return None
        head = bytes(self._buffer[:end])
        del self._buffer[: end + 4]
        status = head.split(b"\r\n", 1)[0]
        match = re.match(rb"HTTP/1\.[01] ([0-9]{3})(?: (.*))?\Z", status)
        if match is None:
            raise self._error("did not answer as an HTTP proxy (check the scheme and port)")
        code = int(match.group(1))
        reason = (match.group(2) or b"").decode("ascii", "replace")
        # Printable reason only: the proxy's words go into our message.
        reason = "".join(c for c in reason if c.isprintable())[:80]
        if 200 <= code < 300:
            self._step = _Step.DONE
            return b""
        if code in (401, 407):  # 407 per RFC 9110; some proxies (tinyproxy) say 401
            if self._proxy.username is None:
                raise self._error(
                    f"requires credentials ({code}); put them in the proxy URL: "
                    "http://user:password@host:port"
                )
            raise self._error(f"refused the proxy credentials ({code})")
        detail = f"{code} {reason}".strip()
        if code in (500, 502, 503, 504):  # tinyproxy: "500 Unable to connect"
            raise self._error(f"could not reach {self._target}: {detail}", unreachable=True)
        raise self._error(f"refused the tunnel to {self._target}: {detail}")

    def _error(self, what: str, *, unreachable: bool = False) -> ProxyError:
        proxy = self._proxy
        return ProxyError(
            f"the {proxy.kind} proxy {proxy.display} {what}",
            proxy=proxy.display,
            target_unreachable=unreachable,
        )
