"""Pluggable byte transports: the :class:`Transport` protocol and two implementations.

``start_tls`` returns a *new* transport (httpcore's model): the plaintext one is
finished and must not be used again.
"""

from __future__ import annotations

from ._base import AnyTransport, AsyncTransportProtocol, Transport
from ._memory import MemoryTransport
from ._socket import SocketTransport, open_socket

__all__ = [
    "AnyTransport",
    "AsyncTransportProtocol",
    "MemoryTransport",
    "SocketTransport",
    "Transport",
    "open_socket",
]
