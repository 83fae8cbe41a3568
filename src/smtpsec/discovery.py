"""Find a domain's submission servers: DNS SRV (RFC 6186, RFC 8314 §5.1), optionally autoconfig.

:func:`discover` queries ``_submissions._tcp.<domain>`` (port 465, implicit TLS)
and ``_submission._tcp.<domain>`` (port 587, STARTTLS required) and returns the
candidates in the order a client should try them. With ``autoconfig=True`` it
also reads the domain's Mozilla-style autoconfig document over verified HTTPS
(:mod:`smtpsec.autoconfig`) and merges both into one list ordered by
:class:`Provenance` (see :func:`merge_endpoints`). It never consults MX records:
those name relays, not submission servers (R-8314-4.5-1). Every endpoint it
returns speaks TLS; a plaintext configuration is never produced
(R-8314-5.1-2, R-8314-5.1-3).

Discovery belongs to account *setup*: the caller stores the chosen endpoint and
connects to it from then on. Nothing in smtpsec re-queries DNS or re-fetches
autoconfig when it connects (R-8314-5.1-6), so a later change (or a spoofed
answer) can never move an account to another host or from implicit TLS to
STARTTLS (R-LIB-GUARD-3). Re-run :func:`discover` only to *report* differences.

Needs the optional ``dns`` extra (dnspython), and for ``autoconfig=True`` the
``autoconfig`` extra (defusedxml); both are imported only when called.
"""

from __future__ import annotations

import importlib
import itertools
import random
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from ._endpoint import (
    SUBMISSION_SERVICE,
    SUBMISSIONS_SERVICE,
    Endpoint,
    Provenance,
    SRVService,
)
from .autoconfig import DEFAULT_TIMEOUT, SocketOpener, autoconfig_urls, fetch_autoconfig
from .errors import (
    CapabilityError,
    ConnectError,
    InvalidArgumentError,
    ProtocolError,
    SecurityError,
    SMTPSecWarning,
    TimeoutError,
)
from .identity import normalize_dns_name
from .policy import Policy, Security

if TYPE_CHECKING:
    import dns.name
    import dns.resolver

__all__ = [
    "SUBMISSIONS_SERVICE",
    "SUBMISSION_SERVICE",
    "Endpoint",
    "Provenance",
    "SRVService",
    "discover",
    "merge_endpoints",
]

#: Query order and preference on equal priority: implicit TLS first (RFC 8314 §5.1).
_SERVICES: Final[tuple[tuple[SRVService, Security], ...]] = (
    (SUBMISSIONS_SERVICE, Security.IMPLICIT_TLS),
    (SUBMISSION_SERVICE, Security.STARTTLS),
)
_SERVICE_RANK: Final[dict[str, int]] = {name: rank for rank, (name, _) in enumerate(_SERVICES)}
_DNSPYTHON_MISSING: Final = (
    "SRV discovery needs dnspython: pip install dnspython (smtpsec's 'dns' extra)"
)


def discover(
    domain: str,
    *,
    resolver: dns.resolver.Resolver | None = None,
    rng: random.Random | None = None,
    autoconfig: bool = False,
    address: str | None = None,
    policy: Policy | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    opener: SocketOpener | None = None,
) -> list[Endpoint]:
    """Look up the submission servers of *domain* (SRV, and autoconfig if asked).

    Both ``_submissions._tcp`` and ``_submission._tcp`` are always queried
    (R-8314-5.1-1). Targets of ``"."`` (service explicitly absent), port 0 and
    malformed target names are dropped. Candidates from both services are
    ordered by SRV priority; on equal priority implicit TLS comes first; inside
    one priority of one service, RFC 2782 weighted random selection orders them
    (R-6186-3-1). MX records are never consulted (R-8314-4.5-1).

    With ``autoconfig=True`` the domain's autoconfig document is fetched as well
    (:func:`smtpsec.autoconfig.fetch_autoconfig`) and both lists are merged by
    :func:`merge_endpoints`: DNSSEC-validated SRV first, then verified-HTTPS
    autoconfig, then unsigned SRV. If the autoconfig fetch fails (certificate,
    redirect to http, hostile XML, timeout) while SRV found endpoints, the SRV
    endpoints are returned and an :class:`~smtpsec.errors.SMTPSecWarning` says
    why; if SRV found nothing, the failure is raised. Autoconfig is opt-in
    because it makes HTTPS requests (and, with *address*, tells a web server
    who is setting up an account) and needs the ``autoconfig`` extra; without
    it, :func:`discover` behaves exactly as before.

    Run this at account setup only and store the result: smtpsec never
    re-queries on connect (R-8314-5.1-6). Check
    :meth:`Endpoint.needs_confirmation` before using an endpoint.

    Args:
        domain: the user's email domain (the part after ``@``).
        resolver: the dnspython resolver to ask. By default the system
            resolver, asked to report DNSSEC validation (the AD bit). A resolver
            you pass is used as is: set ``resolver.flags = dns.flags.RD |
            dns.flags.AD`` if you want the AD bit. The AD bit is only as
            trustworthy as the path to the resolver (use a local validating one).
        rng: random source for weighted selection (pass a seeded one in tests).
        autoconfig: also read the domain's autoconfig document over HTTPS.
        address: with *autoconfig*: the user's address, sent as
            ``?emailaddress=`` to ``autoconfig.<domain>`` (optional).
        policy: with *autoconfig*: HTTPS trust (``Policy(cafile=...)`` for a
            private CA); only its trust settings are used.
        timeout: with *autoconfig*: seconds for each autoconfig URL.
        opener: with *autoconfig*: opens the TCP connection to the web server
            (tests, proxies); TLS still checks the real host name.

    Returns:
        Candidate endpoints, best first; ``[]`` when the domain publishes no
        usable submission configuration (the caller decides what to do).

    Raises:
        CapabilityError: dnspython (or, with *autoconfig*, defusedxml) is not
            installed.
        InvalidArgumentError: *domain* is not a valid DNS name, or *address*
            is not an address at *domain*.
        TimeoutError: the resolver (or, when SRV found nothing, the autoconfig
            server) did not answer in time.
        ConnectError: the lookup failed otherwise (SERVFAIL, no usable
            resolver), so the absence of records cannot be trusted.
        SecurityError: with *autoconfig* and no SRV endpoints: the autoconfig
            fetch failed a security check.
        PolicyError: with *autoconfig*: *policy* does not verify certificates.
    """
    _require_dnspython()
    name = normalize_dns_name(domain, what="email domain")
    if autoconfig:
        # Argument and installation errors surface before any query is made.
        autoconfig_urls(name, address=address)
        _require_defusedxml()
    found = _discover_srv(name, resolver, rng)
    if not autoconfig:
        return found
    try:
        web = fetch_autoconfig(name, address=address, policy=policy, timeout=timeout, opener=opener)
    except (ConnectError, TimeoutError, SecurityError, ProtocolError) as exc:
        if not found:
            raise
        warnings.warn(
            f"autoconfig for {name} was not used ({exc}); the SRV endpoints alone are returned",
            SMTPSecWarning,
            stacklevel=2,
        )
        web = []
    return merge_endpoints(found, web)


def merge_endpoints(*groups: Iterable[Endpoint]) -> list[Endpoint]:
    """Merge discovery results into one list, most trustworthy source first.

    Order (stable, so each source keeps its own order inside its rank):

    1. :attr:`Provenance.SRV_DNSSEC`: the zone owner signed these names
       (RFC 8314 §5.1 accepts them without asking the user, and RFC 7817 §3
       makes the target a reference identity).
    2. :attr:`Provenance.AUTOCONFIG_HTTPS`: forging them needs a certificate for
       the domain's web server, not just a spoofed DNS answer.
    3. :attr:`Provenance.SRV_UNSIGNED`: anyone on the DNS path could have
       written them (RFC 6186 §6), so they come last even when their SRV
       priority is better.

    Inside each rank SRV endpoints keep the RFC 6186 order (priority, implicit
    TLS on ties, RFC 2782 weights) and autoconfig endpoints the document's
    order. An endpoint with the same host, port and mode as an earlier one is
    dropped: the more trustworthy source already named it.

    Args:
        *groups: endpoint lists, e.g. SRV results and autoconfig results.

    Returns:
        The merged list.
    """
    ordered = sorted(itertools.chain.from_iterable(groups), key=lambda ep: ep.provenance.rank)
    seen: set[tuple[str, int, Security]] = set()
    merged: list[Endpoint] = []
    for endpoint in ordered:
        key = (endpoint.host, endpoint.port, endpoint.security)
        if key not in seen:
            seen.add(key)
            merged.append(endpoint)
    return merged


def _discover_srv(
    name: str, resolver: dns.resolver.Resolver | None, rng: random.Random | None
) -> list[Endpoint]:
    active = resolver if resolver is not None else _default_resolver()
    chooser = rng if rng is not None else random.Random()
    found: list[Endpoint] = []
    for service, security in _SERVICES:
        records, validated = _query_srv(active, f"{service}._tcp.{name}.")
        found += _endpoints(records, service, security, name, validated)
    groups = itertools.groupby(
        sorted(found, key=lambda ep: (ep.priority, _SERVICE_RANK[str(ep.service)])),
        key=lambda ep: (ep.priority, ep.service),
    )
    return [ep for _, group in groups for ep in _weighted_order(list(group), chooser)]


def _require_defusedxml() -> None:
    try:
        importlib.import_module("defusedxml.ElementTree")
    except ImportError as exc:
        raise CapabilityError(
            "autoconfig discovery needs defusedxml to parse XML safely: "
            "pip install defusedxml (smtpsec's 'autoconfig' extra)"
        ) from exc


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
    security: Security,
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
