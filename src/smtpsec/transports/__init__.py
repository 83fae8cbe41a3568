"""Pluggable byte transports: the :class:`Transport` protocols and their implementations.

``start_tls`` returns a *new* transport (httpcore's model): the plaintext one is
finished and must not be used again. :class:`SocketTransport` is the blocking
one, :class:`AsyncTransport` the asyncio one (imported on first use, so
blocking code never loads asyncio), :class:`MemoryTransport` plays back a
script for tests. :class:`Proxy` names a SOCKS5, SOCKS4a or HTTP CONNECT proxy
and :class:`Route` says how a connection reaches the server (proxy, source
address, Happy Eyeballs delay); :func:`open_route` opens one.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

from ._base import AnyTransport, AsyncTransportProtocol, Transport
from ._memory import MemoryTransport
from ._proxy import Proxy, ProxyHandshake, ProxyScheme, as_proxy
from ._route import (
    DEFAULT_HAPPY_EYEBALLS_DELAY,
    DIRECT,
    Route,
    happy_eyeballs,
    open_route,
    open_socket,
)
from ._socket import SocketTransport

if TYPE_CHECKING:
    from ._asyncio import AsyncTransport, open_connection

__all__ = [
    "DEFAULT_HAPPY_EYEBALLS_DELAY",
    "DIRECT",
    "AnyTransport",
    "AsyncTransport",
    "AsyncTransportProtocol",
    "MemoryTransport",
    "Proxy",
    "ProxyHandshake",
    "ProxyScheme",
    "Route",
    "SocketTransport",
    "Transport",
    "as_proxy",
    "happy_eyeballs",
    "open_connection",
    "open_route",
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
