"""Public test kit: a scriptable loopback SMTP server and a throwaway CA.

Use it to test code that sends mail, and to attack SMTP clients the way the
checklist's §3 and §5 describe::

    from smtpsec import Security
    from smtpsec.testing import CA, SMTPServer

    ca = CA.create()
    leaf = ca.issue("localhost", ips=("127.0.0.1",))
    with SMTPServer(leaf, tls=Security.STARTTLS, users={"ann": "secret"}) as srv:
        ...  # point a client at (srv.host, srv.port), trusting ca
    capture = srv.connections[0]
    assert capture.pre_tls_verbs_subset_of({"EHLO", "STARTTLS", "QUIT"})

Hostile behaviour is data: ``SMTPServer(strip_starttls=True)``,
``SMTPServer(starttls_inject=b"250 AUTH LOGIN\\r\\n")`` or
``SMTPServer(replies={"EHLO": Endless()})``. With pytest, the ``smtpsec_ca``,
``smtpsec_cert``, ``smtpsec_client_context`` and ``smtpsec_server`` fixtures
(see :mod:`smtpsec.testing.plugin`) are available automatically.

The names are loaded on first use (PEP 562), because the pytest plugin that
lives in this package is imported by every pytest run.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from smtpsec.testing._ca import CA, SRV_NAME_OID, LeafCert
    from smtpsec.testing._capture import AuthAttempt, Capture, ReceivedMessage
    from smtpsec.testing._protocol import format_reply
    from smtpsec.testing._script import (
        DEFAULT_EXTENSIONS,
        DEFAULT_GREETING,
        SUPPORTED_MECHANISMS,
        CommandHook,
        Drip,
        Endless,
        HookSession,
        LongLine,
        Reply,
        Script,
    )
    from smtpsec.testing._script import Script as Behaviour
    from smtpsec.testing._server import SMTPServer
    from smtpsec.testing._session import ServerSession

__all__ = [
    "CA",
    "DEFAULT_EXTENSIONS",
    "DEFAULT_GREETING",
    "SRV_NAME_OID",
    "SUPPORTED_MECHANISMS",
    "AuthAttempt",
    "Behaviour",
    "Capture",
    "CommandHook",
    "Drip",
    "Endless",
    "HookSession",
    "LeafCert",
    "LongLine",
    "ReceivedMessage",
    "Reply",
    "SMTPServer",
    "Script",
    "ServerSession",
    "format_reply",
]

#: Public name -> (private module, attribute there). ``Behaviour`` is an alias of ``Script``.
_LAZY: Final[dict[str, tuple[str, str]]] = {
    "CA": ("_ca", "CA"),
    "LeafCert": ("_ca", "LeafCert"),
    "SRV_NAME_OID": ("_ca", "SRV_NAME_OID"),
    "AuthAttempt": ("_capture", "AuthAttempt"),
    "Capture": ("_capture", "Capture"),
    "ReceivedMessage": ("_capture", "ReceivedMessage"),
    "format_reply": ("_protocol", "format_reply"),
    "DEFAULT_EXTENSIONS": ("_script", "DEFAULT_EXTENSIONS"),
    "DEFAULT_GREETING": ("_script", "DEFAULT_GREETING"),
    "SUPPORTED_MECHANISMS": ("_script", "SUPPORTED_MECHANISMS"),
    "CommandHook": ("_script", "CommandHook"),
    "Drip": ("_script", "Drip"),
    "Endless": ("_script", "Endless"),
    "HookSession": ("_script", "HookSession"),
    "LongLine": ("_script", "LongLine"),
    "Reply": ("_script", "Reply"),
    "Script": ("_script", "Script"),
    "Behaviour": ("_script", "Script"),
    "SMTPServer": ("_server", "SMTPServer"),
    "ServerSession": ("_session", "ServerSession"),
}


def __getattr__(name: str) -> Any:
    """Import a public name from its private module on first access (PEP 562)."""
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    """The public names (loaded lazily), the dunders and the loaded submodules.

    The names this module uses for itself (``Any``, ``importlib``, ``_LAZY``) stay out.
    """
    return sorted({*__all__, *(name for name in globals() if _listed(name))})


def _listed(name: str) -> bool:
    value = globals()[name]
    own_submodule = isinstance(value, ModuleType) and value.__name__.startswith(f"{__name__}.")
    return own_submodule or (name.startswith("__") and name.endswith("__"))
