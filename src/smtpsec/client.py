"""``connect()`` → :class:`Session`; ``send()`` for one-shot use.

This module drives the sans-I/O core over a transport, asks the guard at every
checkpoint, authenticates, and hands mail to the transaction engine.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType

from ._establish import endpoint_setup, establish
from ._message import MessageInput, prepare_message
from ._sending import SendOptions, SendResult, run_transactions
from ._wire import Wire
from .discovery import Endpoint
from .errors import (
    ConnectError,
    InsecureConfigurationWarning,
    InvalidArgumentError,
    LocalProtocolError,
    RemoteProtocolError,
    SMTPSecError,
)
from .errors import TimeoutError as DeadlineError
from .guard import Guard
from .identity import ReferenceIdentity
from .policy import Policy, Security, is_loopback, select_plan
from .report import SecurityReport
from .sansio import Command, Extensions, Reply, ehlo_name
from .transports import SocketTransport, open_socket

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
    host: str | Endpoint,
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
    confirmed_target: bool = False,
) -> Session:
    """Open a secure submission session (RFC 8314).

    Args:
        host: the submission server's name (certificates are checked against it),
            or an :class:`~smtpsec.discovery.Endpoint` from :func:`smtpsec.discover`
            (its port and TLS mode are used, and the certificate must match the
            user's domain per RFC 7817).
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
        confirmed_target: for an Endpoint whose SRV answer was not DNSSEC-validated
            and whose target lies outside the user's domain: the user confirmed
            this target (RFC 8314 §5.1, RFC 7817 §3). Without it such an endpoint
            is refused with :class:`~smtpsec.errors.UntrustedDiscoveryError`.

    Returns:
        An open :class:`Session` (use it as a context manager).

    Raises:
        SecurityError: a security requirement was not met; nothing was sent.
        ConnectError: the server could not be reached.
        TimeoutError: a deadline passed.
    """
    policy = policy or Policy()
    identity: ReferenceIdentity | None = None
    if isinstance(host, Endpoint):
        host, port, security, identity = endpoint_setup(
            host, port, security, policy, confirmed_target=confirmed_target
        )
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
            identity=identity,
        )
    raise AssertionError("unreachable: a plan has at least one attempt")  # pragma: no cover


def send(
    message: MessageInput,
    *,
    host: str | Endpoint,
    port: int | None = None,
    security: Security = Security.AUTO,
    username: str | None = None,
    password: str | None = None,
    auth: str | None = None,
    token: TokenSource | None = None,
    policy: Policy | None = None,
    timeout: float = 30.0,
    local_hostname: str | None = None,
    confirmed_target: bool = False,
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
        confirmed_target=confirmed_target,
    ) as session:
        return session.send(message, sender=sender, recipients=recipients, options=options)
