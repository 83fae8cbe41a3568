"""Pluggable byte transports: the :class:`Transport` protocols and their implementations.

``start_tls`` returns a *new* transport (httpcore's model): the plaintext one is
finished and must not be used again. :class:`SocketTransport` is the blocking
one, :class:`AsyncTransport` the asyncio one (imported on first use, so
blocking code never loads asyncio), :class:`MemoryTransport` plays back a
script for tests.
"""

from __future__ import annotations

from types import ModuleType
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


def __dir__() -> list[str]:
    """The public names (two load lazily), the dunders and the loaded submodules.

    The names this module uses for itself (``Any``, ``TYPE_CHECKING``) stay out.
    """
    return sorted({*__all__, *(name for name in globals() if _listed(name))})


def _listed(name: str) -> bool:
    value = globals()[name]
    own_submodule = isinstance(value, ModuleType) and value.__name__.startswith(f"{__name__}.")
    return own_submodule or (name.startswith("__") and name.endswith("__"))
