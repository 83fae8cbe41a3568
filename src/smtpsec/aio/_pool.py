"""A bounded pool of authenticated sessions for bulk sending from many tasks."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager

from typing_extensions import Unpack

from .._engine import Recipe
from ..errors import ConnectError, PolicyError, ReplyError, SMTPSecError
from ..errors import TimeoutError as DeadlineError
from ..options import ConnectOptions
from ..sending import MessageInput, Outgoing, SendOptions, SendResult
from ._session import AsyncSession, Connecting

__all__ = ["Pool"]


class Pool:
    """Up to ``size`` sessions to one server, reused across tasks.

    * A session goes back to the pool after use; a broken one (closed, 421,
      dropped by the server while idle) is replaced by a new connection.
    * Before reuse, an idle session is checked for a server-side drop (free: no
      round trip); one idle longer than ``health_check_after`` also gets a NOOP.
    * When the server refuses a new connection with ``421`` (too many
      connections) while others are open, the pool shrinks to what the server
      accepts and waits for a free session instead of failing.
    * :meth:`send_many` spreads batches across connections, each pipelined.
    * A task cancelled while it holds or checks a session closes that session
      and frees its place.

    Per-message refusals (including 4xx rate limits) are returned as outcomes,
    never retried automatically: retrying is the application's decision.

    Args:
        host: the server (as for :func:`smtpsec.aio.connect`).
        port: the port (as for :func:`smtpsec.aio.connect`).
        size: most connections open at once.
        health_check_after: idle seconds after which a NOOP checks a session.
        max_idle: idle seconds after which a session is closed instead of reused.
        **options: the :class:`~smtpsec.ConnectOptions` every connection uses,
            checked here, before any connection is made.

    Raises:
        TypeError: an option that does not exist (a typo).
        PolicyError: ``size`` is less than 1, or an option cannot work.
    """

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        size: int = 4,
        health_check_after: float = 30.0,
        max_idle: float = 240.0,
        **options: Unpack[ConnectOptions],
    ) -> None:
        if size < 1:
            raise PolicyError(f"Pool(size={size}): a pool needs at least one connection")
        self._recipe = Recipe.prepare(host, port, options, where="Pool")
        self._limit = size
        self._health_check_after = health_check_after
        self._max_idle = max_idle
        self._idle: list[tuple[AsyncSession, float]] = []
        self._open = 0
        self._cond = asyncio.Condition()
        self._closed = False

    @property
    def size(self) -> int:
        """The current connection limit (lowered when the server refuses more)."""
        return self._limit

    @property
    def open_connections(self) -> int:
        """Sessions currently open (idle or in use)."""
        return self._open

    async def __aenter__(self) -> Pool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ sessions

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """Borrow a healthy session; it returns to the pool (or is replaced) after.

        Raises:
            ConnectError: the pool is closed, or no connection could be opened.
            TimeoutError: connecting timed out.
            ReplyError: the server refused the connection or the login (the
                ``421`` of a server at its connection limit only when no other
                connection of the pool is open).
            SecurityError: a security requirement was not met; nothing was sent.
        """
        session = await self._acquire()
        try:
            yield session
        finally:
            await self._release(session)

    async def _acquire(self) -> AsyncSession:
        # Book-keeping happens under the lock, network I/O outside it: a health
        # check or a slow server must not hold up the other tasks, and since
        # nothing awaits while holding the lock, taking it never suspends, so a
        # cancellation cannot fall between taking a slot and recording it.
        while True:
            session: AsyncSession | None = None
            async with self._cond:
                while True:
                    if self._closed:
                        raise ConnectError("the pool is closed; create a new Pool to send more")
                    if self._idle:
                        session, since = self._idle.pop()
                        break
                    if self._open < self._limit:
                        self._open += 1
                        break
                    await self._cond.wait()
            if session is None:
                fresh = await self._connect()
                if fresh is not None:
                    return fresh
            elif await self._healthy(session, time.monotonic() - since):
                return session

    async def _connect(self) -> AsyncSession | None:
        """Open a session in a slot already counted; ``None``: refused with 421, wait."""
        try:
            return await Connecting(self._recipe)
        except BaseException as exc:
            self._open -= 1
            # RFC 5321 §3.8 / "too many connections" while others are open:
            # shrink to what the server accepts and wait for a session instead.
            retry = isinstance(exc, ReplyError) and exc.code == 421 and self._open > 0
            if retry:
                self._limit = max(1, self._open)
            await self._wake_all()
            if retry:
                return None
            raise

    async def _healthy(self, session: AsyncSession, idle: float) -> bool:
        """Check an idle session before reuse; close it and free its slot if it fails."""
        try:
            if session.closed:
                raise ConnectError("closed while idle")
            if idle > self._max_idle:
                raise ConnectError("idle too long")
            await session.check_idle()
            if idle > self._health_check_after:
                reply = await session.noop()
                if not reply.is_success:
                    raise ConnectError(f"NOOP answered {reply.code}")
        except BaseException as exc:
            # Also when cancelled: a NOOP may be in flight, so never reuse it.
            await self._discard(session)
            if isinstance(exc, (SMTPSecError, OSError)):
                return False
            raise
        return True

    async def _discard(self, session: AsyncSession) -> None:
        """Close a session that is not reused, then free its slot."""
        try:
            await _close_quietly(session)
        finally:
            # Freed only now, so a replacement never overlaps the old connection.
            self._open -= 1
            await self._wake_all()

    async def _wake_all(self) -> None:
        # Every waiter re-checks the pool: a woken waiter that is cancelled
        # before it runs would otherwise swallow the only wake-up.
        async with self._cond:
            self._cond.notify_all()

    async def _release(self, session: AsyncSession) -> None:
        if session.closed or self._closed:
            await self._discard(session)
        else:
            self._idle.append((session, time.monotonic()))
            await self._wake_all()

    # ------------------------------------------------------------------ sending

    async def send(
        self,
        message: MessageInput,
        *,
        sender: str | None = None,
        recipients: Iterable[str] | None = None,
        options: SendOptions | None = None,
    ) -> SendResult:
        """Send one message on a pooled session (see :meth:`smtpsec.Session.send`).

        Returns:
            The :class:`~smtpsec.SendResult`.

        Raises:
            SMTPSecError: the refusal or failure of this message, or one of the
                errors of :meth:`session`.
        """
        async with self.session() as session:
            return await session.send(
                message, sender=sender, recipients=recipients, options=options
            )

    async def send_many(
        self,
        messages: Sequence[MessageInput | Outgoing],
        *,
        options: SendOptions | None = None,
        batch: int = 50,
    ) -> list[SendResult | SMTPSecError]:
        """Send ``messages`` in pipelined batches spread over the pool's connections.

        Args:
            messages: what :meth:`smtpsec.Session.send_many` accepts.
            options: DSN and other ESMTP options for every message.
            batch: messages per batch; each batch goes on one connection.

        Returns:
            One outcome per message, in the original order: a
            :class:`~smtpsec.SendResult` or the error for that message. A batch
            whose connection could not be opened gets that error for each of
            its messages (none of them was sent).

        Raises:
            PolicyError: ``batch`` is less than 1.
            SecurityError: a security requirement was not met (raised once every
                batch has ended).
        """
        if batch < 1:
            raise PolicyError("batch must be at least 1")
        chunks = [list(messages[i : i + batch]) for i in range(0, len(messages), batch)]

        async def run(chunk: list[MessageInput | Outgoing]) -> list[SendResult | SMTPSecError]:
            try:
                async with self.session() as session:
                    return await session.send_many(chunk, options=options)
            except (ConnectError, DeadlineError, ReplyError) as exc:
                # The connection could not be opened: none of this batch was sent.
                return [exc] * len(chunk)

        # return_exceptions: an error that is not an outcome (a SecurityError,
        # say) is raised only once every batch has finished; plain gather would
        # raise at once and leave the other batches running unattended.
        parts = await asyncio.gather(*(run(chunk) for chunk in chunks), return_exceptions=True)
        outcomes: list[SendResult | SMTPSecError] = []
        for part in parts:
            if isinstance(part, BaseException):
                raise part
            outcomes.extend(part)
        return outcomes

    async def close(self) -> None:
        """Close every idle session; sessions in use close when returned.

        Afterwards every use of the pool raises :class:`~smtpsec.ConnectError`,
        also in tasks that were waiting for a session.
        """
        self._closed = True
        idle, self._idle = self._idle, []
        self._open -= len(idle)
        await self._wake_all()  # waiting tasks now raise ConnectError
        for session, _since in idle:
            await _close_quietly(session)


async def _close_quietly(session: AsyncSession) -> None:
    with contextlib.suppress(SMTPSecError, OSError):
        await session.close()
