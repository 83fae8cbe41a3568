"""The wire layer of the smtplib drop-in: connect, send, read bounded replies, EHLO.

:class:`WireSMTP` is the private base of :class:`smtpsec.smtplib.SMTP`. It keeps
smtplib's public surface (``connect``, ``send``, ``putcmd``, ``getreply``,
``ehlo``...) and replaces what is unsafe underneath: no ``socket.getfqdn()``
(R-PY-12), a bounded default timeout and bounded, deadline-limited replies
(R-PY-11), control characters refused in every command (R-PY-9), and AUTH
payloads redacted in ``set_debuglevel()`` output. The policy decisions (TLS,
AUTH, mail) live in the public subclass and its helper modules.
"""

from __future__ import annotations

import contextlib
import datetime
import smtplib as _std
import sys
import warnings
from collections.abc import Iterator
from smtplib import CRLF, SMTPHeloError, SMTPServerDisconnected
from typing import TYPE_CHECKING

from ._smtplib_errors import ConnectRefused, EhloRefused
from ._smtplib_io import ReplyReader, check_command, loggable, resolve_timeout
from .errors import InsecureConfigurationWarning, PolicyError
from .guard import Guard
from .policy import Attempt, Policy, TLSStart, is_loopback
from .sansio import Extensions, Reply, ehlo_name, parse_ehlo
from .tls import TLSInfo

if TYPE_CHECKING:
    from _socket import _Address

    from _typeshed import ReadableBuffer

__all__ = ["WireSMTP", "reply_bytes"]


def reply_bytes(reply: Reply) -> bytes:
    """smtplib's rendering of a reply: each line's text, stripped, joined by LF."""
    return b"\n".join(line.strip(" \t\r\n").encode("utf-8") for line in reply.lines)


class WireSMTP(_std.SMTP):
    """smtplib's SMTP with a safe wire layer (private base; see ``smtpsec.smtplib.SMTP``)."""

    _host: str
    _port: int
    _local: bool
    _policy: Policy
    _reader: ReplyReader | None
    _last_reply: Reply | None
    _tls: TLSInfo | None
    _extensions: Extensions | None
    _authenticated: bool
    _warned_cleartext: bool
    _secret: bool
    _accepted: list[str]
    _auth_challenge_count: int

    def __init__(
        self,
        host: str = "",
        port: int = 0,
        local_hostname: str | None = None,
        timeout: float | None = None,
        source_address: _Address | None = None,
        *,
        allow_cleartext_auth: bool = False,
    ) -> None:
        # Not super().__init__(): it would call socket.getfqdn() (slow, leaks the
        # host name) and raise a bare SMTPConnectError.
        self._host = host
        self._port = 0
        self._local = False
        self.timeout = resolve_timeout(timeout)
        self.esmtp_features = {}
        self.command_encoding = "ascii"
        self.source_address = source_address
        self._auth_challenge_count = 0
        self.local_hostname = ehlo_name(local_hostname)
        self._policy = Policy(allow_cleartext_auth=allow_cleartext_auth)
        self._reset_session()
        if host:
            code, msg = self.connect(host, port)
            if code != 220:
                self.close()
                raise ConnectRefused(
                    f"{host} greeted with {code} instead of 220: it does not accept mail "
                    "from this client now",
                    code=code,
                    msg=msg,
                    tls=False,
                )

    # ------------------------------------------------------------------ session state

    def _reset_session(self) -> None:
        self._reader = None
        self._last_reply = None
        self._tls = None
        self._extensions = None
        self._authenticated = False
        self._warned_cleartext = False
        self._secret = False
        self._accepted = []

    @property
    def _peer(self) -> str:
        return f"{self._host}:{self._port}" if self._port else self._host

    def _guard(self, tls: TLSStart) -> Guard:
        return Guard(self._policy, Attempt(self._port or self.default_port, tls), self._host)

    def _debug(self, *args: object) -> None:
        # The format of smtplib's _print_debug(), which typeshed does not declare.
        if self.debuglevel > 1:
            print(datetime.datetime.now().time(), *args, file=sys.stderr)
        else:
            print(*args, file=sys.stderr)

    def _prepare(self, host: str, port: int, *, local: bool) -> None:
        """Check the policy for a new connection and forget the previous one."""
        if self._policy.allow_cleartext_auth and not local:
            raise PolicyError(
                f"allow_cleartext_auth=True is honoured only for loopback test servers, "
                f"not for {host!r}; use SMTP_SSL or starttls() so credentials are encrypted"
            )
        if self.sock is not None:
            self.close()
        self._host, self._port, self._local = host, port, local
        self._reset_session()

    @contextlib.contextmanager
    def _redacting(self) -> Iterator[None]:
        """While active, debug output shows what is sent as ``<redacted>``."""
        self._secret = True
        try:
            yield
        finally:
            self._secret = False

    def _before_mail(self) -> None:
        """Warn once per connection when a message is about to leave without TLS."""
        if self._tls is None and not self._local and not self._warned_cleartext:
            self._warned_cleartext = True
            warnings.warn(
                f"sending mail to {self._peer} without TLS: anyone on the path can read and "
                "change it. Call starttls() after connecting, or use SMTP_SSL",
                InsecureConfigurationWarning,
                stacklevel=4,
            )

    # ------------------------------------------------------------------ connection

    def connect(
        self, host: str = "localhost", port: int = 0, source_address: _Address | None = None
    ) -> tuple[int, bytes]:
        """Connect to ``host:port`` and read the greeting (smtplib semantics).

        Returns:
            ``(code, greeting text)``; unlike the constructor, a non-220 code is
            returned, not raised (as in smtplib).

        Raises:
            PolicyError: ``allow_cleartext_auth=True`` and ``host`` is not loopback.
        """
        if not port and host.find(":") == host.rfind(":"):
            head, colon, tail = host.rpartition(":")
            if colon:
                try:
                    port = int(tail)
                except ValueError:
                    raise OSError("nonnumeric port") from None
                host = head
        port = port or self.default_port
        self._prepare(host, port, local=is_loopback(host))
        return super().connect(host, port, source_address)

    def close(self) -> None:
        """Close the connection; TLS state, capabilities and login are forgotten."""
        try:
            super().close()
        finally:
            self._reset_session()

    def _quit_quietly(self) -> None:
        with contextlib.suppress(OSError):
            self.docmd("QUIT")
        self.close()

    def send(self, s: ReadableBuffer | str) -> None:
        """Send raw data; debug output shows AUTH payloads as ``<redacted>``."""
        if self.debuglevel > 0:
            shown = s if not self._secret else loggable(s if isinstance(s, str) else bytes(s))
            self._debug("send:", repr(shown))
        sock = self.sock
        if sock is None:
            raise SMTPServerDisconnected("please run connect() first")
        data = s.encode(self.command_encoding) if isinstance(s, str) else bytes(s)
        sys.audit("smtplib.send", self, data)
        try:
            sock.sendall(data)
        except OSError:
            self.close()
            raise SMTPServerDisconnected("Server not connected") from None

    def putcmd(self, cmd: str, args: str = "") -> None:
        """Send one command; CR, LF, NUL and other controls are refused.

        Raises:
            InvalidArgumentError: (a ``ValueError``) nothing was sent.
        """
        line = cmd if args == "" else f"{cmd} {args}"
        check_command(line)
        self.send(f"{line}{CRLF}")

    def _read_reply(self) -> Reply:
        sock = self.sock
        if sock is None:
            raise SMTPServerDisconnected("please run connect() first")
        if self._reader is None:
            self._reader = ReplyReader()
        try:
            reply = self._reader.read(sock, self.timeout, self._peer)
        except SMTPServerDisconnected:
            self.close()
            raise
        except OSError as exc:
            self.close()
            raise SMTPServerDisconnected(f"Connection unexpectedly closed: {exc}") from exc
        self._last_reply = reply
        if self.debuglevel > 0:
            last = len(reply.lines) - 1
            for index, line in enumerate(reply.lines):
                sep = "-" if index < last else " "
                self._debug("reply:", repr(f"{reply.code}{sep}{line}\r\n".encode()))
            self._debug(f"reply: retcode ({reply.code}); Msg: {reply_bytes(reply)!a}")
        return reply

    def getreply(self) -> tuple[int, bytes]:
        """Read one whole reply: bounded in size and time.

        Raises:
            SMTPServerDisconnected: the connection is gone; subclasses
                ``ReplyTimeout`` (also :class:`smtpsec.TimeoutError`) when the
                reply was not complete within ``timeout``, and ``MalformedReply``
                (also :class:`smtpsec.ProtocolError`) for bad grammar or a reply
                over a size limit. The connection is closed in every case.
        """
        reply = self._read_reply()
        return reply.code, reply_bytes(reply)

    def _final_replies(self) -> list[tuple[int, bytes]]:
        """The reply (one per accepted recipient, for LMTP) after the message data."""
        return [self.getreply()]

    # ------------------------------------------------------------------ EHLO

    def ehlo(self, name: str = "") -> tuple[int, bytes]:
        """Send EHLO; fills smtplib's ``esmtp_features`` and smtpsec's parsed extensions."""
        self._extensions = None
        code, msg = super().ehlo(name)
        if code == 250 and self._last_reply is not None:
            self._extensions = parse_ehlo(self._last_reply)[1]
        return code, msg

    def _require_ehlo(self) -> None:
        code, msg = self.ehlo()
        if code != 250:
            tls = self._tls is not None
            self.close()
            raise EhloRefused(
                f"{self._peer} answered EHLO with {code}; smtpsec does not fall back to "
                "HELO here, because HELO can neither offer STARTTLS nor AUTH. "
                "The connection was closed",
                code=code,
                msg=msg,
                tls=tls,
            )

    def ehlo_or_helo_if_needed(self) -> None:
        """EHLO if not done yet; HELO only as a plaintext fallback, never inside TLS."""
        if self.helo_resp is not None or self.ehlo_resp is not None:
            return
        if self._tls is not None:
            self._require_ehlo()
            return
        code, _ = self.ehlo()
        if not 200 <= code <= 299:
            code, resp = self.helo()
            if not 200 <= code <= 299:
                raise SMTPHeloError(code, resp)
