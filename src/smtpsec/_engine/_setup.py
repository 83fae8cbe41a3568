"""Session set-up: the connect options checked once, then greeting, TLS, EHLO and AUTH.

:class:`Recipe` is everything ``connect()`` decides before any I/O (pure).
:func:`connect_steps` is the whole connect as one dialogue: read the TLS
memory, try each port of the plan, and on the first one reached run
:func:`establish`, asking the guard at every checkpoint. The blocking and
the asyncio facades drive the same generator, so they cannot differ.
"""

from __future__ import annotations

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
    ReplyError,
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
from ..sansio import ClientConnection, Extensions, ehlo_name
from ..tls import build_context
from ..transports import AnyTransport
from . import _phases
from ._auth import authenticate
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
        )

    def account(self, port: int) -> Account:
        """The TLS-memory key for a connection to ``port``."""
        return Account(user=self.username or "", host=self.host, port=port)

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


def remembered(recipe: Recipe, attempt: Attempt) -> IO[bool]:
    """The TLS-memory snapshot for this attempt (file I/O: offloaded under asyncio)."""
    memory = recipe.policy.memory
    if memory is None:
        return False
    return (yield from perform(Offload(partial(memory.requires_tls, recipe.account(attempt.port)))))


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
            transport = yield from perform(
                OpenConnection(recipe.host, attempt.port, recipe.timeout)
            )
        except (ConnectError, DeadlineError) as exc:
            failures.append(str(exc))
            if attempt is not recipe.plan.attempts[-1]:
                continue
            if len(failures) > 1:
                raise ConnectError(
                    "could not reach any submission port: " + " | ".join(failures)
                ) from exc
            raise
        return (yield from establish(transport, attempt, recipe, guard))
    raise AssertionError("unreachable: a plan has at least one attempt")  # pragma: no cover


def transport_steps(transport: AnyTransport, recipe: Recipe) -> IO[Established]:
    """Set up a session over a transport the caller opened (the plan's first attempt)."""
    attempt = recipe.plan.attempts[0]
    guard = recipe.guard(attempt, remembered=(yield from remembered(recipe, attempt)))
    return (yield from establish(transport, attempt, recipe, guard))


def establish(
    transport: AnyTransport, attempt: Attempt, recipe: Recipe, guard: Guard
) -> IO[Established]:
    """Run greeting, TLS, EHLO and AUTH over an already-open ``transport``."""
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
    try:
        context: ssl.SSLContext | None = None
        verify: Callable[[bytes], object] | None = None
        if attempt.tls is not Security.PLAINTEXT:
            # RFC 7817: for a discovered endpoint the reference identities (the
            # user's domain, SRV-ID, a trusted target) are matched after the
            # handshake, and the context validates the chain only.
            context = build_context(policy, check_hostname=recipe.identity is None)
            if recipe.identity is not None:
                verify = partial(check_certificate_identity, ref=recipe.identity)
        if attempt.tls is Security.IMPLICIT_TLS:
            assert context is not None
            implicit_info = yield from _phases.implicit_tls(wire, context, verify_identity=verify)
            pinned = guard.after_handshake(implicit_info)
        greeting = yield from _phases.greeting(wire, implicit=attempt.tls is Security.IMPLICIT_TLS)
        guard.after_greeting(greeting, tls=wire.transport.tls is not None)
        extensions = yield from _ehlo(wire, recipe.helo)
        if guard.after_ehlo(extensions, tls=wire.transport.tls is not None):
            assert context is not None
            _reply, upgraded = yield from _phases.starttls(
                wire, guard, context, verify_identity=verify
            )
            pinned = guard.after_handshake(upgraded)
            extensions = yield from _ehlo(wire, recipe.helo)
        info_now = wire.transport.tls
        external = policy.client_cert is not None and (
            recipe.mechanism == "EXTERNAL" or "EXTERNAL" in extensions.auth_mechanisms
        )
        if (
            recipe.username is not None
            or recipe.token is not None
            or (external and info_now is not None)
        ):
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
    if info is not None and info.verified and policy.memory is not None:
        memory = policy.memory
        yield from perform(
            Offload(
                partial(
                    memory.record,
                    recipe.account(attempt.port),
                    mode=Security.IMPLICIT_TLS
                    if attempt.tls is Security.IMPLICIT_TLS
                    else Security.STARTTLS,
                    tls_version=info.version,
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
        pinned=pinned,
        confidential=guard.confidential(info),
        authenticated_as=recipe.username if used else None,
        mechanism=used,
    )
    return Established(wire, guard, report, extensions)


def _ehlo(wire: Wire, helo: str) -> IO[Extensions]:
    reply = yield from _phases.hello(wire, helo)
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


def _login(wire: Wire, extensions: Extensions, recipe: Recipe) -> IO[str]:
    offered = extensions.auth_mechanisms
    if not offered:
        raise CapabilityError(
            f"{wire.peer} offers no AUTH after TLS, but credentials were given; refusing to "
            "send mail unauthenticated (RFC 4954 §9). Check the port (587/465) and account"
        )
    credentials = (
        sasl.Credentials(recipe.username, recipe.password) if recipe.username is not None else None
    )
    mechanism = sasl.choose_mechanism(
        offered,
        credentials=credentials,
        token=recipe.token,
        client_cert=recipe.policy.client_cert is not None,
        explicit=recipe.mechanism,
        scram_max_iterations=recipe.policy.scram_max_iterations,
        advice=recipe.advice,
    )
    try:
        yield from authenticate(wire, mechanism)
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
