"""Session set-up: greeting, TLS, EHLO and AUTH, from a :class:`~._recipe.Recipe`.

:func:`connect_steps` is the whole connect as one dialogue: read the TLS
memory, try each port of the plan, and on the first one reached run
:func:`establish`, asking the guard at every checkpoint. The blocking and
the asyncio facades drive the same generator, so they cannot differ.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from ..errors import (
    ConnectError,
    PolicyError,
    ProxyError,
)
from ..errors import TimeoutError as DeadlineError
from ..guard import Guard
from ..identity import check_certificate_identity
from ..policy import (
    Attempt,
    Security,
)
from ..report import SecurityReport
from ..sansio import ClientConnection, Extensions
from ..tls import build_context, pin_candidates
from ..transports import DIRECT, AnyTransport
from . import _phases
from ._early import EarlyFlight, EarlyRefused, early_hello, early_login, learn
from ._io import IO, Offload, OpenConnection, perform
from ._login import login, wants_auth
from ._recipe import Recipe
from ._wire import Wire

__all__ = ["Established", "connect_steps", "establish", "remembered", "transport_steps"]


@dataclass(frozen=True, slots=True)
class Established:
    """A session that passed every checkpoint: what a Session is built from."""

    wire: Wire
    guard: Guard
    report: SecurityReport
    extensions: Extensions


def remembered(recipe: Recipe, attempt: Attempt) -> IO[bool]:
    """The TLS-memory snapshot for this attempt (file I/O: offloaded under asyncio).

    The snapshot is the account's, whatever the attempt's port: verified TLS
    seen on one port of the host is expected on all of them.
    """
    memory = recipe.policy.memory
    if memory is None:
        return False
    return (yield from perform(Offload(partial(memory.requires_tls, recipe.account()))))


def connect_steps(recipe: Recipe) -> IO[Established]:
    """Try each port of the plan; on the first one reached, set up the session.

    Only an unreachable port moves on to the next attempt, never a security
    failure (no downgrade). The TLS memory is read before and written after
    the dialogue, never inside it.

    Raises:
        ConnectError: no port could be reached (all failures are listed).
    """
    failures: list[str] = []
    for attempt in recipe.plan.attempts:
        early = True
        while True:
            noted = len(recipe.findings)
            guard = recipe.guard(attempt, remembered=(yield from remembered(recipe, attempt)))
            try:
                opened = yield from perform(
                    OpenConnection(recipe.host, attempt.port, recipe.timeout, recipe.route)
                )
            except (ConnectError, DeadlineError) as exc:
                _unreachable(exc, failures, last=attempt is recipe.plan.attempts[-1])
                break  # on to the plan's next port
            try:
                return (
                    yield from establish(
                        opened.transport,
                        attempt,
                        recipe,
                        guard,
                        address=opened.address,
                        early=early,
                    )
                )
            except EarlyRefused:
                # The server took the early flight badly: it is marked, and one
                # normal connection follows, with a guard of its own (whose
                # warnings would repeat the first one's).
                del recipe.findings[noted:]
                early = False
    raise AssertionError("unreachable: a plan has at least one attempt")  # pragma: no cover


def _unreachable(exc: ConnectError | DeadlineError, failures: list[str], *, last: bool) -> None:
    """Note a port that could not be reached; raise when no port is left to try.

    Raises:
        ProxyError: the proxy itself failed (another port would not help).
        ConnectError, TimeoutError: the last port failed too (every failure listed).
    """
    if isinstance(exc, ProxyError) and not exc.target_unreachable:
        raise exc
    failures.append(str(exc))
    if not last:
        return
    if len(failures) > 1:
        raise ConnectError("could not reach any submission port: " + " | ".join(failures)) from exc
    raise exc


def transport_steps(transport: AnyTransport, recipe: Recipe) -> IO[Established]:
    """Set up a session over a transport the caller opened (the plan's first attempt).

    Raises:
        PolicyError: a network option (``proxy``, ``source_address``,
            ``happy_eyeballs_delay``) was given: the caller's transport decided those.
    """
    if recipe.route != DIRECT:
        raise PolicyError(
            "proxy=, source_address= and happy_eyeballs_delay= shape the connection that "
            "connect() opens; with your own transport, open it that way yourself"
        )
    if recipe.early_pipelining:
        raise PolicyError(
            "early_pipelining=True needs connect(), which can open a normal connection "
            "when a server does not take the early flight; drop it with your own transport"
        )
    attempt = recipe.plan.attempts[0]
    guard = recipe.guard(attempt, remembered=(yield from remembered(recipe, attempt)))
    return (yield from establish(transport, attempt, recipe, guard))


def establish(
    transport: AnyTransport,
    attempt: Attempt,
    recipe: Recipe,
    guard: Guard,
    *,
    address: str | None = None,
    early: bool = False,
) -> IO[Established]:
    """Run greeting, TLS, EHLO and AUTH over an already-open ``transport``.

    ``address`` (``"ip:port"`` the connection went to) goes into the report.
    ``early``: early pipelining may be used when the recipe asks for it (the
    caller can open a new connection after :class:`~._early.EarlyRefused`).
    """
    host, policy = recipe.host, recipe.policy
    wire = Wire(
        transport,
        ClientConnection(
            tls_active=attempt.tls is Security.IMPLICIT_TLS, require_tls=attempt.requires_tls
        ),
        timeout=recipe.timeout,
        host=host,
        port=attempt.port,
        advice=recipe.advice,
    )
    pinned = False
    used: str | None = None
    # A resumed handshake verifies no chain, so there would be no CA keys to
    # compare pins with (RFC 8314 §5.4): a pinned policy always does a full handshake.
    sessions = None if policy.pins else recipe.tls_sessions
    context: ssl.SSLContext | None = None
    flight: EarlyFlight | None = None
    early = early and recipe.early_pipelining
    try:
        verify: Callable[[bytes], object] | None = None
        if attempt.tls is not Security.PLAINTEXT:
            # RFC 7817: for a discovered endpoint the reference identities (the
            # user's domain, SRV-ID, a trusted target) are matched after the
            # handshake, and the context validates the chain only.
            context = build_context(policy, check_hostname=recipe.identity is None)
            if recipe.identity is not None:
                verify = partial(check_certificate_identity, ref=recipe.identity)
        # Only a session from this host, port and context (so this policy) is offered.
        resume = (
            sessions.take(context, host, attempt.port)
            if sessions is not None and context is not None
            else None
        )
        if attempt.tls is Security.IMPLICIT_TLS:
            assert context is not None
            implicit_info = yield from _phases.implicit_tls(
                wire, context, verify_identity=verify, session=resume
            )
            pinned = guard.after_handshake(implicit_info)
            if early:
                flight = yield from early_hello(wire, attempt, recipe, guard, greeting_due=True)
        if flight is None:
            greeting = yield from _phases.greeting(
                wire, implicit=attempt.tls is Security.IMPLICIT_TLS
            )
            guard.after_greeting(greeting, tls=wire.transport.tls is not None)
            extensions = yield from _ehlo(wire, recipe.helo)
            if guard.after_ehlo(extensions, tls=wire.transport.tls is not None):
                assert context is not None
                _reply, upgraded = yield from _phases.starttls(
                    wire, guard, context, verify_identity=verify, session=resume
                )
                pinned = guard.after_handshake(upgraded)
                if early:
                    flight = yield from early_hello(
                        wire, attempt, recipe, guard, greeting_due=False
                    )
                if flight is None:
                    extensions = yield from _ehlo(wire, recipe.helo)
        info_now = wire.transport.tls
        if flight is not None:
            extensions = flight.extensions
        elif early:
            learn(recipe, attempt, guard, wire, extensions)
        if flight is not None and flight.mechanism is not None:
            used = yield from early_login(wire, attempt, recipe, flight)
        elif wants_auth(recipe, extensions, info_now):
            guard.before_auth(info_now)
            used = yield from login(wire, extensions, recipe)
    except BaseException as exc:
        # On an error say QUIT first (when the channel allows); on cancellation
        # or interrupt only close.
        if isinstance(exc, Exception):
            yield from _phases.quit_quietly(wire)
        else:
            yield from _phases.abandon(wire)
        raise
    info = wire.transport.tls
    if sessions is not None and context is not None and info is not None:
        # After the greeting and EHLO inside TLS: a TLS 1.3 ticket, sent after
        # the handshake, has been read by now.
        sessions.put(context, host, attempt.port, getattr(wire.transport, "tls_session", None))
    if info is not None and info.verified and policy.memory is not None:
        memory = policy.memory
        yield from perform(
            Offload(
                partial(
                    memory.record,
                    recipe.account(),
                    mode=Security.IMPLICIT_TLS
                    if attempt.tls is Security.IMPLICIT_TLS
                    else Security.STARTTLS,
                    tls_version=info.version,
                    port=attempt.port,
                )
            )
        )
    if info is None:
        mode = Security.PLAINTEXT
    elif attempt.tls is Security.IMPLICIT_TLS:
        mode = Security.IMPLICIT_TLS
    else:
        mode = Security.STARTTLS
    report = SecurityReport(
        security=recipe.plan.security,
        mode=mode,
        reason=recipe.plan.reason,
        host=host,
        port=attempt.port,
        tls_version=info.version if info else None,
        cipher=info.cipher if info else None,
        verified=bool(info and info.verified),
        spki_pin=info.spki_pin if info else None,
        chain_pins=pin_candidates(info) if info else (),
        pinned=pinned,
        confidential=guard.confidential(info),
        authenticated_as=recipe.username if used else None,
        mechanism=used,
        address=address,
        proxy=recipe.route.proxy.display if recipe.route.proxy is not None else None,
        tls_resumed=bool(info and info.resumed),
        early_pipelining=flight is not None,
    )
    return Established(wire, guard, report, extensions)


def _ehlo(wire: Wire, helo: str) -> IO[Extensions]:
    return _phases.accepted_ehlo(wire, (yield from _phases.hello(wire, helo)))
