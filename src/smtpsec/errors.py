"""The whole smtpsec exception and warning tree.

Every exception derives from :class:`SMTPSecError`, which is also a
:class:`smtplib.SMTPException`, so ``except smtplib.SMTPException`` clauses in
existing code keep catching smtpsec failures. Every message says what happened
*and* what to do next.
"""

from __future__ import annotations

import builtins
import smtplib

__all__ = [
    "AuthenticationError",
    "CapabilityError",
    "CertificateError",
    "ConnectError",
    "DeliveryUnknown",
    "DowngradeError",
    "InsecureAuthError",
    "InsecureConfigurationWarning",
    "InvalidArgumentError",
    "LocalProtocolError",
    "PinMismatchError",
    "PolicyError",
    "ProtocolError",
    "ProxyError",
    "RecipientsRefused",
    "RemoteProtocolError",
    "ReplyError",
    "ResponseInjectionError",
    "SMTPSecError",
    "SMTPSecWarning",
    "SecurityError",
    "SenderRefused",
    "ServerClosing",
    "TLSMemoryError",
    "TLSUnavailableError",
    "TLSVersionError",
    "TimeoutError",
    "UntrustedDiscoveryError",
    "UpgradeAvailableWarning",
]


class SMTPSecError(smtplib.SMTPException):
    """Root of every error smtpsec raises."""


# --------------------------------------------------------------------------- security


class SecurityError(SMTPSecError):
    """A security requirement was not met; nothing sensitive was sent.

    smtpsec never retries a connection in cleartext after a ``SecurityError``.
    """


class DowngradeError(SecurityError):
    """The connection would be weaker than required (or than it was before)."""


class TLSUnavailableError(DowngradeError):
    """STARTTLS was required but not advertised, or refused by the server.

    Attributes:
        code: the server's reply code when it refused STARTTLS, else ``None``.
        text: the server's reply text (arrived before TLS: unverified).
        server_text_authenticated: always ``False`` for text from before TLS
            (R-EAST-UE-1): an attacker may have written it.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        text: str = "",
        server_text_authenticated: bool = False,
    ) -> None:
        # Not super(): adapters mix this class with smtplib exceptions whose
        # __init__ takes other arguments (see smtpsec._smtplib_errors).
        SMTPSecError.__init__(self, message)
        self.code = code
        self.text = text
        self.server_text_authenticated = server_text_authenticated


class ResponseInjectionError(DowngradeError):
    """Bytes arrived after the ``220`` to STARTTLS and before the TLS handshake.

    A genuine server sends nothing there; an attacker in the middle uses that gap
    to inject replies that the client would later read as if they came over TLS
    (CVE-2020-14954 class, R-EAST-BR-1).
    """


class CertificateError(SecurityError):
    """The server certificate failed validation (chain, validity or name)."""


class PinMismatchError(SecurityError):
    """No key the server presented matches any of the configured SPKI pins.

    Attributes:
        expected: the configured pins (``"sha256/<base64>"``), sorted.
        presented: the pins of the keys the server presented that could count:
            the leaf first, then, when the chain was verified, each certificate
            above it up to the trust anchor.
    """

    def __init__(
        self,
        message: str,
        *,
        expected: tuple[str, ...] = (),
        presented: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.expected = expected
        self.presented = presented


class InsecureAuthError(SecurityError):
    """Credentials would have travelled without verified TLS."""


class TLSVersionError(SecurityError):
    """The server negotiated (or only offers) a TLS version below the policy floor."""


class UntrustedDiscoveryError(SecurityError):
    """A discovered server is outside the user's domain and was not DNSSEC-validated."""


# --------------------------------------------------------------------------- protocol


class ProtocolError(SMTPSecError):
    """The SMTP dialogue broke its grammar or its state rules."""


class LocalProtocolError(ProtocolError):
    """smtpsec was asked to send something the protocol state does not allow."""


class RemoteProtocolError(ProtocolError):
    """The server sent something that is not valid SMTP (or not at this point)."""


class InvalidArgumentError(SMTPSecError, ValueError):
    """An argument cannot be sent safely (CR/LF/NUL, bad syntax, over-long)."""


class CapabilityError(SMTPSecError):
    """The server lacks an extension the operation needs (SMTPUTF8, AUTH, SIZE...)."""


class ReplyError(SMTPSecError):
    """The server answered with a failure reply.

    Attributes:
        code: the three-digit reply code.
        enhanced_status: the RFC 3463 enhanced status (``"5.7.8"``) or ``None``.
        text: the reply text (without code and enhanced status).
        server_text_authenticated: ``False`` when the text arrived before TLS
            and so may come from an attacker (R-EAST-UE-1).
    """

    def __init__(
        self,
        message: str,
        *,
        code: int,
        enhanced_status: str | None = None,
        text: str = "",
        server_text_authenticated: bool = True,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.enhanced_status = enhanced_status
        self.text = text
        self.server_text_authenticated = server_text_authenticated
        # Mirror smtplib.SMTPResponseException's attributes for old handlers.
        self.smtp_code = code
        self.smtp_error = text.encode("utf-8", "replace")

    @property
    def transient(self) -> bool:
        """``True`` for a 4xx reply: trying again later may succeed."""
        return 400 <= self.code < 500

    @property
    def permanent(self) -> bool:
        """``True`` for a 5xx reply: the same request will fail again."""
        return 500 <= self.code < 600


class AuthenticationError(ReplyError):
    """The server rejected authentication (``hint`` says what usually fixes it)."""

    def __init__(
        self,
        message: str,
        *,
        code: int,
        enhanced_status: str | None = None,
        text: str = "",
        server_text_authenticated: bool = True,
        hint: str = "",
    ) -> None:
        super().__init__(
            message,
            code=code,
            enhanced_status=enhanced_status,
            text=text,
            server_text_authenticated=server_text_authenticated,
        )
        self.hint = hint


class SenderRefused(ReplyError):
    """The server refused the envelope sender (``MAIL FROM``)."""

    def __init__(
        self,
        message: str,
        *,
        code: int,
        enhanced_status: str | None = None,
        text: str = "",
        sender: str = "",
    ) -> None:
        super().__init__(message, code=code, enhanced_status=enhanced_status, text=text)
        self.sender = sender


class RecipientsRefused(ReplyError):
    """The server refused every recipient; the message was not sent.

    Attributes:
        refused: recipient address -> ``(code, enhanced_status, text)``.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int,
        refused: dict[str, tuple[int, str | None, str]],
        enhanced_status: str | None = None,
        text: str = "",
    ) -> None:
        super().__init__(message, code=code, enhanced_status=enhanced_status, text=text)
        self.refused = refused


class ServerClosing(ReplyError):
    """The server answered ``421`` in the middle of a message and closed the connection.

    RFC 5321 §3.8: the service is shutting down. The message was not sent;
    ``transient`` is true, so sending it again later (on a new connection) may
    succeed.

    Attributes:
        command: the verb the ``421`` answered (``"RCPT"``, ``"DATA"``, ...).
        refused: the recipients refused before the connection closed,
            ``{address: (code, enhanced_status, text)}`` (the one answered
            ``421`` included), like :attr:`RecipientsRefused.refused`.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int,
        command: str,
        enhanced_status: str | None = None,
        text: str = "",
    ) -> None:
        super().__init__(message, code=code, enhanced_status=enhanced_status, text=text)
        self.command = command
        self.refused: dict[str, tuple[int, str | None, str]] = {}


# --------------------------------------------------------------------------- transport


class ConnectError(SMTPSecError, ConnectionError):
    """The TCP connection could not be made, or was lost."""


class DeliveryUnknown(ConnectError):
    """The connection failed after the whole message had gone out, before the server answered.

    The server may have accepted the message (and may deliver it) or not;
    nobody can tell from here. Sending it again may deliver it twice, so
    nothing in smtpsec does that automatically: decide with the recipient,
    or from the server's logs. ``__cause__`` is the failure itself (a lost
    connection, a timeout, a garbled reply).
    """


class ProxyError(ConnectError):
    """The proxy in front of the mail server failed: unreachable, refused the
    credentials, answered something that is not its protocol, or could not
    reach the mail server.

    The message names the proxy (never its credentials), so the reader knows
    which hop to fix.

    Attributes:
        proxy: the proxy, as ``scheme://host:port`` (no credentials).
        target_unreachable: the proxy itself worked but could not reach the
            mail server (another port of the plan may still be reachable).
    """

    def __init__(self, message: str, *, proxy: str = "", target_unreachable: bool = False) -> None:
        super().__init__(message)
        self.proxy = proxy
        self.target_unreachable = target_unreachable


class TimeoutError(SMTPSecError, builtins.TimeoutError):
    """A connect, handshake or whole-reply deadline passed."""


class PolicyError(SMTPSecError, ValueError):
    """The requested configuration is contradictory or unsafe without an explicit opt-in."""


class TLSMemoryError(PolicyError):
    """The TLS memory file cannot be trusted (corrupt, unreadable, of an unknown
    format) or cannot be locked or written; the message says what to do.

    While it cannot be trusted, every account is treated as TLS-required.

    Attributes:
        path: the store file, as a string.
    """

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


# --------------------------------------------------------------------------- warnings


class SMTPSecWarning(UserWarning):
    """Root of smtpsec's warnings."""


class InsecureConfigurationWarning(SMTPSecWarning):
    """The minimum confidentiality level was lowered on purpose (RFC 8314 §5.2)."""


class UpgradeAvailableWarning(SMTPSecWarning):
    """A cleartext session saw the server offer STARTTLS (RFC 8314 §5, bullet 8)."""
