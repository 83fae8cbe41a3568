"""The drop-in's connection: socket, greeting, raw commands and replies, EHLO/HELO.

:class:`_Session` is the base of :class:`~smtpsec.smtplib.SMTP`. It owns the
engine's :class:`Wire` (so every command goes through the engine's checks and
its unsolicited-reply check), maps engine failures to smtplib's exception
classes, and keeps smtplib's EHLO bookkeeping (``esmtp_features``,
``ehlo_resp``), including the EHLO required inside TLS before anything else.
"""

from __future__ import annotations

import contextlib
import datetime
import smtplib as _std
import sys
from typing import TYPE_CHECKING, ClassVar, TypeVar, cast

from .._advice import DROP_IN
from .._engine import (
    IO,
    Close,
    Wire,
    perform,
    phases,
    run_sync,
)
from ..errors import (
    ConnectError,
    InvalidArgumentError,
    LocalProtocolError,
    PolicyError,
    RemoteProtocolError,
)
from ..errors import TimeoutError as DeadlineError
from ..guard import Guard
from ..modes import Security
from ..policy import Attempt, Policy, is_loopback
from ..sansio import (
    ClientConnection,
    Command,
    Extensions,
    Reply,
    State,
    encode_command,
)
from ..tls import TLSInfo
from ..transports import Proxy, Route, SocketTransport, as_proxy, open_route
from . import _errors as errors
from ._commands import (
    checked_ehlo_name,
    disconnect_text,
    loggable,
    parse_line,
    reply_bytes,
    resolve_timeout,
    stdlib_wording,
)

if TYPE_CHECKING:
    import socket
    from _socket import _Address

    from _typeshed import ReadableBuffer


T = TypeVar("T")

#: Commands that may precede the post-STARTTLS EHLO (R-PY-7).
_BEFORE_EHLO = frozenset({"EHLO", "HELO", "LHLO", "QUIT", "NOOP", "RSET", "HELP", "STARTTLS"})
#: A server on the implicit-TLS port that is spoken to in plaintext waits for a
#: ClientHello and never greets: say so after this long, not after the timeout.
_IMPLICIT_PORT_GREETING_WAIT = 5.0
#: The port where that happens (RFC 8314 §7.3: submissions, implicit TLS).
_IMPLICIT_TLS_PORT = _std.SMTP_SSL_PORT


def _socket_module() -> object:
    # smtplib users (and CPython's own test suite) replace ``smtplib.socket``;
    # look it up on the drop-in module at call time so that keeps working.
    return sys.modules["smtpsec.smtplib"].socket


class _Session(_std.SMTP):
    """The connection, the raw command/reply API and EHLO/HELO; see :class:`SMTP`."""

    _lmtp: ClassVar[bool] = False

    def __init__(
        self,
        host: str = "",
        port: int = 0,
        local_hostname: str | None = None,
        timeout: float | None = _std.socket._GLOBAL_DEFAULT_TIMEOUT,  # type: ignore[attr-defined]
        source_address: _Address | None = None,
        *,
        allow_cleartext_auth: bool = False,
        proxy: str | Proxy | None = None,
    ) -> None:
        # Not smtplib's __init__: it would call socket.getfqdn() (slow, leaks the
        # host name) and raise a bare SMTPConnectError.
        self._timeout_argument: object = timeout
        self.timeout = resolve_timeout(timeout)
        self.esmtp_features = {}
        self.command_encoding = "ascii"
        self.source_address = source_address
        self._auth_challenge_count = 0
        self.local_hostname = "[127.0.0.1]" if local_hostname is None else local_hostname
        self._policy = Policy(allow_cleartext_auth=allow_cleartext_auth)
        self._proxy = as_proxy(proxy)
        self._wire: Wire | None = None
        self._host = host
        self._port = 0
        self._local = False
        self._reset_session()
        if host:
            code, msg = self.connect(host, port)
            if code != 220:
                self.close()
                raise errors.ConnectRefused(
                    f"{host} greeted with {code} instead of 220: it does not accept mail "
                    "from this client now",
                    code=code,
                    msg=msg,
                    tls=False,
                )

    # ------------------------------------------------------------------ state

    def _reset_session(self) -> None:
        self._tls: TLSInfo | None = None
        self._authenticated = False
        self._warned_cleartext = False
        self._secret = False
        self._needs_rset = False
        self._accepted: list[str] = []
        self.helo_resp = self.ehlo_resp = None
        self.esmtp_features = {}
        self.does_esmtp = False
        self.file = None

    @property
    def sock(self) -> socket.socket | None:  # type: ignore[override]
        """The connection's socket (an :class:`ssl.SSLSocket` inside TLS), or ``None``."""
        transport = self._wire.transport if self._wire is not None else None
        return transport.socket if isinstance(transport, SocketTransport) else None

    @property
    def _peer(self) -> str:
        return f"{self._host}:{self._port}" if self._port else self._host

    def _guard(self, tls: Security) -> Guard:
        return Guard(
            self._policy, Attempt(self._port or self.default_port, tls), self._host, advice=DROP_IN
        )

    def _debug(self, *args: object) -> None:
        # The format of smtplib's _print_debug(), which typeshed does not declare.
        if self.debuglevel > 1:
            print(datetime.datetime.now().time(), *args, file=sys.stderr)
        else:
            print(*args, file=sys.stderr)

    def _require_wire(self) -> Wire:
        if self._wire is None:
            raise errors.ServerDisconnected("please run connect() first")
        return self._wire

    @property
    def _extensions(self) -> Extensions:
        """The capabilities of the latest EHLO (none after HELO or before EHLO)."""
        wire = self._wire
        found = wire.conn.extensions if wire is not None else None
        return found if found is not None else Extensions()

    def _run(self, steps: IO[T]) -> T:
        """Drive engine steps; failures become the drop-in's hybrid exceptions.

        A broken connection (lost, timed out, or a reply the engine refused to
        parse, after which it closed the connection) is closed here too, so
        nothing can continue on it. Errors that leave the dialogue in step (a
        cancelled AUTH exchange) leave the connection open, as smtplib does.
        """
        try:
            return run_sync(steps)
        except (errors.ServerDisconnected, errors.ReplyTimeout, errors.MalformedReply):
            self.close()
            raise
        except DeadlineError as exc:
            self.close()
            raise errors.ReplyTimeout(str(exc)) from exc
        except ConnectError as exc:
            self.close()
            raise errors.ServerDisconnected(disconnect_text(exc)) from exc
        except RemoteProtocolError as exc:
            if self._wire is None or self._wire.conn.state is not State.CLOSED:
                raise
            self.close()
            # smtplib reports an over-long line as SMTPResponseException(500, ...).
            code = 500 if "longer than" in str(exc) else -1
            raise errors.MalformedReply(
                f"{self._peer}: {exc}", code=code, msg=str(exc).encode("utf-8", "replace")
            ) from exc

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
            OSError: the connection could not be made (smtplib's errors).
        """
        if source_address:
            self.source_address = source_address
        if not port and host.find(":") == host.rfind(":"):
            head, colon, tail = host.rpartition(":")
            if colon:
                try:
                    port = int(tail)
                except ValueError:
                    raise OSError("nonnumeric port") from None
                host = head
        port = port or self.default_port
        sys.audit("smtplib.connect", self, host, port)
        self._prepare(host, port, local=is_loopback(host))
        if self._proxy is not None:  # smtpsec's keyword: the proxy resolves the name
            source = cast("tuple[str, int] | None", self.source_address)  # smtplib's (host, port)
            route = Route(proxy=self._proxy, source_address=source)
            transport, _address = open_route(host, port, timeout=self.timeout, route=route)
        else:
            transport = SocketTransport(
                self._get_socket(host, port, self._socket_timeout()), peer=self._peer
            )
        self._attach(transport)
        return self._greeting()

    def _socket_timeout(self) -> float | None:
        """What ``_get_socket`` passes on: smtplib's sentinel keeps the socket default."""
        given = self._timeout_argument
        if given is None or isinstance(given, (int, float)):
            return self.timeout
        return given  # type: ignore[return-value]  # the socket module's sentinel

    def _prepare(self, host: str, port: int, *, local: bool) -> None:
        """Check the policy for a new connection and forget the previous one."""
        if self._policy.allow_cleartext_auth and not local:
            raise PolicyError(
                f"allow_cleartext_auth=True is honoured only for loopback test servers, "
                f"not for {host!r}; use SMTP_SSL or starttls() so credentials are encrypted"
            )
        if self._wire is not None:
            self.close()
        self._host, self._port, self._local = host, port, local
        self._reset_session()

    def _get_socket(self, host: str, port: int, timeout: float | None) -> socket.socket:
        if self.debuglevel > 0:
            self._debug("connect: to", (host, port), self.source_address)
        create = _socket_module().create_connection  # type: ignore[attr-defined]
        return create((host, port), timeout, self.source_address)  # type: ignore[no-any-return]

    def _attach(self, transport: SocketTransport) -> None:
        self._wire = Wire(
            transport,
            ClientConnection(tls_active=transport.tls is not None, require_tls=False),
            timeout=self.timeout,
            host=self._host,
            port=self._port,
            advice=DROP_IN,
        )
        self._wire.observer = self

    def _greeting(self) -> tuple[int, bytes]:
        wire = self._require_wire()
        implicit = wire.transport.tls is not None
        wait = wire.timeout
        if not implicit and self._port == _IMPLICIT_TLS_PORT:
            wire.timeout = min(wait, _IMPLICIT_PORT_GREETING_WAIT)
        try:
            reply = self._run(phases.greeting(wire, implicit=implicit))
        except errors.MalformedReply as exc:
            # smtplib raises SMTPConnectError for a greeting it cannot use.
            raise errors.BadGreeting(
                str(exc), code=exc.smtp_code, msg=exc.smtp_error, tls=implicit
            ) from exc
        finally:
            if self._wire is not None:
                self._wire.timeout = wait
        msg = reply_bytes(reply)
        if self.debuglevel > 0:
            self._debug("connect:", repr(msg))
        return reply.code, msg

    def __exit__(self, *exc_info: object) -> None:
        """QUIT and close, as smtplib; a QUIT not answered 221 raises :class:`QuitRefused`."""
        try:
            code, message = self.docmd("QUIT")
            if code != 221:
                raise errors.QuitRefused(
                    f"{self._peer} answered QUIT with {code} instead of 221; everything "
                    "before it was answered already, and the connection is closed",
                    code=code,
                    msg=message,
                    tls=self._tls is not None,
                )
        except _std.SMTPServerDisconnected:  # gone already (or timed out): nothing to say
            pass
        finally:
            self.close()

    def close(self) -> None:
        """Close the connection; TLS state, capabilities and login are forgotten."""
        wire, self._wire = self._wire, None
        if wire is not None:
            wire.conn.close()
            with contextlib.suppress(OSError):
                run_sync(_close(wire))
        self._reset_session()

    # ------------------------------------------------------------------ wire

    def send(self, s: ReadableBuffer | str) -> None:
        """Send raw data through the connection (smtplib's low-level API).

        Debug output shows AUTH payloads as ``<redacted>``. Prefer
        :meth:`putcmd`/:meth:`docmd`: raw bytes bypass the command rules.
        """
        if self.debuglevel > 0:
            self._debug("send:", repr(loggable(s) if self._secret else s))
        wire = self._require_wire()
        data = s.encode(self.command_encoding) if isinstance(s, str) else bytes(s)
        sys.audit("smtplib.send", self, data)
        wire.queue_content(data)
        self._run(wire.flush())

    def putcmd(self, cmd: str, args: str = "") -> None:
        """Send one command; CR, LF, NUL and other controls are refused.

        Raises:
            InvalidArgumentError: (a ``ValueError``) nothing was sent.
            LocalProtocolError: the command is out of sequence (e.g. ``RCPT``
                before ``MAIL``); nothing was sent.
        """
        line = cmd if args == "" else f"{cmd} {args}"
        self._send_command(line, None)

    def _send_command(self, line: str, command: Command | None) -> None:
        wire = self._require_wire()
        try:
            command = command if command is not None else parse_line(line)
            encode_command(command)  # the engine's rules first: a control is never "just" ASCII
        except InvalidArgumentError as exc:
            raise stdlib_wording(line, exc) from None
        line.encode(self.command_encoding)  # smtplib's UnicodeEncodeError, before anything
        if command.verb not in _BEFORE_EHLO:
            self._ehlo_inside_tls()
        try:
            wire.queue(command)
        except InvalidArgumentError as exc:
            raise stdlib_wording(line, exc) from None
        sys.audit("smtplib.send", self, f"{line}\r\n".encode(self.command_encoding))
        self._run(wire.flush())

    def getreply(self) -> tuple[int, bytes]:
        """Read one whole reply: bounded in size and time (R-PY-11).

        Raises:
            SMTPServerDisconnected: the connection is gone (also a
                :class:`smtpsec.ConnectError`); :class:`ReplyTimeout` when the
                reply was not complete within ``timeout``. The connection is
                closed.
            SMTPResponseException: :class:`MalformedReply`, a reply breaking the
                grammar or a size limit; the connection is closed.
        """
        reply = self._read_reply()
        return reply.code, reply_bytes(reply)

    def _read_reply(self) -> Reply:
        wire = self._require_wire()
        if wire.conn.awaiting == 0:
            raise LocalProtocolError(
                "getreply() with no command awaiting a reply: send one with putcmd() first "
                "(raw send() bypasses the reply bookkeeping)"
            )
        return self._run(wire.read()).reply

    # set_debuglevel() output: the engine tells the drop-in about every command
    # and reply, whichever step sent or read it (WireObserver).

    def sent(self, command: Command) -> None:
        """Print a sent command as smtplib does (secrets redacted)."""
        if self.debuglevel > 0:
            self._debug("send:", repr(command.loggable() + "\r\n"))

    def received(self, reply: Reply) -> None:
        """Print a received reply as smtplib does."""
        if self.debuglevel > 0:
            last = len(reply.lines) - 1
            for index, line in enumerate(reply.lines or ("",)):
                sep = "-" if index < last else " "
                self._debug("reply:", repr(f"{reply.code}{sep}{line}\r\n".encode()))
            self._debug(f"reply: retcode ({reply.code}); Msg: {reply_bytes(reply)!a}")

    def _command(self, command: Command, line: str) -> Reply:
        """Send ``command`` (``line`` is how smtplib would have written it) and read its reply."""
        self._send_command(line, command)
        return self._read_reply()

    # ------------------------------------------------------------------ EHLO

    def ehlo(self, name: str = "") -> tuple[int, bytes]:
        """Send EHLO (LHLO for LMTP); fills ``esmtp_features`` from the engine's parse."""
        self.esmtp_features = {}
        given = name or self.local_hostname
        try:
            checked = checked_ehlo_name(given)
        except InvalidArgumentError as exc:
            raise stdlib_wording(f"{self.ehlo_msg} {given}", exc) from None
        reply = self._command(Command(self.ehlo_msg.upper(), checked), f"{self.ehlo_msg} {checked}")
        msg = reply_bytes(reply)
        self.ehlo_resp = msg
        if reply.code != 250:
            return reply.code, msg
        self.does_esmtp = True
        self.esmtp_features = {
            keyword.lower(): " ".join(params) for keyword, params in self._extensions.items()
        }
        return reply.code, msg

    def helo(self, name: str = "") -> tuple[int, bytes]:
        """Send HELO (no extensions, so no STARTTLS and no AUTH afterwards)."""
        given = name or self.local_hostname
        try:
            checked = checked_ehlo_name(given)
        except InvalidArgumentError as exc:
            raise stdlib_wording(f"helo {given}", exc) from None
        reply = self._command(Command("HELO", checked), f"helo {checked}")
        self.helo_resp = reply_bytes(reply)
        return reply.code, self.helo_resp

    def _ehlo_inside_tls(self) -> None:
        """R-PY-7: inside TLS, nothing but EHLO comes before the capabilities are known.

        starttls() does not send EHLO itself: as in smtplib, the caller's own
        ehlo() (or the one login()/sendmail() send) is the only one, because
        some servers refuse a second. Any other command sent first gets one.
        """
        if self._tls is not None and self.ehlo_resp is None and self.helo_resp is None:
            self._require_ehlo()

    def _require_ehlo(self) -> None:
        """EHLO, and nothing else will do (inside TLS, or before STARTTLS; R-PY-8)."""
        code, msg = self.ehlo()
        if 200 <= code <= 299:
            return
        tls = self._tls is not None
        self.close()
        raise errors.EhloRefused(
            f"{self._peer} answered EHLO with {code}; smtpsec does not fall back to HELO "
            "here, because HELO can neither offer STARTTLS nor protect AUTH. The "
            "connection was closed",
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
        code, msg = self.ehlo()
        if 200 <= code <= 299:
            return
        code, msg = self.helo()
        if not 200 <= code <= 299:
            raise errors.EhloRefused(
                f"{self._peer} refused both EHLO and HELO ({code})", code=code, msg=msg, tls=False
            )


def _close(wire: Wire) -> IO[None]:
    yield from perform(Close(wire.transport))
