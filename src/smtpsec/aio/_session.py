"""AsyncSession, connect() and send(): the blocking API's asyncio twins.

The same engine steps as :mod:`smtpsec.client`, awaited: same checks, errors,
report and pipelining. File I/O (the TLS memory) and CPU-heavy steps (SCRAM's
PBKDF2) run in a thread, never on the event loop.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from types import TracebackType
from typing import Any

from typing_extensions import Unpack

from .._engine import Recipe, SessionState, connect_steps, emit, run_async
from ..discovery import Endpoint
from ..errors import SMTPSecError
from ..options import ConnectOptions
from ..sansio import Reply
from ..sending import MessageInput, Outgoing, SendOptions, SendResult

__all__ = ["AsyncSession", "Connecting", "connect", "send"]


class AsyncSession(SessionState):
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
        return await run_async(self._send_one_steps(message, sender, recipients, options))

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
        return await run_async(self._noop_steps())

    async def check_idle(self) -> None:
        """Raise if the server dropped this idle connection or sent unsolicited data.

        Costs no round trip: it only looks at what already arrived. When it
        raises, the session is closed.

        Raises:
            ConnectError: the server closed the connection (EOF, or ``421``).
            RemoteProtocolError: the server sent data nobody asked for.
        """
        await run_async(self._check_idle_steps())

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
        await run_async(self._abandon_steps())


class Connecting:
    """What :func:`connect` returns: await it, or use it with ``async with``."""

    def __init__(self, recipe: Recipe) -> None:
        self._recipe = recipe
        self._session: AsyncSession | None = None

    def __await__(self) -> Generator[Any, None, AsyncSession]:
        return self._open(stacklevel=2).__await__()

    async def _open(self, *, stacklevel: int) -> AsyncSession:
        recipe = self._recipe
        try:
            return AsyncSession(await run_async(connect_steps(recipe)))
        finally:
            # Warnings point at the caller's ``await`` / ``async with`` line.
            emit(recipe.findings, stacklevel=stacklevel)

    async def __aenter__(self) -> AsyncSession:
        self._session = await self._open(stacklevel=3)
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
    host: str | Endpoint, port: int | None = None, **options: Unpack[ConnectOptions]
) -> Connecting:
    """Open a secure submission session without blocking the event loop.

    Same arguments (:class:`~smtpsec.ConnectOptions`), rules and errors as
    :func:`smtpsec.connect`. Cancelling the task closes the connection (no
    half-open TLS session is left behind).
    """
    return Connecting(Recipe.prepare(host, port, options, where="connect"))


async def send(
    message: MessageInput,
    *,
    host: str | Endpoint,
    port: int | None = None,
    sender: str | None = None,
    recipients: Iterable[str] | None = None,
    options: SendOptions | None = None,
    **connect_options: Unpack[ConnectOptions],
) -> SendResult:
    """Connect, send one message, close; see :func:`smtpsec.send`."""
    recipe = Recipe.prepare(host, port, connect_options, where="send")
    async with Connecting(recipe) as session:
        steps = session._send_one_steps(message, sender, recipients, options, then_quit=True)
        return await run_async(steps)
