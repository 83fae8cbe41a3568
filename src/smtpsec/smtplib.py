"""Drop-in replacement for the standard library's :mod:`smtplib` that is safe by default.

Change one import and existing code keeps running, with smtpsec's defaults::

    from smtpsec import smtplib          # was: import smtplib

    with smtplib.SMTP_SSL("smtp.example.com") as s:
        s.login("ann", "secret")
        s.send_message(msg)

What changes (each item is in ``docs/migration-smtplib.md`` with its reason):

* ``SMTP_SSL(context=None)`` and ``starttls(context=None)`` verify the
  certificate chain and host name with :func:`smtpsec.tls.build_context`
  (TLS >= 1.2, certifi roots) instead of not verifying at all (R-PY-1).
* ``starttls()`` fails closed: STARTTLS missing, refused, or followed by
  injected bytes closes the connection with a :class:`~smtpsec.DowngradeError`
  that old ``except smtplib.SMTP...`` clauses also catch; afterwards EHLO is
  sent again automatically and must succeed (R-PY-2, R-PY-7, R-PY-8, R-PY-17).
* ``login()``/``auth()`` send credentials only over verified TLS, treat only
  ``235`` as success and try exactly one mechanism (R-PY-3, R-PY-4, R-PY-5).
* Commands, addresses and options with CR/LF/NUL are refused; message line
  ends are normalised, also for ``bytes`` (R-PY-9, R-PY-10).
* Every reply is bounded in size and must arrive within ``timeout`` (60 s when
  not given); EHLO says ``[127.0.0.1]`` unless told otherwise (R-PY-11, R-PY-12).
* ``set_debuglevel()`` output shows ``<redacted>`` instead of AUTH payloads.

The exception classes, constants and helpers are the standard library's own
objects, so ``except smtplib.SMTPException`` works whichever module raised.
"""

from __future__ import annotations

import smtplib as _std
import socket
import ssl
from collections.abc import Sequence
from email.message import Message
from smtplib import CRLF as CRLF
from smtplib import LMTP_PORT as LMTP_PORT
from smtplib import OLDSTYLE_AUTH as OLDSTYLE_AUTH
from smtplib import SMTP_PORT as SMTP_PORT
from smtplib import SMTP_SSL_PORT as SMTP_SSL_PORT
from smtplib import SMTPAuthenticationError as SMTPAuthenticationError
from smtplib import SMTPConnectError as SMTPConnectError
from smtplib import SMTPDataError as SMTPDataError
from smtplib import SMTPException as SMTPException
from smtplib import SMTPHeloError as SMTPHeloError
from smtplib import SMTPNotSupportedError as SMTPNotSupportedError
from smtplib import SMTPRecipientsRefused as SMTPRecipientsRefused
from smtplib import SMTPResponseException as SMTPResponseException
from smtplib import SMTPSenderRefused as SMTPSenderRefused
from smtplib import SMTPServerDisconnected as SMTPServerDisconnected
from smtplib import bCRLF as bCRLF
from smtplib import quoteaddr as quoteaddr
from smtplib import quotedata as quotedata
from typing import TYPE_CHECKING

from . import _smtplib_auth, _smtplib_send, _smtplib_tls
from ._message import check_headers
from ._smtplib_compat import WireSMTP
from ._smtplib_errors import DataRefused
from ._smtplib_io import check_address, check_options, data_payload, message_bytes
from .errors import LocalProtocolError

if TYPE_CHECKING:
    from _socket import _Address
    from smtplib import _AuthObject

    from _typeshed import ReadableBuffer, SizedBuffer, StrOrBytesPath

__all__ = [
    "SMTP",
    "SMTP_SSL",
    "SMTPAuthenticationError",
    "SMTPConnectError",
    "SMTPDataError",
    "SMTPException",
    "SMTPHeloError",
    "SMTPNotSupportedError",
    "SMTPRecipientsRefused",
    "SMTPResponseException",
    "SMTPSenderRefused",
    "SMTPServerDisconnected",
    "quoteaddr",
    "quotedata",
]


class SMTP(WireSMTP):
    """:class:`smtplib.SMTP` with verified TLS, fail-closed STARTTLS and safe AUTH.

    Every public method of :class:`smtplib.SMTP` works as documented there,
    except where ``docs/migration-smtplib.md`` says otherwise.

    Args:
        host: connect to this host at once (like smtplib; the greeting must be 220).
        port: the port (default 25; a ``host:port`` suffix also works).
        local_hostname: the EHLO name; default ``[127.0.0.1]``, never the
            machine's FQDN (R-PY-12). Validated and IDNA-encoded.
        timeout: seconds for connect, TLS handshake and each whole reply; default
            the socket module's default timeout, else 60 (never "forever", R-PY-11).
        source_address: ``(host, port)`` to bind before connecting.
        allow_cleartext_auth: let ``login()`` send credentials without verified
            TLS. Honoured only for loopback hosts (test servers); any other host
            raises :class:`~smtpsec.PolicyError` at connect time.

    Raises:
        SMTPConnectError: the greeting was not 220 (also a :class:`smtpsec.ReplyError`).
        PolicyError: ``allow_cleartext_auth=True`` for a non-loopback host.
    """

    def starttls(
        self,
        keyfile: StrOrBytesPath | None = None,
        certfile: StrOrBytesPath | None = None,
        context: ssl.SSLContext | None = None,
    ) -> tuple[int, bytes]:
        """Upgrade to TLS, required: any failure closes the connection.

        Args:
            keyfile: deprecated (removed from smtplib in 3.12): client key file.
            certfile: deprecated: client certificate chain file.
            context: used as given; default :func:`smtpsec.tls.build_context`,
                which verifies the chain and host name (R-PY-1).

        Returns:
            ``(220, text)``, after the handshake and a fresh, successful EHLO (R-PY-7).

        Raises:
            SMTPNotSupportedError: STARTTLS is not advertised; also a
                :class:`smtpsec.TLSUnavailableError` (a ``DowngradeError``).
            SMTPResponseException: STARTTLS was not answered 220; also a
                :class:`smtpsec.TLSUnavailableError`.
            ResponseInjectionError: bytes followed the 220 before the handshake.
            CertificateError: validation failed; also ``ssl.SSLCertVerificationError``.
            SMTPHeloError: the post-TLS EHLO failed (no HELO fallback, R-PY-8).
        """
        ctx = _smtplib_tls.client_context(keyfile, certfile, context)
        return _smtplib_tls.starttls(self, ctx)

    def login(
        self, user: str, password: str, *, initial_response_ok: bool = True
    ) -> tuple[int, bytes]:
        """Log in with one mechanism chosen from the post-TLS EHLO.

        Preference: SCRAM-SHA-256, SCRAM-SHA-1, PLAIN, LOGIN, then CRAM-MD5 only
        when nothing else is offered. A failure is final: no other mechanism is
        tried with the same password.

        Raises:
            InsecureAuthError: no verified TLS (R-PY-3); nothing was sent.
            SMTPNotSupportedError: the server offers no AUTH (also a
                :class:`smtpsec.CapabilityError`).
            SMTPAuthenticationError: anything but 235, including 503 (R-PY-4);
                also a :class:`smtpsec.AuthenticationError` with a ``hint``.
        """
        return _smtplib_auth.login(self, user, password, initial_response_ok=initial_response_ok)

    def auth(
        self, mechanism: str, authobject: _AuthObject, *, initial_response_ok: bool = True
    ) -> tuple[int, bytes]:
        """smtplib's low-level AUTH with a callable; same TLS and 235-only rules as login()."""
        return _smtplib_auth.auth(
            self, mechanism, authobject, initial_response_ok=initial_response_ok
        )

    def mail(self, sender: str, options: Sequence[str] = ()) -> tuple[int, bytes]:
        """MAIL FROM; the address and options are checked for injection first."""
        check_address(sender, "sender")
        checked = check_options(options, "MAIL")
        self._before_mail()
        self._accepted = []
        return super().mail(sender, checked)

    def rcpt(self, recip: str, options: Sequence[str] = ()) -> tuple[int, bytes]:
        """RCPT TO; the address and options are checked for injection first."""
        check_address(recip, "recipient")
        code, msg = super().rcpt(recip, check_options(options, "RCPT"))
        if code in (250, 251):
            self._accepted.append(recip)
        return code, msg

    def rset(self) -> tuple[int, bytes]:
        """RSET: abort the current transaction."""
        self._accepted = []
        return super().rset()

    def data(self, msg: ReadableBuffer | str) -> tuple[int, bytes]:
        """DATA with normalised line ends and dot-stuffing, also for bytes.

        Returns:
            The final reply; for LMTP the first failing per-recipient reply, or
            the first reply when all succeeded.

        Raises:
            SMTPDataError: DATA was not answered 354 (also a :class:`smtpsec.ReplyError`).
            UnicodeEncodeError: a ``str`` message that is not ASCII (as smtplib),
                raised before DATA is sent.
        """
        payload = data_payload(message_bytes(msg))
        self.putcmd("data")
        code, repl = self.getreply()
        if self.debuglevel > 0:
            self._debug("data:", (code, repl))
        if code != 354:
            raise DataRefused(
                f"{self._peer} refused DATA with {code}",
                code=code,
                msg=repl,
                tls=self._tls is not None,
            )
        self.send(payload)
        finals = self._final_replies()
        if self.debuglevel > 0:
            self._debug("data:", finals)
        failed = [reply for reply in finals if reply[0] != 250]
        return failed[0] if failed else finals[0]

    def sendmail(
        self,
        from_addr: str,
        to_addrs: str | Sequence[str],
        msg: SizedBuffer | str,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> dict[str, tuple[int, bytes]]:
        """Send one message with smtplib's contract; safe and pipelined on the wire.

        Addresses and options are checked before anything is sent (R-PY-9); line
        ends are normalised (R-PY-10); with PIPELINING the envelope goes out in
        one write. Mail over a non-loopback connection without TLS emits an
        :class:`~smtpsec.InsecureConfigurationWarning` once per connection.

        Returns:
            The refused recipients, ``{address: (code, msg)}``, like smtplib.
        """
        return _smtplib_send.sendmail(self, from_addr, to_addrs, msg, mail_options, rcpt_options)

    def send_message(
        self,
        msg: Message,
        from_addr: str | None = None,
        to_addrs: str | Sequence[str] | None = None,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> dict[str, tuple[int, bytes]]:
        """smtplib's ``send_message``, refusing header injection first."""
        check_headers(msg)
        return super().send_message(msg, from_addr, to_addrs, mail_options, rcpt_options)


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

    Raises:
        CertificateError: validation failed; also ``ssl.SSLCertVerificationError``.
        TLSVersionError: the negotiated TLS version is below 1.2.
    """

    default_port = SMTP_SSL_PORT

    def __init__(
        self,
        host: str = "",
        port: int = 0,
        local_hostname: str | None = None,
        keyfile: StrOrBytesPath | None = None,
        certfile: StrOrBytesPath | None = None,
        timeout: float | None = None,
        source_address: _Address | None = None,
        context: ssl.SSLContext | None = None,
        *,
        allow_cleartext_auth: bool = False,
    ) -> None:
        self.keyfile = keyfile
        self.certfile = certfile
        self.context = _smtplib_tls.client_context(keyfile, certfile, context)
        SMTP.__init__(
            self,
            host,
            port,
            local_hostname,
            timeout,
            source_address,
            allow_cleartext_auth=allow_cleartext_auth,
        )

    def _get_socket(self, host: str, port: int, timeout: float | None) -> socket.socket:
        if self.debuglevel > 0:
            self._debug("connect: to", (host, port), self.source_address)
        raw = socket.create_connection((host, port), timeout, self.source_address)
        return _smtplib_tls.handshake(self, raw, self.context, implicit=True)

    def starttls(
        self,
        keyfile: StrOrBytesPath | None = None,
        certfile: StrOrBytesPath | None = None,
        context: ssl.SSLContext | None = None,
    ) -> tuple[int, bytes]:
        """Refused: this connection is TLS from the first byte."""
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
    """

    def __init__(
        self,
        host: str = "",
        port: int = LMTP_PORT,
        local_hostname: str | None = None,
        source_address: _Address | None = None,
        timeout: float | None = None,
        *,
        allow_cleartext_auth: bool = False,
    ) -> None:
        SMTP.__init__(
            self,
            host,
            port,
            local_hostname,
            timeout,
            source_address,
            allow_cleartext_auth=allow_cleartext_auth,
        )

    def connect(
        self, host: str = "localhost", port: int = 0, source_address: _Address | None = None
    ) -> tuple[int, bytes]:
        """Connect over TCP, or to a Unix socket when ``host`` starts with ``/``."""
        if not host.startswith("/"):
            return super().connect(host, port, source_address=source_address)
        self._prepare(host, 0, local=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(host)
        except OSError:
            if self.debuglevel > 0:
                self._debug("connect fail:", host)
            sock.close()
            raise
        self.sock = sock
        code, msg = self.getreply()
        if self.debuglevel > 0:
            self._debug("connect:", msg)
        return code, msg

    def _final_replies(self) -> list[tuple[int, bytes]]:
        # RFC 2033 §4.2: one reply per recipient accepted by RCPT, in order.
        return [self.getreply() for _ in range(max(1, len(self._accepted)))]
