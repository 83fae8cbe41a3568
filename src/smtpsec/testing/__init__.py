"""Public test kit: a scriptable loopback SMTP server and a throwaway CA.

Use it to test code that sends mail, and to attack SMTP clients the way the
checklist's §3 and §5 describe::

    from smtpsec.testing import CA, SMTPServer

    ca = CA.create()
    leaf = ca.issue("localhost", ips=("127.0.0.1",))
    with SMTPServer(leaf, tls="starttls", users={"ann": "secret"}) as srv:
        ...  # point a client at (srv.host, srv.port), trusting ca
    capture = srv.connections[0]
    assert capture.pre_tls_verbs_subset_of({"EHLO", "STARTTLS", "QUIT"})

Hostile behaviour is data: ``SMTPServer(strip_starttls=True)``,
``SMTPServer(starttls_inject=b"250 AUTH LOGIN\\r\\n")`` or
``SMTPServer(replies={"EHLO": Endless()})``. With pytest, the ``smtpsec_ca``,
``smtpsec_cert``, ``smtpsec_client_context`` and ``smtpsec_server`` fixtures
(see :mod:`smtpsec.testing.plugin`) are available automatically.
"""

from __future__ import annotations

from smtpsec.testing._ca import CA, SRV_NAME_OID, LeafCert
from smtpsec.testing._capture import AuthAttempt, Capture, ReceivedMessage
from smtpsec.testing._protocol import TLSMode, format_reply
from smtpsec.testing._script import (
    DEFAULT_EXTENSIONS,
    DEFAULT_GREETING,
    SUPPORTED_MECHANISMS,
    CommandHook,
    Drip,
    Endless,
    LongLine,
    Reply,
    Script,
)
from smtpsec.testing._server import SMTPServer
from smtpsec.testing._session import ServerSession

#: Alias: the brief's name for a :class:`Script`.
Behaviour = Script

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
    "LeafCert",
    "LongLine",
    "ReceivedMessage",
    "Reply",
    "SMTPServer",
    "Script",
    "ServerSession",
    "TLSMode",
    "format_reply",
]
