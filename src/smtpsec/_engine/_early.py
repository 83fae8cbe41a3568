"""Early pipelining (``PIPECONNECT``, draft-harris-early-pipe): what is kept and what is sent.

Exim's ``PIPECONNECT`` lets a client that kept a server's EHLO reply send its
next EHLO before the greeting, with one command (group) behind it.
:data:`EHLO_REPLIES` keeps those replies for the process, so one-shot sends,
pools and threads share what any of them learnt. :func:`early_hello` sends
EHLO and the first AUTH line early and reads what comes back; the guard still
judges the real greeting and EHLO reply. Only replies received over
confidential TLS (verified, 1.2 or later, not pin-only) are kept or used, and
only with ``PIPECONNECT`` in them; a kept reply is a hint for what to send
early, never a substitute for the server's real reply.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, TypeVar

from .. import auth as sasl
from ..errors import AuthenticationError, ConnectError, RemoteProtocolError, SMTPSecError
from ..errors import TimeoutError as DeadlineError
from ..guard import Guard
from ..policy import Attempt, Security
from ..sansio import Command, Extensions
from . import _phases
from ._auth import auth_line
from ._io import IO
from ._login import choose, login, wants_auth
from ._wire import Wire

if TYPE_CHECKING:
    from ._recipe import Recipe

__all__ = [
    "EHLO_REPLIES",
    "EarlyFlight",
    "EarlyRefused",
    "EhloReplies",
    "early_hello",
    "early_key",
    "early_login",
    "learn",
]

_V = TypeVar("_V")

#: The EHLO keyword of early pipelining.
KEYWORD: Final = "PIPECONNECT"

#: Failures of an early flight that a normal connection may not have: the
#: server closed or garbled the dialogue, or refused the early EHLO. Security
#: errors, a refusing greeting and timeouts are never retried.
_RETRIED: Final = (ConnectError, RemoteProtocolError)
#: ...and those after which the server is never tried early again (a server
#: that lets early input time out would otherwise cost a timeout every time).
_REFUSED: Final = (*_RETRIED, DeadlineError)


def advertises_early_pipelining(extensions: Extensions) -> bool:
    """Whether an EHLO reply allows early pipelining on the next connection.

    ``PIPELINING`` too: what goes after the early EHLO is pipelined.
    """
    return KEYWORD in extensions and "PIPELINING" in extensions


class EhloReplies:
    """Recent servers' EHLO replies that advertised ``PIPECONNECT`` (thread-safe, bounded).

    A server that did not take an early flight is marked refused for the life
    of the process: it is never learnt again, so a server that advertises
    ``PIPECONNECT`` but refuses it costs one extra connection, once.

    Args:
        maxsize: most servers kept, and most refused ones (least recently used go first).
    """

    def __init__(self, maxsize: int = 256) -> None:
        self._maxsize = maxsize
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, Extensions] = OrderedDict()
        self._refused: OrderedDict[Hashable, None] = OrderedDict()

    def get(self, key: Hashable) -> Extensions | None:
        """The reply kept under ``key``, if any."""
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def learn(self, key: Hashable, extensions: Extensions) -> None:
        """Keep ``extensions`` when they advertise early pipelining, else forget ``key``."""
        with self._lock:
            if key in self._refused or not advertises_early_pipelining(extensions):
                self._entries.pop(key, None)
                return
            self._entries[key] = extensions
            self._entries.move_to_end(key)
            _trim(self._entries, self._maxsize)

    def refuse(self, key: Hashable) -> None:
        """Forget ``key`` and never learn it again (its server refused an early flight)."""
        with self._lock:
            self._entries.pop(key, None)
            self._refused[key] = None
            self._refused.move_to_end(key)
            _trim(self._refused, self._maxsize)

    def forget(self, key: Hashable) -> None:
        """Drop what was kept under ``key`` (it may be learnt again)."""
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        """Forget every server, refused ones included."""
        with self._lock:
            self._entries.clear()
            self._refused.clear()

    def after_fork(self) -> None:
        """Give the child of ``os.fork()`` a fresh lock.

        A lock held by another thread at ``fork()`` would never be released in
        the child; the entries themselves are plain data and stay valid.
        """
        self._lock = threading.Lock()


def _trim(entries: OrderedDict[Hashable, _V], maxsize: int) -> None:
    while len(entries) > maxsize:
        entries.popitem(last=False)


#: The process's memory of early-pipelining servers.
EHLO_REPLIES: Final = EhloReplies()
if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork()
    os.register_at_fork(after_in_child=EHLO_REPLIES.after_fork)


def early_key(recipe: Recipe, attempt: Attempt) -> Hashable | None:
    """Where a server's reply is kept: name, port, how TLS starts, EHLO name, trust, identity.

    The policy (with its ``ssl_context``, which policies do not compare) and
    the reference identity are part of it, so a reply learnt under one trust
    configuration never decides what another one sends. ``None`` when the
    policy cannot be part of a key (a list where a tuple belongs): such a
    session never pipelines early.
    """
    policy = recipe.policy
    key = (
        recipe.host.lower().rstrip("."),
        attempt.port,
        attempt.tls is Security.IMPLICIT_TLS,
        recipe.helo,
        policy,
        None if policy.ssl_context is None else id(policy.ssl_context),
        recipe.identity,
    )
    try:
        hash(key)
    except TypeError:
        return None
    return key


def learn(
    recipe: Recipe, attempt: Attempt, guard: Guard, wire: Wire, extensions: Extensions
) -> None:
    """Keep (or forget) the server's EHLO reply; only over confidential TLS."""
    key = early_key(recipe, attempt)
    if key is not None and guard.confidential(wire.transport.tls):
        EHLO_REPLIES.learn(key, extensions)


class EarlyRefused(Exception):
    """The server did not take an early flight; one normal connection may follow.

    Never leaves :func:`~._setup.connect_steps`; its cause is what went wrong.
    """


@dataclass(frozen=True, slots=True)
class EarlyFlight:
    """What an early EHLO settled.

    Attributes:
        extensions: the server's real EHLO reply (the guard has seen it).
        mechanism: the AUTH queued behind the EHLO, its replies not yet read.
        confirmed: the real reply still advertises early pipelining.
    """

    extensions: Extensions
    mechanism: sasl.Mechanism | None
    confirmed: bool


def early_hello(
    wire: Wire, attempt: Attempt, recipe: Recipe, guard: Guard, *, greeting_due: bool
) -> IO[EarlyFlight | None]:
    """EHLO (and the first AUTH line) before the greeting or EHLO reply, when allowed.

    Only over confidential TLS, to a server whose reply, kept from such a
    session, advertised ``PIPECONNECT``; otherwise ``None`` and nothing is sent.
    The guard's check before credentials (``before_auth``) runs before the AUTH
    line is queued; its checks of the greeting and EHLO reply run on the real
    replies when they arrive, after that line went out to the verified server.

    Raises:
        EarlyRefused: the server closed or garbled the dialogue, or refused the
            early EHLO (marked refused; a normal connection may follow).
        ReplyError: a refusing greeting, judged by the guard as always.
        TimeoutError: no reply in time (marked refused, not retried).
    """
    info = wire.transport.tls
    if not guard.confidential(info):
        return None
    key = early_key(recipe, attempt)
    kept = None if key is None else EHLO_REPLIES.get(key)
    if key is None or kept is None:
        return None
    wire.conn.allow_early_pipelining()
    wire.queue(Command("EHLO", recipe.helo))
    mechanism: sasl.Mechanism | None = None
    if wants_auth(recipe, kept, info):
        guard.before_auth(info)
        # On an error here the real reply decides, and says why, after the EHLO.
        with contextlib.suppress(SMTPSecError):
            mechanism = choose(kept, recipe, wire.peer)
        if mechanism is not None:
            wire.queue((yield from auth_line(mechanism)))
    try:
        if greeting_due:
            greeting = yield from _phases.greeting(wire, implicit=True)
            guard.after_greeting(greeting, tls=True)
        reply = (yield from wire.read()).reply
        if reply.code != 250:
            raise RemoteProtocolError(f"{wire.peer} refused the early EHLO ({reply.code})")
        extensions = _phases.accepted_ehlo(wire, reply)
    except Exception as exc:
        if not isinstance(exc, _REFUSED):
            EHLO_REPLIES.forget(key)  # a refusing greeting, say: learnt again next time
            raise
        EHLO_REPLIES.refuse(key)
        if isinstance(exc, _RETRIED):
            raise EarlyRefused from exc
        raise
    EHLO_REPLIES.learn(key, extensions)
    guard.after_ehlo(extensions, tls=True)
    return EarlyFlight(extensions, mechanism, confirmed=advertises_early_pipelining(extensions))


def early_login(wire: Wire, attempt: Attempt, recipe: Recipe, flight: EarlyFlight) -> IO[str]:
    """Finish the AUTH that went out behind the early EHLO.

    When the server no longer offers the queued mechanism (it was chosen from
    the kept reply), its refusal is expected and the mechanism is chosen again
    from the real reply; a refusal of an offered mechanism (wrong credentials)
    is final, as it is without early pipelining.

    Raises:
        EarlyRefused: the server, no longer advertising early pipelining,
            closed or garbled the dialogue after the early EHLO.
    """
    queued = flight.mechanism
    assert queued is not None
    outdated = queued.name not in flight.extensions.auth_mechanisms
    try:
        return (yield from login(wire, flight.extensions, recipe, queued=queued, outdated=outdated))
    except AuthenticationError:
        if not outdated:
            raise
    except _RETRIED as exc:
        if flight.confirmed:
            raise
        key = early_key(recipe, attempt)
        if key is not None:
            EHLO_REPLIES.refuse(key)
        raise EarlyRefused from exc
    return (yield from login(wire, flight.extensions, recipe))
