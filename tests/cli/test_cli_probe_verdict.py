"""The probe's pure parts: verdict rules, rendering, certificate facts, error classes."""

from __future__ import annotations

import datetime
import ssl
from dataclasses import replace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

from smtpsec import Security
from smtpsec._cli._probe import PortFacts, ProbeFacts
from smtpsec._cli._probe_tls import (
    CertificateFacts,
    certificate_facts,
    classify_handshake_error,
    inspection_context,
)
from smtpsec._cli._probe_verdict import judge, render_json, render_text
from smtpsec.testing import CA

GOOD_CERT = CertificateFacts(
    subject="CN=mail.example.test",
    issuer="CN=CA",
    not_before="2025-01-01T00:00:00+00:00",
    not_after="2027-01-01T00:00:00+00:00",
    days_left=300,
    names=("DNS:mail.example.test",),
    key="EC secp256r1",
    key_bits=256,
    spki_pin="sha256/" + "A" * 43 + "=",
    self_signed=False,
)
GOOD = PortFacts(
    port=465,
    mode=Security.IMPLICIT_TLS,
    reachable=True,
    greeting="mail.example.test ESMTP",
    tls_version="TLSv1.3",
    cipher="TLS_AES_256_GCM_SHA384",
    verified=True,
    extensions=(("AUTH", ("PLAIN",)), ("PIPELINING", ())),
    certificate=GOOD_CERT,
    versions=(("TLSv1", "refused"), ("TLSv1.1", "refused"), ("TLSv1.2", "accepted")),
)


def _facts(*ports: PortFacts, explicit: bool = False) -> ProbeFacts:
    return ProbeFacts(
        host="mail.example.test", trust="certifi roots", ports=ports, explicit_port=explicit
    )


def test_all_good_passes() -> None:
    starttls = replace(GOOD, port=587, mode=Security.STARTTLS, starttls_offered=True)
    verdict = judge(_facts(GOOD, starttls))
    assert verdict.status == "PASS"
    assert verdict.exit_code == 0
    assert "465 (implicit TLS), 587 (STARTTLS)" in verdict.line
    assert "findings\n  none" in render_text(_facts(GOOD), verdict)


def test_missing_465_is_a_warning_in_a_scan() -> None:
    gone = PortFacts(port=465, mode=Security.IMPLICIT_TLS, reachable=False, error="refused")
    starttls = replace(GOOD, port=587, mode=Security.STARTTLS, starttls_offered=True)
    verdict = judge(_facts(gone, starttls))
    assert verdict.status == "WARN"
    assert verdict.exit_code == 1
    assert "RFC 8314 §3.3" in verdict.line


def test_relay_port_problems_are_only_warnings() -> None:
    relay = replace(
        GOOD,
        port=25,
        mode=Security.STARTTLS,
        error="no STARTTLS",
        tls_version=None,
        extensions=None,
    )
    verdict = judge(_facts(GOOD, relay))
    assert verdict.status == "WARN"
    assert verdict.findings[0].text == "port 25: no STARTTLS"


def test_only_the_relay_port_is_reachable_fails() -> None:
    gone = PortFacts(port=465, mode=Security.IMPLICIT_TLS, reachable=False, error="refused")
    gone587 = PortFacts(port=587, mode=Security.STARTTLS, reachable=False, error="refused")
    relay = replace(GOOD, port=25, mode=Security.STARTTLS)
    verdict = judge(_facts(gone, gone587, relay))
    assert verdict.status == "FAIL"
    assert "no reachable submission port" in verdict.line
    assert "(and 1 warning(s))" in verdict.line


def test_nothing_reachable_fails() -> None:
    gone = PortFacts(port=587, mode=Security.STARTTLS, reachable=False, error="timed out")
    verdict = judge(_facts(gone))
    assert verdict.status == "FAIL"
    assert verdict.exit_code == 2
    assert "could not reach mail.example.test" in verdict.line


def test_certificate_and_key_warnings() -> None:
    soon = replace(GOOD_CERT, days_left=5, key="RSA", key_bits=1024)
    port = replace(GOOD, certificate=soon, extensions=(("PIPELINING", ()),))
    texts = [f.text for f in judge(_facts(port, explicit=True)).findings]
    assert any("expires in 5 days" in t for t in texts)
    assert any("RSA key of 1024 bits" in t for t in texts)
    assert any("no AUTH inside TLS" in t for t in texts)


def test_rendering_covers_every_row() -> None:
    port = replace(
        GOOD,
        port=587,
        mode=Security.STARTTLS,
        starttls_offered=True,
        auth_before_tls=("PLAIN",),
        verified=False,
        verify_error="certificate verify failed: expired",
        extensions=(("SIZE", ()), ("AUTH", ("PLAIN",))),
        certificate=replace(GOOD_CERT, self_signed=True, names=(), key="Ed25519", key_bits=None),
    )
    failed = replace(
        GOOD,
        port=2525,
        mode=Security.STARTTLS,
        tls_version=None,
        verified=False,
        error="boom",
        extensions=None,
        certificate=None,
        versions=(),
        greeting="",
    )
    facts = _facts(port, failed, explicit=True)
    verdict = judge(facts)
    text = render_text(facts, verdict)
    assert "auth before tls   PLAIN  <- cleartext!" in text
    assert "certificate       NOT valid" in text
    assert "(self-signed)" in text
    assert "none (no subjectAltName)" in text
    assert "key               Ed25519\n" in text
    assert "SIZE yes" in text
    assert "error             boom" in text
    assert "greeting          \n" in text
    data = render_json(facts, verdict)
    assert data["ports"][1]["certificate"] is None
    assert data["ports"][1]["extensions"] is None
    assert data["verdict"] == "FAIL"


def _self_signed(key: object, algorithm: hashes.HashAlgorithm | None) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())  # type: ignore[attr-defined]
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=10))
        .sign(key, algorithm)  # type: ignore[arg-type]
    )
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize(
    ("key", "algorithm", "expected"),
    [
        (
            rsa.generate_private_key(public_exponent=65537, key_size=1024),  # noqa: S505 - weak on purpose
            hashes.SHA256(),
            ("RSA", 1024),
        ),
        (dsa.generate_private_key(key_size=1024), hashes.SHA256(), ("DSA", 1024)),  # noqa: S505
        (ec.generate_private_key(ec.SECP384R1()), hashes.SHA256(), ("EC secp384r1", 384)),
        (ed25519.Ed25519PrivateKey.generate(), None, ("Ed25519", 256)),
        (ed448.Ed448PrivateKey.generate(), None, ("Ed448", 456)),
    ],
)
def test_certificate_key_facts(
    key: object, algorithm: hashes.HashAlgorithm | None, expected: tuple[str, int]
) -> None:
    facts = certificate_facts(_self_signed(key, algorithm))
    assert (facts.key, facts.key_bits) == expected
    assert facts.names == ()
    assert facts.self_signed
    assert 8 <= facts.days_left <= 10


def test_certificate_names_and_expiry(smtpsec_ca: CA) -> None:
    leaf = smtpsec_ca.issue("mail.example.test", ips=("192.0.2.1",))
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=400)
    facts = certificate_facts(leaf.cert_der, now=later)
    assert facts.names == ("DNS:mail.example.test", "IP:192.0.2.1")
    assert facts.days_left < 0
    assert not facts.self_signed
    assert facts.spki_pin == leaf.spki_sha256_pin


def test_classify_handshake_error() -> None:
    local = ssl.SSLError(1, "no protocols available")
    local.reason = "NO_PROTOCOLS_AVAILABLE"  # type: ignore[misc]
    remote = ssl.SSLError(1, "alert protocol version")
    remote.reason = "TLSV1_ALERT_PROTOCOL_VERSION"  # type: ignore[misc]
    assert classify_handshake_error(local) == "not testable"
    assert classify_handshake_error(remote) == "refused"
    assert classify_handshake_error(None) == "refused"


def test_inspection_context_pins_one_version() -> None:
    ctx = inspection_context(ssl.TLSVersion.TLSv1_3)
    assert ctx.minimum_version == ctx.maximum_version == ssl.TLSVersion.TLSv1_3
    assert ctx.verify_mode == ssl.CERT_NONE
    any_version = inspection_context()
    assert any_version.minimum_version == ssl.TLSVersion.TLSv1
