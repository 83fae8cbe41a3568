"""Exceptions of the smtplib drop-in: each is both a stdlib ``smtplib`` exception and an
:class:`~smtpsec.SMTPSecError`.

Code written for :mod:`smtplib` catches ``SMTPNotSupportedError``,
``SMTPResponseException``, ``SMTPAuthenticationError``, ``SMTPServerDisconnected``...
and reads ``smtp_code``/``smtp_error``/``args``; code written for smtpsec catches
``DowngradeError``, ``AuthenticationError``... Each class here inherits from one
of each, so both kinds of ``except`` clause keep working. ``str()`` is always
smtpsec's actionable message; ``args`` keep the stdlib layout (``(code, msg)``,
``(code, msg, sender)``, ``(recipients,)``) for handlers that unpack them.
Every class is public, documented, and exported by :mod:`smtpsec.smtplib`.
"""

from __future__ import annotations

import smtplib as _std
import ssl
from typing import Final

from ..errors import (
    AuthenticationError,
    CapabilityError,
    CertificateError,
    ConnectError,
    RecipientsRefused,
    RemoteProtocolError,
    ReplyError,
    SenderRefused,
    TimeoutError,
    TLSUnavailableError,
    TLSVersionError,
)
from ..sansio import split_enhanced_status

__all__ = [
    "AuthFailed",
    "AuthNotFresh",
    "BadGreeting",
    "CertificateVerifyFailed",
    "ConnectRefused",
    "DataRefused",
    "EhloRefused",
    "ExtensionNotSupported",
    "MalformedReply",
    "NoAuthExtension",
    "QuitRefused",
    "RecipientsRefusedError",
    "ReplyTimeout",
    "SenderRefusedError",
    "ServerDisconnected",
    "StartTLSNotOffered",
    "StartTLSRefused",
    "TLSHandshakeFailed",
    "TLSVersionTooLow",
    "split_status",
]

#: Where the classes are documented and importable: tracebacks name them so.
_MODULE: Final = "smtpsec.smtplib"


def split_status(code: int, msg: bytes) -> tuple[str | None, str]:
    """Split an RFC 3463 enhanced status off smtplib's reply bytes (the sansio rule).

    Returns:
        ``(enhanced status or None, text)``; the status counts only when its
        class matches the reply code's first digit.
    """
    status, text = split_enhanced_status(msg.decode("utf-8", "replace"), code)
    return (str(status) if status is not None else None), text


class _Message:
    """``str()`` is smtpsec's message whatever ``args`` hold (the stdlib layout)."""

    _message: str

    def __str__(self) -> str:
        return self._message


# --------------------------------------------------------------------------- TLS


class StartTLSNotOffered(TLSUnavailableError, _std.SMTPNotSupportedError):
    """STARTTLS is not in the EHLO reply (stripped or misconfigured); connection closed."""


class StartTLSRefused(_Message, TLSUnavailableError, _std.SMTPResponseException):
    """The server answered STARTTLS with something other than 220; connection closed.

    Attributes:
        smtp_code: the reply code (stdlib attribute).
        smtp_error: the reply text as bytes (stdlib attribute).
    """

    def __init__(self, message: str, *, code: int, msg: bytes) -> None:
        TLSUnavailableError.__init__(self, message, code=code, text=msg.decode("utf-8", "replace"))
        self.smtp_code = code
        self.smtp_error = msg
        self.args = (code, msg)
        self._message = message


class CertificateVerifyFailed(_Message, CertificateError, ssl.SSLCertVerificationError):
    """Certificate validation failed; also an :class:`ssl.SSLCertVerificationError`.

    The original :class:`ssl.SSLCertVerificationError` is the ``__cause__``;
    its ``verify_code``/``verify_message`` are copied here.
    """

    def __init__(self, message: str, *, cause: ssl.SSLCertVerificationError) -> None:
        CertificateError.__init__(self, message)
        self.verify_code = cause.verify_code
        self.verify_message = cause.verify_message
        self.reason = cause.reason
        self.library = cause.library
        self._message = message


class TLSHandshakeFailed(_Message, TLSUnavailableError, ssl.SSLError):
    """The TLS handshake failed for another reason; also an :class:`ssl.SSLError`."""

    def __init__(self, message: str) -> None:
        TLSUnavailableError.__init__(self, message)
        self._message = message


class TLSVersionTooLow(_Message, TLSVersionError, ssl.SSLError):
    """No acceptable TLS version (below 1.2); also an :class:`ssl.SSLError`."""

    def __init__(self, message: str) -> None:
        TLSVersionError.__init__(self, message)
        self._message = message


# --------------------------------------------------------------------------- connection


class ServerDisconnected(ConnectError, _std.SMTPServerDisconnected):
    """The connection was lost, or was never made (``connect()`` first)."""


class ReplyTimeout(TimeoutError, _std.SMTPServerDisconnected):
    """A whole reply did not arrive within the timeout; the connection was closed."""


class ExtensionNotSupported(CapabilityError, _std.SMTPNotSupportedError):
    """The server lacks an extension the command or message needs (SMTPUTF8, 8BITMIME...)."""


class NoAuthExtension(ExtensionNotSupported):
    """The server advertises no AUTH (after TLS)."""


# --------------------------------------------------------------------------- replies


def _reply_attrs(exc: ReplyError, code: int, msg: bytes, *, tls: bool) -> None:
    """Fill smtpsec's ReplyError fields and smtplib's response fields on ``exc``."""
    status, text = split_status(code, msg)
    exc.code = code
    exc.enhanced_status = status
    exc.text = text
    exc.server_text_authenticated = tls
    exc.smtp_code = code
    exc.smtp_error = msg


# The ignores: ReplyError types smtp_error as bytes, smtplib as bytes | str (bytes fits both).
class _ReplyHybrid(_Message, ReplyError, _std.SMTPResponseException):  # type: ignore[misc]
    """A failure reply that is both a ReplyError and an SMTPResponseException."""

    def __init__(self, message: str, *, code: int, msg: bytes, tls: bool = True) -> None:
        # ReplyError.__init__ would reach SMTPResponseException.__init__ through
        # the MRO with the wrong arguments; fill both sides explicitly instead.
        Exception.__init__(self, message)
        _reply_attrs(self, code, msg, tls=tls)
        self.args = (code, msg)
        self._message = message


class MalformedReply(_ReplyHybrid, RemoteProtocolError):  # type: ignore[misc]
    """The server broke the reply grammar or a size limit; the connection was closed.

    ``smtp_code`` is 500 for an over-long line (as smtplib reports it), else -1.
    """


class ConnectRefused(_ReplyHybrid, _std.SMTPConnectError):  # type: ignore[misc]
    """The greeting was not 220 (raised by the constructor, like smtplib)."""


class BadGreeting(ConnectRefused, MalformedReply):  # type: ignore[misc]
    """The greeting broke the reply grammar or a limit (a ``199``, an over-long line)."""


class EhloRefused(_ReplyHybrid, _std.SMTPHeloError):  # type: ignore[misc]
    """EHLO failed where smtpsec does not fall back to HELO (inside TLS)."""


class DataRefused(_ReplyHybrid, _std.SMTPDataError):  # type: ignore[misc]
    """DATA or the message itself was refused."""


class QuitRefused(_ReplyHybrid):
    """QUIT at the end of a ``with`` block was not answered 221 (smtplib raises then too).

    What was sent before is not affected: the server had already answered it.
    """


class AuthFailed(_Message, AuthenticationError, _std.SMTPAuthenticationError):  # type: ignore[misc]
    """The server rejected authentication; ``hint`` says what usually fixes it."""

    def __init__(self, message: str, *, code: int, msg: bytes, hint: str, tls: bool = True) -> None:
        Exception.__init__(self, message)
        _reply_attrs(self, code, msg, tls=tls)
        self.hint = hint
        self.args = (code, msg)
        self._message = message


class AuthNotFresh(AuthFailed, RemoteProtocolError):  # type: ignore[misc]
    """``503`` to the first AUTH: the session was not set up by us (R-4954-4-6)."""


class SenderRefusedError(_Message, SenderRefused, _std.SMTPSenderRefused):  # type: ignore[misc]
    """MAIL FROM was refused (``sender`` holds the address)."""

    def __init__(
        self, message: str, *, code: int, msg: bytes, sender: str, tls: bool = True
    ) -> None:
        Exception.__init__(self, message)
        _reply_attrs(self, code, msg, tls=tls)
        self.sender = sender
        self.args = (code, msg, sender)
        self._message = message


class RecipientsRefusedError(_Message, RecipientsRefused, _std.SMTPRecipientsRefused):
    """Every recipient was refused; nothing was sent.

    Attributes:
        recipients: smtplib's ``{address: (code, msg bytes)}``.
        refused: smtpsec's ``{address: (code, enhanced status, text)}``.
    """

    def __init__(
        self, message: str, *, recipients: dict[str, tuple[int, bytes]], tls: bool = True
    ) -> None:
        Exception.__init__(self, message)
        self.recipients = recipients
        self.refused = {
            addr: (code, *split_status(code, msg)) for addr, (code, msg) in recipients.items()
        }
        first = next(iter(recipients.values()), (554, b""))
        _reply_attrs(self, first[0], first[1], tls=tls)
        self.args = (recipients,)
        self._message = message


for _name in __all__:
    _public = globals()[_name]
    if isinstance(_public, type):
        _public.__module__ = _MODULE
