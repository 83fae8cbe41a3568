"""``SMTP``, ``SMTP_SSL`` and ``LMTP``: smtplib's classes as a facade over the engine.

Every method keeps smtplib's contract step by step (what it sends, what it
returns, which exception class it raises), but the work is the engine's: the
Wire owns the socket and checks for unsolicited replies before each flight,
the engine parses and bounds replies, validates every command with the one
character and address rule set, runs the one STARTTLS switch and the one AUTH
loop, and sends mail with the native transaction engine. The guard decides,
with its fixes worded for drop-in users (:data:`smtpsec._advice.DROP_IN`).
"""

from __future__ import annotations

import contextlib
import datetime
import smtplib as _std
import ssl
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import replace
from email.message import Message
from typing import TYPE_CHECKING, ClassVar, TypeVar

from .. import auth as sasl
from .._advice import DROP_IN
from .._engine import (
    IO,
    Close,
    PreparedMessage,
    Wire,
    authenticate,
    check_headers,
    emit,
    envelope_from_headers,
    flatten,
    perform,
    phases,
    prepare_message,
    run_sync,
    run_transactions,
)
from ..errors import (
    AuthenticationError,
    CapabilityError,
    CertificateError,
    ConnectError,
    InsecureConfigurationWarning,
    InvalidArgumentError,
    LocalProtocolError,
    PolicyError,
    RecipientsRefused,
    RemoteProtocolError,
    ReplyError,
    SenderRefused,
    SMTPSecError,
    TLSUnavailableError,
    TLSVersionError,
)
from ..errors import TimeoutError as DeadlineError
from ..guard import Guard
from ..modes import Security
from ..policy import Attempt, Policy, is_loopback
from ..sansio import (
    ClientConnection,
    Command,
    DataEncoder,
    Extensions,
    Reply,
    State,
    encode_command,
)
from ..sending import SendOptions, SendResult
from ..tls import TLSInfo, build_context, session_info
from ..transports import AnyTransport, SocketTransport
from . import _errors as errors
from ._commands import (
    address_command,
    checked_ehlo_name,
    parse_line,
    parse_options,
    reply_bytes,
    resolve_timeout,
    stdlib_wording,
)

if TYPE_CHECKING:
    import socket
    from _socket import _Address
    from smtplib import _AuthObject

    from _typeshed import ReadableBuffer, SizedBuffer, StrOrBytesPath

__all__ = ["LMTP", "SMTP", "SMTP_SSL"]

T = TypeVar("T")

#: smtpsec's order, plus CRAM-MD5 as the last resort: smtplib code relied on it,
#: and inside verified TLS (which login() requires) it exposes nothing extra.
_LOGIN_PREFERENCE = (*sasl.DEFAULT_PREFERENCE, "CRAM-MD5")
#: Commands that may precede the post-STARTTLS EHLO (R-PY-7).
_BEFORE_EHLO = frozenset({"EHLO", "HELO", "LHLO", "QUIT", "NOOP", "RSET", "HELP", "STARTTLS"})
#: A server on the implicit-TLS port that is spoken to in plaintext waits for a
#: ClientHello and never greets: say so after this long, not after the timeout.
_IMPLICIT_PORT_GREETING_WAIT = 5.0


def _socket_module() -> object:
    # smtplib users (and CPython's own test suite) replace ``smtplib.socket``;
    # look it up on the drop-in module at call time so that keeps working.
    return sys.modules["smtpsec.smtplib"].socket


class SMTP(_std.SMTP):
    """:class:`smtplib.SMTP` with verified TLS, fail-closed STARTTLS and safe AUTH.

    Every public method of :class:`smtplib.SMTP` works as documented there,
    except where ``docs/migration-smtplib.md`` says otherwise.

    Args:
        host: connect to this host at once (like smtplib; the greeting must be 220).
        port: the port (default 25; a ``host:port`` suffix also works).
        local_hostname: the EHLO name; default ``[127.0.0.1]``, never the
            machine's FQDN (R-PY-12). Validated and IDNA-encoded when used.
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

    _lmtp: ClassVar[bool] = False
    _implicit: ClassVar[bool] = False

    def __init__(
        self,
        host: str = "",
        port: int = 0,
        local_hostname: str | None = None,
        timeout: float | None = _std.socket._GLOBAL_DEFAULT_TIMEOUT,  # type: ignore[attr-defined]
        source_address: _Address | None = None,
        *,
        allow_cleartext_auth: bool = False,
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
            raise errors.ServerDisconnected(_disconnect_text(exc)) from exc
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
        sock = self._get_socket(host, port, self._socket_timeout())
        self._attach(SocketTransport(sock, peer=self._peer))
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
        if not implicit and self._port == _std.SMTP_SSL_PORT:
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
            self._debug("send:", repr(_loggable(s) if self._secret else s))
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
        line.encode(self.command_encoding)  # smtplib's UnicodeEncodeError, before anything
        try:
            command = command if command is not None else parse_line(line)
        except InvalidArgumentError as exc:
            raise stdlib_wording(line, exc) from None
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

    # ------------------------------------------------------------------ TLS

    def starttls(
        self,
        keyfile: StrOrBytesPath | None = None,
        certfile: StrOrBytesPath | None = None,
        context: ssl.SSLContext | None = None,
    ) -> tuple[int, bytes]:
        """Upgrade to TLS, required: any failure closes the connection.

        As in smtplib, no EHLO is sent after the handshake: the next
        :meth:`ehlo` (or the implicit one in :meth:`login` and
        :meth:`sendmail`) asks again, and nothing learnt before TLS is kept.

        Args:
            keyfile: deprecated (removed from smtplib in 3.12): client key file.
            certfile: deprecated: client certificate chain file.
            context: used as given; default :func:`smtpsec.tls.build_context`,
                which verifies the chain and host name (R-PY-1).

        Returns:
            ``(220, text)``.

        Raises:
            SMTPNotSupportedError: STARTTLS is not advertised; also a
                :class:`smtpsec.TLSUnavailableError` (a ``DowngradeError``).
            SMTPResponseException: STARTTLS was not answered 220; also a
                :class:`smtpsec.TLSUnavailableError`.
            ResponseInjectionError: bytes followed the 220 before the handshake.
            CertificateVerifyFailed: validation failed; also ``ssl.SSLCertVerificationError``.
        """
        ctx = client_context(keyfile, certfile, context)
        if self._tls is None and self.helo_resp is None and self.ehlo_resp is None:
            self._require_ehlo()  # no HELO fallback: HELO cannot offer STARTTLS (R-PY-8)
        if self._tls is not None:
            raise LocalProtocolError(
                "this connection already uses TLS; STARTTLS inside TLS is not allowed "
                "(RFC 3207 §4.2)"
            )
        wire = self._require_wire()
        guard = self._guard(Security.STARTTLS)
        try:
            guard.after_ehlo(self._extensions, tls=False)
        except TLSUnavailableError as exc:
            self.close()
            raise errors.StartTLSNotOffered(str(exc)) from None
        with self._handshake_errors():
            try:
                reply, info = self._run(phases.starttls(wire, guard, ctx, verify_identity=None))
            except TLSUnavailableError as exc:
                if exc.code is None:
                    raise
                raise errors.StartTLSRefused(
                    str(exc), code=exc.code, msg=exc.text.encode("utf-8", "replace")
                ) from None
            guard.after_handshake(info)
        self._tls = info
        # RFC 3207 §4.2: forget everything learnt before TLS; ask again (R-PY-7).
        self.helo_resp = self.ehlo_resp = None
        self.esmtp_features = {}
        self.does_esmtp = False
        self.file = None
        return reply.code, reply_bytes(reply)

    @contextlib.contextmanager
    def _handshake_errors(self) -> Iterator[None]:
        """Close on any TLS failure; give each the stdlib class users catch too."""
        try:
            yield
        except SMTPSecError as exc:
            self.close()
            cause = exc.__cause__
            if isinstance(exc, CertificateError) and isinstance(
                cause, ssl.SSLCertVerificationError
            ):
                raise errors.CertificateVerifyFailed(str(exc), cause=cause) from cause
            if isinstance(exc, TLSVersionError):
                raise errors.TLSVersionTooLow(str(exc)) from exc.__cause__
            if isinstance(exc, TLSUnavailableError) and isinstance(cause, ssl.SSLError):
                raise errors.TLSHandshakeFailed(str(exc)) from cause
            raise

    # ------------------------------------------------------------------ AUTH

    def _check_login_allowed(self) -> Guard:
        """Refuse AUTH before anything is sent: no connection, second AUTH, no verified TLS."""
        self._require_wire()
        if self._authenticated:
            raise LocalProtocolError(
                "already authenticated on this connection: AUTH may succeed only once per "
                "session (RFC 4954 §4); open a new connection to log in as someone else"
            )
        guard = self._guard(Security.STARTTLS)
        guard.before_auth(self._tls)
        return guard

    def login(
        self, user: str, password: str, *, initial_response_ok: bool = True
    ) -> tuple[int, bytes]:
        """Log in with one mechanism chosen from the post-TLS EHLO (R-PY-5).

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
        self.ehlo_or_helo_if_needed()
        guard = self._check_login_allowed()
        offered = self._extensions.auth_mechanisms
        if not offered:
            raise errors.NoAuthExtension(
                f"SMTP AUTH extension not supported by server: {self._peer} offers no AUTH; "
                "check the host and port (465 or 587)"
            )
        mechanism = sasl.choose_mechanism(
            offered,
            credentials=sasl.Credentials(user, password),
            preference=_LOGIN_PREFERENCE,
            scram_max_iterations=self._policy.scram_max_iterations,
        )
        self.user, self.password = user, password
        reply = self._authenticate(mechanism, initial_response_ok)
        emit(guard.findings, stacklevel=2)
        return reply.code, reply_bytes(reply)

    def auth(
        self, mechanism: str, authobject: _AuthObject, *, initial_response_ok: bool = True
    ) -> tuple[int, bytes]:
        """smtplib's low-level AUTH with a callable; same TLS and 235-only rules as login()."""
        self._ehlo_inside_tls()
        guard = self._check_login_allowed()
        reply = self._authenticate(
            _CallbackMechanism(mechanism.upper(), authobject, self, initial_response_ok),
            initial_response_ok,
        )
        emit(guard.findings, stacklevel=2)
        return reply.code, reply_bytes(reply)

    def _authenticate(self, mechanism: sasl.Mechanism, initial_response: bool) -> Reply:
        wire = self._require_wire()
        self._secret = True
        try:
            reply = self._run(authenticate(wire, mechanism, initial_response=initial_response))
        except AuthenticationError as exc:
            raise errors.AuthFailed(
                f"authentication with {mechanism.name} failed ({exc.code}): {exc.hint}",
                code=exc.code,
                msg=_text_bytes(exc),
                hint=exc.hint,
            ) from None
        except errors.MalformedReply:
            raise
        except RemoteProtocolError as exc:  # 503 to the first AUTH: not our session
            with contextlib.suppress(SMTPSecError):
                self.quit()
            self.close()
            raise errors.AuthNotFresh(
                f"{exc}",
                code=503,
                msg=b"",
                hint="reconnect; if it happens again, something in the path tampers with SMTP",
            ) from None
        finally:
            self._secret = False
        self._authenticated = True
        return reply

    # ------------------------------------------------------------------ mail

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

    def mail(self, sender: str, options: Sequence[str] = ()) -> tuple[int, bytes]:
        """MAIL FROM; the address and options are checked by the engine's rules first."""
        self.ehlo_or_helo_if_needed()
        options = list(options) if self.does_esmtp else []
        if any(option.lower() == "smtputf8" for option in options if isinstance(option, str)):
            if not self.has_extn("smtputf8"):
                raise errors.ExtensionNotSupported("SMTPUTF8 not supported by server")
            self.command_encoding = "utf-8"
        line = f"mail FROM:{_std.quoteaddr(sender)}" + "".join(f" {o}" for o in options)
        try:
            command = address_command("MAIL", sender, options)
        except InvalidArgumentError as exc:
            raise stdlib_wording(line, exc) from None
        self._before_mail()
        self._accepted = []
        reply = self._command(command, line)
        return reply.code, reply_bytes(reply)

    def rcpt(self, recip: str, options: Sequence[str] = ()) -> tuple[int, bytes]:
        """RCPT TO; the address and options are checked by the engine's rules first."""
        self.ehlo_or_helo_if_needed()
        options = list(options) if self.does_esmtp else []
        line = f"rcpt TO:{_std.quoteaddr(recip)}" + "".join(f" {o}" for o in options)
        try:
            command = address_command("RCPT", recip, options)
        except InvalidArgumentError as exc:
            raise stdlib_wording(line, exc) from None
        reply = self._command(command, line)
        if reply.code in (250, 251):
            self._accepted.append(recip)
        return reply.code, reply_bytes(reply)

    def rset(self) -> tuple[int, bytes]:
        """RSET: abort the current transaction."""
        self._accepted = []
        self._needs_rset = False
        return super().rset()

    def data(self, msg: ReadableBuffer | str) -> tuple[int, bytes]:
        """DATA with normalised line ends and dot-stuffing, also for bytes (R-PY-10).

        Returns:
            The final reply; for LMTP the first failing per-recipient reply, or
            the first reply when all succeeded.

        Raises:
            SMTPDataError: DATA was not answered 354 (also a :class:`smtpsec.ReplyError`).
            SMTPNotSupportedError: the message has 8-bit octets and the server
                does not offer 8BITMIME (checked before DATA is sent).
            UnicodeEncodeError: a ``str`` message that is not ASCII (as smtplib),
                raised before DATA is sent.
        """
        body = _message_bytes(msg)
        if not body.isascii() and "8BITMIME" not in self._extensions:
            raise errors.ExtensionNotSupported(
                "the message contains 8-bit octets but the server does not offer 8BITMIME; "
                "nothing was sent. Transfer-encode the body (quoted-printable or base64), "
                "or use send_message(), which does it for you"
            )
        reply = self._command(Command("DATA"), "data")
        if self.debuglevel > 0:
            self._debug("data:", (reply.code, reply_bytes(reply)))
        if reply.code != 354:
            raise errors.DataRefused(
                f"{self._peer} refused DATA with {reply.code}",
                code=reply.code,
                msg=reply_bytes(reply),
                tls=self._tls is not None,
            )
        wire = self._require_wire()
        encoder = DataEncoder()
        wire.queue_content(encoder.feed(body) + encoder.finish())
        wire.log_content(encoder.body_octets)
        count = max(1, len(self._accepted)) if self._lmtp else 1
        wire.end_data(replies=count)
        finals = [self._read_reply() for _ in range(count)]
        if self.debuglevel > 0:
            self._debug("data:", [(r.code, reply_bytes(r)) for r in finals])
        failed = [r for r in finals if r.code != 250]
        chosen = failed[0] if failed else finals[0]
        return chosen.code, reply_bytes(chosen)

    def sendmail(
        self,
        from_addr: str,
        to_addrs: str | Sequence[str],
        msg: SizedBuffer | str,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> dict[str, tuple[int, bytes]]:
        """Send one message with smtplib's contract; on the wire, the native engine's.

        Addresses, options and the message are checked before anything is
        sent; line ends are normalised (R-PY-10); SIZE is the exact size; the
        envelope (and with CHUNKING the body) is pipelined when offered. Mail
        over a non-loopback connection without TLS emits an
        :class:`~smtpsec.InsecureConfigurationWarning` once per connection.

        Returns:
            The refused recipients, ``{address: (code, msg)}``, like smtplib.
        """
        self.ehlo_or_helo_if_needed()
        body = _message_bytes(_std._fix_eols(msg) if isinstance(msg, str) else msg)  # type: ignore[attr-defined]
        recipients = [to_addrs] if isinstance(to_addrs, str) else list(to_addrs)
        options, utf8, eight_bit = _send_options(mail_options, rcpt_options)
        try:
            prepared = prepare_message(body, sender=from_addr, recipients=recipients)
        except InvalidArgumentError as exc:
            if not recipients:
                raise errors.RecipientsRefusedError(
                    "sendmail() was given no recipients; nothing was sent", recipients={}
                ) from None
            raise stdlib_wording(f"mail FROM:{from_addr}", exc) from None
        if utf8 or eight_bit:
            # What the caller declared about the content counts: the engine then
            # sends SMTPUTF8 / BODY=8BITMIME (or refuses before anything if the
            # server lacks them).
            prepared = replace(
                prepared,
                smtputf8=prepared.smtputf8 or utf8,
                eight_bit=prepared.eight_bit or eight_bit,
            )
        return self._transaction(prepared, options)

    def _transaction(
        self, prepared: PreparedMessage, options: SendOptions
    ) -> dict[str, tuple[int, bytes]]:
        wire = self._require_wire()
        extensions = self._extensions if self.does_esmtp else Extensions()
        self._before_mail()
        outcomes, self._needs_rset = self._run(
            run_transactions(
                wire,
                extensions,
                [prepared],
                options,
                needs_rset=self._needs_rset,
                lmtp=self._lmtp,
            )
        )
        (outcome,) = outcomes
        if isinstance(outcome, SendResult):
            return {
                address: (refusal.code, _refusal_bytes(refusal.enhanced_status, refusal.text))
                for address, refusal in outcome.refused.items()
            }
        error = self._stdlib_outcome(outcome, prepared.sender)
        if self._wire is not None and not isinstance(
            outcome, CapabilityError | InvalidArgumentError
        ):
            # smtplib resets the transaction right after a refusal.
            with contextlib.suppress(SMTPSecError):
                self.rset()
        raise error

    def _stdlib_outcome(self, error: SMTPSecError, sender: str) -> BaseException:
        """A failed transaction in smtplib's classes (the connection closed if it broke)."""
        tls = self._tls is not None
        broken = self._wire is None or self._wire.conn.state is State.CLOSED
        if broken:
            self.close()
        if isinstance(error, SenderRefused):
            return errors.SenderRefusedError(
                str(error), code=error.code, msg=_text_bytes(error), sender=sender, tls=tls
            )
        if isinstance(error, RecipientsRefused):
            refused = {
                address: (code, _refusal_bytes(status, text))
                for address, (code, status, text) in error.refused.items()
            }
            return errors.RecipientsRefusedError(str(error), recipients=refused, tls=tls)
        if isinstance(error, CapabilityError):
            return errors.ExtensionNotSupported(str(error))
        if isinstance(error, ReplyError):
            return errors.DataRefused(str(error), code=error.code, msg=_text_bytes(error), tls=tls)
        if isinstance(error, DeadlineError):
            return errors.ReplyTimeout(str(error))
        if isinstance(error, RemoteProtocolError):
            return error  # an SMTPException already; the stream was not trustworthy
        if isinstance(error, ConnectError) or broken:
            return errors.ServerDisconnected(str(error))
        return error

    def send_message(
        self,
        msg: Message,
        from_addr: str | None = None,
        to_addrs: str | Sequence[str] | None = None,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> dict[str, tuple[int, bytes]]:
        """smtplib's ``send_message``: envelope from the headers, Bcc removed, then
        :meth:`sendmail`; header injection is refused first (R-PY-18), and an
        8-bit message for a server without 8BITMIME is re-encoded to 7 bit."""
        self.ehlo_or_helo_if_needed()
        check_headers(msg)
        if from_addr is None or to_addrs is None:
            sender, recipients = envelope_from_headers(msg)
            from_addr = sender if from_addr is None else from_addr
            to_addrs = recipients if to_addrs is None else to_addrs
        recipients = [to_addrs] if isinstance(to_addrs, str) else list(to_addrs)
        international = not "".join([from_addr, *recipients]).isascii()
        options = tuple(mail_options)
        if international:
            if not self.has_extn("smtputf8"):
                raise errors.ExtensionNotSupported(
                    "One or more source or delivery addresses require internationalized "
                    "email support, but the server does not advertise the required SMTPUTF8 "
                    "capability"
                )
            options = (*options, "SMTPUTF8", "BODY=8BITMIME")
        seven_bit = "8BITMIME" not in self._extensions
        flat = flatten(msg, utf8=international, seven_bit=seven_bit and not international)
        return self.sendmail(from_addr, recipients, flat, options, rcpt_options)


class _CallbackMechanism:
    """smtplib's ``auth(mechanism, authobject)`` callable as a SASL mechanism."""

    def __init__(
        self, name: str, authobject: _AuthObject, owner: SMTP, initial_response_ok: bool
    ) -> None:
        self.name = name
        self._authobject = authobject
        self._owner = owner
        self._initial_ok = initial_response_ok

    def initial_response(self, *, max_encoded: int | None = None) -> bytes | None:
        if not self._initial_ok:
            self._owner._auth_challenge_count = 0
            return None
        self._owner._auth_challenge_count = 1
        answer = self._authobject(None)
        return None if answer is None else answer.encode("ascii")

    def respond(self, challenge: bytes) -> bytes:
        # smtplib's auth_login() reads this counter to know which prompt it answers.
        self._owner._auth_challenge_count += 1
        return self._authobject(challenge).encode("ascii")

    @property
    def server_error(self) -> sasl.OAuthErrorInfo | None:
        return None

    def verify_success(self, data: bytes | None) -> None:
        """The callable gives no server proof to check."""


def _close(wire: Wire) -> IO[None]:
    yield from perform(Close(wire.transport))


def _disconnect_text(exc: ConnectError) -> str:
    """smtplib's words for a lost connection (what its users search for), then ours."""
    lead = "Server not connected" if "writing" in str(exc) else "Connection unexpectedly closed"
    return f"{lead}: {exc}"


def _message_bytes(msg: object) -> bytes:
    """smtplib's message argument as bytes: ``str`` must be ASCII, like in smtplib."""
    if isinstance(msg, str):
        return msg.encode("ascii")
    if isinstance(msg, (bytes, bytearray, memoryview)):
        return bytes(msg)
    raise TypeError(f"the message must be str or bytes-like, not {type(msg).__name__}")


def _loggable(data: ReadableBuffer | str) -> str:
    """A sent AUTH line for ``set_debuglevel()`` output, with ``<redacted>`` payloads."""
    text = data if isinstance(data, str) else bytes(data).decode("ascii", "replace")
    line = text.rstrip("\r\n")
    verb, _, argument = line.partition(" ")
    if verb.upper() == "AUTH":
        return Command("AUTH", argument, redact=True).loggable() + "\r\n"
    if line == "*":
        return text  # the cancel line carries nothing secret
    return Command("", line, redact=True).loggable() + "\r\n"


def _text_bytes(error: ReplyError) -> bytes:
    return _refusal_bytes(error.enhanced_status, error.text)


def _refusal_bytes(status: str | None, text: str) -> bytes:
    """A refusal as smtplib reports it: the reply text, enhanced status included."""
    return (f"{status} {text}" if status else text).encode("utf-8", "replace")


def _send_options(
    mail_options: Sequence[str], rcpt_options: Sequence[str]
) -> tuple[SendOptions, bool, bool]:
    """smtplib's option strings as the engine's send options, and whether SMTPUTF8 and
    BODY=8BITMIME were declared.

    ``SIZE`` and ``BODY`` are set by the engine from the message itself (the
    exact size; 8BITMIME when the content needs it), so the caller's values
    are not sent; everything else goes on the command lines as given, through
    the engine's parameter rules.
    """
    mail = parse_options(mail_options, "MAIL")
    # Every option given passes the engine's parameter rules, also those the
    # engine then sets itself: an unsafe value is refused, never dropped.
    encode_command(Command("MAIL", "", mail or None))
    utf8 = any(key.upper() == "SMTPUTF8" for key in mail)
    eight_bit = any(
        key.upper() == "BODY" and (value or "").upper() == "8BITMIME" for key, value in mail.items()
    )
    kept = {k: v for k, v in mail.items() if k.upper() not in ("SIZE", "BODY", "SMTPUTF8")}
    options = SendOptions(
        mail_params=kept, rcpt_params=parse_options(rcpt_options, "RCPT"), require_dsn=False
    )
    return options, utf8, eight_bit


def client_context(
    keyfile: StrOrBytesPath | None,
    certfile: StrOrBytesPath | None,
    context: ssl.SSLContext | None,
) -> ssl.SSLContext:
    """The caller's context as given, else smtpsec's verifying one (R-PY-1, R-PY-15).

    ``keyfile``/``certfile`` (deprecated, gone from smtplib in 3.12) are loaded
    into a fresh verifying context as the client certificate.

    Raises:
        ValueError: ``context`` together with ``keyfile``/``certfile`` (as
            smtplib), or ``keyfile`` without ``certfile``.
    """
    if context is not None:
        if keyfile is not None or certfile is not None:
            raise ValueError("context and keyfile/certfile arguments are mutually exclusive")
        return context
    if keyfile is None and certfile is None:
        return build_context(Policy())
    warnings.warn(
        "keyfile and certfile are deprecated (removed from smtplib in 3.12); load "
        "the client certificate into a context with ctx.load_cert_chain()",
        DeprecationWarning,
        stacklevel=3,
    )
    if certfile is None:
        raise ValueError("keyfile needs certfile (the client certificate chain)")
    return build_context(Policy(client_cert=(str(certfile), str(keyfile or certfile))))


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
        CertificateVerifyFailed: validation failed; also ``ssl.SSLCertVerificationError``.
        TLSVersionTooLow: the negotiated TLS version is below 1.2.
    """

    default_port = _std.SMTP_SSL_PORT
    _implicit = True

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
        """Connect over TCP (``host:port`` works too), or to a Unix socket path."""
        if not host.startswith("/"):
            return super().connect(host, port, source_address=source_address)
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
