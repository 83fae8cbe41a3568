"""``SMTP_SSL`` (implicit TLS from the first byte) and ``LMTP`` (RFC 2033) over :class:`SMTP`."""

from __future__ import annotations

import smtplib as _std
import ssl
from typing import TYPE_CHECKING

from .._advice import DROP_IN
from .._engine import (
    phases,
)
from ..errors import (
    InvalidArgumentError,
    LocalProtocolError,
)
from ..modes import Security
from ..tls import session_info
from ..transports import AnyTransport, Proxy, SocketTransport
from ._client import SMTP
from ._secure import client_context
from ._session import _socket_module

if TYPE_CHECKING:
    from _socket import _Address

    from _typeshed import StrOrBytesPath

__all__ = ["LMTP", "SMTP_SSL"]


# The stdlib class is a second base only so that isinstance(x, smtplib.SMTP_SSL)
# stays true for existing code; its __init__ (and unverified context) is never used.
class SMTP_SSL(SMTP, _std.SMTP_SSL):
    """:class:`smtplib.SMTP_SSL` that verifies the server certificate by default.

    Args:
        host: as :class:`SMTP`.
        port: as :class:`SMTP`, default 465.
        local_hostname: as :class:`SMTP`.
        keyfile: deprecated client key file (removed from smtplib in 3.12).
        certfile: deprecated client certificate chain file.
        timeout: as :class:`SMTP`.
        source_address: as :class:`SMTP`.
        context: used as given; default :func:`smtpsec.tls.build_context`
            (chain and host name verified, TLS >= 1.2, certifi roots; R-PY-1).
        allow_cleartext_auth: as :class:`SMTP`.
        proxy: as :class:`SMTP`.

    Raises:
        CertificateVerifyFailed: validation failed; also ``ssl.SSLCertVerificationError``.
        TLSVersionTooLow: the negotiated TLS version is below 1.2.
    """

    default_port = _std.SMTP_SSL_PORT

    def __init__(
        self,
        host: str = "",
        port: int = 0,
        local_hostname: str | None = None,
        keyfile: StrOrBytesPath | None = None,
        certfile: StrOrBytesPath | None = None,
        timeout: float | None = _std.socket._GLOBAL_DEFAULT_TIMEOUT,  # type: ignore[attr-defined]
        source_address: _Address | None = None,
        context: ssl.SSLContext | None = None,
        *,
        allow_cleartext_auth: bool = False,
        proxy: str | Proxy | None = None,
    ) -> None:
        self.keyfile = keyfile
        self.certfile = certfile
        self.context = client_context(keyfile, certfile, context)
        SMTP.__init__(
            self,
            host,
            port,
            local_hostname,
            timeout,
            source_address,
            allow_cleartext_auth=allow_cleartext_auth,
            proxy=proxy,
        )

    def _attach(self, transport: SocketTransport) -> None:
        raw = transport.socket
        with self._handshake_errors():
            if isinstance(raw, ssl.SSLSocket):
                # A _get_socket override that already did the handshake (a proxy
                # recipe): the session is judged exactly like ours.
                upgraded: AnyTransport = SocketTransport(
                    raw, tls=session_info(raw, raw.context, None), peer=self._peer
                )
            else:
                upgraded = self._run(
                    phases.handshake(
                        transport,
                        self.context,
                        host=self._host,
                        port=self._port,
                        timeout=self.timeout,
                        implicit=True,
                        verify_identity=None,
                        advice=DROP_IN,
                    )
                )
            info = upgraded.tls
            assert info is not None, "a handshake's transport runs TLS"
            self._guard(Security.IMPLICIT_TLS).after_handshake(info)
        assert isinstance(upgraded, SocketTransport)
        self._tls = info
        super()._attach(upgraded)

    def starttls(
        self,
        keyfile: StrOrBytesPath | None = None,
        certfile: StrOrBytesPath | None = None,
        context: ssl.SSLContext | None = None,
    ) -> tuple[int, bytes]:
        """Refused: this connection is TLS from the first byte (R-EAST-IMP-1)."""
        raise LocalProtocolError(
            "SMTP_SSL is already TLS from the first byte; STARTTLS inside TLS is not "
            "allowed (RFC 3207 §4.2)"
        )


class LMTP(SMTP, _std.LMTP):
    """:class:`smtplib.LMTP` (RFC 2033) with the same safety as :class:`SMTP`.

    ``host`` may be a Unix socket path (starting with ``/``); such a socket is
    local, like loopback. After the message data LMTP answers once per accepted
    recipient: ``sendmail()`` adds the refusals among them to its return value,
    and raises ``SMTPDataError`` only when no recipient got the message.
    ``proxy=`` is as for :class:`SMTP` (TCP only: not with a socket path).
    """

    _lmtp = True
    ehlo_msg = "lhlo"

    def __init__(
        self,
        host: str = "",
        port: int = _std.LMTP_PORT,
        local_hostname: str | None = None,
        source_address: _Address | None = None,
        timeout: float | None = _std.socket._GLOBAL_DEFAULT_TIMEOUT,  # type: ignore[attr-defined]
        *,
        allow_cleartext_auth: bool = False,
        proxy: str | Proxy | None = None,
    ) -> None:
        SMTP.__init__(
            self,
            host,
            port,
            local_hostname,
            timeout,
            source_address,
            allow_cleartext_auth=allow_cleartext_auth,
            proxy=proxy,
        )

    def connect(
        self, host: str = "localhost", port: int = 0, source_address: _Address | None = None
    ) -> tuple[int, bytes]:
        """Connect over TCP (``host:port`` works too), or to a Unix socket path."""
        if not host.startswith("/"):
            if port == _std.LMTP_PORT and host.count(":") == 1:
                # LMTP("host:port"): the port in the name wins over the
                # constructor's default (smtplib would look up "host:port").
                port = 0
            return super().connect(host, port, source_address=source_address)
        if self._proxy is not None:
            raise InvalidArgumentError(
                f"LMTP({host!r}, proxy=...): a Unix socket path cannot be reached through a "
                "proxy; drop proxy= or give the LMTP server's host and port"
            )
        self._prepare(host, 0, local=True)
        module = _socket_module()
        sock = module.socket(module.AF_UNIX, module.SOCK_STREAM)  # type: ignore[attr-defined]
        sock.settimeout(self.timeout)
        try:
            sock.connect(host)
        except OSError:
            if self.debuglevel > 0:
                self._debug("connect fail:", host)
            sock.close()
            raise
        self._attach(SocketTransport(sock, peer=host))
        return self._greeting()
