"""Find a domain's submission servers from DNS SRV records (RFC 6186, RFC 8314 §5.1).

:func:`discover` queries ``_submissions._tcp.<domain>`` (port 465, implicit TLS)
and ``_submission._tcp.<domain>`` (port 587, STARTTLS required) and returns the
candidates in the order a client should try them. It never consults MX records:
those name relays, not submission servers (R-8314-4.5-1). Every endpoint it
returns speaks TLS; a plaintext configuration is never produced
(R-8314-5.1-2, R-8314-5.1-3).

Discovery belongs to account *setup*: the caller stores the chosen endpoint and
connects to it from then on. Nothing in smtpsec re-queries SRV records when it
connects (R-8314-5.1-6), so a later DNS change (or a spoofed answer) can never
move an account to another host or from implicit TLS to STARTTLS
(R-LIB-GUARD-3). Re-run :func:`discover` only to *report* differences.

Needs the optional ``dns`` extra (dnspython), imported only when called.
"""

from __future__ import annotations

import importlib
import itertools
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from .errors import CapabilityError, ConnectError, InvalidArgumentError, TimeoutError
from .identity import ReferenceIdentity, normalize_dns_name

if TYPE_CHECKING:
    import dns.name
    import dns.resolver

__all__ = [
    "SUBMISSIONS_SERVICE",
    "SUBMISSION_SERVICE",
    "Endpoint",
    "EndpointSecurity",
    "SRVService",
    "discover",
]

#: How a discovered endpoint protects the session; never cleartext.
EndpointSecurity = Literal["implicit_tls", "starttls"]
#: The SRV service label an endpoint came from.
SRVService = Literal["_submissions", "_submission"]

#: RFC 8314 §7.3: submission over implicit TLS (port 465).
SUBMISSIONS_SERVICE: Final = "_submissions"
#: RFC 6186 §3.1: submission with STARTTLS (port 587); smtpsec requires the upgrade.
SUBMISSION_SERVICE: Final = "_submission"

#: Query order and preference on equal priority: implicit TLS first (RFC 8314 §5.1).
_SERVICES: Final[tuple[tuple[SRVService, EndpointSecurity], ...]] = (
    (SUBMISSIONS_SERVICE, "implicit_tls"),
    (SUBMISSION_SERVICE, "starttls"),
)
_SECURITY_OF_SERVICE: Final[dict[str, EndpointSecurity]] = dict(_SERVICES)
_SERVICE_RANK: Final[dict[str, int]] = {name: rank for rank, (name, _) in enumerate(_SERVICES)}
_MAX_PORT: Final = 65535
_MAX_SRV_FIELD: Final = 65535
_DNSPYTHON_MISSING: Final = "SRV discovery needs dnspython: pip install 'smtpsec[dns]'"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One submission server found through SRV; always a TLS endpoint.

    It says nothing about credentials: which account logs in here is the
    caller's configuration, never DNS's. Host and domain are normalized on
    construction (lower case, A-labels, no trailing dot).

    Attributes:
        host: the SRV target host name.
        port: the SRV port.
        security: ``"implicit_tls"`` for ``_submissions``, ``"starttls"`` (TLS
            required) for ``_submission``.
        priority: the SRV priority (lower is tried first).
        weight: the SRV weight (share of picks among equal priorities).
        service: ``"_submissions"`` or ``"_submission"``.
        domain: the user's email domain that was queried.
        dnssec_validated: the resolver set the AD bit on this answer.

    Raises:
        InvalidArgumentError: a field is out of range, or *security* does not
            belong to *service*.
    """

    host: str
    port: int
    security: EndpointSecurity
    priority: int
    weight: int
    service: SRVService
    domain: str
    dnssec_validated: bool

    def __post_init__(self) -> None:
        object.__setattr__(self, "host", normalize_dns_name(self.host, what="SRV target"))
        object.__setattr__(self, "domain", normalize_dns_name(self.domain, what="email domain"))
        if not 0 < self.port <= _MAX_PORT:
            raise InvalidArgumentError(
                f"port {self.port} is outside 1-65535; fix the SRV record or the stored "
                "configuration"
            )
        if not (0 <= self.priority <= _MAX_SRV_FIELD and 0 <= self.weight <= _MAX_SRV_FIELD):
            raise InvalidArgumentError(
                f"SRV priority {self.priority} / weight {self.weight} must be within 0-65535"
            )
        if _SECURITY_OF_SERVICE.get(self.service) != self.security:
            raise InvalidArgumentError(
                f"service {self.service!r} cannot use security {self.security!r}: "
                "_submissions is implicit_tls and _submission is starttls"
            )

    @property
    def target_in_domain(self) -> bool:
        """``True`` when the target is the queried domain or a name under it."""
        return self.host == self.domain or self.host.endswith("." + self.domain)

    def needs_confirmation(self) -> bool:
        """Whether the user must confirm this endpoint before any connection.

        An unsigned SRV answer may be forged, so a target outside the user's
        domain is accepted automatically only when DNSSEC validated the answer
        (R-8314-5.1-5, RFC 6186 §6).

        Returns:
            ``True`` when the answer was not DNSSEC-validated and the target is
            not inside the queried domain.
        """
        return not (self.dnssec_validated or self.target_in_domain)

    def reference_identity(self, *, confirmed_target: bool = False) -> ReferenceIdentity:
        """The identities this endpoint's certificate may prove.

        Args:
            confirmed_target: the user confirmed :attr:`host` at setup.

        Returns:
            The email domain as DNS-ID, ``<service>.<domain>`` as SRV-ID, and the
            target as DNS-ID only when DNSSEC-validated or *confirmed_target*.
        """
        return ReferenceIdentity.from_endpoint(self, confirmed_target=confirmed_target)


def discover(
    domain: str,
    *,
    resolver: dns.resolver.Resolver | None = None,
    rng: random.Random | None = None,
) -> list[Endpoint]:
    """Look up the submission servers of *domain* in DNS SRV records.

    Both ``_submissions._tcp`` and ``_submission._tcp`` are always queried
    (R-8314-5.1-1). Targets of ``"."`` (service explicitly absent), port 0 and
    malformed target names are dropped. Candidates from both services are
    ordered by SRV priority; on equal priority implicit TLS comes first; inside
    one priority of one service, RFC 2782 weighted random selection orders them
    (R-6186-3-1). MX records are never consulted (R-8314-4.5-1).

    Run this at account setup only and store the result: smtpsec never
    re-queries DNS on connect (R-8314-5.1-6). Check
    :meth:`Endpoint.needs_confirmation` before using an endpoint.

    Args:
        domain: the user's email domain (the part after ``@``).
        resolver: the dnspython resolver to ask. By default the system
            resolver, asked to report DNSSEC validation (the AD bit). A resolver
            you pass is used as is: set ``resolver.flags = dns.flags.RD |
            dns.flags.AD`` if you want the AD bit. The AD bit is only as
            trustworthy as the path to the resolver (use a local validating one).
        rng: random source for weighted selection (pass a seeded one in tests).

    Returns:
        Candidate endpoints, best first; ``[]`` when the domain publishes no
        usable submission SRV records (the caller decides what to do).

    Raises:
        CapabilityError: dnspython is not installed.
        InvalidArgumentError: *domain* is not a valid DNS name.
        TimeoutError: the resolver did not answer in time.
        ConnectError: the lookup failed otherwise (SERVFAIL, no usable
            resolver), so the absence of records cannot be trusted.
    """
    _require_dnspython()
    name = normalize_dns_name(domain, what="email domain")
    active = resolver if resolver is not None else _default_resolver()
    chooser = rng if rng is not None else random.Random()
    found: list[Endpoint] = []
    for service, security in _SERVICES:
        records, validated = _query_srv(active, f"{service}._tcp.{name}.")
        found += _endpoints(records, service, security, name, validated)
    groups = itertools.groupby(
        sorted(found, key=lambda ep: (ep.priority, _SERVICE_RANK[ep.service])),
        key=lambda ep: (ep.priority, ep.service),
    )
    return [ep for _, group in groups for ep in _weighted_order(list(group), chooser)]


def _require_dnspython() -> None:
    try:
        # dns.resolver pulls in every dnspython module the helpers below import.
        importlib.import_module("dns.resolver")
    except ImportError as exc:
        raise CapabilityError(_DNSPYTHON_MISSING) from exc


def _default_resolver(filename: str = "/etc/resolv.conf") -> dns.resolver.Resolver:
    """The system resolver, asking for the AD bit (RFC 6840 §5.7)."""
    import dns.flags
    import dns.resolver

    try:
        resolver = dns.resolver.Resolver(filename=filename)
    except dns.resolver.NoResolverConfiguration as exc:
        raise ConnectError(
            f"no DNS resolver is configured ({exc}); pass resolver= to discover() "
            "or configure the account's host and port by hand"
        ) from exc
    resolver.flags = dns.flags.RD | dns.flags.AD
    return resolver


def _query_srv(
    resolver: dns.resolver.Resolver, qname: str
) -> tuple[list[tuple[int, int, int, dns.name.Name]], bool]:
    """Return ``(priority, weight, port, target)`` records and the AD bit for *qname*."""
    import dns.exception
    import dns.flags
    import dns.rdatatype
    import dns.resolver

    try:
        answer = resolver.resolve(qname, dns.rdatatype.SRV, search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return [], False
    except dns.exception.Timeout as exc:
        raise TimeoutError(
            f"the DNS lookup of {qname} timed out ({exc}); check the network or the "
            "resolver, or configure the account's host and port by hand"
        ) from exc
    except dns.exception.DNSException as exc:
        # SERVFAIL can be a failed DNSSEC validation: never read it as "no records".
        raise ConnectError(
            f"the DNS lookup of {qname} failed ({exc}); fix the resolver or the "
            "domain's DNS, or configure the account's host and port by hand"
        ) from exc
    records = [(rr.priority, rr.weight, rr.port, rr.target) for rr in answer]
    return records, bool(answer.response.flags & dns.flags.AD)


def _endpoints(
    records: Iterable[tuple[int, int, int, dns.name.Name]],
    service: SRVService,
    security: EndpointSecurity,
    domain: str,
    validated: bool,
) -> list[Endpoint]:
    import dns.name

    endpoints: list[Endpoint] = []
    for priority, weight, port, target in records:
        # RFC 2782: target "." means "decidedly not available"; port 0 cannot connect.
        if target == dns.name.root or port == 0:
            continue
        try:
            endpoint = Endpoint(
                host=target.to_text(omit_final_dot=True),
                port=port,
                security=security,
                priority=priority,
                weight=weight,
                service=service,
                domain=domain,
                dnssec_validated=validated,
            )
        except InvalidArgumentError:
            continue  # a target no certificate could name; skipping it is fail-safe
        endpoints.append(endpoint)
    return endpoints


def _weighted_order(group: list[Endpoint], rng: random.Random) -> list[Endpoint]:
    """Order one priority of one service by RFC 2782 weighted random selection."""
    # RFC 2782: zero-weight records go first so they keep a small chance.
    pending = sorted(group, key=lambda ep: ep.weight != 0)
    ordered: list[Endpoint] = []
    while pending:
        pick = rng.randint(0, sum(ep.weight for ep in pending))
        running = itertools.accumulate(ep.weight for ep in pending)
        index = next(i for i, total in enumerate(running) if total >= pick)
        ordered.append(pending.pop(index))
    return ordered
