"""The transport contract every byte stream implements."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from ..tls import TLSInfo

__all__ = ["AnyTransport", "AsyncTransportProtocol", "Transport"]


@runtime_checkable
class Transport(Protocol):
    """A bidirectional byte stream to one SMTP server.

    A transport class may also say ``reads_while_writing = True`` when its
    ``write`` keeps reading (and keeps for ``read``) what arrives while it waits
    for room, as smtpsec's own do; the engine then writes pipelined flights of
    up to 4,096 commands. Without it flights stay at 256 commands, whose replies
    fit in socket buffers while a blocked write does not read. A subclass whose
    ``write`` does not read must set it back to ``False``.
    """

    @property
    def tls(self) -> TLSInfo | None:
        """Facts about the TLS session, or ``None`` for plaintext."""

    def write(self, data: bytes, *, timeout: float) -> None:
        """Write all of ``data`` within ``timeout`` seconds.

        Raises:
            smtpsec.errors.TimeoutError: the deadline passed.
            smtpsec.errors.ConnectError: the connection was lost.
        """

    def read(self, *, timeout: float) -> bytes:
        """Return the next bytes available (``b""`` at end of stream).

        Raises:
            smtpsec.errors.TimeoutError: nothing arrived within ``timeout``.
            smtpsec.errors.ConnectError: the connection was lost.
        """

    def poll(self) -> bytes | None:
        """Return bytes already received without waiting: ``None`` when nothing is
        there, ``b""`` when the peer closed. Used to catch replies nobody asked for
        before the next command goes out (R-LIB-DESYNC-1)."""

    def pending_plaintext(self) -> bytes:
        """Bytes that already arrived but were not read (checked before STARTTLS)."""

    def start_tls(
        self,
        context: ssl.SSLContext,
        *,
        server_hostname: str | None,
        timeout: float,
        verify_identity: Callable[[bytes], object] | None = None,
    ) -> Transport:
        """Run the TLS handshake and return the TLS transport.

        ``verify_identity`` (when given) is called with the server's DER
        certificate after the handshake and raises if the identity does not
        match; the session counts as verified only when the context validated
        the chain and either the context checked the host name or this callback
        accepted the certificate.

        Raises:
            ssl.SSLError: the handshake failed (the caller maps it to a typed error).
            smtpsec.errors.TimeoutError: the handshake did not finish in time.
        """

    def close(self) -> None:
        """Close the stream (sending TLS close_notify first when TLS is active)."""


@runtime_checkable
class AsyncTransportProtocol(Protocol):
    """The asyncio twin of :class:`Transport`: the same methods, awaitable."""

    @property
    def tls(self) -> TLSInfo | None:
        """Facts about the TLS session, or ``None`` for plaintext."""

    async def write(self, data: bytes, *, timeout: float) -> None:
        """As :meth:`Transport.write`."""

    async def read(self, *, timeout: float) -> bytes:
        """As :meth:`Transport.read`."""

    async def poll(self) -> bytes | None:
        """As :meth:`Transport.poll`."""

    async def pending_plaintext(self) -> bytes:
        """As :meth:`Transport.pending_plaintext`."""

    async def start_tls(
        self,
        context: ssl.SSLContext,
        *,
        server_hostname: str | None,
        timeout: float,
        verify_identity: Callable[[bytes], object] | None = None,
    ) -> AsyncTransportProtocol:
        """As :meth:`Transport.start_tls`."""

    async def close(self) -> None:
        """As :meth:`Transport.close`."""


#: What the shared dialogue code drives: either kind (see :mod:`smtpsec._io`).
AnyTransport = Transport | AsyncTransportProtocol
