"""The threaded loopback fake server: listening, one thread per connection, stopping.

:class:`SMTPServer` binds an ephemeral port on loopback, accepts connections on
a background thread and serves each one with a :class:`ServerSession` on its
own thread. Stopping is bounded: the listener is woken through a socket pair,
every live connection is shut down so blocked reads and writes return, and
threads are joined against one deadline.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from types import TracebackType
from typing import Any, Final

from typing_extensions import Self

from smtpsec.modes import Security
from smtpsec.testing._ca import CA, LeafCert
from smtpsec.testing._capture import Capture, ReceivedMessage
from smtpsec.testing._protocol import record_sni
from smtpsec.testing._script import Script
from smtpsec.testing._session import ServerSession
from smtpsec.testing._wire import Wire

__all__ = ["SMTPServer"]

#: How a test server can speak TLS: from the first byte, after STARTTLS, or never.
_MODES: Final = (Security.IMPLICIT_TLS, Security.STARTTLS, Security.PLAINTEXT)
#: Pause between two shutdown attempts on a connection that is still busy
#: (covers the instant in which its socket is being wrapped for TLS).
_ABORT_RETRY: Final = 0.05


class SMTPServer:
    """A scriptable SMTP submission server on loopback, for tests and demos.

    With no arguments it is a correct implicit-TLS MSA with a throwaway CA and
    a certificate for ``localhost``/``127.0.0.1``/``::1``; keyword arguments
    that are :class:`Script` fields change its behaviour.

    Example:
        >>> with SMTPServer(tls=Security.STARTTLS, users={"ann": "pw"}) as srv:
        ...     policy = smtpsec.Policy(cadata=srv.ca.cert_pem.decode())  # trust its CA
        ...     # connect to (srv.host, srv.port) with any SMTP client

    Args:
        cert: the certificate to serve (a :class:`LeafCert` or a ready server
            ``SSLContext``, which is then modified to record SNI); ``None``
            issues a ``localhost`` leaf from ``ca`` (or from a throwaway CA).
            Ignored for ``Security.PLAINTEXT``.
        ca: the CA that issued ``cert``, so that :attr:`ca` can hand it to the
            client under test; with no ``cert``, the CA to issue the leaf from.
        tls: :attr:`~smtpsec.Security.IMPLICIT_TLS` (TLS from the first byte,
            port 465 style), :attr:`~smtpsec.Security.STARTTLS` (port 587
            style) or :attr:`~smtpsec.Security.PLAINTEXT` (no TLS at all).
        script: base behaviour; defaults to a correct MSA.
        host: address to bind (loopback only is the intent).
        port: port to bind; 0 picks a free ephemeral port.
        min_version: lowest TLS version the server accepts.
        max_version: highest TLS version the server accepts.
        request_client_cert: ask the client for a certificate (optional for it);
            only with a :class:`LeafCert` (configure your own context yourself).
        client_ca: CA that client certificates must chain to (default: the
            server leaf's issuer).
        timeout: idle bound on every read and write of a connection.
        **behaviour: :class:`Script` fields overriding ``script``.

    Raises:
        ValueError: unknown ``tls`` mode, or a ``cert`` that ``ca`` did not issue.
        TypeError: a keyword that is not a :class:`Script` field.
    """

    def __init__(
        self,
        cert: LeafCert | ssl.SSLContext | None = None,
        *,
        tls: Security = Security.IMPLICIT_TLS,
        ca: CA | None = None,
        script: Script | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        min_version: ssl.TLSVersion | None = None,
        max_version: ssl.TLSVersion | None = None,
        request_client_cert: bool = False,
        client_ca: CA | bytes | None = None,
        timeout: float = 30.0,
        **behaviour: Any,
    ) -> None:
        if tls not in _MODES:
            names = ", ".join(f"Security.{mode.name}" for mode in _MODES)
            raise ValueError(f"tls must be one of {names}, not {tls!r}")
        base = script if script is not None else Script()
        self.script: Script = base.replace(**behaviour) if behaviour else base
        self.tls: Security = tls
        self.timeout = timeout
        self._ca: CA | None = None
        self.cert: LeafCert | None = None
        self.ssl_context: ssl.SSLContext | None = None
        if tls is not Security.PLAINTEXT:
            if cert is None:
                self._ca = ca if ca is not None else CA.create()
                cert = self._ca.issue("localhost", ips=("127.0.0.1", "::1"))
            elif ca is not None:
                if isinstance(cert, LeafCert) and cert.issuer_pem != ca.cert_pem:
                    # Handing the client a CA that does not vouch for the server
                    # would make a test fail for the wrong reason.
                    raise ValueError("ca= did not issue cert=; pass the CA that signed it")
                self._ca = ca
            if isinstance(cert, LeafCert):
                self.cert = cert
                ctx = cert.server_context(
                    min_version=min_version,
                    max_version=max_version,
                    request_client_cert=request_client_cert,
                    client_ca=client_ca,
                )
            else:
                ctx = cert
                if min_version is not None:
                    ctx.minimum_version = min_version
                if max_version is not None:
                    ctx.maximum_version = max_version
            _install_sni(ctx)
            self.ssl_context = ctx
        self._bind = (host, port)
        self._address: tuple[str, int] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._captures: list[Capture] = []
        self._live: list[tuple[threading.Thread, Wire]] = []
        self._errors: list[BaseException] = []
        self._listener: socket.socket | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None
        self._acceptor: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        """Bind and start accepting connections (idempotent).

        Returns:
            The server itself, so ``srv = SMTPServer().start()`` works.
        """
        if self._listener is not None:
            return self
        host, port = self._bind
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.script.socket_buffer is not None:  # inherited by accepted sockets
            _set_buffers(listener, self.script.socket_buffer)
        listener.bind((host, port))
        listener.listen(64)
        self._listener = listener
        self._address = (host, listener.getsockname()[1])
        self._wake = socket.socketpair()
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"smtpsec-fake-accept-{self.port}", daemon=True
        )
        self._acceptor.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, drop every connection and join the threads (bounded).

        Args:
            timeout: seconds to wait for all threads together.
        """
        if self._listener is None or self._stopping.is_set():
            return
        self._stopping.set()
        deadline = time.monotonic() + timeout
        assert self._wake is not None
        assert self._acceptor is not None
        self._wake[1].send(b"x")
        self._acceptor.join(max(0.0, deadline - time.monotonic()))
        self._listener.close()
        with self._lock:
            live = list(self._live)
        for thread, wire in live:
            while thread.is_alive() and time.monotonic() < deadline:
                wire.abort()
                thread.join(_ABORT_RETRY)
        for end in self._wake:
            end.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = f"{self._address[0]}:{self._address[1]}" if self._address else "unbound"
        return f"<SMTPServer tls={self.tls} {where} connections={len(self._captures)}>"

    # ------------------------------------------------------------------ facts

    @property
    def ca(self) -> CA:
        """The CA that issued the server's certificate: what the client under test trusts.

        A server made without ``cert`` created it (or used ``ca=``), so this is
        always there in the common case::

            smtpsec.Policy(cadata=srv.ca.cert_pem.decode())  # or cafile=srv.ca.write_cafile(p)

        Raises:
            ValueError: the server has no TLS (``Security.PLAINTEXT``), or was
                given ``cert=`` without ``ca=``, so it does not know its CA.
        """
        if self._ca is not None:
            return self._ca
        if self.tls is Security.PLAINTEXT:
            raise ValueError("a Security.PLAINTEXT server has no certificate, so it has no CA")
        raise ValueError(
            "this server was given cert= without the CA that issued it; pass that CA "
            "too (SMTPServer(cert, ca=ca)) or trust it in the client directly"
        )

    @property
    def host(self) -> str:
        """The bound address (``127.0.0.1`` unless told otherwise)."""
        return self.address[0]

    @property
    def port(self) -> int:
        """The bound port (an ephemeral one by default)."""
        return self.address[1]

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` once started.

        Raises:
            RuntimeError: the server was not started.
        """
        if self._address is None:
            raise RuntimeError("SMTPServer is not started; call start() or use `with`")
        return self._address

    @property
    def connections(self) -> list[Capture]:
        """One capture per accepted connection, in accept order (a snapshot)."""
        with self._lock:
            return list(self._captures)

    @property
    def messages(self) -> list[ReceivedMessage]:
        """Every message accepted on any connection, in order."""
        return [msg for capture in self.connections for msg in capture.messages]

    @property
    def errors(self) -> list[BaseException]:
        """Unexpected exceptions raised while serving (e.g. by an ``on_command`` hook)."""
        with self._lock:
            return list(self._errors)

    def wait_for_connections(self, count: int, timeout: float = 5.0) -> list[Capture]:
        """Wait until ``count`` connections were accepted *and* finished.

        Args:
            count: how many connections to wait for.
            timeout: seconds to wait at most.

        Returns:
            The captures (at least ``count``).

        Raises:
            TimeoutError: fewer connections finished in time.
        """
        deadline = time.monotonic() + timeout
        while True:
            captures = self.connections
            if len(captures) >= count and all(
                c.wait_closed(max(0.0, deadline - time.monotonic())) for c in captures[:count]
            ):
                return captures
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"expected {count} finished connection(s) within {timeout} s, "
                    f"saw {len(captures)}; is the client connecting to port {self.port}?"
                )
            self._stopping.wait(_ABORT_RETRY)

    def client_context(self) -> ssl.SSLContext:
        """Return a verifying client context that trusts the root of this server's certificate.

        Raises:
            ValueError: the server has no :class:`LeafCert` (plaintext, or
                built from an ``SSLContext``), so its trust anchor is unknown.
        """
        if self.cert is None:
            raise ValueError(
                "this server has no LeafCert to trust; pass cert=LeafCert or build "
                "the client context from your own CA"
            )
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cadata=self.cert.root_pem.decode("ascii"))
        return ctx

    # ------------------------------------------------------------------ threads

    def _accept_loop(self) -> None:
        assert self._listener is not None
        assert self._wake is not None
        listener, wake = self._listener, self._wake[0]
        while True:  # only the wake-up socket (written by stop()) ends the loop
            ready, _, _ = select.select([listener, wake], [], [])
            if wake in ready:
                return
            try:
                conn, peer = listener.accept()
            except OSError:  # pragma: no cover - the peer reset between select and accept
                continue
            self._spawn(conn, peer)

    def _spawn(self, conn: socket.socket, peer: tuple[Any, ...]) -> None:
        conn.settimeout(self.timeout)
        # Replies to a pipelined group go out as separate writes; without
        # TCP_NODELAY, Nagle's algorithm would hold them back on a slow link.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.script.socket_buffer is not None:
            _set_buffers(conn, self.script.socket_buffer)
        with self._lock:
            capture = Capture(index=len(self._captures), peer=(str(peer[0]), int(peer[1])))
            self._captures.append(capture)
            wire = Wire(conn, capture, self._stopping)
            session = ServerSession(
                wire,
                capture,
                self.script,
                mode=self.tls,
                tls_context=self.ssl_context,
                timeout=self.timeout,
            )
            thread = threading.Thread(
                target=self._serve,
                args=(session, capture),
                name=f"smtpsec-fake-{self.port}-{capture.index}",
                daemon=True,
            )
            self._live.append((thread, wire))
        thread.start()

    def _serve(self, session: ServerSession, capture: Capture) -> None:
        try:
            session.run()
        except Exception as exc:  # a hook's bug must surface, not kill the thread silently
            capture.error = repr(exc)
            with self._lock:
                self._errors.append(exc)
        finally:
            capture._finish()


def _install_sni(ctx: ssl.SSLContext) -> None:
    """Make ``ctx`` record SNI, keeping any callback the caller installed."""
    previous = ctx.sni_callback
    if previous is None or previous is record_sni:
        ctx.sni_callback = record_sni
        return

    def chained(
        sock: ssl.SSLSocket | ssl.SSLObject, name: str | None, context: ssl.SSLContext
    ) -> int | None:
        record_sni(sock, name, context)
        return previous(sock, name, context)  # type: ignore[arg-type]

    ctx.sni_callback = chained


def _set_buffers(sock: socket.socket, size: int) -> None:
    for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        sock.setsockopt(socket.SOL_SOCKET, option, size)
