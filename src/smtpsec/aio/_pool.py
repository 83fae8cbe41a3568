"""A bounded pool of authenticated sessions for bulk sending from many tasks.

The rules (limits, health checks, "too many connections", the rate limit) are
the engine's (``_engine._pooling``), shared with the blocking
:class:`smtpsec.Pool`; this module only awaits.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace

from typing_extensions import Unpack

from .._engine import (
    DEFAULT_POOL_SIZE,
    Entry,
    PoolLimits,
    RateLimiter,
    Recipe,
    Slots,
)
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
    * When the server says it has too many connections from us (``421``, or
      Microsoft 365's ``432 4.3.2``), at connect time or to a message, while
      others are open, the pool shrinks to what the server accepts and the
      message waits for a free session instead of failing (it was not
      accepted, so it cannot be delivered twice).
    * :meth:`send_many` spreads batches across connections, each pipelined.
    * A task cancelled while it holds or checks a session closes that session
      and frees its place.

    Other per-message refusals (including 4xx rate limits) are returned as
    outcomes, never retried automatically: retrying is the application's
    decision. A message whose connection dropped after its last byte went out
    ends with :class:`~smtpsec.DeliveryUnknown`.

    Args:
        host: the server (as for :func:`smtpsec.aio.connect`).
        port: the port (as for :func:`smtpsec.aio.connect`).
        size: most connections open at once (default 3: Microsoft 365 allows
            3 per mailbox).
        max_messages_per_connection: retire a session after this many
            messages (``None``: no limit).
        messages_per_minute: most messages per minute over the whole pool
            (``None``: no limit); tasks wait for their turn.
        health_check_after: idle seconds after which a NOOP checks a session.
        max_idle: idle seconds after which a session is closed instead of reused.
        **options: the :class:`~smtpsec.ConnectOptions` every connection uses,
            checked here, before any connection is made.

    Raises:
        TypeError: an option that does not exist (a typo).
        PolicyError: a limit or an option that cannot work.
    """

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        size: int = DEFAULT_POOL_SIZE,
        max_messages_per_connection: int | None = None,
        messages_per_minute: float | None = None,
        health_check_after: float = 30.0,
        max_idle: float = 240.0,
        **options: Unpack[ConnectOptions],
    ) -> None:
        limits = PoolLimits(
            size, max_messages_per_connection, messages_per_minute, health_check_after, max_idle
        )
        self._recipe = Recipe.prepare(host, port, options, where="Pool")
        self._slots: Slots[AsyncSession] = Slots(limits)
        self._rate = RateLimiter(messages_per_minute)
        self._cond = asyncio.Condition()

    @property
    def size(self) -> int:
        """The current connection limit (lowered when the server refuses more)."""
        return self._slots.limit

    @property
    def open_connections(self) -> int:
        """Sessions currently open (idle or in use)."""
        return self._slots.open

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
        entry = await self._acquire()
        try:
            yield entry.session
        finally:
            await self._release(entry)

    async def _acquire(self) -> Entry[AsyncSession]:
        # Book-keeping happens under the lock, network I/O outside it: a health
        # check or a slow server must not hold up the other tasks, and since
        # nothing awaits while holding the lock, taking it never suspends, so a
        # cancellation cannot fall between taking a slot and recording it.
        while True:
            async with self._cond:
                while True:
                    if self._slots.closed:
                        raise ConnectError("the pool is closed; create a new Pool to send more")
                    step = self._slots.take()
                    if step is not None:
                        break
                    await self._cond.wait()
            if step is True:
                fresh = await self._connect()
                if fresh is not None:
                    return Entry(fresh, time.monotonic())
            elif await self._healthy(step):
                return step

    async def _connect(self) -> AsyncSession | None:
        """Open a session in a booked slot; ``None``: the server is at its limit, wait."""
        try:
            # Each connection collects its own findings (tasks connect at once).
            return await Connecting(replace(self._recipe, findings=[]))
        except BaseException as exc:
            retry = self._slots.connect_failed(exc)
            await self._wake_all()
            if retry:
                return None
            raise

    async def _healthy(self, entry: Entry[AsyncSession]) -> bool:
        """Check an idle session before reuse; close it and free its slot if it fails."""
        session = entry.session
        try:
            if session.closed or self._slots.too_old(entry, time.monotonic()):
                raise ConnectError("closed, or idle too long")
            await session.check_idle()
            if self._slots.needs_noop(entry, time.monotonic()):
                reply = await session.noop()
                if not reply.is_success:
                    raise ConnectError(f"NOOP answered {reply.code}")
        except BaseException as exc:
            # Also when cancelled: a NOOP may be in flight, so never reuse it.
            await self._discard(entry)
            if isinstance(exc, (SMTPSecError, OSError)):
                return False
            raise
        return True

    async def _discard(self, entry: Entry[AsyncSession]) -> None:
        """Close a session that is not reused, then free its slot."""
        try:
            await _close_quietly(entry.session)
        finally:
            # Freed only now, so a replacement never overlaps the old connection.
            self._slots.discarded()
            await self._wake_all()

    async def _wake_all(self) -> None:
        # Every waiter re-checks the pool: a woken waiter that is cancelled
        # before it runs would otherwise swallow the only wake-up.
        async with self._cond:
            self._cond.notify_all()

    async def _release(self, entry: Entry[AsyncSession]) -> None:
        if self._slots.keep(entry, closed=entry.session.closed):
            self._slots.released(entry, time.monotonic())
            await self._wake_all()
        else:
            await self._discard(entry)

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
        (outcome,) = await self._send([Outgoing(message, sender, recipients)], options)
        if isinstance(outcome, SMTPSecError):
            raise outcome
        return outcome

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
            items = [item if isinstance(item, Outgoing) else Outgoing(item) for item in chunk]
            try:
                return await self._send(items, options)
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

    async def _send(
        self, items: list[Outgoing], options: SendOptions | None
    ) -> list[SendResult | SMTPSecError]:
        """Send ``items`` on one session; resend those refused for load elsewhere."""
        outcomes: list[SendResult | SMTPSecError | None] = [None] * len(items)
        pending = list(range(len(items)))
        while pending:
            entry = await self._acquire()
            again: list[int] = []
            try:
                wait = self._rate.reserve(time.monotonic(), len(pending))
                if wait > 0:
                    await asyncio.sleep(wait)
                results = await entry.session.send_many(
                    [items[i] for i in pending], options=options
                )
                entry.sent += len(pending)
                again = self._slots.to_resend(pending, results)
                if again:
                    # The server is at its limit: give this connection up (it
                    # counts against the limit) and send those again elsewhere.
                    await _close_quietly(entry.session)
                for index, result in zip(pending, results, strict=True):
                    if index not in again:
                        outcomes[index] = result
            finally:
                await self._release(entry)
            pending = again
        return [outcome for outcome in outcomes if outcome is not None]

    async def close(self) -> None:
        """Close every idle session; sessions in use close when returned.

        Afterwards every use of the pool raises :class:`~smtpsec.ConnectError`,
        also in tasks that were waiting for a session.
        """
        idle = self._slots.close()
        await self._wake_all()  # waiting tasks now raise ConnectError
        for entry in idle:
            await _close_quietly(entry.session)


async def _close_quietly(session: AsyncSession) -> None:
    with contextlib.suppress(SMTPSecError, OSError):
        await session.close()
