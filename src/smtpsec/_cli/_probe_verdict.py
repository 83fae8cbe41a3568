"""``smtpsec probe``: judge the gathered facts and render them as a table or JSON.

Pure: facts in, findings, text and JSON out. Exit codes: 0 PASS, 1 WARN
(works securely, but something should be fixed), 2 FAIL (a client that
insists on verified TLS cannot use the server, or it invites cleartext).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from ..modes import Security
from ..tls import ChainKey
from ._probe import PortFacts, ProbeFacts

__all__ = [
    "EXPIRY_WARNING_DAYS",
    "KEY_EXTENSIONS",
    "Finding",
    "Verdict",
    "judge",
    "render_json",
    "render_text",
]

#: A certificate this close to expiry means its renewal is failing.
EXPIRY_WARNING_DAYS: Final = 14
#: RSA keys below this size are weak (NIST SP 800-131A; OpenSSL level 2).
MIN_RSA_BITS: Final = 2048
#: The extensions the report always lists, present or not.
KEY_EXTENSIONS: Final = (
    "PIPELINING",
    "CHUNKING",
    "SMTPUTF8",
    "SIZE",
    "DSN",
    "REQUIRETLS",
    "8BITMIME",
)
_LEGACY_VERSIONS: Final = ("TLSv1", "TLSv1.1")
_EXIT: Final = {"PASS": 0, "WARN": 1, "FAIL": 2}

Level = Literal["FAIL", "WARN"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing worth fixing.

    Attributes:
        level: ``"FAIL"`` or ``"WARN"``.
        text: what is wrong and, where it helps, why it matters.
    """

    level: Level
    text: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """The probe's conclusion.

    Attributes:
        status: ``"PASS"``, ``"WARN"`` or ``"FAIL"``.
        findings: every finding, failures first.
        line: the final one-line verdict.
    """

    status: Literal["PASS", "WARN", "FAIL"]
    findings: tuple[Finding, ...]
    line: str

    @property
    def exit_code(self) -> int:
        """0 for PASS, 1 for WARN, 2 for FAIL."""
        return _EXIT[self.status]


def _mode_label(port: PortFacts) -> str:
    return "implicit TLS" if port.mode is Security.IMPLICIT_TLS else "STARTTLS"


def _port_findings(port: PortFacts, *, relay: bool) -> list[Finding]:
    # On the relay port (scanned for information only) problems are warnings.
    serious: Level = "WARN" if relay else "FAIL"
    out: list[Finding] = []
    name = f"port {port.port}"
    if port.verify_error:
        out.append(Finding(serious, f"{name}: {port.verify_error}"))
    elif port.error:
        out.append(Finding(serious, f"{name}: {port.error}"))
    if port.auth_before_tls:
        out.append(
            Finding(
                "WARN",
                f"{name} offers AUTH {' '.join(port.auth_before_tls)} before TLS: clients "
                "that do not insist on TLS send passwords in cleartext (RFC 8314 §4.1)",
            )
        )
    old = [v for v, outcome in port.versions if v in _LEGACY_VERSIONS and outcome == "accepted"]
    if old:
        out.append(
            Finding(
                "WARN",
                f"{name} accepts {', '.join(old)}, deprecated by RFC 8996; allow TLS 1.2+ only",
            )
        )
    if port.certificate_error:
        out.append(Finding("WARN", f"{name}: {port.certificate_error}"))
    cert = port.certificate
    if cert is not None and cert.encoding_issues:
        out.append(
            Finding(
                "WARN",
                f"{name}: the certificate is not strict DER ({'; '.join(cert.encoding_issues)}); "
                "OpenSSL accepts it, but strict parsers (Python's cryptography, Go, rustls) "
                "refuse it, so some clients cannot connect: ask the CA to reissue it",
            )
        )
    if cert is not None and 0 <= cert.days_left < EXPIRY_WARNING_DAYS:
        out.append(
            Finding(
                "WARN",
                f"{name}: the certificate expires in {cert.days_left} days "
                f"({cert.not_after}); is its renewal working?",
            )
        )
    if cert is not None and cert.key == "RSA" and (cert.key_bits or 0) < MIN_RSA_BITS:
        out.append(Finding("WARN", f"{name}: RSA key of {cert.key_bits} bits; use 2048 or more"))
    if not relay and port.extensions is not None and not port.auth_after_tls:
        out.append(
            Finding(
                "WARN",
                f"{name} offers no AUTH inside TLS; submission needs authentication "
                "(RFC 6409 §4.3)",
            )
        )
    return out


def judge(facts: ProbeFacts) -> Verdict:
    """Turn probe facts into findings and a verdict.

    Args:
        facts: what :func:`smtpsec._cli_probe.probe` gathered.

    Returns:
        The :class:`Verdict`.
    """
    findings: list[Finding] = []
    for port in facts.ports:
        if port.reachable:
            relay = port.port == 25 and not facts.explicit_port
            findings.extend(_port_findings(port, relay=relay))
        elif facts.explicit_port:
            findings.append(Finding("FAIL", f"port {port.port} is unreachable: {port.error}"))
        elif port.port == 465:
            findings.append(
                Finding(
                    "WARN",
                    "port 465 (implicit TLS) is unreachable; RFC 8314 §3.3 asks submission "
                    f"services to offer it ({port.error})",
                )
            )
    reachable = [p for p in facts.ports if p.reachable]
    if not reachable:
        findings.append(Finding("FAIL", f"could not reach {facts.host} on any port probed"))
    elif not facts.explicit_port and not any(p.port != 25 for p in reachable):
        findings.append(
            Finding("FAIL", f"{facts.host} has no reachable submission port (465 or 587)")
        )
    findings.sort(key=lambda f: f.level != "FAIL")
    fails = [f.text for f in findings if f.level == "FAIL"]
    warns = [f.text for f in findings if f.level == "WARN"]
    if fails:
        more = f" (and {len(warns)} warning(s))" if warns else ""
        return Verdict("FAIL", tuple(findings), "FAIL: " + "; ".join(fails) + more)
    if warns:
        return Verdict("WARN", tuple(findings), "WARN: " + "; ".join(warns))
    good = ", ".join(f"{p.port} ({_mode_label(p)})" for p in reachable if p.verified)
    return Verdict(
        "PASS",
        (),
        f"PASS: {facts.host} offers verified TLS on {good}, no AUTH before TLS, "
        "TLS 1.2 or newer only",
    )


# --------------------------------------------------------------------------- text


def _extension_summary(port: PortFacts) -> str:
    table = dict(port.extensions or ())
    parts = []
    for key in KEY_EXTENSIONS:
        if key not in table:
            parts.append(f"{key} no")
        elif key == "SIZE" and table[key]:
            parts.append(f"SIZE {table[key][0]}")
        else:
            parts.append(f"{key} yes")
    return ", ".join(parts)


def _row(label: str, value: str) -> str:
    return f"  {label:<18}{value}"


def _port_block(port: PortFacts, host: str) -> list[str]:
    lines = [f"port {port.port} ({_mode_label(port)})"]
    if not port.reachable:
        return [*lines, _row("reachable", f"no: {port.error}")]
    if port.greeting is not None:
        lines.append(_row("greeting", port.greeting.splitlines()[0] if port.greeting else ""))
    if port.mode is Security.STARTTLS and port.starttls_offered is not None:
        lines.append(_row("starttls", "offered" if port.starttls_offered else "NOT offered"))
        before = " ".join(port.auth_before_tls)
        lines.append(
            _row("auth before tls", f"{before}  <- cleartext!" if before else "none (good)")
        )
    if port.tls_version:
        lines.append(_row("tls", f"{port.tls_version} {port.cipher}"))
    if port.verified:
        lines.append(_row("certificate", f"verified for {host}"))
    elif port.verify_error:
        lines.append(_row("certificate", "NOT valid (see findings)"))
    if port.extensions is not None:
        lines.append(_row("auth after tls", " ".join(port.auth_after_tls) or "none"))
        lines.append(_row("extensions", _extension_summary(port)))
    if port.versions:
        lines.append(_row("tls versions", ", ".join(f"{v} {o}" for v, o in port.versions)))
    if port.error and not port.verify_error:
        lines.append(_row("error", port.error))
    return lines


def _chain_rows(chain: tuple[ChainKey, ...]) -> list[str]:
    """The verified chain's pins, one key a line: what ``Policy(pins=...)`` may name."""
    if not chain:
        why = "not shown: the chain did not verify (CA keys count as pins only when it does)"
        return [_row("chain pins", why)]
    width = max(len(key.role) for key in chain)
    rows = []
    for index, key in enumerate(chain):
        named = f" ({key.subject})" if key.subject else ""
        text = f"{key.role:<{width}}  {key.pin or '(unreadable key)'}{named}"
        rows.append(_row("chain pins" if index == 0 else "", text))
    return rows


def _certificate_blocks(facts: ProbeFacts) -> list[str]:
    seen: dict[str, list[int]] = {}
    certs = {}
    chains: dict[str, tuple[ChainKey, ...]] = {}
    for port in facts.ports:
        if port.certificate is not None:
            key = port.certificate.spki_pin + port.certificate.not_after
            seen.setdefault(key, []).append(port.port)
            certs[key] = port.certificate
            chains[key] = chains.get(key) or port.chain
    lines: list[str] = []
    for key, ports in seen.items():
        cert = certs[key]
        bits = f", {cert.key_bits} bits" if cert.key_bits else ""
        lines += [
            "",
            f"certificate (port {', '.join(map(str, ports))})",
            _row("subject", cert.subject),
            _row("issuer", cert.issuer + (" (self-signed)" if cert.self_signed else "")),
            _row("valid until", f"{cert.not_after} ({cert.days_left} days left)"),
            _row("names", ", ".join(cert.names) or "none (no subjectAltName)"),
            _row("key", cert.key + bits),
            _row("spki pin", cert.spki_pin),
            *_chain_rows(chains[key]),
        ]
        if cert.encoding_issues:
            lines.append(_row("encoding", "NOT strict DER: " + "; ".join(cert.encoding_issues)))
    return lines


def render_text(facts: ProbeFacts, verdict: Verdict) -> str:
    """The human-readable report, ending with the verdict line.

    Args:
        facts: the probe facts.
        verdict: their verdict.

    Returns:
        Multi-line text (no trailing newline).
    """
    through = f"; through the proxy {facts.proxy}" if facts.proxy else ""
    lines = [f"smtpsec probe {facts.host} (trust: {facts.trust}{through}; no AUTH or MAIL is sent)"]
    for port in facts.ports:
        lines += ["", *_port_block(port, facts.host)]
    lines += _certificate_blocks(facts)
    lines += ["", "findings"]
    lines += [f"  {f.level}  {f.text}" for f in verdict.findings] or ["  none"]
    lines += ["", verdict.line]
    return "\n".join(lines)


# --------------------------------------------------------------------------- json


def _port_json(port: PortFacts) -> dict[str, Any]:
    table = dict(port.extensions) if port.extensions is not None else None
    cert = port.certificate
    return {
        "port": port.port,
        "mode": port.mode.value,
        "reachable": port.reachable,
        "error": port.error,
        "verify_error": port.verify_error,
        "greeting": port.greeting,
        "starttls_offered": port.starttls_offered,
        "auth_before_tls": list(port.auth_before_tls),
        "auth_after_tls": list(port.auth_after_tls),
        "tls_version": port.tls_version,
        "cipher": port.cipher,
        "verified": port.verified,
        "extensions": {k: list(v) for k, v in table.items()} if table is not None else None,
        "key_extensions": {k: k in table for k in KEY_EXTENSIONS} if table is not None else None,
        "tls_versions": dict(port.versions),
        "certificate": None
        if cert is None
        else {
            "subject": cert.subject,
            "issuer": cert.issuer,
            "not_before": cert.not_before,
            "not_after": cert.not_after,
            "days_left": cert.days_left,
            "names": list(cert.names),
            "key": cert.key,
            "key_bits": cert.key_bits,
            "spki_pin": cert.spki_pin,
            "self_signed": cert.self_signed,
            "encoding_issues": list(cert.encoding_issues),
        },
        "certificate_error": port.certificate_error,
        "chain": [
            {"role": key.role, "spki_pin": key.pin, "subject": key.subject} for key in port.chain
        ],
    }


def render_json(facts: ProbeFacts, verdict: Verdict) -> dict[str, Any]:
    """The machine-readable report (a JSON-ready dict).

    Args:
        facts: the probe facts.
        verdict: their verdict.

    Returns:
        ``{"host", "trust", "proxy", "ports", "findings", "verdict", "exit_code",
        "summary"}`` (``proxy`` is ``null`` for a direct probe).
    """
    return {
        "host": facts.host,
        "trust": facts.trust,
        "proxy": facts.proxy,
        "ports": [_port_json(p) for p in facts.ports],
        "findings": [{"level": f.level, "text": f.text} for f in verdict.findings],
        "verdict": verdict.status,
        "exit_code": verdict.exit_code,
        "summary": verdict.line,
    }
