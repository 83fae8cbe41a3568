"""``smtpsec probe DOMAIN --discover [--autoconfig]``: what discovery finds for an email
domain and which certificate identity each endpoint would have to present (RFC 6186,
RFC 8314 §5.1, RFC 7817; Mozilla autoconfig over verified HTTPS)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from ..discovery import Endpoint, Provenance, discover
from ..policy import Policy, Security

__all__ = ["DiscoveryReport", "discover_report", "render_discovery_json", "render_discovery_text"]

#: Exit codes shared with the rest of the CLI.
_OK, _WARN, _FAIL = 0, 1, 2

_MODES: Final[dict[Security, str]] = {
    Security.IMPLICIT_TLS: "implicit TLS",
    Security.STARTTLS: "STARTTLS (required)",
}
_TRUST: Final[dict[Provenance, str]] = {
    Provenance.SRV_DNSSEC: "DNSSEC-validated SRV",
    Provenance.AUTOCONFIG_HTTPS: "autoconfig over verified HTTPS",
    Provenance.SRV_UNSIGNED: "SRV, not DNSSEC-validated",
}


@dataclass(frozen=True, slots=True)
class DiscoveryReport:
    """Endpoints found for ``domain`` and what the CLI concludes."""

    domain: str
    endpoints: tuple[Endpoint, ...]
    autoconfig: bool = False

    @property
    def exit_code(self) -> int:
        """0: usable endpoints; 1: every endpoint needs the user's confirmation; 2: none."""
        if not self.endpoints:
            return _FAIL
        if all(ep.needs_confirmation() for ep in self.endpoints):
            return _WARN
        return _OK

    @property
    def verdict(self) -> str:
        """One line for people and scripts."""
        if not self.endpoints:
            sources = "SRV records or autoconfig" if self.autoconfig else "SRV records"
            return (
                f"FAIL: {self.domain} publishes no usable _submissions/_submission {sources}; "
                "configure the server by hand (MX records are for relay, never used here)"
            )
        if self.exit_code == _WARN:
            return (
                "WARN: every host lies outside the domain and none comes from a "
                "DNSSEC-validated answer; confirm a host with the user before connecting "
                "(smtpsec.connect(endpoint, confirmed_target=True))"
            )
        return f"PASS: {len(self.endpoints)} TLS endpoint(s) for {self.domain}"


def discover_report(
    domain: str,
    *,
    resolver: Any = None,
    autoconfig: bool = False,
    policy: Policy | None = None,
    timeout: float = 10.0,
) -> DiscoveryReport:
    """Run discovery once (setup time) and wrap the result."""
    found = discover(
        domain, resolver=resolver, autoconfig=autoconfig, policy=policy, timeout=timeout
    )
    return DiscoveryReport(domain, tuple(found), autoconfig)


def _mode(security: Security) -> str:
    # An Endpoint only ever holds one of these two (it refuses the others).
    return _MODES.get(security, security.value)


def _label(ep: Endpoint) -> str:
    return ep.service if ep.service is not None else "autoconfig"


def _identity(ep: Endpoint) -> str:
    return ep.reference_identity(confirmed_target=False).describe()


def render_discovery_text(report: DiscoveryReport) -> str:
    """A readable table of the endpoints, in the order a client should try them."""
    what = "SRV and autoconfig discovery" if report.autoconfig else "SRV discovery"
    lines = [f"{what} for {report.domain} (RFC 6186, RFC 8314 §5.1)"]
    for ep in report.endpoints:
        confirm = "needs user confirmation" if ep.needs_confirmation() else "usable as found"
        lines.append(
            f"  {_label(ep):<13} {ep.host}:{ep.port}  {_mode(ep.security)}; priority "
            f"{ep.priority}, weight {ep.weight}; {_TRUST[ep.provenance]}; {confirm}"
        )
        if ep.autoconfig_url is not None:
            lines.append(f"  {'':13} from {ep.autoconfig_url}")
        lines.append(f"  {'':13} certificate must match: {_identity(ep)}")
    if not report.endpoints:
        lines.append("  (no endpoints)")
    lines.append(report.verdict)
    return "\n".join(lines)


def render_discovery_json(report: DiscoveryReport) -> dict[str, object]:
    """The same facts for machines."""
    return {
        "domain": report.domain,
        "endpoints": [
            {
                "service": ep.service,
                "host": ep.host,
                "port": ep.port,
                "security": ep.security.value,
                "priority": ep.priority,
                "weight": ep.weight,
                "provenance": ep.provenance.value,
                "autoconfig_url": ep.autoconfig_url,
                "sasl_mechanisms": list(ep.sasl_mechanisms),
                "dnssec_validated": ep.dnssec_validated,
                "needs_confirmation": ep.needs_confirmation(),
                "identity": _identity(ep),
            }
            for ep in report.endpoints
        ],
        "verdict": report.verdict,
        "exit_code": report.exit_code,
    }
