"""The blocking API: ``connect()`` → :class:`Session`, and ``send()`` for one-shot use.

A thin facade: the dialogue (set-up, guard checkpoints, AUTH, transactions) is
the engine's, driven here with blocking calls; :mod:`smtpsec.aio` drives the
very same steps awaited.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType

from typing_extensions import Unpack

from ._engine import (
    Recipe,
    SessionState,
    connect_steps,
    emit,
    run_sync,
    transport_steps,
)
from .discovery import Endpoint
from .errors import SMTPSecError
from .options import ConnectOptions
from .sansio import Reply
from .sending import MessageInput, Outgoing, SendOptions, SendResult
from .transports import Transport

__all__ = ["Session", "connect", "connect_transport", "send"]


class Session(SessionState):
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
            The :class:`~smtpsec.SendResult`; refused recipients are listed in
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
        return run_sync(self._send_one_steps(message, sender, recipients, options))

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
        in :class:`~smtpsec.Outgoing` to give it its own envelope.

        Returns:
            One :class:`~smtpsec.SendResult` or exception per message, in order.
        """
        return run_sync(self._send_steps(messages, options))

    def noop(self) -> Reply:
        """Send NOOP (a cheap liveness check) and return the reply.

        If no reply comes (timeout, dropped connection), the session is closed:
        a reply still in flight would otherwise be taken as the answer to the
        next command.
        """
        return run_sync(self._noop_steps())

    def check_idle(self) -> None:
        """Raise if the server dropped this idle connection or sent unsolicited data.

        Costs no round trip: it only looks at what already arrived. When it
        raises, the session is closed.

        Raises:
            ConnectError: the server closed the connection (EOF, or ``421``).
            RemoteProtocolError: the server sent data nobody asked for.
        """
        run_sync(self._check_idle_steps())

    def close(self) -> None:
        """Send QUIT, wait briefly for 221, close TLS cleanly (close_notify)."""
        run_sync(self._close_steps())


def connect(
    host: str | Endpoint, port: int | None = None, **options: Unpack[ConnectOptions]
) -> Session:
    """Open a secure submission session (RFC 8314).

    Args:
        host: the submission server's name (certificates are checked against it),
            or an :class:`~smtpsec.discovery.Endpoint` from :func:`smtpsec.discover`
            (its port and TLS mode are used, and the certificate must match the
            user's domain per RFC 7817).
        port: 465 (implicit TLS) or 587 (STARTTLS); ``None`` lets ``security`` choose.
        **options: see :class:`~smtpsec.ConnectOptions`: ``security``,
            ``username``, ``password``, ``auth``, ``token``, ``policy``,
            ``timeout``, ``local_hostname``, ``confirmed_target``.

    Returns:
        An open :class:`Session` (use it as a context manager).

    Raises:
        TypeError: an option that does not exist (a typo).
        SecurityError: a security requirement was not met; nothing was sent.
        ConnectError: the server could not be reached.
        TimeoutError: a deadline passed.
    """
    recipe = Recipe.prepare(host, port, options, where="connect")
    try:
        return Session(run_sync(connect_steps(recipe)))
    finally:
        emit(recipe.findings, stacklevel=2)


def connect_transport(
    transport: Transport, host: str, port: int, **options: Unpack[ConnectOptions]
) -> Session:
    """Run the whole checked set-up over a transport you opened yourself.

    The pluggable-transport entry point: a proxy tunnel, a Unix socket, or
    :class:`~smtpsec.transports.MemoryTransport` in tests. ``host`` and ``port``
    only name the peer (certificate checks, TLS memory, the report); the same
    plan, guard and checks as :func:`connect` apply.
    """
    recipe = Recipe.prepare(host, port, options, where="connect_transport")
    try:
        return Session(run_sync(transport_steps(transport, recipe)))
    finally:
        emit(recipe.findings, stacklevel=2)


def send(
    message: MessageInput,
    *,
    host: str | Endpoint,
    port: int | None = None,
    sender: str | None = None,
    recipients: Iterable[str] | None = None,
    options: SendOptions | None = None,
    **connect_options: Unpack[ConnectOptions],
) -> SendResult:
    """Connect, send one message, close.

    Arguments as for :func:`connect` (``host``, ``port`` and the
    :class:`~smtpsec.ConnectOptions`) and :meth:`Session.send` (``sender``,
    ``recipients``, ``options``).
    """
    recipe = Recipe.prepare(host, port, connect_options, where="send")
    try:
        session = Session(run_sync(connect_steps(recipe)))
    finally:
        emit(recipe.findings, stacklevel=2)
    with session:
        steps = session._send_one_steps(message, sender, recipients, options, then_quit=True)
        return run_sync(steps)
