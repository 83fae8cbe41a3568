"""``smtpsec.Pool``: authenticated sessions shared by the threads of a process.

A web application that sends a password-reset mail per request should not pay
for TCP, TLS, EHLO and AUTH on every request. A :class:`Pool` keeps a few
checked sessions open and lends them to threads one at a time: after the
first message, each costs about one round trip.

The rules (how many connections, when a session is checked, retired or
replaced, what a provider's "too many connections" looks like, the rate
limit) are the engine's, shared with :class:`smtpsec.aio.Pool`.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import replace

from typing_extensions import Unpack

from ._engine import (
    DEFAULT_POOL_SIZE,
    Entry,
    PoolLimits,
    RateLimiter,
    Recipe,
    Slots,
    connect_steps,
    emit,
    run_sync,
)
from .client import Session
from .errors import ConnectError, PolicyError, ReplyError, SMTPSecError
from .errors import TimeoutError as DeadlineError
from .options import ConnectOptions
from .sending import MessageInput, Outgoing, SendOptions, SendResult

__all__ = ["Pool"]

#: Every live pool, so a forked child can forget what it inherited.
_POOLS: weakref.WeakSet[Pool] = weakref.WeakSet()
#: The process-wide pools of :meth:`Pool.shared`, by configuration.
_SHARED: dict[object, Pool] = {}
_SHARED_LOCK = threading.Lock()


class Pool:
    """Up to ``size`` authenticated sessions to one server, lent to one thread at a time.

    * A session goes back to the pool after use; a broken one is replaced by a
      new connection, and before reuse an idle session is checked for a
      server-side drop (free), or with a NOOP when it was idle longer than
      ``health_check_after``.
    * When the server says it has too many connections from us (``421``, or
      Microsoft 365's ``432 4.3.2``) while others are open, the pool shrinks
      to what the server accepts and the message waits for a free session:
      it was not accepted, so sending it again cannot deliver it twice.
    * Nothing else is retried: a refusal is the message's outcome, and a
      message whose connection dropped after its last byte went out ends
      with :class:`~smtpsec.DeliveryUnknown` (it may have been delivered).
    * Fork-safe: in a child process (``os.fork()``, gunicorn or Celery
      prefork workers) the pool starts empty and never touches the
      parent's connections.

    Args:
        host: the server (as for :func:`smtpsec.connect`).
        port: the port (as for :func:`smtpsec.connect`).
        size: most connections open at once (default 3: Microsoft 365 allows
            3 per mailbox).
        max_messages_per_connection: retire a session after this many
            messages (``None``: no limit).
        messages_per_minute: most messages per minute over the whole pool
            (``None``: no limit); callers wait for their turn.
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
        emit(self._recipe.findings, stacklevel=2)
        self._limits = limits
        self._generation = 0
        self._start()
        _POOLS.add(self)

    def _start(self) -> None:
        """Fresh book-keeping (at construction, and in a forked child)."""
        self._generation += 1
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._slots: Slots[Session] = Slots(self._limits)
        self._rate = RateLimiter(self._limits.messages_per_minute)

    @classmethod
    def shared(cls, host: str, port: int | None = None, **options: Unpack[ConnectOptions]) -> Pool:
        """The process-wide pool for this configuration, created on first use.

        For code that sends one message now and then from many places (a web
        request, a log handler): consecutive calls with the same host, port
        and options share authenticated sessions, so a message after the first
        costs about one round trip. The pools close at interpreter exit; in a
        forked child each starts empty. The pool has the default limits.

        Raises:
            TypeError: an option that does not exist (a typo).
            PolicyError: an option that cannot work.
        """
        try:
            key: object = (host, port, tuple(sorted(options.items())))
            hash(key)
        except TypeError:
            # A value that cannot be a key (an unhashable token provider, say):
            # its own pool, still closed at exit.
            key = object()
        with _SHARED_LOCK:
            pool = _SHARED.get(key)
            if pool is None or pool._slots.closed:
                pool = _SHARED[key] = cls(host, port, **options)
            return pool

    @classmethod
    def close_shared(cls) -> None:
        """Close every pool :meth:`shared` has made (also done at interpreter exit).

        For an orderly shutdown, or a test that wants the server to see the
        sessions end; later :meth:`shared` calls start new pools.
        """
        _close_shared()

    @property
    def size(self) -> int:
        """The current connection limit (lowered when the server refuses more)."""
        return self._slots.limit

    @property
    def open_connections(self) -> int:
        """Sessions currently open (idle or in use)."""
        return self._slots.open

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ sessions

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """Borrow a healthy session for the ``with`` block; it returns to the pool after.

        Raises:
            ConnectError: the pool is closed, or no connection could be opened.
            TimeoutError: connecting timed out.
            ReplyError: the server refused the connection or the login.
            SecurityError: a security requirement was not met; nothing was sent.
        """
        entry = self._acquire()
        try:
            yield entry.session
        finally:
            self._release(entry)

    def _acquire(self) -> Entry[Session]:
        # Book-keeping under the lock, network I/O outside it.
        while True:
            with self._cond:
                if self._pid != os.getpid():  # pragma: no cover - the fork hook ran first
                    self._start()
                while True:
                    if self._slots.closed:
                        raise ConnectError("the pool is closed; create a new Pool to send more")
                    step = self._slots.take()
                    if step is not None:
                        break
                    self._cond.wait()
            if step is True:
                session = self._connect()
                if session is not None:
                    return Entry(session, time.monotonic(), generation=self._generation)
            elif self._healthy(step):
                return step

    def _connect(self) -> Session | None:
        """Open a session in a booked slot; ``None``: the server is at its limit, wait."""
        # Each connection collects its own findings (threads connect at once).
        recipe = replace(self._recipe, findings=[])
        try:
            try:
                established = run_sync(connect_steps(recipe))
            finally:
                emit(recipe.findings, stacklevel=5)
        except BaseException as exc:
            with self._cond:
                retry = self._slots.connect_failed(exc)
                self._cond.notify_all()
            if retry:
                return None
            raise
        return Session(established)

    def _healthy(self, entry: Entry[Session]) -> bool:
        """Check an idle session before reuse; close it and free its slot if it fails."""
        session = entry.session
        try:
            if session.closed or self._slots.too_old(entry, time.monotonic()):
                raise ConnectError("closed, or idle too long")
            session.check_idle()
            if self._slots.needs_noop(entry, time.monotonic()):
                reply = session.noop()
                if not reply.is_success:
                    raise ConnectError(f"NOOP answered {reply.code}")
        except BaseException as exc:
            self._discard(entry)
            if isinstance(exc, (SMTPSecError, OSError)):
                return False
            raise
        return True

    def _discard(self, entry: Entry[Session]) -> None:
        """Close a session that is not reused, then free its slot."""
        if self._inherited(entry):
            return
        try:
            with contextlib.suppress(SMTPSecError, OSError):
                entry.session.close()
        finally:
            with self._cond:
                self._slots.discarded()
                self._cond.notify_all()

    def _inherited(self, entry: Entry[Session]) -> bool:
        """A session from before a fork: the parent's connection, never touched here."""
        return entry.generation != self._generation

    def _release(self, entry: Entry[Session]) -> None:
        if self._inherited(entry):
            return
        with self._cond:
            keep = self._slots.keep(entry, closed=entry.session.closed)
            if keep:
                self._slots.released(entry, time.monotonic())
                self._cond.notify_all()
        if not keep:
            self._discard(entry)

    # ------------------------------------------------------------------ sending

    def send(
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
        (outcome,) = self._send([Outgoing(message, sender, recipients)], options)
        if isinstance(outcome, SMTPSecError):
            raise outcome
        return outcome

    def send_many(
        self,
        messages: Iterable[MessageInput | Outgoing],
        *,
        options: SendOptions | None = None,
        batch: int = 50,
    ) -> list[SendResult | SMTPSecError]:
        """Send ``messages`` in pipelined batches, one pooled session per batch.

        The batches go one after another from the calling thread; several
        threads sending through one pool share its connections. Messages are
        read from ``messages`` one batch at a time.

        Args:
            messages: what :meth:`smtpsec.Session.send_many` accepts.
            options: DSN and other ESMTP options for every message.
            batch: messages per batch (one pipelined flight each).

        Returns:
            One outcome per message, in order: a :class:`~smtpsec.SendResult`
            or the error for that message. A batch whose connection could not
            be opened gets that error for each of its messages (none was sent).

        Raises:
            PolicyError: ``batch`` is less than 1.
            SecurityError: a security requirement was not met.
        """
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise PolicyError(f"batch={batch!r}: pass a whole number of messages >= 1")
        outcomes: list[SendResult | SMTPSecError] = []
        items = iter(messages)
        while True:
            chunk = [
                item if isinstance(item, Outgoing) else Outgoing(item)
                for item in _take(items, batch)
            ]
            if not chunk:
                return outcomes
            try:
                outcomes.extend(self._send(chunk, options))
            except (ConnectError, DeadlineError, ReplyError) as exc:
                outcomes.extend([exc] * len(chunk))

    def _send(
        self, items: list[Outgoing], options: SendOptions | None
    ) -> list[SendResult | SMTPSecError]:
        """Send ``items`` on one session; resend those refused for load elsewhere."""
        outcomes: list[SendResult | SMTPSecError | None] = [None] * len(items)
        pending = list(range(len(items)))
        while pending:
            entry = self._acquire()
            again: list[int] = []
            try:
                with self._cond:
                    wait = self._rate.reserve(time.monotonic(), len(pending))
                if wait > 0:
                    time.sleep(wait)
                results = entry.session.send_many([items[i] for i in pending], options=options)
                entry.sent += len(pending)
                with self._cond:
                    again = self._slots.to_resend(pending, results)
                if again:
                    # The server is at its limit: give this connection up (it
                    # counts against the limit) and send those again elsewhere.
                    with contextlib.suppress(SMTPSecError, OSError):
                        entry.session.close()
                for index, result in zip(pending, results, strict=True):
                    if index not in again:
                        outcomes[index] = result
            finally:
                self._release(entry)
            pending = again
        return [outcome for outcome in outcomes if outcome is not None]

    def close(self) -> None:
        """Close every idle session; sessions in use close when returned.

        Afterwards every use of the pool raises :class:`~smtpsec.ConnectError`,
        also in threads that were waiting for a session.
        """
        with self._cond:
            idle = self._slots.close()
            self._cond.notify_all()
        for entry in idle:
            if not self._inherited(entry):
                with contextlib.suppress(SMTPSecError, OSError):
                    entry.session.close()


def _take(items: Iterator[MessageInput | Outgoing], count: int) -> list[MessageInput | Outgoing]:
    chunk: list[MessageInput | Outgoing] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == count:
            break
    return chunk


def _forget_after_fork() -> None:
    """In a forked child: every pool starts empty; the parent's sockets stay the parent's."""
    for pool in list(_POOLS):
        pool._start()


def _close_shared() -> None:
    """At interpreter exit: QUIT the shared pools' idle sessions."""
    with _SHARED_LOCK:
        pools = list(_SHARED.values())
        _SHARED.clear()
    for pool in pools:
        pool.close()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork()
    os.register_at_fork(after_in_child=_forget_after_fork)
atexit.register(_close_shared)
