"""AsyncSession, connect() and send(): the blocking API's asyncio twins."""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterable
from types import TracebackType
from typing import Any

from .._establish import Recipe
from .._io import run_async
from .._message import MessageInput
from .._sending import SendOptions, SendResult
from ..client import Outgoing, SessionCore, TokenSource, _single
from ..discovery import Endpoint
from ..errors import ConnectError, SMTPSecError
from ..errors import TimeoutError as DeadlineError
from ..policy import Policy, Security
from ..sansio import Reply
from ._transport import open_connection

__all__ = ["AsyncSession", "Connecting", "connect", "send"]


class AsyncSession(SessionCore):
    """An open, checked session for asyncio code. Create it with :func:`connect`.

    The blocking :class:`smtpsec.Session` with coroutines: the same checks,
    errors and report. Use it as an async context manager, or ``await close()``.
    Cancelling a task inside one of its coroutines closes the connection.

    Attributes:
        report: the :class:`~smtpsec.report.SecurityReport` of this session.
    """

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def send(
        self,
        message: MessageInput,
        *,
        sender: str | None = None,
        recipients: Iterable[str] | None = None,
        options: SendOptions | None = None,
    ) -> SendResult:
        """Send one message; arguments and errors as for :meth:`smtpsec.Session.send`.

        Returns:
            The :class:`~smtpsec.SendResult`; refused recipients are in ``result.refused``.
        """
        item = Outgoing(message, sender, recipients)
        return _single(await run_async(self._send_steps([item], options)))

    async def send_many(
        self,
        messages: Iterable[MessageInput | Outgoing],
        *,
        options: SendOptions | None = None,
    ) -> list[SendResult | SMTPSecError]:
        """Send many messages pipelined on this connection (see :meth:`smtpsec.Session.send_many`).

        Returns:
            One :class:`~smtpsec.SendResult` or exception per message, in order.
        """
        return await run_async(self._send_steps(messages, options))

    async def noop(self) -> Reply:
        """Send NOOP (a cheap liveness check) and return the reply.

        If no reply comes (timeout, dropped connection) or the task is
        cancelled while waiting, the session is closed: a reply still in
        flight would otherwise be taken as the answer to the next command.
        """
        try:
            return await run_async(self._noop_steps())
        except BaseException:
            await self._abandon()
            raise

    async def check_idle(self) -> None:
        """Raise if the server dropped this idle connection or sent unsolicited data.

        Costs no round trip: it only looks at what already arrived. When it
        raises, the session is closed.

        Raises:
            ConnectError: the server closed the connection (EOF, or ``421``).
            RemoteProtocolError: the server sent data nobody asked for.
        """
        try:
            await run_async(self._wire.check_idle())
        except SMTPSecError:
            await self._abandon()
            raise

    async def close(self) -> None:
        """Send QUIT, wait briefly for 221, close TLS cleanly (close_notify).

        Cancelled while waiting for the ``221``, it still closes the connection.
        """
        try:
            await run_async(self._close_steps())
        except BaseException:
            await self._abandon()
            raise

    async def _abandon(self) -> None:
        """Close the connection without QUIT (a reply may still be due)."""
        self._closed = True
        with contextlib.suppress(OSError):
            await run_async(self._wire.close())


class Connecting:
    """What :func:`connect` returns: await it, or use it with ``async with``."""

    def __init__(self, recipe: Recipe) -> None:
        self._recipe = recipe
        self._session: AsyncSession | None = None

    def __await__(self) -> Generator[Any, None, AsyncSession]:
        return self._open().__await__()

    async def _open(self) -> AsyncSession:
        recipe = self._recipe
        failures: list[str] = []
        for attempt in recipe.plan.attempts:
            guard = recipe.guard(attempt)
            try:
                transport = await open_connection(recipe.host, attempt.port, timeout=recipe.timeout)
            except (ConnectError, DeadlineError) as exc:
                recipe.unreachable(attempt, exc, failures)  # raises on the last attempt
                continue
            return AsyncSession(await run_async(recipe.establish(transport, attempt, guard)))
        raise AssertionError("unreachable: a plan has at least one attempt")  # pragma: no cover

    async def __aenter__(self) -> AsyncSession:
        self._session = await self._open()
        return self._session

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Only reached after __aenter__ succeeded (otherwise its error propagates).
        assert self._session is not None
        await self._session.close()


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
) -> Connecting:
    """Open a secure submission session without blocking the event loop.

    Same arguments, rules and errors as :func:`smtpsec.connect`. Cancelling the
    task closes the connection (no half-open TLS session is left behind).
    """
    return Connecting(
        Recipe.prepare(
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
    )


async def send(
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
    """Connect, send one message, close; see :func:`smtpsec.send`."""
    async with connect(
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
        return await session.send(message, sender=sender, recipients=recipients, options=options)
