"""The rules of a connection pool, written once for the blocking and the asyncio pool.

Pure book-keeping, no I/O and no clock of its own: the pools call these with
``time.monotonic()`` under their own lock (a ``threading.Condition`` or an
``asyncio.Condition``) and do the network work outside it. What is decided
here:

* which session to reuse, or whether to open one or wait (:class:`Slots`);
* when a session is retired (too many messages, idle too long) or checked
  (idle long enough for a NOOP);
* what "the server has too many connections from us" looks like
  (:func:`is_connection_limit`: ``421``, or ``432 4.3.2`` as Microsoft 365
  sends it), and that the pool then shrinks to what the server accepts and
  waits instead of failing the message;
* the optional rate limit (:class:`RateLimiter`, messages per minute).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

from ..errors import ConnectError, DeliveryUnknown, PolicyError, ReplyError

__all__ = [
    "DEFAULT_SIZE",
    "Entry",
    "PoolLimits",
    "RateLimiter",
    "Slots",
    "is_connection_limit",
]

S = TypeVar("S")

#: Microsoft 365 allows 3 concurrent SMTP connections per mailbox; the pools'
#: default stays within it (and within what most providers tolerate).
DEFAULT_SIZE = 3


@dataclass(frozen=True, slots=True)
class PoolLimits:
    """What a pool may do; checked at construction, before any connection.

    Attributes:
        size: most connections open at once.
        max_messages_per_connection: retire a session after this many
            messages (``None``: no limit). Some providers close or throttle
            long-lived sessions.
        messages_per_minute: most messages handed to the server per minute,
            over the whole pool (``None``: no limit).
        health_check_after: idle seconds after which a NOOP checks a session
            before reuse (a free check for a server-side drop always happens).
        max_idle: idle seconds after which a session is closed, not reused.
    """

    size: int = DEFAULT_SIZE
    max_messages_per_connection: int | None = None
    messages_per_minute: float | None = None
    health_check_after: float = 30.0
    max_idle: float = 240.0

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise PolicyError(f"Pool(size={self.size!r}): a pool needs at least one connection")
        per_connection = self.max_messages_per_connection
        if per_connection is not None and (
            isinstance(per_connection, bool)
            or not isinstance(per_connection, int)
            or per_connection < 1
        ):
            raise PolicyError(
                f"Pool(max_messages_per_connection={per_connection!r}): pass a positive "
                "whole number, or None for no limit"
            )
        rate = self.messages_per_minute
        if rate is not None and (isinstance(rate, bool) or not rate > 0):
            raise PolicyError(
                f"Pool(messages_per_minute={rate!r}): pass a positive number, or None for no limit"
            )
        for name in ("health_check_after", "max_idle"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise PolicyError(f"Pool({name}={value!r}): pass a number of seconds >= 0")


def is_connection_limit(error: object) -> bool:
    """Whether ``error`` says the server has too many connections from us.

    ``421`` (RFC 5321 §3.8: the service closes the channel; at connect time
    with other connections open, the usual "too many connections") and
    ``432 4.3.2`` (Microsoft 365's concurrent-connection limit). The message
    was not accepted; it may be sent again on another connection.
    """
    if not isinstance(error, ReplyError):
        return False
    return error.code == 421 or (error.code == 432 and error.enhanced_status == "4.3.2")


@dataclass(eq=False, slots=True)
class Entry(Generic[S]):
    """A pooled session and what the rules need to know about it."""

    session: S
    since: float  # when it last went idle (monotonic seconds)
    sent: int = 0  # messages handed to it so far
    generation: int = 0  # the pool's book-keeping it belongs to (a fork starts anew)


@dataclass(eq=False)
class Slots(Generic[S]):
    """Which sessions are idle, how many are open, and the current limit.

    Every method is called with the pool's lock held and does no I/O.
    """

    limits: PoolLimits
    limit: int = 0
    open: int = 0
    idle: list[Entry[S]] = field(default_factory=list)
    closed: bool = False

    def __post_init__(self) -> None:
        self.limit = self.limits.size

    def take(self) -> Entry[S] | Literal[True] | None:
        """The next step for a caller that wants a session.

        Returns:
            An idle :class:`Entry` to check and reuse; ``True``: a slot was
            booked, open a new connection in it; ``None``: wait.
        """
        if self.idle:
            return self.idle.pop()
        if self.open < self.limit:
            self.open += 1
            return True
        return None

    def needs_noop(self, entry: Entry[S], now: float) -> bool:
        """An idle session this old gets a NOOP before reuse."""
        return now - entry.since > self.limits.health_check_after

    def too_old(self, entry: Entry[S], now: float) -> bool:
        """An idle session this old is closed instead of reused."""
        return now - entry.since > self.limits.max_idle

    def connect_failed(self, error: BaseException) -> bool:
        """A booked slot's connection failed; ``True``: shrink and wait, don't fail.

        With other connections of the pool open, a connection-limit refusal
        means the server accepts no more than those: the limit drops to them.
        """
        self.open -= 1
        if is_connection_limit(error) and self.open > 0:
            self.limit = max(1, self.open)
            return True
        return False

    def to_resend(self, pending: Sequence[int], outcomes: Sequence[object]) -> list[int]:
        """Of a batch sent on one session, the messages to send again elsewhere.

        Those refused because the server has too many connections from us
        (:func:`is_connection_limit`), and those after them that the closing
        connection left unsent, but never one that may have been delivered
        (:class:`~smtpsec.DeliveryUnknown`): none of them was accepted, so
        sending them again cannot deliver anything twice. When there are
        some, the pool shrinks by this session (which the caller closes). On
        the pool's only connection nothing is resent: the refusals stand.

        Args:
            pending: the batch's message indices, in the order sent.
            outcomes: each message's outcome, in the same order.
        """
        if self.open <= 1 or not any(is_connection_limit(o) for o in outcomes):
            return []
        self.limit = max(1, min(self.limit, self.open - 1))
        again: list[int] = []
        for index, outcome in zip(pending, outcomes, strict=True):
            unsent = isinstance(outcome, ConnectError) and not isinstance(outcome, DeliveryUnknown)
            if is_connection_limit(outcome) or (again and unsent):
                again.append(index)
        return again

    def keep(self, entry: Entry[S], *, closed: bool) -> bool:
        """Whether a returned session goes back to the idle list."""
        if closed or self.closed:
            return False
        per_connection = self.limits.max_messages_per_connection
        return per_connection is None or entry.sent < per_connection

    def released(self, entry: Entry[S], now: float) -> None:
        entry.since = now
        self.idle.append(entry)

    def discarded(self) -> None:
        """A session is gone (after its connection was closed): free its slot."""
        self.open -= 1

    def close(self) -> list[Entry[S]]:
        """Mark the pool closed; return the idle sessions for the caller to close."""
        self.closed = True
        idle, self.idle = self.idle, []
        self.open -= len(idle)
        return idle


class RateLimiter:
    """At most ``per_minute`` messages per minute, spread evenly (no bursts past one).

    :meth:`reserve` books the next slot and says how long to wait for it, so
    callers sleep outside the pool's lock.
    """

    def __init__(self, per_minute: float | None) -> None:
        self._interval = 60.0 / per_minute if per_minute else 0.0
        self._next = float("-inf")

    def reserve(self, now: float, count: int = 1) -> float:
        """Book ``count`` messages; return the seconds to wait before sending them."""
        if not self._interval:
            return 0.0
        start = max(now, self._next)
        self._next = start + self._interval * count
        return start - now
