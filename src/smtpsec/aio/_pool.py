"""A bounded pool of authenticated sessions for bulk sending from many tasks."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from .._message import MessageInput
from .._sending import SendOptions, SendResult
from ..client import Outgoing
from ..errors import ConnectError, PolicyError, ReplyError, SMTPSecError
from ..errors import TimeoutError as DeadlineError
from ._session import AsyncSession, connect

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

    Per-message refusals (including 4xx rate limits) are returned as outcomes,
    never retried automatically: retrying is the application's decision.

    Args:
        host: the server (as for :func:`smtpsec.aio.connect`).
        port: the port (as for :func:`smtpsec.aio.connect`).
        size: most connections open at once.
        health_check_after: idle seconds after which a NOOP checks a session.
        max_idle: idle seconds after which a session is closed instead of reused.
        **connect_args: everything else :func:`smtpsec.aio.connect` takes.
    """

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        size: int = 4,
        health_check_after: float = 30.0,
        max_idle: float = 240.0,
        **connect_args: Any,
    ) -> None:
        if size < 1:
            raise PolicyError(f"Pool(size={size}): a pool needs at least one connection")
        self._host = host
        self._port = port
        self._connect_args = connect_args
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
        """Borrow a healthy session; it returns to the pool (or is replaced) after."""
        session = await self._acquire()
        try:
            yield session
        finally:
            await self._release(session)

    async def _acquire(self) -> AsyncSession:
        async with self._cond:
            while True:
                if self._closed:
                    raise ConnectError("the pool is closed")
                while self._idle:
                    session, since = self._idle.pop()
                    if await self._healthy(session, time.monotonic() - since):
                        return session
                    self._open -= 1
                if self._open < self._limit:
                    self._open += 1
                    break
                await self._cond.wait()
        try:
            return await connect(self._host, self._port, **self._connect_args)
        except ReplyError as exc:
            async with self._cond:
                self._open -= 1
                if exc.code == 421 and self._open > 0:
                    # RFC 5321 §3.8 / too many connections: shrink and wait for one.
                    self._limit = max(1, self._open)
                    self._cond.notify_all()
                    retry = True
                else:
                    retry = False
            if retry:
                return await self._acquire()
            raise
        except BaseException:
            async with self._cond:
                self._open -= 1
                self._cond.notify_all()
            raise

    async def _healthy(self, session: AsyncSession, idle: float) -> bool:
        if session.closed:
            return False
        try:
            if idle > self._max_idle:
                raise ConnectError("idle too long")
            await session.check_idle()
            if idle > self._health_check_after:
                reply = await session.noop()
                if not reply.is_success:
                    raise ConnectError(f"NOOP answered {reply.code}")
        except (SMTPSecError, OSError):
            await _close_quietly(session)
            return False
        return True

    async def _release(self, session: AsyncSession) -> None:
        async with self._cond:
            if session.closed or self._closed:
                self._open -= 1
                drop = True
            else:
                self._idle.append((session, time.monotonic()))
                drop = False
            self._cond.notify()
        if drop:
            await _close_quietly(session)

    # ------------------------------------------------------------------ sending

    async def send(
        self,
        message: MessageInput,
        *,
        sender: str | None = None,
        recipients: Iterable[str] | None = None,
        options: SendOptions | None = None,
    ) -> SendResult:
        """Send one message on a pooled session."""
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

        Returns:
            One outcome per message, in the original order.
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

        results = await asyncio.gather(*(run(chunk) for chunk in chunks))
        return [outcome for part in results for outcome in part]

    async def close(self) -> None:
        """Close every idle session; sessions in use close when returned."""
        async with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._open -= len(idle)
            self._cond.notify_all()
        for session, _since in idle:
            await _close_quietly(session)


async def _close_quietly(session: AsyncSession) -> None:
    with contextlib.suppress(SMTPSecError, OSError):
        await session.close()
