"""What a connect decides before any I/O: the options checked once, the plan, the route.

:class:`Recipe` is built by :meth:`Recipe.prepare` from the connect options
(pure); :func:`endpoint_setup` turns a discovered endpoint into host, port, mode
and RFC 7817 reference identity. :mod:`._setup` runs the dialogue from a recipe.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from .. import auth as sasl
from .._advice import NATIVE, Advice
from .._types import SMTP_PORT
from ..discovery import Endpoint, Provenance
from ..errors import (
    InsecureConfigurationWarning,
    InvalidArgumentError,
    PolicyError,
    SMTPSecWarning,
    UntrustedDiscoveryError,
)
from ..guard import Finding, Guard
from ..identity import ReferenceIdentity
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
from ..sansio import ehlo_name
from ..tls import TLSSessionCache
from ..transports import DEFAULT_HAPPY_EYEBALLS_DELAY, DIRECT, Route, as_proxy

__all__ = ["DEFAULT_TIMEOUT", "Recipe", "endpoint_setup"]

#: Seconds for connecting, the handshake and each reply when none is given.
DEFAULT_TIMEOUT = 30.0

#: Why an out-of-domain host needs confirmation, per source (RFC 8314 §5.1, RFC 6186 §6).
_UNTRUSTED_WHY: Final[dict[Provenance, str]] = {
    Provenance.SRV_UNSIGNED: "the answer was not DNSSEC-validated, so an attacker can forge it.",
    Provenance.AUTOCONFIG_HTTPS: "the domain's web server vouches only for the domain itself.",
    Provenance.SRV_DNSSEC: "",  # never asked: a signed answer is accepted as it is
}


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
