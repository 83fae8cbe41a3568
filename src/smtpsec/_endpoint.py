"""A discovered submission endpoint and where it came from (SRV or autoconfig).

:class:`Endpoint` is what :func:`smtpsec.discover` returns and what
:func:`smtpsec.connect` accepts instead of a host name. Its
:class:`Provenance` says how much the *source* of the host name can be
trusted, and therefore which names its certificate must carry (RFC 7817 §3)
and whether the user has to confirm the host before anything connects to it
(RFC 8314 §5.1, RFC 6186 §6).

It lives in a private module so that :mod:`smtpsec.discovery` (SRV, merging)
and :mod:`smtpsec.autoconfig` (HTTPS documents) can both build endpoints
without importing each other; both re-export it.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import urlsplit

from .errors import InvalidArgumentError
from .identity import ReferenceIdentity, normalize_dns_name
from .policy import Security
from .sansio import is_mechanism_name

__all__ = [
    "SUBMISSIONS_SERVICE",
    "SUBMISSION_SERVICE",
    "Endpoint",
    "Provenance",
    "SRVService",
]

#: The SRV service label an endpoint came from.
SRVService = Literal["_submissions", "_submission"]

#: RFC 8314 §7.3: submission over implicit TLS (port 465).
SUBMISSIONS_SERVICE: Final = "_submissions"
#: RFC 6186 §3.1: submission with STARTTLS (port 587); smtpsec requires the upgrade.
SUBMISSION_SERVICE: Final = "_submission"

#: The only modes a discovered endpoint may have: discovery never yields cleartext
#: (R-8314-5.1-2, R-8314-5.1-3).
_TLS_MODES: Final = (Security.IMPLICIT_TLS, Security.STARTTLS)
_SECURITY_OF_SERVICE: Final[dict[str, Security]] = {
    SUBMISSIONS_SERVICE: Security.IMPLICIT_TLS,
    SUBMISSION_SERVICE: Security.STARTTLS,
}
_MAX_PORT: Final = 65535
_MAX_SRV_FIELD: Final = 65535


class Provenance(enum.Enum):
    """Where a discovered endpoint came from, most trustworthy first.

    Attributes:
        SRV_DNSSEC: a ``_submissions``/``_submission`` SRV answer that the
            resolver reported as DNSSEC-validated (the AD bit). The zone owner
            signed the host name, so it is a reference identity of its own.
        AUTOCONFIG_HTTPS: a Mozilla-style ``config-v1.1.xml`` fetched over
            HTTPS from ``autoconfig.<domain>`` or ``<domain>/.well-known/``,
            with a verified certificate. As trustworthy as that web server.
        SRV_UNSIGNED: an SRV answer without DNSSEC: anyone who can spoof DNS
            on the path could have written it.
    """

    SRV_DNSSEC = "srv_dnssec"
    AUTOCONFIG_HTTPS = "autoconfig_https"
    SRV_UNSIGNED = "srv_unsigned"

    @property
    def rank(self) -> int:
        """Position in the merged discovery order (0 is tried first)."""
        return _RANK[self]


_RANK: Final[dict[Provenance, int]] = {p: i for i, p in enumerate(Provenance)}


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One discovered submission server; always a TLS endpoint.

    It says nothing about credentials: which account logs in here is the
    caller's configuration, never DNS's or a web server's. Host and domain are
    normalized on construction (lower case, A-labels, no trailing dot).

    An endpoint comes either from SRV (``service`` set, ``autoconfig_url``
    ``None``) or from an autoconfig document (``service`` ``None``,
    ``autoconfig_url`` set); :attr:`provenance` tells which.

    Attributes:
        host: the server's host name (SRV target or autoconfig ``hostname``).
        port: the port to connect to.
        security: :attr:`Security.IMPLICIT_TLS` or :attr:`Security.STARTTLS`
            (TLS required). A stored string (``"implicit_tls"``,
            ``"starttls"``) is converted, so old saved configurations load.
        priority: the SRV priority, or the entry's position in the autoconfig
            document (lower is tried first).
        weight: the SRV weight (share of picks among equal priorities); 0 for
            autoconfig.
        service: ``"_submissions"`` or ``"_submission"`` for SRV; ``None`` for
            autoconfig.
        domain: the user's email domain that was looked up.
        dnssec_validated: the resolver set the AD bit on this SRV answer
            (always ``False`` for autoconfig).
        autoconfig_url: the HTTPS URL the autoconfig document was finally read
            from (after redirects); ``None`` for SRV.
        sasl_mechanisms: SASL mechanism names the autoconfig document
            suggested (hints only: the server's post-TLS EHLO decides); empty
            for SRV.

    Raises:
        InvalidArgumentError: a field is out of range, the mode is not a TLS
            mode or does not belong to the SRV service, or the SRV/autoconfig
            fields are mixed.
    """

    host: str
    port: int
    security: Security
    priority: int
    weight: int
    service: SRVService | None
    domain: str
    dnssec_validated: bool
    autoconfig_url: str | None = None
    sasl_mechanisms: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        what = "SRV target" if self.service is not None else "autoconfig hostname"
        object.__setattr__(self, "host", _host_name(self.host, what))
        object.__setattr__(self, "domain", normalize_dns_name(self.domain, what="email domain"))
        object.__setattr__(self, "security", _tls_mode(self.security))
        if not 0 < self.port <= _MAX_PORT:
            raise InvalidArgumentError(
                f"port {self.port} is outside 1-65535; fix the SRV record, the autoconfig "
                "document or the stored configuration"
            )
        if not (0 <= self.priority <= _MAX_SRV_FIELD and 0 <= self.weight <= _MAX_SRV_FIELD):
            raise InvalidArgumentError(
                f"SRV priority {self.priority} / weight {self.weight} must be within 0-65535"
            )
        if self.service is not None:
            self._check_srv()
        else:
            self._check_autoconfig()
        object.__setattr__(self, "sasl_mechanisms", _mechanisms(self.sasl_mechanisms))

    def _check_srv(self) -> None:
        if _SECURITY_OF_SERVICE.get(str(self.service)) is not self.security:
            raise InvalidArgumentError(
                f"service {self.service!r} cannot use security {self.security!r}: "
                "_submissions is Security.IMPLICIT_TLS and _submission is Security.STARTTLS"
            )
        if self.autoconfig_url is not None:
            raise InvalidArgumentError(
                "an Endpoint comes from SRV (service=...) or from autoconfig "
                "(autoconfig_url=...), not both; drop one of them"
            )

    def _check_autoconfig(self) -> None:
        url = self.autoconfig_url
        if url is None or urlsplit(url).scheme != "https":
            raise InvalidArgumentError(
                f"an Endpoint without an SRV service must name the https:// URL of its "
                f"autoconfig document (autoconfig_url={url!r}); pass service= for SRV"
            )
        if self.dnssec_validated:
            raise InvalidArgumentError(
                "dnssec_validated=True describes an SRV answer; an autoconfig endpoint "
                "is authenticated by HTTPS, so pass dnssec_validated=False"
            )

    @property
    def provenance(self) -> Provenance:
        """Where this endpoint came from (decides trust and merge order)."""
        if self.service is None:
            return Provenance.AUTOCONFIG_HTTPS
        return Provenance.SRV_DNSSEC if self.dnssec_validated else Provenance.SRV_UNSIGNED

    @property
    def source(self) -> str:
        """Where the host name was read, for people: an SRV owner name or a URL."""
        if self.service is None:
            return f"autoconfig {self.autoconfig_url}"
        signed = "DNSSEC-validated" if self.dnssec_validated else "not DNSSEC-validated"
        return f"SRV {self.service}._tcp.{self.domain} ({signed})"

    @property
    def target_in_domain(self) -> bool:
        """``True`` when the host is the looked-up domain or a name under it."""
        return self.host == self.domain or self.host.endswith("." + self.domain)

    def needs_confirmation(self) -> bool:
        """Whether the user must confirm this endpoint before any connection.

        A host outside the user's domain is accepted automatically only when
        DNSSEC signed the SRV answer (R-8314-5.1-5, RFC 6186 §6). An autoconfig
        document is as trustworthy as the web server that served it, and that
        server speaks for the domain, not for other domains: a host outside
        the domain needs the user's confirmation exactly like an unsigned SRV
        target does.

        Returns:
            ``True`` when the answer was not DNSSEC-validated and the host is
            not inside the looked-up domain.
        """
        return not (self.dnssec_validated or self.target_in_domain)

    def reference_identity(self, *, confirmed_target: bool = False) -> ReferenceIdentity:
        """The identities this endpoint's certificate may prove (RFC 7817 §3).

        * SRV (R-7817-3-4): the email domain as DNS-ID and
          ``<service>.<domain>`` as SRV-ID; the target as DNS-ID only when
          DNSSEC-validated or *confirmed_target*.
        * Autoconfig: the email domain and, when it lies inside the domain
          (the verified HTTPS server speaks for it) or the user confirmed it,
          the host as DNS-IDs. No SRV-ID: no SRV record was used.

        Args:
            confirmed_target: the user confirmed :attr:`host` at setup.

        Returns:
            The reference identity to check the certificate against.
        """
        if self.service is None:
            trusted = self.target_in_domain or confirmed_target
            names = {self.domain, self.host} if trusted else {self.domain}
            return ReferenceIdentity(dns_ids=frozenset(names))
        return ReferenceIdentity.for_srv(
            domain=self.domain,
            service=self.service,
            target=self.host,
            target_trusted=self.dnssec_validated or confirmed_target,
        )


def _host_name(host: str, what: str) -> str:
    name = normalize_dns_name(host, what=what)
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name
    raise InvalidArgumentError(
        f"{what} {host!r} is an IP address; a discovered endpoint must name a host whose "
        "certificate can carry that name"
    )


def _tls_mode(value: object) -> Security:
    mode: object = value
    if isinstance(value, str):
        try:
            mode = Security(value)
        except ValueError:
            mode = value
    if isinstance(mode, Security) and mode in _TLS_MODES:
        return mode
    raise InvalidArgumentError(
        f"security {value!r} is not a TLS mode; a discovered endpoint uses "
        "Security.IMPLICIT_TLS or Security.STARTTLS, never cleartext"
    )


def _mechanisms(names: object) -> tuple[str, ...]:
    if isinstance(names, str) or not isinstance(names, (tuple, list)):
        raise InvalidArgumentError(
            f"sasl_mechanisms must be a tuple of SASL names such as ('PLAIN',), not {names!r}"
        )
    wanted: list[str] = []
    for name in names:
        upper = name.upper() if isinstance(name, str) else ""
        if not is_mechanism_name(upper):
            raise InvalidArgumentError(
                f"{name!r} is not a SASL mechanism name (RFC 4422: 1-20 letters, digits, "
                "'-' or '_')"
            )
        if upper not in wanted:
            wanted.append(upper)
    return tuple(wanted)
