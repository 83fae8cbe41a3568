"""An in-memory transport for testing code that uses smtpsec without a network.

It plays back server bytes you queue and records what the client wrote. Its
``start_tls`` pretends a handshake succeeded with the :class:`TLSInfo` you give:
use it only in tests.
"""

from __future__ import annotations

import ssl
from collections import deque
from collections.abc import Callable, Iterable

from ..errors import ConnectError, TimeoutError
from ..tls import TLSInfo

__all__ = ["MemoryTransport"]

#: What a test double reports after its pretend handshake.
FAKE_TLS = TLSInfo(
    version="TLSv1.3",
    cipher="TLS_AES_256_GCM_SHA384",
    verified=True,
    peer_certificate=None,
    spki_pin=None,
)


class MemoryTransport:
    """A scripted :class:`~smtpsec.transports.Transport`.

    Args:
        incoming: chunks the "server" sends, in order (more via :meth:`feed`).
        tls: TLS facts to report (``None``: plaintext).
        tls_after_start: what :meth:`start_tls` reports; :data:`FAKE_TLS` by default.
        after_tls: chunks the TLS transport returned by :meth:`start_tls` plays back.

    Attributes:
        written: every ``write`` call's bytes, in order.
        closed: true after :meth:`close`.
    """

    def __init__(
        self,
        incoming: Iterable[bytes] = (),
        *,
        tls: TLSInfo | None = None,
        tls_after_start: TLSInfo = FAKE_TLS,
        after_tls: Iterable[bytes] = (),
    ) -> None:
        self._incoming: deque[bytes] = deque(incoming)
        self._tls = tls
        self._tls_after_start = tls_after_start
        self._after_tls = list(after_tls)
        self.written: list[bytes] = []
        self.closed = False
        self.upgraded: MemoryTransport | None = None

    @property
    def tls(self) -> TLSInfo | None:
        """TLS facts, or ``None`` for plaintext."""
        return self._tls

    def feed(self, data: bytes) -> None:
        """Queue bytes for the client to read."""
        self._incoming.append(data)

    def write(self, data: bytes, *, timeout: float) -> None:
        """Record ``data``."""
        if self.closed:
            raise ConnectError("write on a closed MemoryTransport")
        self.written.append(bytes(data))

    def read(self, *, timeout: float) -> bytes:
        """Return the next queued chunk; ``TimeoutError`` when none is queued."""
        if self.closed:
            raise ConnectError("read on a closed MemoryTransport")
        if not self._incoming:
            raise TimeoutError("MemoryTransport: no more scripted server data")
        return self._incoming.popleft()

    def poll(self) -> bytes | None:
        """Scripted data is handed out only by :meth:`read`: never anything early."""
        return None

    def pending_plaintext(self) -> bytes:
        """Queued bytes the client has not read yet."""
        return b"".join(self._incoming)

    def start_tls(
        self,
        context: ssl.SSLContext,
        *,
        server_hostname: str | None,
        timeout: float,
        verify_identity: Callable[[bytes], object] | None = None,
    ) -> MemoryTransport:
        """Pretend a handshake happened; return the "TLS" transport."""
        self.upgraded = MemoryTransport(self._after_tls, tls=self._tls_after_start)
        return self.upgraded

    @property
    def sent(self) -> bytes:
        """Everything written, joined."""
        return b"".join(self.written)

    def close(self) -> None:
        """Mark closed."""
        self.closed = True
