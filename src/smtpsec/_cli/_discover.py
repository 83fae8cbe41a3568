"""``smtpsec probe DOMAIN --discover``: what SRV discovery finds for an email domain and
which certificate identity each endpoint would have to present (RFC 6186, RFC 8314 §5.1,
RFC 7817)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..discovery import Endpoint, discover

__all__ = ["DiscoveryReport", "discover_report", "render_discovery_json", "render_discovery_text"]

#: Exit codes shared with the rest of the CLI.
_OK, _WARN, _FAIL = 0, 1, 2


@dataclass(frozen=True, slots=True)
class DiscoveryReport:
    """Endpoints found for ``domain`` and what the CLI concludes."""

    domain: str
    endpoints: tuple[Endpoint, ...]

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
            return (
                f"FAIL: {self.domain} publishes no _submissions/_submission SRV records; "
                "configure the server by hand (MX records are for relay, never used here)"
            )
        if self.exit_code == _WARN:
            return (
                "WARN: every target lies outside the domain and the answers were not "
                "DNSSEC-validated; confirm a target with the user before connecting "
                "(smtpsec.connect(endpoint, confirmed_target=True))"
            )
        return f"PASS: {len(self.endpoints)} TLS endpoint(s) for {self.domain}"


def discover_report(domain: str, *, resolver: Any = None) -> DiscoveryReport:
    """Run discovery once (setup time) and wrap the result."""
    return DiscoveryReport(domain, tuple(discover(domain, resolver=resolver)))


def _identity(ep: Endpoint) -> str:
    return ep.reference_identity(confirmed_target=False).describe()


def render_discovery_text(report: DiscoveryReport) -> str:
    """A readable table of the endpoints, in the order a client should try them."""
    lines = [f"SRV discovery for {report.domain} (RFC 6186, RFC 8314 §5.1)"]
    for ep in report.endpoints:
        mode = "implicit TLS" if ep.security == "implicit_tls" else "STARTTLS (required)"
        trust = "DNSSEC-validated" if ep.dnssec_validated else "not DNSSEC-validated"
        confirm = "needs user confirmation" if ep.needs_confirmation() else "usable as found"
        lines.append(
            f"  {ep.service:<13} {ep.host}:{ep.port}  {mode}; priority {ep.priority}, "
            f"weight {ep.weight}; {trust}; {confirm}"
        )
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
                "security": ep.security,
                "priority": ep.priority,
                "weight": ep.weight,
                "dnssec_validated": ep.dnssec_validated,
                "needs_confirmation": ep.needs_confirmation(),
                "identity": _identity(ep),
            }
            for ep in report.endpoints
        ],
        "verdict": report.verdict,
        "exit_code": report.exit_code,
    }
