"""``connect()`` → :class:`Session`; ``send()`` for one-shot use.

This module drives the sans-I/O core over a transport, asks the guard at every
checkpoint, authenticates, and hands mail to the transaction engine.
"""

from __future__ import annotations

import contextlib
import ssl
import warnings
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType

from . import auth as sasl
from ._message import MessageInput, prepare_message
from ._sending import SendOptions, SendResult, run_transactions
from ._wire import Wire
from .errors import (
    AuthenticationError,
    CapabilityError,
    ConnectError,
    InsecureConfigurationWarning,
    InvalidArgumentError,
    LocalProtocolError,
    RemoteProtocolError,
    ReplyError,
    SMTPSecError,
)
from .errors import TimeoutError as DeadlineError
from .guard import Guard
from .policy import Attempt, Plan, Policy, Security, is_loopback, select_plan
from .report import SecurityReport
from .sansio import ClientConnection, Command, Extensions, Reply, ehlo_name
from .tls import TLSInfo, build_context, translate_ssl_error
from .transports import SocketTransport, Transport, open_socket

__all__ = ["Session", "connect", "send"]

TokenSource = str | Callable[[], str]


class Session:
    """An open, checked SMTP submission session. Create it with :func:`connect`.

    Attributes:
        report: the :class:`~smtpsec.report.SecurityReport` of this session.
    """

    def __init__(
        self, wire: Wire, guard: Guard, report: SecurityReport, extensions: Extensions
    ) -> None:
        self._wire = wire
        self._guard = guard
        self.report = report
        self._extensions = extensions
        self._needs_rset = False
        self._closed = False

    @property
    def extensions(self) -> Extensions:
        """The server's extensions from the EHLO that followed TLS."""
        return self._extensions

    @property
    def closed(self) -> bool:
        """True after :meth:`close` or a fatal error."""
        return self._closed

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise LocalProtocolError("this session is closed; open a new one with connect()")

    def send(
        self,
        message: MessageInput,
        *,
        sender: str | None = None,
        recipients: Iterable[str] | None = None,
        options: SendOptions | None = None,
    ) -> SendResult:
        """Send one message.

        Args:
            message: an :class:`email.message.EmailMessage` (envelope from its
                headers when not given; Bcc is never transmitted), ``bytes``, a
                binary file object, or an iterable of ``bytes`` chunks (streamed).
            sender: envelope sender; defaults to the message's Sender/From.
            recipients: envelope recipients; default To, Cc and Bcc.
            options: DSN and other ESMTP options.

        Returns:
            The :class:`SendResult`; refused recipients are listed in
            ``result.refused`` while the message went to the others.

        Raises:
            SenderRefused: the server refused the sender.
            RecipientsRefused: every recipient was refused (nothing was sent).
            ReplyError: the message itself was refused (``transient`` tells 4xx).
            CapabilityError: too large for SIZE, needs SMTPUTF8 or 8BITMIME.
        """
        (outcome,) = self._run(
            [prepare_message(message, sender=sender, recipients=recipients)], options
        )
        if isinstance(outcome, SMTPSecError):
            raise outcome
        return outcome

    def send_many(
        self, messages: Iterable[MessageInput], *, options: SendOptions | None = None
    ) -> list[SendResult | SMTPSecError]:
        """Send many messages on this connection, pipelined across messages.

        Each message's outcome is reported on its own: a refused message does not
        stop the others; if the connection drops, the rest are returned as
        :class:`~smtpsec.errors.ConnectError` outcomes (not sent).

        Returns:
            One :class:`SendResult` or exception per message, in order.
        """
        prepared: list[SendResult | SMTPSecError | None] = []
        ready = []
        for message in messages:
            try:
                ready.append(prepare_message(message, sender=None, recipients=None))
                prepared.append(None)
            except InvalidArgumentError as exc:
                prepared.append(exc)
        outcomes = iter(self._run(ready, options)) if ready else iter(())
        return [p if p is not None else next(outcomes) for p in prepared]

    def _run(
        self, messages: Sequence[object], options: SendOptions | None
    ) -> list[SendResult | SMTPSecError]:
        self._check_open()
        self._guard.before_mail(self._wire.transport.tls)
        try:
            outcomes, self._needs_rset = run_transactions(
                self._wire,
                self._extensions,
                messages,  # type: ignore[arg-type]
                options or SendOptions(),
                needs_rset=self._needs_rset,
            )
        except (ConnectError, DeadlineError, RemoteProtocolError):
            self._abort()
            raise
        if self._wire.conn.state.value == "closed":
            self._abort()
        return outcomes

    def noop(self) -> Reply:
        """Send NOOP (a cheap liveness check) and return the reply."""
        self._check_open()
        return self._wire.one(Command("NOOP"))

    def close(self) -> None:
        """Send QUIT, wait briefly for 221, close TLS cleanly (close_notify)."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(SMTPSecError, OSError):
            if self._wire.conn.state.value not in ("closed", "tls-pending"):
                self._wire.one(Command("QUIT"))
        self._wire.transport.close()

    def _abort(self) -> None:
        self._closed = True
        self._wire.transport.close()


# ---------------------------------------------------------------------------- connect


def connect(
    host: str,
    port: int | None = None,
    *,
    security: Security = Security.AUTO,
    username: str | None = None,
    password: str | None = None,
    auth: str | None = None,
    token: TokenSource | None = None,
    policy: Policy | None = None,
    timeout: float = 30.0,
    local_hostname: str | None = None,
) -> Session:
    """Open a secure submission session (RFC 8314).

    Args:
        host: the submission server's name (certificates are checked against it).
        port: 465 (implicit TLS) or 587 (STARTTLS); ``None`` lets ``security`` choose.
        security: how TLS starts; :attr:`Security.AUTO` never uses cleartext.
        username: user name for SMTP AUTH.
        password: password for SMTP AUTH (never logged).
        auth: a SASL mechanism name to use instead of the automatic choice.
        token: an OAuth 2 access token, or a callable returning one (XOAUTH2,
            OAUTHBEARER).
        policy: trust and minimum-security settings; :class:`Policy` defaults.
        timeout: seconds for connecting, the TLS handshake, and each whole reply.
        local_hostname: the EHLO name; ``[127.0.0.1]`` by default (never the FQDN).

    Returns:
        An open :class:`Session` (use it as a context manager).

    Raises:
        SecurityError: a security requirement was not met; nothing was sent.
        ConnectError: the server could not be reached.
        TimeoutError: a deadline passed.
    """
    policy = policy or Policy()
    plan = select_plan(host, port, security)
    helo = ehlo_name(local_hostname)
    if security is Security.PLAINTEXT and not is_loopback(host):
        warnings.warn(
            f"Security.PLAINTEXT to {host}: everything, including the message, travels "
            "in cleartext (RFC 8314 §4.1); use Security.AUTO",
            InsecureConfigurationWarning,
            stacklevel=2,
        )
    if password is not None and username is None:
        raise InvalidArgumentError("password= needs username=")
    failures: list[str] = []
    for index, attempt in enumerate(plan.attempts):
        guard = Guard(policy, attempt, host, user=username or "")
        guard.before_connect()
        try:
            sock = open_socket(host, attempt.port, timeout=timeout)
        except (ConnectError, DeadlineError) as exc:
            failures.append(str(exc))
            if index + 1 < len(plan.attempts):
                continue  # only an unreachable port moves on; never a security failure
            if len(failures) > 1:
                raise ConnectError(
                    "could not reach any submission port: " + " | ".join(failures)
                ) from exc
            raise
        transport = SocketTransport(sock, peer=f"{host}:{attempt.port}")
        return establish(
            transport,
            host=host,
            plan=plan,
            attempt=attempt,
            guard=guard,
            policy=policy,
            timeout=timeout,
            helo=helo,
            username=username,
            password=password,
            mechanism=auth,
            token=token,
        )
    raise AssertionError("unreachable: a plan has at least one attempt")  # pragma: no cover


def establish(
    transport: Transport,
    *,
    host: str,
    plan: Plan,
    attempt: Attempt,
    guard: Guard,
    policy: Policy,
    timeout: float,
    helo: str,
    username: str | None = None,
    password: str | None = None,
    mechanism: str | None = None,
    token: TokenSource | None = None,
) -> Session:
    """Run greeting, TLS, EHLO and AUTH over an already-open ``transport``.

    Public for tests and custom transports (e.g. :class:`~smtpsec.transports.MemoryTransport`).
    """
    context: ssl.SSLContext | None = None
    peer = f"{host}:{attempt.port}"
    pinned = False
    wire: Wire | None = None
    try:
        if attempt.tls != "none":
            context = build_context(policy)
        if attempt.tls == "implicit":
            assert context is not None
            transport = _handshake(transport, context, host, attempt, timeout, implicit=True)
            pinned = guard.after_handshake(_tls(transport))
        conn = ClientConnection(
            tls_active=transport.tls is not None,
            require_tls=attempt.tls in ("implicit", "starttls"),
        )
        wire = Wire(transport, conn, timeout=timeout, peer=peer)
        _greeting(wire, guard, attempt)
        extensions = _ehlo(wire, helo)
        if guard.after_ehlo(extensions, tls=transport.tls is not None):
            assert context is not None
            guard.after_starttls_reply(wire.one(Command("STARTTLS")))
            _check_injection(wire)
            transport = _handshake(transport, context, host, attempt, timeout, implicit=False)
            wire.transport = transport
            conn.tls_started()
            pinned = guard.after_handshake(_tls(transport))
            extensions = _ehlo(wire, helo)
        info = transport.tls
        if info is not None and info.verified and policy.memory is not None:
            policy.memory.record(
                guard.account,
                mode="implicit_tls" if attempt.tls == "implicit" else "starttls",
                tls_version=info.version,
            )
        used_mech = None
        if username is not None or token is not None:
            guard.before_auth(info)
            used_mech = _authenticate(
                wire,
                extensions,
                username,
                password,
                token,
                mechanism,
                policy.client_cert is not None,
            )
    except BaseException:
        _quit_quietly(transport, wire)
        raise
    report = SecurityReport(
        security=plan.security,
        mode=("implicit_tls" if attempt.tls == "implicit" else "starttls") if info else "plaintext",
        reason=plan.reason,
        host=host,
        port=attempt.port,
        tls_version=info.version if info else None,
        cipher=info.cipher if info else None,
        verified=bool(info and info.verified),
        spki_pin=info.spki_pin if info else None,
        pinned=pinned,
        confidential=guard.confidential(info),
        authenticated_as=username if used_mech else None,
        mechanism=used_mech,
    )
    return Session(wire, guard, report, extensions)


def _tls(transport: Transport) -> TLSInfo:
    info = transport.tls
    assert info is not None
    return info


def _handshake(
    transport: Transport,
    context: ssl.SSLContext,
    host: str,
    attempt: Attempt,
    timeout: float,
    *,
    implicit: bool,
) -> Transport:
    try:
        return transport.start_tls(context, server_hostname=host, timeout=timeout)
    except ssl.SSLError as exc:
        transport.close()
        raise translate_ssl_error(exc, host=host, port=attempt.port, implicit=implicit) from exc


def _greeting(wire: Wire, guard: Guard, attempt: Attempt) -> None:
    try:
        (greeting,) = wire.read(1)
    except RemoteProtocolError as exc:
        if attempt.tls in ("starttls", "opportunistic", "none"):
            raise RemoteProtocolError(
                f"{wire.peer} did not send an SMTP greeting ({exc}); if this port speaks "
                "implicit TLS (port 465), use Security.IMPLICIT_TLS or Security.AUTO"
            ) from exc
        raise
    except DeadlineError as exc:
        if attempt.tls != "implicit":
            raise DeadlineError(
                f"{wire.peer} sent no greeting within {wire.timeout:g}s; port "
                f"{attempt.port} may speak implicit TLS: use Security.IMPLICIT_TLS or AUTO"
            ) from exc
        raise
    guard.after_greeting(greeting.reply, tls=wire.transport.tls is not None)


def _ehlo(wire: Wire, helo: str) -> Extensions:
    reply = wire.one(Command("EHLO", helo))
    if reply.code != 250:
        # No HELO fallback: HELO cannot carry STARTTLS (R-LIB-HELO-1).
        raise ReplyError(
            f"{wire.peer} refused EHLO with {reply.code}; smtpsec does not fall back to HELO",
            code=reply.code,
            enhanced_status=str(reply.enhanced_status) if reply.enhanced_status else None,
            text=reply.text,
            server_text_authenticated=wire.transport.tls is not None,
        )
    extensions = wire.conn.extensions
    assert extensions is not None
    return extensions


def _check_injection(wire: Wire) -> None:
    if wire.conn.injected_data or wire.transport.pending_plaintext():
        from .errors import ResponseInjectionError

        raise ResponseInjectionError(
            f"{wire.peer} (or an attacker in the path) sent data after the 220 reply to "
            "STARTTLS and before the TLS handshake; the connection was aborted "
            "(R-EAST-BR-1). A genuine server never does this"
        )


def _authenticate(
    wire: Wire,
    extensions: Extensions,
    username: str | None,
    password: str | None,
    token: TokenSource | None,
    explicit: str | None,
    client_cert: bool,
) -> str:
    offered = extensions.auth_mechanisms
    if not offered:
        raise CapabilityError(
            f"{wire.peer} offers no AUTH after TLS, but credentials were given; refusing to "
            "send mail unauthenticated (RFC 4954 §9). Check the port (587/465) and account"
        )
    mech = sasl.choose_mechanism(
        offered,
        credentials=sasl.Credentials(username, password) if username is not None else None,
        token=token,
        client_cert=client_cert,
        explicit=explicit,
    )
    # "AUTH NAME [initial-response]"; the IR is left out when the line would be too long.
    arg = sasl.auth_command(mech).removeprefix("AUTH ")
    reply = wire.one(Command("AUTH", arg, redact=True))
    first = True
    while reply.code == 334:
        first = False
        raw = reply.lines[0] if reply.lines else ""
        try:
            response = mech.respond(sasl.decode_challenge(raw))
        except SMTPSecError:
            wire.one(Command("", "*"))  # R-4954-4-2: cancel, then fail
            raise
        reply = wire.one(Command("", sasl.encode_response(response), redact=True))
    if reply.code == 235:
        mech.verify_success(sasl.decode_success_data(reply.lines[0] if reply.lines else ""))
        return mech.name
    if reply.code == 503 and first:
        raise RemoteProtocolError(
            f"{wire.peer} answered the first AUTH with 503 ('already authenticated'): this "
            "session was not set up by us (session fixation or injection); aborting"
        )
    enhanced = str(reply.enhanced_status) if reply.enhanced_status else None
    hint = sasl.auth_failure_hint(reply.code, enhanced, mech.name, server_error=mech.server_error)
    raise AuthenticationError(
        f"authentication with {mech.name} failed: {reply.code} {enhanced or ''} {reply.text}; {hint}",
        code=reply.code,
        enhanced_status=enhanced,
        text=reply.text,
        hint=hint,
    )


def _quit_quietly(transport: Transport, wire: Wire | None) -> None:
    # Every failure sends QUIT if the channel is usable (never mid-handshake), then closes.
    with contextlib.suppress(Exception):
        if (
            wire is not None
            and wire.conn.awaiting == 0
            and wire.conn.state.value
            not in (
                "closed",
                "tls-pending",
                "greeting",
            )
        ):
            wire.timeout = min(wire.timeout, 2.0)
            wire.one(Command("QUIT"))
    transport.close()
    if wire is not None:
        wire.transport.close()


def send(
    message: MessageInput,
    *,
    host: str,
    port: int | None = None,
    security: Security = Security.AUTO,
    username: str | None = None,
    password: str | None = None,
    auth: str | None = None,
    token: TokenSource | None = None,
    policy: Policy | None = None,
    timeout: float = 30.0,
    local_hostname: str | None = None,
    sender: str | None = None,
    recipients: Iterable[str] | None = None,
    options: SendOptions | None = None,
) -> SendResult:
    """Connect, send one message, close. Arguments as for :func:`connect` and
    :meth:`Session.send`."""
    with connect(
        host,
        port,
        security=security,
        username=username,
        password=password,
        auth=auth,
        token=token,
        policy=policy,
        timeout=timeout,
        local_hostname=local_hostname,
    ) as session:
        return session.send(message, sender=sender, recipients=recipients, options=options)
