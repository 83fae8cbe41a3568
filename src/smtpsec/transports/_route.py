"""How a TCP connection reaches the mail server: directly or through a proxy, from
which local address, and how to race the addresses of a dual-stack name.

:class:`Route` is the value; :func:`open_route` opens a blocking connection
along it. The asyncio twin is :func:`smtpsec.transports._asyncio.open_route`.
Both use the one proxy handshake (:class:`~smtpsec.transports._proxy.ProxyHandshake`)
and word failures the same way (:func:`proxy_unreachable`, :func:`proxy_failure`).

Happy Eyeballs (RFC 8305) for blocking code is :func:`happy_eyeballs`: the
addresses ``getaddrinfo`` returns (already in RFC 6724 order) are interleaved
by family, a new attempt starts every ``delay`` seconds or as soon as the
previous one failed, the first connection to complete wins and every other
attempt is closed.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import selectors
import socket
import time
from dataclasses import dataclass
from typing import Any, Final

from ..errors import ConnectError, ProxyError, SMTPSecError
from ..errors import TimeoutError as DeadlineError
from ._proxy import Proxy, ProxyHandshake
from ._socket import SocketTransport, connect_failure, unbracket

__all__ = [
    "DEFAULT_HAPPY_EYEBALLS_DELAY",
    "DIRECT",
    "Route",
    "format_address",
    "happy_eyeballs",
    "open_route",
    "open_socket",
    "proxy_failure",
    "proxy_unreachable",
]

#: RFC 8305 §5: "A recommended value for the Connection Attempt Delay is 250 milliseconds."
DEFAULT_HAPPY_EYEBALLS_DELAY: Final = 0.25

_IN_PROGRESS: Final = frozenset({errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY})


@dataclass(frozen=True, slots=True)
class Route:
    """How to reach the server (the network-level connect options, checked).

    Attributes:
        proxy: the proxy to tunnel through, or ``None`` for a direct connection.
        source_address: ``(host, port)`` to bind the local end to (port 0: any).
        happy_eyeballs_delay: seconds between staggered attempts (RFC 8305).
    """

    proxy: Proxy | None = None
    source_address: tuple[str, int] | None = None
    happy_eyeballs_delay: float = DEFAULT_HAPPY_EYEBALLS_DELAY


#: A direct connection from any local address, with the RFC 8305 delay.
DIRECT: Final = Route()


def format_address(sockaddr: object) -> str:
    """``"127.0.0.1:25"`` or ``"[::1]:25"`` for a socket address (``""`` if unknown)."""
    if not isinstance(sockaddr, tuple) or len(sockaddr) < 2:
        return ""
    host, port = sockaddr[0], sockaddr[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def proxy_unreachable(proxy: Proxy, exc: SMTPSecError) -> SMTPSecError:
    """The error for a proxy that could not be reached: names the proxy, not the server."""
    if isinstance(exc, DeadlineError):
        return DeadlineError(
            f"connecting to the {proxy.kind} proxy {proxy.display} timed out; check the "
            "proxy's host and port"
        )
    detail = str(exc).partition(": ")[2].partition(";")[0] or str(exc)
    return ProxyError(
        f"cannot connect to the {proxy.kind} proxy {proxy.display}: {detail}; check the "
        "proxy's host and port",
        proxy=proxy.display,
    )


def proxy_failure(proxy: Proxy, exc: SMTPSecError) -> SMTPSecError:
    """A transport error during the proxy handshake, in the proxy's name."""
    if isinstance(exc, ProxyError):
        return exc
    if isinstance(exc, DeadlineError):
        return DeadlineError(
            f"the {proxy.kind} proxy {proxy.display} did not finish its handshake in time"
        )
    return ProxyError(
        f"the {proxy.kind} proxy {proxy.display} dropped the connection during its handshake",
        proxy=proxy.display,
    )


def _family_of(source: tuple[str, int] | None) -> int | None:
    if source is None or not source[0]:
        return None
    try:
        return socket.AF_INET6 if ipaddress.ip_address(source[0]).version == 6 else socket.AF_INET
    except ValueError:
        return None


#: One address to try: (family, socket address).
_Candidate = tuple[int, tuple[Any, ...]]


def _interleave(infos: list[_Candidate]) -> list[_Candidate]:
    """RFC 8305 §4: alternate families, starting with the first one returned."""
    first = infos[0][0]
    primary = [info for info in infos if info[0] == first]
    secondary = [info for info in infos if info[0] != first]
    ordered: list[_Candidate] = []
    for index in range(max(len(primary), len(secondary))):
        ordered.extend(group[index] for group in (primary, secondary) if index < len(group))
    return ordered


def happy_eyeballs(
    host: str,
    port: int,
    *,
    timeout: float,
    source_address: tuple[str, int] | None = None,
    delay: float = DEFAULT_HAPPY_EYEBALLS_DELAY,
) -> socket.socket:
    """Connect to ``host:port``, racing its addresses (RFC 8305); return the winner.

    Raises:
        ConnectError: no address could be connected (every failure is named).
        TimeoutError: the deadline passed first.
    """
    deadline = time.monotonic() + timeout
    try:
        found = socket.getaddrinfo(unbracket(host), port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise connect_failure(host, port, exc, timeout=timeout) from exc
    infos: list[_Candidate] = [(family, sockaddr) for family, _t, _p, _c, sockaddr in found]
    wanted = _family_of(source_address)
    if wanted is not None:
        infos = [info for info in infos if info[0] == wanted]
        if not infos:
            assert source_address is not None
            raise ConnectError(
                f"cannot connect to {host}:{port} from {source_address[0]}: the host has no "
                "address of that family; pick a source_address of the other family"
            )
    attempts = _interleave(infos)
    selector = selectors.DefaultSelector()
    pending: dict[socket.socket, tuple[Any, ...]] = {}
    failures: list[tuple[str, OSError]] = []
    winner: socket.socket | None = None
    next_index = 0
    next_start = 0.0
    try:
        while winner is None:
            now = time.monotonic()
            if now >= deadline:
                raise connect_failure(host, port, TimeoutError(), timeout=timeout)
            if next_index < len(attempts) and (not pending or now >= next_start):
                family, sockaddr = attempts[next_index]
                next_index += 1
                next_start = now + delay
                sock, error = _start(family, sockaddr, source_address)
                if sock is None:
                    assert error is not None
                    failures.append((format_address(sockaddr), error))
                    next_start = now
                elif error is None:  # connected at once
                    winner = sock
                else:
                    pending[sock] = sockaddr
                    selector.register(sock, selectors.EVENT_WRITE)
                continue
            if not pending:
                raise _all_failed(host, port, failures, timeout=timeout)
            wait = deadline - now
            if next_index < len(attempts):
                wait = min(wait, next_start - now)
            for key, _events in selector.select(max(wait, 0.0)):
                ready = key.fileobj
                assert isinstance(ready, socket.socket)
                sockaddr = pending.pop(ready)
                selector.unregister(ready)
                code = ready.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code == 0:
                    winner = ready
                    break
                failures.append((format_address(sockaddr), OSError(code, os.strerror(code))))
                ready.close()
                next_start = time.monotonic()  # a failure starts the next attempt at once
    finally:
        for sock in pending:
            if sock is not winner:
                sock.close()
        selector.close()
    winner.setblocking(True)
    winner.settimeout(timeout)
    # Pipelined commands go out in one write; do not let Nagle hold the next one.
    winner.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return winner


def _start(
    family: int, sockaddr: tuple[Any, ...], source: tuple[str, int] | None
) -> tuple[socket.socket | None, OSError | None]:
    """Begin one non-blocking connect: (socket, None) done, (socket, err) pending, (None, err)."""
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        return None, exc
    try:
        sock.setblocking(False)
        if source is not None:
            sock.bind(source)
        code = sock.connect_ex(sockaddr)
    except OSError as exc:
        sock.close()
        return None, exc
    if code == 0:
        return sock, None
    if code in _IN_PROGRESS:
        return sock, OSError(code, os.strerror(code))
    sock.close()
    return None, OSError(code, os.strerror(code))


def _all_failed(
    host: str, port: int, failures: list[tuple[str, OSError]], *, timeout: float
) -> SMTPSecError:
    first = failures[0][1] if failures else OSError(errno.EHOSTUNREACH, "no address")
    error = connect_failure(host, port, first, timeout=timeout)
    if len(failures) > 1:
        tried = ", ".join(f"{where} ({exc.strerror or exc})" for where, exc in failures)
        return type(error)(f"{error} (tried {tried})")
    return error


def open_socket(
    host: str, port: int, *, timeout: float, source_address: tuple[str, int] | None = None
) -> socket.socket:
    """Open a direct TCP connection (Happy Eyeballs for dual-stack names)."""
    return happy_eyeballs(host, port, timeout=timeout, source_address=source_address)


def open_route(
    host: str, port: int, *, timeout: float, route: Route
) -> tuple[SocketTransport, str]:
    """Open a blocking connection to ``host:port`` along ``route``.

    Returns:
        The plaintext transport (through the tunnel when proxied) and the address
        the TCP connection went to (the proxy's when proxied).

    Raises:
        ProxyError: the proxy could not be reached, refused or failed.
        ConnectError: the server could not be reached.
        TimeoutError: the whole step (connect, proxy handshake) took longer than ``timeout``.
        InvalidArgumentError, PolicyError: the host cannot be sent to this proxy.
    """
    proxy = route.proxy
    if proxy is None:
        sock = happy_eyeballs(
            host,
            port,
            timeout=timeout,
            source_address=route.source_address,
            delay=route.happy_eyeballs_delay,
        )
        return SocketTransport(sock, peer=f"{host}:{port}"), format_address(sock.getpeername())
    deadline = time.monotonic() + timeout
    handshake = ProxyHandshake(proxy, host, port)  # refuses an unusable host before any I/O
    try:
        sock = happy_eyeballs(
            proxy.host,
            proxy.port,
            timeout=timeout,
            source_address=route.source_address,
            delay=route.happy_eyeballs_delay,
        )
    except (ConnectError, DeadlineError) as exc:
        raise proxy_unreachable(proxy, exc) from exc
    address = format_address(sock.getpeername())
    transport = SocketTransport(sock, peer=f"{host}:{port}")
    try:
        transport.write(handshake.start(), timeout=max(deadline - time.monotonic(), 0.001))
        while not handshake.done:
            data = transport.read(timeout=deadline - time.monotonic())
            reply = handshake.receive(data)
            if reply:
                transport.write(reply, timeout=max(deadline - time.monotonic(), 0.001))
    except (ConnectError, DeadlineError) as exc:
        transport.close()
        raise proxy_failure(proxy, exc) from exc
    except BaseException:
        transport.close()
        raise
    with contextlib.suppress(OSError):
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
    return transport.with_pending(handshake.leftover), address
