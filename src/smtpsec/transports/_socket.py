"""Blocking socket (+ ssl) transport; socket errors become smtpsec errors here, at the edge."""

from __future__ import annotations

import contextlib
import ipaddress
import selectors
import socket
import ssl
import time
from collections.abc import Callable, Iterator

from ..errors import ConnectError, SMTPSecError
from ..errors import TimeoutError as DeadlineError
from ..tls import TLSInfo, session_info, tls_session

__all__ = ["SocketTransport", "ack_promptly"]

_READ_SIZE = 64 * 1024
#: Bytes a waiting write takes in before it stops reading: far more than the
#: replies to any flight the engine writes; a server that sends more while it
#: does not read either runs into the write timeout.
_TAKE_IN_LIMIT = 4 * 1024 * 1024


def ack_promptly(sock: socket.socket | None) -> None:
    """Acknowledge the next segments at once instead of delaying (Linux ``TCP_QUICKACK``).

    Called after each TLS handshake. The server then sends its session tickets
    and its greeting; a server with Nagle's algorithm on (Postfix) holds the
    greeting back until the tickets are acknowledged, and a client that delays
    its ACK (40 ms on Linux) stalls the connection that long. Nothing happens
    where the option does not exist or does not apply (a Unix socket).
    """
    option = getattr(socket, "TCP_QUICKACK", None)
    if sock is None or option is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, option, 1)


def connect_failure(host: str, port: int, exc: OSError, *, timeout: float) -> SMTPSecError:
    """The typed, actionable error for a TCP connection that could not be made."""
    if isinstance(exc, TimeoutError):
        return DeadlineError(
            f"connecting to {host}:{port} timed out after {timeout:g}s; check host, port "
            "and firewall"
        )
    return ConnectError(
        f"cannot connect to {host}:{port}: {exc.strerror or exc}; check the host name "
        "and port (submission uses 465 or 587)"
    )


def unbracket(host: str) -> str:
    """``"[::1]"`` (how URLs and users write an IPv6 literal) → ``"::1"`` for getaddrinfo."""
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def sni(host: str | None) -> str | None:
    """The SNI name for ``host``: ``None`` for an address literal (R-LIB-SNI-1)."""
    # R-LIB-SNI-1: never send an address literal as SNI (ssl still checks IP SANs).
    if host is None:
        return None
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host
    return host.strip("[]")


class SocketTransport:
    """A :class:`~smtpsec.transports.Transport` over a blocking socket.

    Args:
        sock: a connected socket (or :class:`ssl.SSLSocket`).
        tls: TLS facts when ``sock`` already runs TLS.
        peer: ``"host:port"`` for error messages.
    """

    #: ``start_tls`` takes ``session=`` (TLS session resumption).
    resumes_tls_sessions = True
    #: ``write`` keeps reading while it waits, so flights need no small bound.
    reads_while_writing = True

    def __init__(self, sock: socket.socket, *, tls: TLSInfo | None = None, peer: str = "") -> None:
        self._sock = sock
        self._tls = tls
        self._peer = peer or "server"
        self._closed = False
        #: Bytes read but not handed out yet: what arrived with a proxy's reply, or
        #: replies that arrived while a write waited for room.
        self._pending = bytearray()
        self._eof_seen = False
        self._recv_wants_write = False

    @property
    def tls(self) -> TLSInfo | None:
        """TLS facts, or ``None`` for plaintext."""
        return self._tls

    @property
    def tls_session(self) -> ssl.SSLSession | None:
        """The TLS session (for resumption later), or ``None`` for plaintext."""
        return tls_session(self._sock)

    def with_pending(self, data: bytes) -> SocketTransport:
        """Hand ``data`` (bytes already read from the socket) out first; return ``self``."""
        self._pending += data
        return self

    @property
    def socket(self) -> socket.socket:
        """The underlying socket (for adapters that need it)."""
        return self._sock

    def write(self, data: bytes, *, timeout: float) -> None:
        """Send all of ``data`` within ``timeout`` seconds.

        While the kernel has no room for more, what the server sends meanwhile
        (the replies to the commands already written) is read and kept for
        :meth:`read`: a long pipelined flight cannot deadlock against a server
        that stops reading until its replies are read (R-2920-3.1-5).
        """
        deadline = time.monotonic() + timeout
        view = memoryview(data)
        with self._timeout_kept():
            while view:
                if deadline - time.monotonic() <= 0:
                    raise DeadlineError(
                        f"writing to {self._peer} timed out; the server stopped reading"
                    )
                try:
                    # Inside the try: on a closed socket even setblocking() raises OSError.
                    self._sock.setblocking(False)
                    sent = self._sock.send(view)
                except (BlockingIOError, ssl.SSLWantWriteError):
                    self._wait_for_room(deadline, tls_wants_read=False)
                    continue
                except ssl.SSLWantReadError:  # TLS needs the peer's bytes first
                    self._wait_for_room(deadline, tls_wants_read=True)
                    continue
                except OSError as exc:
                    raise ConnectError(
                        f"connection to {self._peer} lost while writing: {exc}"
                    ) from exc
                view = view[sent:]

    def _wait_for_room(self, deadline: float, *, tls_wants_read: bool) -> None:
        """Wait until the socket takes more, keeping what arrives meanwhile.

        ``tls_wants_read``: TLS cannot send before it has read (a TLS 1.2
        renegotiation, say), so only readability is waited for.
        """
        remaining = max(deadline - time.monotonic(), 0.0)  # the caller checks the deadline
        keeping = not self._eof_seen and len(self._pending) < _TAKE_IN_LIMIT
        if tls_wants_read and not keeping:
            raise ConnectError(
                f"connection to {self._peer} failed while writing: the server sent "
                f"{'its end of stream' if self._eof_seen else 'over 4 MiB'} without "
                "reading what was written"
            )
        # After a read that TLS could only finish by writing, wait for room alone:
        # readability then would wake this loop at once, again and again.
        reading = keeping and not self._recv_wants_write
        events = (selectors.EVENT_READ if reading else 0) | (
            0 if tls_wants_read else selectors.EVENT_WRITE
        )
        try:
            # A selector, not select(): the process may hold descriptors above 1023.
            with selectors.DefaultSelector() as selector:
                selector.register(self._sock, events)
                ready = selector.select(remaining)
        except (OSError, ValueError) as exc:  # closed underneath us
            raise ConnectError(f"connection to {self._peer} lost while writing: {exc}") from exc
        self._recv_wants_write = False
        if not any(mask & selectors.EVENT_READ for _key, mask in ready):
            return
        try:
            chunk = self._sock.recv(_READ_SIZE)
        except ssl.SSLWantWriteError:
            self._recv_wants_write = True
            return
        except (BlockingIOError, ssl.SSLWantReadError):
            return  # a partial TLS record, or only a session ticket
        except OSError:
            self._eof_seen = True  # the next send, or the read after, says why
            return
        if chunk:
            self._pending += chunk
        else:
            self._eof_seen = True

    def _take_pending(self) -> bytes:
        data = bytes(self._pending)
        self._pending.clear()
        return data

    def read(self, *, timeout: float) -> bytes:
        """Return the next bytes available, or ``b""`` at end of stream."""
        if self._pending:
            return self._take_pending()
        if timeout <= 0:
            raise DeadlineError(f"no complete reply from {self._peer} in time")
        with self._timeout_kept():
            try:
                self._sock.settimeout(timeout)
                return self._sock.recv(_READ_SIZE)
            except TimeoutError as exc:
                raise DeadlineError(
                    f"nothing arrived from {self._peer} within the timeout"
                ) from exc
            except ssl.SSLError as exc:
                raise ConnectError(f"TLS error reading from {self._peer}: {exc}") from exc
            except OSError as exc:
                raise ConnectError(f"connection to {self._peer} lost while reading: {exc}") from exc

    def poll(self) -> bytes | None:
        """Non-blocking read: ``None`` if nothing arrived, ``b""`` at end of stream."""
        if self._pending:
            return self._take_pending()
        with self._timeout_kept():
            try:
                self._sock.setblocking(False)
                return self._sock.recv(_READ_SIZE)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return None  # nothing (for TLS: maybe only a session ticket was processed)
            except OSError:
                return b""  # a reset or closed connection; the next read or write says why

    def pending_plaintext(self) -> bytes:
        """Peek at bytes that arrived but were not read (never consumes them)."""
        if isinstance(self._sock, ssl.SSLSocket):
            return b""
        if self._pending:
            return bytes(self._pending)
        # With a timeout set, recv() waits for readability even with MSG_DONTWAIT;
        # a non-blocking socket answers at once.
        with self._timeout_kept():
            try:
                self._sock.setblocking(False)
                return self._sock.recv(_READ_SIZE, socket.MSG_PEEK)
            except OSError:  # BlockingIOError: nothing there (other errors surface on read)
                return b""

    @contextlib.contextmanager
    def _timeout_kept(self) -> Iterator[None]:
        """Leave the socket's own timeout as it was: each call sets its own deadline,
        and code holding the socket (smtplib's ``sock``) sees no change."""
        try:
            previous = self._sock.gettimeout()
        except OSError:  # pragma: no cover - gettimeout does not fail on CPython
            previous = None
        try:
            yield
        finally:
            with contextlib.suppress(OSError):  # a closed socket has nothing to restore
                self._sock.settimeout(previous)

    def start_tls(
        self,
        context: ssl.SSLContext,
        *,
        server_hostname: str | None,
        timeout: float,
        verify_identity: Callable[[bytes], object] | None = None,
        session: ssl.SSLSession | None = None,
    ) -> SocketTransport:
        """Wrap the socket in TLS and run the handshake within ``timeout``.

        ``session`` (from an earlier connection to the same server with the same
        context) asks to resume that TLS session; the server may decline.
        """
        if self._pending:
            # Bytes the server sent before the ClientHello would be lost under TLS.
            raise ConnectError(f"{self._peer} sent data before the TLS handshake; nothing was sent")
        self._sock.settimeout(timeout)
        try:
            tls_sock = context.wrap_socket(
                self._sock,
                server_hostname=sni(server_hostname),
                do_handshake_on_connect=True,
                session=session,
            )
        except TimeoutError as exc:
            raise DeadlineError(
                f"TLS handshake with {self._peer} did not finish within {timeout:g}s"
            ) from exc
        except ssl.SSLError:
            raise
        except OSError as exc:
            raise ConnectError(
                f"connection to {self._peer} lost during the TLS handshake: {exc}"
            ) from exc
        self._closed = True  # the plaintext transport is finished
        ack_promptly(tls_sock)
        try:
            info = session_info(tls_sock, context, verify_identity)
        except BaseException:
            tls_sock.close()
            raise
        return SocketTransport(tls_sock, tls=info, peer=self._peer)

    def close(self) -> None:
        """Close; with TLS, send close_notify first and do not wait for the peer's.

        R-8314-3.4-1: the close_notify goes out. R-8314-3.4-2: the peer's is not
        awaited (a round trip for nothing once QUIT is answered); if it already
        arrived it is read, so nothing is left unread. Only when the alert could
        not be written at once is it retried, for at most a second.
        """
        if self._closed:
            return
        self._closed = True
        sock = self._sock
        try:
            if isinstance(sock, ssl.SSLSocket):
                sock.setblocking(False)
                try:
                    sock.unwrap()
                except ssl.SSLWantWriteError:  # the send buffer is full: wait a little
                    sock.settimeout(1.0)
                    with contextlib.suppress(OSError, ValueError):
                        sock.unwrap()
                except (OSError, ValueError):  # SSLWantReadError: sent, not answered yet
                    pass
        finally:
            sock.close()
