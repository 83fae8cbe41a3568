"""Session set-up: the connect options checked once, then greeting, TLS, EHLO and AUTH.

:class:`Recipe` is everything ``connect()`` decides before any I/O (pure).
:func:`connect_steps` is the whole connect as one dialogue: read the TLS
memory, try each port of the plan, and on the first one reached run
:func:`establish`, asking the guard at every checkpoint. The blocking and
the asyncio facades drive the same generator, so they cannot differ.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Final

from .. import auth as sasl
from .._advice import NATIVE, Advice
from .._types import SMTP_PORT
from ..discovery import Endpoint, Provenance
from ..errors import (
    AuthenticationError,
    CapabilityError,
    ConnectError,
    InsecureConfigurationWarning,
    InvalidArgumentError,
    PolicyError,
    ProxyError,
    RemoteProtocolError,
    ReplyError,
    SMTPSecError,
    SMTPSecWarning,
    UntrustedDiscoveryError,
)
from ..errors import TimeoutError as DeadlineError
from ..guard import Finding, Guard
from ..identity import ReferenceIdentity, check_certificate_identity
from ..memory import Account
from ..options import ConnectOptions, check_options
from ..policy import (
    DEFAULT_POLICY,
    Attempt,
    Plan,
    Policy,
    Security,
    is_loopback,
    select_plan,
    split_host_port,
)
from ..report import SecurityReport
from ..sansio import ClientConnection, Command, Extensions, Reply, ehlo_name
from ..tls import TLSSessionCache, build_context, pin_candidates
from ..transports import DEFAULT_HAPPY_EYEBALLS_DELAY, DIRECT, AnyTransport, Route, as_proxy
from . import _phases
from ._auth import auth_line, authenticate
from ._early import EHLO_REPLIES, advertises_early_pipelining
from ._io import IO, Offload, OpenConnection, perform
from ._wire import Wire

__all__ = [
    "DEFAULT_TIMEOUT",
    "Established",
    "Recipe",
    "connect_steps",
    "endpoint_setup",
    "establish",
    "remembered",
    "transport_steps",
]

#: Seconds for connecting, the handshake and each reply when none is given.
DEFAULT_TIMEOUT = 30.0

#: Why an out-of-domain host needs confirmation, per source (RFC 8314 §5.1, RFC 6186 §6).
_UNTRUSTED_WHY: Final[dict[Provenance, str]] = {
    Provenance.SRV_UNSIGNED: "the answer was not DNSSEC-validated, so an attacker can forge it.",
    Provenance.AUTOCONFIG_HTTPS: "the domain's web server vouches only for the domain itself.",
    Provenance.SRV_DNSSEC: "",  # never asked: a signed answer is accepted as it is
}


@dataclass(frozen=True, slots=True)
class Established:
    """A session that passed every checkpoint: what a Session is built from."""

    wire: Wire
    guard: Guard
    report: SecurityReport
    extensions: Extensions


@dataclass(frozen=True, slots=True)
class Recipe:
    """Everything a connect decides before any I/O (shared by every facade).

    Attributes:
        findings: warnings for the caller; the facade emits them.
    """

    host: str
    plan: Plan
    policy: Policy
    helo: str
    timeout: float
    identity: ReferenceIdentity | None = None
    username: str | None = None
    password: str | None = None
    mechanism: str | None = None
    token: sasl.Token | None = None
    advice: Advice = NATIVE
    findings: list[Finding] = field(default_factory=list, compare=False)
    route: Route = DIRECT
    tls_sessions: TLSSessionCache | None = field(default=None, compare=False)
    early_pipelining: bool = False

    @classmethod
    def prepare(
        cls,
        host: str | Endpoint,
        port: int | None,
        options: Mapping[str, object],
        *,
        where: str,
        advice: Advice = NATIVE,
    ) -> Recipe:
        """Check the connect options (pure) and choose the plan.

        Args:
            host: a name or a discovered endpoint.
            port: the port, or ``None``.
            options: keyword arguments, checked against :class:`ConnectOptions`.
            where: the public function's name, for a :class:`TypeError`.
            advice: the front end's words for fixes (the CLI passes its own).

        Raises:
            TypeError: an option that does not exist (a typo).
            InvalidArgumentError, PolicyError: a value that cannot work.
        """
        check_options(options, where)
        opts: ConnectOptions = options  # type: ignore[assignment]  # keys checked above
        security = opts.get("security", Security.AUTO)
        if not isinstance(security, Security):
            raise PolicyError(f"security={security!r} is not a smtpsec.Security member")
        policy = opts.get("policy") or DEFAULT_POLICY
        if not isinstance(policy, Policy):
            raise PolicyError(f"policy={policy!r} is not a smtpsec.Policy")
        username, password = opts.get("username"), opts.get("password")
        timeout = opts.get("timeout", DEFAULT_TIMEOUT)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise InvalidArgumentError(f"timeout={timeout!r}: pass a positive number of seconds")
        identity: ReferenceIdentity | None = None
        if isinstance(host, Endpoint):
            host, port, security, identity = endpoint_setup(
                host,
                port,
                security,
                policy,
                confirmed_target=bool(opts.get("confirmed_target", False)),
            )
        else:
            host, port = split_host_port(host, port)  # "host:587" works, as in smtplib
        if password is not None and username is None:
            raise InvalidArgumentError("password= needs username=")
        plan = select_plan(host, port, security)
        helo = ehlo_name(opts.get("local_hostname"))
        route = _route(opts)
        # Omitted: this recipe's own cache, so a pool (one recipe, many
        # connections) resumes its sessions; None: never resume.
        sessions = opts["tls_sessions"] if "tls_sessions" in opts else TLSSessionCache()
        if sessions is not None and not isinstance(sessions, TLSSessionCache):
            raise PolicyError(f"tls_sessions={sessions!r} is not a smtpsec.TLSSessionCache")
        early = opts.get("early_pipelining", False)
        if not isinstance(early, bool):
            raise InvalidArgumentError(f"early_pipelining={early!r}: pass True or False")
        findings: list[Finding] = []
        if port == SMTP_PORT:
            findings.append(
                Finding(
                    SMTPSecWarning,
                    f"port 25 on {host} is for relay between mail servers (RFC 6409); "
                    "submission belongs on 465 (implicit TLS) or 587 (STARTTLS)",
                )
            )
        if security is Security.PLAINTEXT and not is_loopback(host):
            findings.append(
                Finding(
                    InsecureConfigurationWarning,
                    f"{advice.plaintext} to {host}: everything, including the message, "
                    f"travels in cleartext (RFC 8314 §4.1); {advice.verified_tls}",
                )
            )
        return cls(
            host,
            plan,
            policy,
            helo,
            float(timeout),
            identity,
            username,
            password,
            opts.get("auth"),
            opts.get("token"),
            advice=advice,
            findings=findings,
            route=route,
            tls_sessions=sessions,
            early_pipelining=early,
        )

    def account(self) -> Account:
        """The TLS-memory key: the user at the host, the same on every port (RFC 8314 §5.2)."""
        return Account(user=self.username or "", host=self.host)

    def guard(self, attempt: Attempt, *, remembered: bool) -> Guard:
        """The guard for one attempt, after its pre-connection check."""
        guard = Guard(
            self.policy,
            attempt,
            self.host,
            remembered=remembered,
            advice=self.advice,
            findings=self.findings,
        )
        guard.before_connect()
        return guard


def _route(opts: ConnectOptions) -> Route:
    """The network options, checked: proxy, source address, Happy Eyeballs delay.

    Raises:
        PolicyError: an unusable proxy URL or value.
        InvalidArgumentError: a malformed source address or delay.
    """
    proxy = as_proxy(opts.get("proxy"))
    source = opts.get("source_address")
    if source is not None and (
        not isinstance(source, tuple)
        or len(source) != 2
        or not isinstance(source[0], str)
        or isinstance(source[1], bool)
        or not isinstance(source[1], int)
        or not 0 <= source[1] < 65536
    ):
        raise InvalidArgumentError(
            f"source_address={source!r}: pass a (host, port) tuple, port 0 for any"
        )
    delay = opts.get("happy_eyeballs_delay", DEFAULT_HAPPY_EYEBALLS_DELAY)
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay < 0:
        raise InvalidArgumentError(
            f"happy_eyeballs_delay={delay!r}: pass the seconds between attempts (0.25 is usual)"
        )
    return Route(proxy=proxy, source_address=source, happy_eyeballs_delay=float(delay))


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
        guard = recipe.guard(attempt, remembered=(yield from remembered(recipe, attempt)))
        try:
            opened = yield from perform(
                OpenConnection(recipe.host, attempt.port, recipe.timeout, recipe.route)
            )
        except (ConnectError, DeadlineError) as exc:
            if isinstance(exc, ProxyError) and not exc.target_unreachable:
                raise  # the proxy itself failed: another port of the plan would not help
            failures.append(str(exc))
            if attempt is not recipe.plan.attempts[-1]:
                continue
            if len(failures) > 1:
                raise ConnectError(
                    "could not reach any submission port: " + " | ".join(failures)
                ) from exc
            raise
        try:
            return (
                yield from establish(
                    opened.transport, attempt, recipe, guard, address=opened.address, early=True
                )
            )
        except _EarlyRefused:
            pass
        # The server took the early flight badly (it stopped advertising
        # PIPECONNECT, say): it has been forgotten, and one normal connection
        # follows, with a guard of its own.
        guard = recipe.guard(attempt, remembered=(yield from remembered(recipe, attempt)))
        opened = yield from perform(
            OpenConnection(recipe.host, attempt.port, recipe.timeout, recipe.route)
        )
        return (
            yield from establish(opened.transport, attempt, recipe, guard, address=opened.address)
        )
    raise AssertionError("unreachable: a plan has at least one attempt")  # pragma: no cover


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
    caller can open a new connection after :class:`_EarlyRefused`).
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
    flight: _EarlyFlight | None = None
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
                flight = yield from _early_hello(wire, attempt, recipe, guard, greeting_due=True)
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
                    flight = yield from _early_hello(
                        wire, attempt, recipe, guard, greeting_due=False
                    )
                if flight is None:
                    extensions = yield from _ehlo(wire, recipe.helo)
        info_now = wire.transport.tls
        if flight is not None:
            extensions = flight.extensions
        elif early and guard.confidential(info_now):
            EHLO_REPLIES.learn(
                host, attempt.port, attempt.tls is Security.IMPLICIT_TLS, recipe.helo, extensions
            )
        if flight is not None and flight.mechanism is not None:
            used = yield from _early_login(wire, attempt, recipe, flight)
        elif _wants_auth(recipe, extensions, info_now):
            guard.before_auth(info_now)
            used = yield from _login(wire, extensions, recipe)
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


class _EarlyRefused(Exception):
    """The server did not take an early flight; a normal connection may follow.

    Never leaves :func:`connect_steps`; its cause is what went wrong.
    """


@dataclass(frozen=True, slots=True)
class _EarlyFlight:
    """What an early EHLO settled.

    Attributes:
        extensions: the server's real EHLO reply (the guard has seen it).
        mechanism: the AUTH queued behind the EHLO, its replies not yet read.
        stale: the kept reply offered other AUTH mechanisms than the real one,
            so the queued one was chosen on outdated facts.
        confirmed: the real reply still advertises early pipelining.
    """

    extensions: Extensions
    mechanism: sasl.Mechanism | None
    stale: bool
    confirmed: bool


#: Failures of an early flight that a normal connection may not have: the
#: server closed, garbled or refused what came before its greeting or EHLO
#: reply. Security errors and timeouts are never retried.
_EARLY_FAILURES: Final = (ConnectError, RemoteProtocolError, ReplyError)


def _early_hello(
    wire: Wire, attempt: Attempt, recipe: Recipe, guard: Guard, *, greeting_due: bool
) -> IO[_EarlyFlight | None]:
    """EHLO (and the first AUTH line) before the greeting or EHLO reply, when allowed.

    Used only over confidential TLS (verified, 1.2 or later, not pin-only), to a
    server whose EHLO reply, kept from such a session, advertised ``PIPECONNECT``
    (draft-harris-early-pipe); otherwise ``None`` and nothing is sent. The guard
    still sees the real greeting and EHLO reply, and still decides before the
    credentials are queued.

    Raises:
        _EarlyRefused: the server did not take it (forgotten; retry normally).
    """
    info = wire.transport.tls
    if not guard.confidential(info):
        return None
    implicit = attempt.tls is Security.IMPLICIT_TLS
    kept = EHLO_REPLIES.get(recipe.host, attempt.port, implicit, recipe.helo)
    if kept is None:
        return None
    wire.conn.allow_early_pipelining()
    wire.queue(Command("EHLO", recipe.helo))
    mechanism: sasl.Mechanism | None = None
    if _wants_auth(recipe, kept, info):
        guard.before_auth(info)
        # On an error here the real reply decides, and says why, after the EHLO.
        with contextlib.suppress(SMTPSecError):
            mechanism = _choose(kept, recipe, wire.peer)
        if mechanism is not None:
            wire.queue((yield from auth_line(mechanism)))
    try:
        if greeting_due:
            greeting = yield from _phases.greeting(wire, implicit=implicit)
            guard.after_greeting(greeting, tls=True)
        extensions = _accepted_ehlo(wire, (yield from wire.read()).reply)
    except _EARLY_FAILURES as exc:
        EHLO_REPLIES.forget(recipe.host, attempt.port, implicit, recipe.helo)
        raise _EarlyRefused from exc
    EHLO_REPLIES.learn(recipe.host, attempt.port, implicit, recipe.helo, extensions)
    guard.after_ehlo(extensions, tls=True)
    return _EarlyFlight(
        extensions,
        mechanism,
        stale=extensions.auth_mechanisms != kept.auth_mechanisms,
        confirmed=advertises_early_pipelining(extensions),
    )


def _early_login(wire: Wire, attempt: Attempt, recipe: Recipe, flight: _EarlyFlight) -> IO[str]:
    """Finish the AUTH that went out behind the early EHLO.

    Raises:
        _EarlyRefused: the server, no longer advertising early pipelining, did
            not take the AUTH pipelined behind EHLO.
    """
    assert flight.mechanism is not None
    try:
        return (yield from _login(wire, flight.extensions, recipe, queued=flight.mechanism))
    except AuthenticationError:
        if not flight.stale:
            raise
    except _EARLY_FAILURES as exc:
        if flight.confirmed:
            raise
        raise _EarlyRefused from exc
    # Chosen from an outdated reply and refused: choose again from the real one.
    return (yield from _login(wire, flight.extensions, recipe))


def _wants_auth(recipe: Recipe, extensions: Extensions, info: object) -> bool:
    """Whether this session authenticates: credentials, a token, or a client certificate."""
    external = recipe.policy.client_cert is not None and (
        recipe.mechanism == "EXTERNAL" or "EXTERNAL" in extensions.auth_mechanisms
    )
    return (
        recipe.username is not None or recipe.token is not None or (external and info is not None)
    )


def _ehlo(wire: Wire, helo: str) -> IO[Extensions]:
    return _accepted_ehlo(wire, (yield from _phases.hello(wire, helo)))


def _accepted_ehlo(wire: Wire, reply: Reply) -> Extensions:
    """The extensions of a ``250`` EHLO reply; any other reply is a ReplyError."""
    if reply.code != 250:
        # No HELO fallback: HELO cannot carry STARTTLS (R-LIB-HELO-1).
        raise ReplyError(
            f"{wire.peer} refused EHLO with {reply.code}; smtpsec does not fall back to HELO",
            code=reply.code,
            enhanced_status=str(reply.enhanced_status) if reply.enhanced_status else None,
            text=reply.text,
            server_text_authenticated=wire.transport.tls is not None,
        )
    extensions = wire.conn.extensions
    assert extensions is not None
    return extensions


def _credentials(recipe: Recipe) -> sasl.Credentials | None:
    if recipe.username is None:
        return None
    return sasl.Credentials(recipe.username, recipe.password)


def _choose(extensions: Extensions, recipe: Recipe, peer: str) -> sasl.Mechanism:
    """The mechanism for this server's offer (CapabilityError when it offers none)."""
    offered = extensions.auth_mechanisms
    if not offered:
        raise CapabilityError(
            f"{peer} offers no AUTH after TLS, but credentials were given; refusing to "
            "send mail unauthenticated (RFC 4954 §9). Check the port (587/465) and account"
        )
    return sasl.choose_mechanism(
        offered,
        credentials=_credentials(recipe),
        token=recipe.token,
        client_cert=recipe.policy.client_cert is not None,
        explicit=recipe.mechanism,
        scram_max_iterations=recipe.policy.scram_max_iterations,
        advice=recipe.advice,
    )


def _login(
    wire: Wire,
    extensions: Extensions,
    recipe: Recipe,
    *,
    queued: sasl.Mechanism | None = None,
) -> IO[str]:
    """Authenticate; ``queued``: that mechanism's AUTH line already went out early."""
    mechanism = queued or _choose(extensions, recipe, wire.peer)
    offered = extensions.auth_mechanisms
    credentials = _credentials(recipe)
    try:
        yield from authenticate(wire, mechanism, queued=queued is not None)
    except AuthenticationError as exc:
        provider = recipe.token
        refused = sasl.token_refused(exc.code, mechanism.name, mechanism.server_error)
        if not (refused and isinstance(provider, sasl.RefreshingTokenProvider)):
            raise
        # The token was refused (expired, say): one fresh token, one more AUTH.
        fresh = yield from perform(Offload(provider.refresh))
        mechanism = sasl.choose_mechanism(
            offered,
            credentials=credentials,
            token=fresh,
            explicit=mechanism.name,
            advice=recipe.advice,
        )
        yield from authenticate(wire, mechanism)
    return mechanism.name


def endpoint_setup(
    endpoint: Endpoint,
    port: int | None,
    security: Security,
    policy: Policy,
    *,
    confirmed_target: bool,
) -> tuple[str, int, Security, ReferenceIdentity]:
    """Host, port, mode and RFC 7817 reference identity for a discovered endpoint.

    Raises:
        PolicyError: a conflicting mode, port or ``ssl_context`` was given.
        UntrustedDiscoveryError: an unsigned SRV answer or an autoconfig document
            points outside the domain and the user has not confirmed the host
            (RFC 8314 §5.1).
    """
    wanted = endpoint.security
    if security not in (Security.AUTO, wanted):
        raise PolicyError(
            f"this endpoint ({endpoint.source}) uses Security.{wanted.name}; drop security= "
            f"or pass Security.{wanted.name} (discovered services are never used without TLS)"
        )
    if port not in (None, endpoint.port):
        raise PolicyError("a discovered endpoint carries its own port; drop port=")
    if policy.ssl_context is not None:
        raise PolicyError(
            "discovered endpoints need smtpsec's RFC 7817 identity check; trust a private "
            "CA with Policy(cafile=...) instead of ssl_context"
        )
    if endpoint.needs_confirmation() and not confirmed_target:
        raise UntrustedDiscoveryError(
            f"{endpoint.source} for {endpoint.domain} points outside that domain, to "
            f"{endpoint.host}; {_UNTRUSTED_WHY[endpoint.provenance]} Show the host to the "
            "user and pass confirmed_target=True once they confirm it (RFC 8314 §5.1)"
        )
    identity = endpoint.reference_identity(confirmed_target=confirmed_target)
    return endpoint.host, endpoint.port, wanted, identity
