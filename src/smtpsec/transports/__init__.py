"""Pluggable byte transports: the :class:`Transport` protocols and their implementations.

``start_tls`` returns a *new* transport (httpcore's model): the plaintext one is
finished and must not be used again. :class:`SocketTransport` is the blocking
one, :class:`AsyncTransport` the asyncio one (imported on first use, so
blocking code never loads asyncio), :class:`MemoryTransport` plays back a
script for tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._base import AnyTransport, AsyncTransportProtocol, Transport
from ._memory import MemoryTransport
from ._socket import SocketTransport, open_socket

if TYPE_CHECKING:
    from ._asyncio import AsyncTransport, open_connection

__all__ = [
    "AnyTransport",
    "AsyncTransport",
    "AsyncTransportProtocol",
    "MemoryTransport",
    "SocketTransport",
    "Transport",
    "open_connection",
    "open_socket",
]


def __getattr__(name: str) -> Any:
    if name in ("AsyncTransport", "open_connection"):
        from . import _asyncio

        return getattr(_asyncio, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
