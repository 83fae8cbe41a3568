"""``connect()`` → :class:`Session`; ``send()`` for one-shot use.

This module drives the sans-I/O core over a transport, asks the guard at every
checkpoint, authenticates, and hands mail to the transaction engine.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType

from ._establish import Established, Recipe
from ._io import IO, run_sync
from ._message import MessageInput, PreparedMessage, prepare_message
from ._sending import SendOptions, SendResult, run_transactions
from ._types import QUIT_WAIT
from .discovery import Endpoint
from .errors import ConnectError, LocalProtocolError, SMTPSecError
from .errors import TimeoutError as DeadlineError
from .policy import Policy, Security
from .report import SecurityReport
from .sansio import Command, Extensions, Reply, State
from .transports import SocketTransport, Transport, open_socket

__all__ = ["Outgoing", "Session", "SessionCore", "connect", "connect_transport", "send"]

TokenSource = str | Callable[[], str]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message for :meth:`Session.send_many` with its own envelope.

    Attributes:
        message: what :meth:`Session.send` accepts.
        sender: envelope sender (default: from the message headers).
        recipients: envelope recipients (default: To, Cc and Bcc).
    """

    message: MessageInput
    sender: str | None = None
    recipients: Iterable[str] | None = None


class SessionCore:
    """What the blocking and the asyncio sessions share: state and dialogue steps.

    Each ``_..._steps`` method is a generator of I/O requests (see
    :mod:`smtpsec._io`); :class:`Session` runs them blocking and
    :class:`smtpsec.aio.AsyncSession` awaits them.

    Attributes:
        report: the :class:`~smtpsec.report.SecurityReport` of this session.
    """

    def __init__(self, established: Established) -> None:
        self._wire = established.wire
        self._guard = established.guard
        self.report: SecurityReport = established.report
        self._extensions = established.extensions
        self._needs_rset = False
        self._closed = False

    @property
    def extensions(self) -> Extensions:
        """The server's extensions from the EHLO that followed TLS."""
        return self._extensions

    @property
    def closed(self) -> bool:
        """True after ``close()`` or after an error that ended the connection."""
        return self._closed or self._wire.conn.state is State.CLOSED

    def _send_steps(
        self, items: Iterable[MessageInput | Outgoing], options: SendOptions | None
    ) -> IO[list[SendResult | SMTPSecError]]:
        if self.closed:
            raise LocalProtocolError("this session is closed; open a new one with connect()")
        self._guard.before_mail(self._wire.transport.tls)
        slots: list[SendResult | SMTPSecError | None] = []
        ready: list[PreparedMessage] = []
        for item in items:
            if not isinstance(item, Outgoing):
                item = Outgoing(item)
            try:
                ready.append(
                    prepare_message(item.message, sender=item.sender, recipients=item.recipients)
                )
                slots.append(None)
            except SMTPSecError as exc:
                slots.append(exc)
        outcomes: list[SendResult | SMTPSecError] = []
        if ready:
            try:
                outcomes, self._needs_rset = yield from run_transactions(
                    self._wire,
                    self._extensions,
                    ready,
                    options or SendOptions(),
                    needs_rset=self._needs_rset,
                )
            finally:
                if self._wire.conn.state is State.CLOSED:
                    self._closed = True
        sent = iter(outcomes)
        return [slot if slot is not None else next(sent) for slot in slots]

    def _noop_steps(self) -> IO[Reply]:
        if self.closed:
            raise LocalProtocolError("this session is closed; open a new one with connect()")
        try:
            return (yield from self._wire.one(Command("NOOP")))
        except BaseException:
            # No reply (timeout, drop, cancellation): one may still be in flight and
            # would be taken as the next command's answer, so the session ends here.
            yield from self._abandon_steps()
            raise

    def _abandon_steps(self) -> IO[None]:
        """Close the connection without QUIT (a reply may still be due)."""
        self._closed = True
        with contextlib.suppress(SMTPSecError, OSError):
            yield from self._wire.close()

    def _close_steps(self) -> IO[None]:
        if self._closed:
            return
        self._closed = True
        if self._wire.conn.state not in (State.CLOSED, State.TLS_PENDING):
            # "Wait briefly for 221": a server that never answers QUIT must not hold
            # the caller for a whole reply timeout.
            self._wire.timeout = min(self._wire.timeout, QUIT_WAIT)
            with contextlib.suppress(SMTPSecError, OSError):
                yield from self._wire.one(Command("QUIT"))
        with contextlib.suppress(OSError):
            yield from self._wire.close()


def _single(outcomes: list[SendResult | SMTPSecError]) -> SendResult:
    (outcome,) = outcomes
    if isinstance(outcome, SMTPSecError):
        raise outcome
    return outcome


class Session(SessionCore):
    """An open, checked SMTP submission session. Create it with :func:`connect`.

    Attributes:
        report: the :class:`~smtpsec.report.SecurityReport` of this session.
    """

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

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
            ReplyError: the message itself was refused (``transient`` tells 4xx;
                a 421 also closes the session).
            CapabilityError: too large for SIZE, needs SMTPUTF8 or 8BITMIME.
            InvalidArgumentError: an unsafe address or header, or an unreadable
                body (the cause is chained).
            ConnectError: the connection failed; the message was not sent and the
                session is closed.
            TimeoutError: the server did not answer in time (session closed).
            RemoteProtocolError: the server broke the protocol (session closed).
        """
        item = Outgoing(message, sender, recipients)
        return _single(run_sync(self._send_steps([item], options)))

    def send_many(
        self,
        messages: Iterable[MessageInput | Outgoing],
        *,
        options: SendOptions | None = None,
    ) -> list[SendResult | SMTPSecError]:
        """Send many messages on this connection, pipelined across messages.

        Each message's outcome is reported on its own: a refused message does not
        stop the others; if the connection drops, the rest are returned as
        :class:`~smtpsec.errors.ConnectError` outcomes (not sent). Wrap a message
        in :class:`Outgoing` to give it its own envelope.

        Returns:
            One :class:`SendResult` or exception per message, in order.
        """
        return run_sync(self._send_steps(messages, options))

    def noop(self) -> Reply:
        """Send NOOP (a cheap liveness check) and return the reply."""
        return run_sync(self._noop_steps())

    def close(self) -> None:
        """Send QUIT, wait briefly for 221, close TLS cleanly (close_notify)."""
        run_sync(self._close_steps())


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
    recipe = Recipe.prepare(
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
    )
    failures: list[str] = []
    for attempt in recipe.plan.attempts:
        guard = recipe.guard(attempt)
        try:
            sock = open_socket(recipe.host, attempt.port, timeout=timeout)
        except (ConnectError, DeadlineError) as exc:
            recipe.unreachable(attempt, exc, failures)  # raises on the last attempt
            continue
        transport = SocketTransport(sock, peer=f"{recipe.host}:{attempt.port}")
        return Session(run_sync(recipe.establish(transport, attempt, guard)))
    raise AssertionError("unreachable: a plan has at least one attempt")  # pragma: no cover


def connect_transport(
    transport: Transport,
    host: str,
    port: int,
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
    """Run the whole checked set-up over a transport you opened yourself.

    The pluggable-transport entry point: a proxy tunnel, a Unix socket, or
    :class:`~smtpsec.transports.MemoryTransport` in tests. ``host`` and ``port``
    only name the peer (certificate checks, TLS memory, the report); the same
    plan, guard and checks as :func:`connect` apply.
    """
    recipe = Recipe.prepare(
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
        confirmed_target=False,
    )
    attempt = recipe.plan.attempts[0]
    return Session(run_sync(recipe.establish(transport, attempt, recipe.guard(attempt))))


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
