"""Pluggable byte transports: the :class:`Transport` protocol and two implementations.

``start_tls`` returns a *new* transport (httpcore's model): the plaintext one is
finished and must not be used again.
"""

from __future__ import annotations

from ._base import Transport
from ._memory import MemoryTransport
from ._socket import SocketTransport, open_socket

__all__ = ["MemoryTransport", "SocketTransport", "Transport", "open_socket"]
