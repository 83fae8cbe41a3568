"""The TLS chokepoint: context defaults, SPKI pins, TLSInfo and SSL error translation.

RFC 8314 §4.1/§5.2/§5.3, RFC 8996/8997, RFC 9525 (no CN fallback); checklist
R-8314-4.1-1, R-7817-3-6, R-PY-1, R-PY-16.
"""

from __future__ import annotations

import contextlib
import ssl
import warnings
from pathlib import Path

import certifi
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import load_pem_private_key

import smtpsec
from smtpsec.policy import Policy
from smtpsec.testing import CA, LeafCert
from smtpsec.tls import TLSInfo, build_context, spki_pin, tls_info, translate_ssl_error

# --------------------------------------------------------------------------- build_context


def test_default_context_is_strict__R_8314_5_2_2__R_7817_3_6() -> None:
    """Every strict default is in place on the default context."""
    ctx = build_context(Policy())
    assert ctx.protocol is ssl.PROTOCOL_TLS_CLIENT
    assert ctx.verify_mode is ssl.CERT_REQUIRED
    assert ctx.check_hostname
    assert ctx.minimum_version is ssl.TLSVersion.TLSv1_2  # R-8314-4.1-1
    assert ctx.hostname_checks_common_name is False  # RFC 9525
    assert ctx.verify_flags & ssl.VERIFY_X509_STRICT  # R-PY-16, on every Python
    assert ctx.options & ssl.OP_NO_COMPRESSION
    assert ctx.options & ssl.OP_NO_RENEGOTIATION  # no server-initiated TLS 1.2 renegotiation


def test_default_trust_is_certifi() -> None:
    """Without cafile/cadata the certifi bundle is the trust store."""
    ctx = build_context(Policy())
    expected = ssl.create_default_context(cafile=certifi.where()).cert_store_stats()["x509_ca"]
    assert ctx.cert_store_stats()["x509_ca"] == expected > 0


def test_cafile_replaces_public_roots(cafile: Path, smtpsec_ca: CA) -> None:
    """``cafile`` trusts exactly that CA (no public roots on top)."""
    ctx = build_context(Policy(cafile=cafile))
    assert ctx.cert_store_stats()["x509_ca"] == 1
    assert ctx.get_ca_certs(binary_form=True) == [
        ssl.PEM_cert_to_DER_cert(smtpsec_ca.cert_pem.decode())
    ]
    assert ctx.verify_mode is ssl.CERT_REQUIRED and ctx.check_hostname


def test_cadata_replaces_public_roots(smtpsec_ca: CA) -> None:
    """``cadata`` (PEM text) behaves like ``cafile``."""
    ctx = build_context(Policy(cadata=smtpsec_ca.cert_pem.decode()))
    assert ctx.cert_store_stats()["x509_ca"] == 1


def test_raised_floor_reaches_the_context__R_8314_5_8() -> None:
    ctx = build_context(Policy(min_tls_version=ssl.TLSVersion.TLSv1_3))
    assert ctx.minimum_version is ssl.TLSVersion.TLSv1_3


def test_legacy_floor_only_with_opt_in__R_8314_4_1_1() -> None:
    """The explicit legacy opt-in lowers the floor (and the cipher security level)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = build_context(Policy(min_tls_version=ssl.TLSVersion.TLSv1_1, allow_legacy_tls=True))
    assert ctx.minimum_version is ssl.TLSVersion.TLSv1_1
    assert ctx.verify_mode is ssl.CERT_REQUIRED and ctx.check_hostname


def test_pinned_instead_of_ca_skips_chain_only(smtpsec_cert: LeafCert) -> None:
    """Pin-only trust disables chain/name checks; the pin is checked after the handshake."""
    ctx = build_context(Policy(pins={smtpsec_cert.spki_sha256_pin}, pinned_instead_of_ca=True))
    assert ctx.verify_mode is ssl.CERT_NONE
    assert not ctx.check_hostname
    assert ctx.minimum_version is ssl.TLSVersion.TLSv1_2


def test_caller_context_is_used_as_given() -> None:
    """A caller's context is returned untouched (the Policy vetted it)."""
    mine = ssl.create_default_context()
    mine.minimum_version = ssl.TLSVersion.TLSv1_3
    assert build_context(Policy(ssl_context=mine)) is mine
    assert mine.minimum_version is ssl.TLSVersion.TLSv1_3


def test_client_certificate_is_loaded__R_PY_15(tmp_path: Path, smtpsec_ca: CA) -> None:
    """``client_cert=(certfile, keyfile)`` is loaded into the context (RFC 8314 §5.5)."""
    certfile, keyfile = smtpsec_ca.issue_client("ann@example.test").write(tmp_path)
    ctx = build_context(Policy(client_cert=(str(certfile), str(keyfile))))
    assert ctx.verify_mode is ssl.CERT_REQUIRED


def test_client_certificate_with_encrypted_key(tmp_path: Path, smtpsec_ca: CA) -> None:
    """The optional third element is the key's password."""
    leaf = smtpsec_ca.issue_client("ann@example.test")
    certfile, keyfile = leaf.write(tmp_path)
    key = load_pem_private_key(leaf.key_pem, password=None)
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"s3cret"),
        )
    )
    build_context(Policy(client_cert=(str(certfile), str(keyfile), "s3cret")))
    with pytest.raises(ssl.SSLError):
        build_context(Policy(client_cert=(str(certfile), str(keyfile), "wrong")))


# --------------------------------------------------------------------------- pins and info


def test_spki_pin_matches_the_kit(smtpsec_cert: LeafCert) -> None:
    """spki_pin(DER) gives the RFC 7469 form Policy(pins=...) accepts."""
    pin = spki_pin(smtpsec_cert.cert_der)
    assert pin == smtpsec_cert.spki_sha256_pin
    assert pin.startswith("sha256/") and len(pin) == len("sha256/") + 44
    assert Policy(pins={pin}).pins == frozenset({pin})


def test_spki_pin_is_per_key_not_per_certificate(smtpsec_ca: CA) -> None:
    """Two certificates for the same name but different keys have different pins."""
    one, two = smtpsec_ca.issue("localhost"), smtpsec_ca.issue("localhost")
    assert spki_pin(one.cert_der) != spki_pin(two.cert_der)


def _handshake_in_memory(leaf: LeafCert, client: ssl.SSLContext) -> ssl.SSLObject:
    server = leaf.server_context()
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    c_obj = client.wrap_bio(c_in, c_out, server_hostname="localhost")
    s_obj = server.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(8):
        for obj, out, peer_in in ((c_obj, c_out, s_in), (s_obj, s_out, c_in)):
            with contextlib.suppress(ssl.SSLWantReadError):
                obj.do_handshake()
            peer_in.write(out.read())
    return c_obj


@pytest.mark.parametrize("verified", [True, False])
def test_tls_info_from_a_real_handshake(
    smtpsec_cert: LeafCert, smtpsec_ca: CA, verified: bool
) -> None:
    """tls_info reports version, cipher, the leaf DER and its pin; ``verified`` as told."""
    obj = _handshake_in_memory(smtpsec_cert, smtpsec_ca.client_context())
    info = tls_info(obj, verified=verified)
    assert info.version == obj.version() == "TLSv1.3"
    assert info.tls_version is ssl.TLSVersion.TLSv1_3
    assert info.cipher == obj.cipher()[0]  # type: ignore[index]
    assert info.peer_certificate == smtpsec_cert.cert_der
    assert info.spki_pin == smtpsec_cert.spki_sha256_pin
    assert info.verified is verified


class _NoFacts:
    """Stands in for a TLS object that knows nothing (the fields fall back safely)."""

    def getpeercert(self, binary_form: bool = False) -> None:
        return None

    def cipher(self) -> None:
        return None

    def version(self) -> None:
        return None


def test_tls_info_without_facts_is_unknown_and_unpinned() -> None:
    info = tls_info(_NoFacts(), verified=False)  # type: ignore[arg-type]
    assert (info.version, info.cipher, info.peer_certificate, info.spki_pin) == (
        "unknown",
        "unknown",
        None,
        None,
    )
    assert info.tls_version is None


@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("SSLv3", ssl.TLSVersion.SSLv3),
        ("TLSv1", ssl.TLSVersion.TLSv1),
        ("TLSv1.1", ssl.TLSVersion.TLSv1_1),
        ("TLSv1.2", ssl.TLSVersion.TLSv1_2),
        ("TLSv1.3", ssl.TLSVersion.TLSv1_3),
        ("DTLSv1.2", None),
        ("", None),
    ],
)
def test_tls_version_mapping(name: str, version: ssl.TLSVersion | None) -> None:
    info = TLSInfo(name, "c", verified=True, peer_certificate=None, spki_pin=None)
    assert info.tls_version is version


# --------------------------------------------------------------------------- error translation


def _verify_error(message: str | None) -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(
        1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"
    )
    exc.verify_message = message  # type: ignore[attr-defined]
    return exc


@pytest.mark.parametrize(
    ("detail", "fix"),
    [
        ("certificate has expired", "renew"),
        ("certificate is not yet valid", "clocks"),
        ("self-signed certificate", "pinned_instead_of_ca=True"),
        ("self signed certificate in certificate chain", "pinned_instead_of_ca=True"),
        ("unable to get local issuer certificate", "Policy(cafile="),
        ("tlsv1 alert unknown ca", "Policy(cafile="),
        ("Hostname mismatch, certificate is not valid for 'a.test'.", "name listed"),
        ("IP address mismatch, certificate is not valid for '::1'.", "name listed"),
        ("unsupported certificate purpose", "fix the server certificate"),
    ],
)
def test_certificate_errors_name_cause_and_fix(detail: str, fix: str) -> None:
    error = translate_ssl_error(
        _verify_error(detail), host="smtp.example.test", port=465, implicit=True
    )
    assert type(error) is smtpsec.CertificateError
    message = str(error)
    assert "smtp.example.test:465" in message
    assert detail.rstrip(".") in message
    assert fix in message
    assert "never disables verification" in message
    # OpenSSL ends some texts with a full stop; the message must not read ".;".
    assert ".;" not in message
    assert ".." not in message.replace("...", "")  # "pins=..." is a placeholder


def test_certificate_error_without_verify_message() -> None:
    error = translate_ssl_error(_verify_error(None), host="h", port=1, implicit=False)
    assert type(error) is smtpsec.CertificateError
    assert "certificate verify failed" in str(error)


def _ssl_error(reason: str | None) -> ssl.SSLError:
    exc = ssl.SSLError(1, f"[SSL: {reason}] handshake failed")
    exc.reason = reason  # type: ignore[misc]
    return exc


@pytest.mark.parametrize(
    "reason",
    [
        "UNSUPPORTED_PROTOCOL",
        "TLSV1_ALERT_PROTOCOL_VERSION",
        "NO_PROTOCOLS_AVAILABLE",
        "WRONG_SSL_VERSION",
        "tlsv1_alert_protocol_version",
    ],
)
def test_version_errors(reason: str) -> None:
    error = translate_ssl_error(_ssl_error(reason), host="h", port=465, implicit=True)
    assert type(error) is smtpsec.TLSVersionError
    assert "TLS 1.2" in str(error) and "min_tls_version" in str(error)


@pytest.mark.parametrize(
    "reason", ["WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"]
)
def test_plaintext_where_tls_was_expected(reason: str) -> None:
    """Implicit mode names STARTTLS as the fix; STARTTLS mode names an attack or a broken server."""
    implicit = translate_ssl_error(_ssl_error(reason), host="h", port=465, implicit=True)
    assert type(implicit) is smtpsec.TLSUnavailableError
    assert "Security.STARTTLS" in str(implicit)
    upgraded = translate_ssl_error(_ssl_error(reason), host="h", port=587, implicit=False)
    assert type(upgraded) is smtpsec.TLSUnavailableError
    assert "after accepting STARTTLS" in str(upgraded)
    assert "Nothing was sent in cleartext" in str(upgraded)


@pytest.mark.parametrize("reason", [None, "SSLV3_ALERT_HANDSHAKE_FAILURE"])
def test_other_handshake_failures(reason: str | None) -> None:
    error = translate_ssl_error(_ssl_error(reason), host="h", port=465, implicit=True)
    assert type(error) is smtpsec.TLSUnavailableError
    assert "TLS handshake with h:465 failed" in str(error)


def test_real_eof_during_handshake_is_typed() -> None:
    """An ``SSLEOFError`` (peer hung up mid-handshake) maps to TLSUnavailableError."""
    exc = ssl.SSLEOFError(8, "EOF occurred in violation of protocol")
    error = translate_ssl_error(exc, host="h", port=465, implicit=True)
    assert isinstance(error, smtpsec.SecurityError)
    assert type(error) is smtpsec.TLSUnavailableError
