"""The throwaway CA: every certificate fixture of checklist §0.2 item 2 is real.

Each fixture is served by the fake server and checked by a verifying stdlib
client, so a fixture that fails verification fails for the reason it was built
for (OpenSSL verify codes are asserted, not message text).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from smtpsec import Security
from smtpsec.testing import CA, SRV_NAME_OID, LeafCert, SMTPServer

# OpenSSL X509_V_ERR_* codes (stable across 1.1 and 3.x).
NOT_YET_VALID = 9
EXPIRED = 10
SELF_SIGNED = 18
UNKNOWN_ISSUER = 20
INVALID_PURPOSE = 26
HOSTNAME_MISMATCH = 62
IP_MISMATCH = 64

NOW = datetime.datetime.now(datetime.timezone.utc)
DAY = datetime.timedelta(days=1)


def handshake(
    leaf: LeafCert, ctx: ssl.SSLContext, server_hostname: str | None = "localhost"
) -> tuple[str | None, bytes]:
    """Serve ``leaf`` on an implicit-TLS server; return (version, peer DER) or raise."""
    with SMTPServer(leaf, tls=Security.IMPLICIT_TLS) as srv:
        import socket

        with socket.create_connection((srv.host, srv.port), timeout=10) as sock:
            with ctx.wrap_socket(sock, server_hostname=server_hostname) as tls:
                der = tls.getpeercert(binary_form=True)
                assert der is not None
                return tls.version(), der


def verify_code(leaf: LeafCert, ctx: ssl.SSLContext, server_hostname: str = "localhost") -> int:
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        handshake(leaf, ctx, server_hostname)
    return info.value.verify_code


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA.create()


def test_valid_leaf_verifies_even_under_x509_strict(ca: CA) -> None:
    """A normal leaf passes VERIFY_X509_STRICT (Python 3.13's default) — R-8314-5.3-1."""
    leaf = ca.issue("localhost", ips=("127.0.0.1",))
    ctx = ca.client_context()
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    version, der = handshake(leaf, ctx)
    assert version in {"TLSv1.2", "TLSv1.3"}
    assert der == leaf.cert_der


def test_leaf_carries_the_extensions_strict_verifiers_need(ca: CA) -> None:
    cert = ca.issue("smtp.example.test").certificate
    ext = cert.extensions
    assert ext.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert ext.get_extension_for_class(x509.BasicConstraints).critical
    assert ext.get_extension_for_class(x509.KeyUsage).value.digital_signature
    ca_ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ca_ski.value.digest
    assert ext.get_extension_for_class(x509.SubjectKeyIdentifier)
    eku = ext.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert ca.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_ca_name_and_key_pem(ca: CA) -> None:
    named = CA.create("Other test root")
    assert "Other test root" in named.certificate.subject.rfc4514_string()
    assert named.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert ca.cert_pem != named.cert_pem


def test_wrong_name_fails_with_hostname_mismatch(ca: CA) -> None:
    """R-7817-3-1: a certificate for another host is rejected."""
    leaf = ca.issue("other.example.test")
    assert verify_code(leaf, ca.client_context()) == HOSTNAME_MISMATCH


def test_expired_leaf_fails_as_expired(ca: CA) -> None:
    """R-8314-4.4-1 / EAST T_4: expired certificate."""
    leaf = ca.issue("localhost", not_after=NOW - DAY)
    cert = leaf.certificate
    assert cert.not_valid_after_utc < NOW
    assert cert.not_valid_before_utc < cert.not_valid_after_utc
    assert verify_code(leaf, ca.client_context()) == EXPIRED


def test_not_yet_valid_leaf_fails(ca: CA) -> None:
    leaf = ca.issue("localhost", not_before=NOW + 10 * DAY)
    assert leaf.certificate.not_valid_after_utc > NOW + 10 * DAY
    assert verify_code(leaf, ca.client_context()) == NOT_YET_VALID


def test_explicit_validity_window_is_kept(ca: CA) -> None:
    start, end = NOW - 2 * DAY, NOW + 2 * DAY
    cert = ca.issue("localhost", not_before=start, not_after=end).certificate
    assert cert.not_valid_before_utc == start.replace(microsecond=0)
    assert cert.not_valid_after_utc == end.replace(microsecond=0)


def test_self_signed_fails_as_self_signed(ca: CA) -> None:
    """EAST T_1: a self-signed leaf is rejected even by a client trusting our CA."""
    leaf = CA.self_signed("localhost")
    assert leaf.self_signed
    assert leaf.chain_pem == leaf.cert_pem
    assert verify_code(leaf, ca.client_context()) == SELF_SIGNED
    # ... and it verifies when the leaf itself is the trust anchor (pinning tests).
    pinned = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    pinned.load_verify_locations(cadata=leaf.issuer_pem.decode())
    assert handshake(leaf, pinned)[1] == leaf.cert_der


def test_self_signed_without_names_gets_a_placeholder_cn() -> None:
    cert = CA.self_signed().certificate
    assert cert.subject.rfc4514_string() == "CN=smtpsec self-signed"
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)


def test_unknown_root_fails_with_issuer_error(ca: CA) -> None:
    """EAST T_2 / R-7817-3-2: name-correct certificate from a CA the client does not trust."""
    stranger = CA.create("Unknown root")
    leaf = stranger.issue("localhost")
    assert verify_code(leaf, ca.client_context()) == UNKNOWN_ISSUER


def test_cn_only_fixture_depends_on_cn_fallback(ca: CA) -> None:
    """R-7817-3-6: no SAN, CN=localhost — only a CN-fallback client accepts it."""
    leaf = ca.issue(common_name="localhost", san=False)
    with pytest.raises(x509.ExtensionNotFound):
        leaf.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    strict = ca.client_context()
    strict.hostname_checks_common_name = False
    assert verify_code(leaf, strict) == HOSTNAME_MISMATCH
    lenient = ca.client_context()
    lenient.hostname_checks_common_name = True
    assert handshake(leaf, lenient)[1] == leaf.cert_der


def test_uri_san_only_is_not_a_dns_identity(ca: CA) -> None:
    """R-7817-3-5: the only SAN is URI:smtp://localhost."""
    leaf = ca.issue(uri_sans=("smtp://localhost",))
    san = leaf.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["smtp://localhost"]
    assert san.get_values_for_type(x509.DNSName) == []
    assert leaf.certificate.subject.rfc4514_string() == "CN=smtpsec test leaf"
    assert verify_code(leaf, ca.client_context()) == HOSTNAME_MISMATCH


def test_ip_san_matches_ip_literal_but_dns_spelling_does_not(ca: CA) -> None:
    """R-9525-IP-1: 127.0.0.1 matches only an iPAddress SAN."""
    good = ca.issue(ips=("127.0.0.1",))
    assert handshake(good, ca.client_context(), "127.0.0.1")[1] == good.cert_der
    spelled = ca.issue("127.0.0.1")
    assert verify_code(spelled, ca.client_context(), "127.0.0.1") == IP_MISMATCH


@pytest.mark.parametrize(
    ("hostname", "accepted"),
    [("a.example.test", True), ("example.test", False), ("a.b.example.test", False)],
)
def test_wildcard_left_label_only(ca: CA, hostname: str, accepted: bool) -> None:
    """R-7817-3-7: *.example.test covers exactly one left-most label."""
    leaf = ca.issue("*.example.test")
    if accepted:
        assert handshake(leaf, ca.client_context(), hostname)[1] == leaf.cert_der
    else:
        assert verify_code(leaf, ca.client_context(), hostname) == HOSTNAME_MISMATCH


def test_srv_id_other_name_is_encoded_as_ia5string(ca: CA) -> None:
    """R-7817-3-4: SRV-ID _submissions.example.test as id-on-dnsSRV otherName."""
    long_label = "_submissions." + "a" * 130 + ".test"  # > 127 octets: DER long-form length
    leaf = ca.issue("mx1.provider.test", srv_names=("_submissions.example.test", long_label))
    san = leaf.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    others = san.get_values_for_type(x509.OtherName)
    assert [o.type_id for o in others] == [SRV_NAME_OID, SRV_NAME_OID]
    assert SRV_NAME_OID.dotted_string == "1.3.6.1.5.5.7.8.7"
    short = b"_submissions.example.test"
    assert others[0].value == b"\x16" + bytes([len(short)]) + short
    encoded = long_label.encode()
    assert others[1].value == b"\x16\x81" + bytes([len(encoded)]) + encoded
    assert san.get_values_for_type(x509.DNSName) == ["mx1.provider.test"]


def test_client_only_leaf_is_rejected_for_server_use(ca: CA) -> None:
    leaf = ca.issue("localhost", key_usage_server=False)
    eku = leaf.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert verify_code(leaf, ca.client_context()) == INVALID_PURPOSE


def test_issue_client_uses_email_or_dns_names(ca: CA) -> None:
    person = ca.issue_client("ann@example.test").certificate
    san = person.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == ["ann@example.test"]
    eku = person.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    host = ca.issue_client("client.example.test").certificate
    san = host.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["client.example.test"]


def test_spki_pin_matches_the_key_seen_on_the_wire(ca: CA) -> None:
    """R-8314-5.4: the pin is sha256 over the DER SubjectPublicKeyInfo."""
    leaf = ca.issue("localhost")
    _, der = handshake(leaf, ca.client_context())
    spki = (
        x509.load_der_x509_certificate(der)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    expected = "sha256/" + base64.b64encode(hashlib.sha256(spki).digest()).decode()
    assert leaf.spki_sha256_pin == expected
    assert ca.issue("localhost").spki_sha256_pin != expected  # fresh key per leaf


def test_write_and_cafile_round_trip(ca: CA, tmp_path: Path) -> None:
    leaf = ca.issue("localhost")
    certfile, keyfile = leaf.write(tmp_path, stem="server")
    assert certfile.name == "server.pem"
    assert keyfile.name == "server.key"
    assert certfile.read_bytes() == leaf.cert_pem + ca.cert_pem == leaf.chain_pem
    assert keyfile.stat().st_mode & 0o077 == 0
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certfile, keyfile)
    cafile = ca.write_cafile(tmp_path / "ca.pem")
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(cafile=str(cafile))
    assert handshake(leaf, client)[1] == leaf.cert_der


def test_trust_adds_the_ca_to_an_existing_context(ca: CA) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.trust(ctx)
    assert ctx.get_ca_certs(binary_form=True) == [
        ca.certificate.public_bytes(serialization.Encoding.DER)
    ]


@pytest.mark.parametrize(
    ("minimum", "maximum", "expected"),
    [
        (None, ssl.TLSVersion.TLSv1_2, "TLSv1.2"),
        (ssl.TLSVersion.TLSv1_3, None, "TLSv1.3"),
    ],
)
def test_server_context_pins_tls_versions(
    ca: CA, minimum: ssl.TLSVersion | None, maximum: ssl.TLSVersion | None, expected: str
) -> None:
    """R-8314-5-5: 1.2-only handshakes at 1.2, 1.3-only at 1.3."""
    leaf = ca.issue("localhost")
    ctx = leaf.server_context(min_version=minimum, max_version=maximum)
    with SMTPServer(ctx, tls=Security.IMPLICIT_TLS) as srv:
        import socket

        with socket.create_connection((srv.host, srv.port), timeout=10) as sock:
            with ca.client_context().wrap_socket(sock, server_hostname="localhost") as tls:
                assert tls.version() == expected
        assert srv.wait_for_connections(1)[0].tls_version == expected


# --------------------------------------------------------------------------- intermediates


def test_intermediate_chain_verifies_from_the_root_alone(ca: CA, tmp_path: Path) -> None:
    """root → intermediate → leaf, as public CAs issue: the server sends leaf + intermediate."""
    sub = ca.issue_intermediate("test issuing CA")
    assert ca.is_root and not sub.is_root
    assert sub.root_pem == ca.cert_pem
    leaf = sub.issue("localhost")
    assert leaf.issuer_pem == sub.cert_pem
    assert leaf.intermediates_pem == sub.cert_pem
    assert leaf.root_pem == ca.cert_pem
    assert leaf.presented_pem == leaf.cert_pem + sub.cert_pem
    assert leaf.chain_pem == leaf.cert_pem + sub.cert_pem + ca.cert_pem
    # Trusting the intermediate's CA object trusts its root (strict flags on).
    ctx = sub.client_context()
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    assert handshake(leaf, ctx)[1] == leaf.cert_der
    assert sub.write_cafile(tmp_path / "ca.pem").read_bytes() == ca.cert_pem
    # The intermediate is a CA (pathLen unlimited) with the root as its issuer.
    constraints = sub.certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.value.ca and constraints.critical
    assert sub.certificate.issuer == ca.certificate.subject


def test_nested_intermediates_are_all_presented(ca: CA) -> None:
    upper = ca.issue_intermediate("upper")
    lower = upper.issue_intermediate("lower")
    leaf = lower.issue("localhost")
    assert leaf.intermediates_pem == lower.cert_pem + upper.cert_pem
    assert leaf.root_pem == ca.cert_pem
    assert handshake(leaf, ca.client_context())[1] == leaf.cert_der


def test_a_server_without_its_intermediate_does_not_verify(ca: CA) -> None:
    """The realistic misconfiguration: a leaf served alone fails with unknown issuer."""
    import dataclasses

    leaf = dataclasses.replace(ca.issue_intermediate().issue("localhost"), intermediates_pem=b"")
    assert verify_code(leaf, ca.client_context()) == UNKNOWN_ISSUER


def test_ca_pins_are_the_pins_of_their_own_keys(ca: CA) -> None:
    sub = ca.issue_intermediate()
    spki = sub.certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    expected = "sha256/" + base64.b64encode(hashlib.sha256(spki).digest()).decode()
    assert sub.spki_sha256_pin == expected != ca.spki_sha256_pin
