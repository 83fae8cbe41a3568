"""How a connection reaches TLS: the one enum for that concept, everywhere.

A caller *requests* a mode with :class:`Security` (policy, CLI, Django
settings); a session report, a discovered endpoint, the TLS memory, the probe
and the test server say which mode is *used* with the same enum.
"""

from __future__ import annotations

import enum

__all__ = ["Security"]


class Security(enum.Enum):
    """How a connection reaches TLS (RFC 8314): the one spelling of that concept.

    A caller *requests* a mode with it (any member); what a session, an
    endpoint, the TLS memory, the probe or the test server actually *uses* is
    one of :attr:`IMPLICIT_TLS`, :attr:`STARTTLS` or :attr:`PLAINTEXT`.

    Attributes:
        AUTO: port 465 → implicit TLS; any other port → STARTTLS, required; no
            port → try 465 with implicit TLS, then 587 with required STARTTLS.
            Never cleartext.
        IMPLICIT_TLS: TLS from the first byte (port 465 by default).
        STARTTLS: plaintext greeting, then STARTTLS, which is *required*: a server
            that does not offer it, or refuses it, ends the connection.
        OPPORTUNISTIC: STARTTLS when offered, otherwise cleartext with an
            :class:`~smtpsec.errors.InsecureConfigurationWarning`; AUTH is refused
            without verified TLS. For relays on trusted networks only.
        PLAINTEXT: no TLS at all. Explicit; warns unless the host is loopback.
    """

    AUTO = "auto"
    IMPLICIT_TLS = "implicit_tls"
    STARTTLS = "starttls"
    OPPORTUNISTIC = "opportunistic"
    PLAINTEXT = "plaintext"
