"""smtpsec: secure-by-default, fast SMTP submission (RFC 8314).

Implicit TLS is preferred, STARTTLS is only ever *required* TLS, certificates are
always verified, and a guard fails closed on every downgrade trick::

    import smtpsec

    with smtpsec.connect("smtp.example.com", username="ann", password="...") as s:
        s.send(message)
        print(s.report)
"""

from ._version import __version__
from .client import Session, connect, connect_transport, send
from .discovery import Endpoint, Provenance, discover
from .errors import (
    AuthenticationError,
    CapabilityError,
    CertificateError,
    ConnectError,
    DeliveryUnknown,
    DowngradeError,
    InsecureAuthError,
    InsecureConfigurationWarning,
    InvalidArgumentError,
    LocalProtocolError,
    PinMismatchError,
    PolicyError,
    ProtocolError,
    ProxyError,
    RecipientsRefused,
    RemoteProtocolError,
    ReplyError,
    ResponseInjectionError,
    SecurityError,
    SenderRefused,
    ServerClosing,
    SMTPSecError,
    SMTPSecWarning,
    TimeoutError,
    TLSMemoryError,
    TLSUnavailableError,
    TLSVersionError,
    UntrustedDiscoveryError,
    UpgradeAvailableWarning,
)
from .memory import Account, TLSMemory
from .options import ConnectOptions
from .policy import Policy, Security, select_plan
from .pool import Pool
from .report import SecurityReport
from .sending import MessageInput, Outgoing, RecipientRefusal, SendOptions, SendResult
from .tls import TLSInfo, TLSSessionCache
from .transports import Proxy, ProxyScheme

__all__ = [
    "Account",
    "AuthenticationError",
    "CapabilityError",
    "CertificateError",
    "ConnectError",
    "ConnectOptions",
    "DeliveryUnknown",
    "DowngradeError",
    "Endpoint",
    "InsecureAuthError",
    "InsecureConfigurationWarning",
    "InvalidArgumentError",
    "LocalProtocolError",
    "MessageInput",
    "Outgoing",
    "PinMismatchError",
    "Policy",
    "PolicyError",
    "Pool",
    "ProtocolError",
    "Provenance",
    "Proxy",
    "ProxyError",
    "ProxyScheme",
    "RecipientRefusal",
    "RecipientsRefused",
    "RemoteProtocolError",
    "ReplyError",
    "ResponseInjectionError",
    "SMTPSecError",
    "SMTPSecWarning",
    "Security",
    "SecurityError",
    "SecurityReport",
    "SendOptions",
    "SendResult",
    "SenderRefused",
    "ServerClosing",
    "Session",
    "TLSInfo",
    "TLSMemory",
    "TLSMemoryError",
    "TLSSessionCache",
    "TLSUnavailableError",
    "TLSVersionError",
    "TimeoutError",
    "UntrustedDiscoveryError",
    "UpgradeAvailableWarning",
    "__version__",
    "connect",
    "connect_transport",
    "discover",
    "select_plan",
    "send",
]
