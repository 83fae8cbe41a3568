"""Valid, CA-signed certificates that strict DER parsers refuse (explicit ``critical FALSE``).

Such certificates exist in the wild (pyca/cryptography #7472, #12665, #13067):
OpenSSL verifies them, ``smtplib`` and ``aiosmtplib`` deliver to them, and
``cryptography`` raises ``ValueError ... EncodedDefault``. smtpsec must deliver
too, compute the same SPKI pin, run its RFC 7817 name check, and never let an
exception outside :mod:`smtpsec.errors` escape (fail closed, never falsely succeed).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import ssl
from pathlib import Path
from typing import Any

import pytest
from _cert_crafting import SKI_OID, explicit_ca_false, explicit_false, leaf_der
from _security_kit import AsyncFacade, Kit
from cryptography import x509
from cryptography.hazmat.primitives import serialization

import smtpsec
from smtpsec import Security, identity
from smtpsec import smtplib as dropin
from smtpsec._cli import main
from smtpsec._cli._probe import PortFacts, ProbeFacts, _read_certificate
from smtpsec._cli._probe_tls import certificate_facts
from smtpsec._cli._probe_verdict import judge, render_json
from smtpsec.discovery import Endpoint
from smtpsec.identity import ReferenceIdentity, check_certificate_identity
from smtpsec.testing import CA, LeafCert
from smtpsec.testing.plugin import ServerFactory
from smtpsec.tls import spki_pin, tls_info

MODES = [
    pytest.param(Security.IMPLICIT_TLS, Security.IMPLICIT_TLS, id="implicit"),
    pytest.param(Security.STARTTLS, Security.STARTTLS, id="starttls"),
]


def cryptography_pin(leaf: LeafCert) -> str:
    """The pin as ``cryptography`` re-encodes it, computed on the *normal* leaf."""
    key = x509.load_pem_x509_certificate(leaf.cert_pem).public_key()
    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256/" + base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


@pytest.fixture(scope="module")
def normal_leaf(smtpsec_ca: CA) -> LeafCert:
    return smtpsec_ca.issue("localhost", ips=("127.0.0.1", "::1"))


@pytest.fixture(scope="module")
def crafted(smtpsec_ca: CA, normal_leaf: LeafCert) -> LeafCert:
    """``normal_leaf`` re-signed with ``critical FALSE`` spelt out in its subjectAltName."""
    return explicit_false(smtpsec_ca, normal_leaf)


def _in_memory_handshake(leaf: LeafCert, client: ssl.SSLContext) -> ssl.SSLObject:
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    c_obj = client.wrap_bio(c_in, c_out, server_hostname="localhost")
    s_obj = leaf.server_context().wrap_bio(s_in, s_out, server_side=True)
    for _ in range(6):
        for obj, out, peer_in in ((c_obj, c_out, s_in), (s_obj, s_out, c_in)):
            with contextlib.suppress(ssl.SSLWantReadError):
                obj.do_handshake()
            peer_in.write(out.read())
    return c_obj


# --------------------------------------------------------------------------- the premise


def test_cryptography_refuses_it_and_openssl_verifies_it(crafted: LeafCert, smtpsec_ca: CA) -> None:
    """The fixture is what the issue describes, on the installed versions."""
    der = leaf_der(crafted)
    with pytest.raises(ValueError, match="EncodedDefault"):  # noqa: PT012 - parse is lazy in some versions
        cert = x509.load_der_x509_certificate(der)
        cert.extensions  # noqa: B018 - access is the point
    client = smtpsec_ca.client_context()
    client.verify_flags |= getattr(ssl, "VERIFY_X509_STRICT", 0)  # as smtpsec's contexts do
    obj = _in_memory_handshake(crafted, client)
    assert obj.version() is not None  # the verifying handshake completed
    assert obj.getpeercert(binary_form=True) == der  # the non-DER bytes reach the client


# --------------------------------------------------------------------------- delivery


@pytest.mark.parametrize(("mode", "security"), MODES)
def test_verified_delivery_to_a_non_der_certificate(
    kit: Kit, crafted: LeafCert, normal_leaf: LeafCert, mode: str, security: Security
) -> None:
    """(a) Both clients deliver over implicit TLS and STARTTLS; verified, right pin."""
    srv = kit.server(mode, cert=crafted)  # type: ignore[arg-type]
    with kit.connect(srv, security) as session:
        result = session.send(kit.message())
        report = session.report
    capture = kit.finished(srv)
    assert result.accepted == ("bob@example.test",)
    assert capture.messages[0].tls
    assert report.verified
    assert report.confidential
    assert report.spki_pin == cryptography_pin(normal_leaf)
    assert report.authenticated_as == kit.user
    kit.assert_nothing_leaked(capture)


@pytest.mark.parametrize(("mode", "security"), MODES)
def test_pin_on_top_of_the_chain(
    kit: Kit, crafted: LeafCert, normal_leaf: LeafCert, mode: str, security: Security
) -> None:
    srv = kit.server(mode, cert=crafted)  # type: ignore[arg-type]
    # A backup pin that matches nothing here: the leaf's own pin must do it.
    backup = CA.self_signed("backup.example.test").spki_sha256_pin
    policy = kit.policy(pins={cryptography_pin(normal_leaf), backup})
    with kit.connect(srv, security, policy=policy) as session:
        assert session.report.pinned
        assert session.report.verified


@pytest.mark.parametrize(("mode", "security"), MODES)
def test_pin_only_mode_right_and_wrong_pin(
    kit: Kit, crafted: LeafCert, normal_leaf: LeafCert, mode: str, security: Security
) -> None:
    """(b) Pin-only trust: the right pin connects (unverified), a wrong one: PinMismatchError."""
    right = cryptography_pin(normal_leaf)
    srv = kit.server(mode, cert=crafted)  # type: ignore[arg-type]
    policy = smtpsec.Policy(pins={right}, pinned_instead_of_ca=True)
    with kit.connect(srv, security, username=None, policy=policy) as session:
        report = session.report
    assert report.pinned
    assert not report.verified
    assert report.spki_pin == right
    wrong = smtpsec.Policy(pins={cryptography_pin(kit.cert)}, pinned_instead_of_ca=True)
    with pytest.raises(smtpsec.PinMismatchError) as info:
        kit.connect(srv, security, policy=wrong)
    assert right in str(info.value)
    for capture in srv.wait_for_connections(2, timeout=10):
        assert capture.auth == []
        assert capture.messages == []
        kit.assert_nothing_leaked(capture)


@pytest.mark.parametrize("mode", [Security.IMPLICIT_TLS, Security.STARTTLS])
def test_smtplib_dropin_delivers_too(
    smtpsec_server: ServerFactory, crafted: LeafCert, smtpsec_ca: CA, mode: str
) -> None:
    """``from smtpsec import smtplib`` reads the peer certificate through the same code."""
    srv = smtpsec_server(mode, cert=crafted)  # type: ignore[arg-type]
    ctx = smtpsec_ca.client_context()
    if mode is Security.IMPLICIT_TLS:
        client = dropin.SMTP_SSL("localhost", srv.port, context=ctx, timeout=10)
    else:
        client = dropin.SMTP("localhost", srv.port, timeout=10)
        client.starttls(context=ctx)
    with client:
        client.sendmail("ann@example.test", ["bob@example.test"], b"Subject: x\r\n\r\nhi\r\n")
    assert srv.wait_for_connections(1, timeout=10)[0].messages[0].tls


# --------------------------------------------------------------------------- RFC 7817 identity


def _endpoint(port: int) -> Endpoint:
    return Endpoint(
        host="localhost",
        port=port,
        security="implicit_tls",
        priority=0,
        weight=0,
        service="_submissions",
        domain="example.test",
        dnssec_validated=False,
    )


def _connect_endpoint(kit: Kit, endpoint: Endpoint) -> Any:
    kwargs: dict[str, Any] = {
        "policy": kit.policy(),
        "confirmed_target": True,
        "timeout": kit.timeout,
    }
    if kit.client == "async":
        return AsyncFacade.connect(endpoint, None, **kwargs)  # type: ignore[arg-type]
    return smtpsec.connect(endpoint, **kwargs)


def test_discovered_endpoint_identity_on_a_non_der_certificate(kit: Kit) -> None:
    """(c) The SRV-ID check reads the names leniently when the strict parse fails."""
    leaf = kit.ca.issue("mail.provider.test", srv_names=("_submissions.example.test",))
    srv = kit.server(Security.IMPLICIT_TLS, cert=explicit_false(kit.ca, leaf))
    with _connect_endpoint(kit, _endpoint(srv.port)) as session:
        report = session.report
    assert report.verified
    assert report.confidential
    assert report.spki_pin == cryptography_pin(leaf)


def test_discovered_endpoint_with_foreign_names_fails_identity(kit: Kit) -> None:
    """(c) The lenient path keeps the rules: names for another domain → CertificateError."""
    leaf = kit.ca.issue("mail.provider.test", srv_names=("_submissions.other.test",))
    srv = kit.server(Security.IMPLICIT_TLS, cert=explicit_false(kit.ca, leaf))
    with pytest.raises(smtpsec.CertificateError, match="matches none"):
        _connect_endpoint(kit, _endpoint(srv.port))
    capture = kit.finished(srv)
    assert capture.commands_post_tls == []
    kit.assert_nothing_leaked(capture)


def _both(ca: CA, leaf: LeafCert) -> list[bytes]:
    """The normal leaf and its non-DER twin (same names, same key)."""
    return [leaf_der(leaf), leaf_der(explicit_false(ca, leaf))]


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        (ReferenceIdentity.for_host("smtp.example.test"), "smtp.example.test"),
        (ReferenceIdentity.for_host("a.wild.example.test"), "a.wild.example.test"),
        (ReferenceIdentity.for_host("192.0.2.7"), "192.0.2.7"),
        (ReferenceIdentity.for_host("2001:db8::7"), "2001:db8::7"),
        (
            ReferenceIdentity(srv_ids=frozenset({"_submissions.example.test"})),
            "_submissions.example.test",
        ),
    ],
)
def test_identity_matches_the_same_on_both_encodings(
    smtpsec_ca: CA, reference: ReferenceIdentity, expected: str
) -> None:
    leaf = smtpsec_ca.issue(
        "SMTP.Example.Test.",
        "*.wild.example.test",
        ips=("192.0.2.7", "2001:db8::7"),
        uri_sans=("smtp://uri.example.test",),
        srv_names=("_submissions.example.test",),
    )
    for der in _both(smtpsec_ca, leaf):
        assert check_certificate_identity(der, reference) == expected


@pytest.mark.parametrize(
    "reference",
    [
        ReferenceIdentity.for_host("uri.example.test"),  # URI-IDs are never used
        ReferenceIdentity.for_host("cn.example.test"),  # nor is the CN
        ReferenceIdentity.for_host("wild.example.test"),  # * is exactly one label
        ReferenceIdentity.for_host("192.0.2.8"),
    ],
)
def test_identity_refuses_the_same_on_both_encodings(
    smtpsec_ca: CA, reference: ReferenceIdentity
) -> None:
    leaf = smtpsec_ca.issue(
        "*.wild.example.test",
        ips=("192.0.2.7",),
        uri_sans=("smtp://uri.example.test",),
        common_name="cn.example.test",
    )
    messages = []
    for der in _both(smtpsec_ca, leaf):
        with pytest.raises(smtpsec.CertificateError) as info:
            check_certificate_identity(der, reference)
        messages.append(str(info.value))
    assert messages[0] == messages[1]  # same names listed, same fix
    assert "URI:smtp://uri.example.test (never used for server identity)" in messages[1]


def test_lenient_names_equal_strict_names(smtpsec_ca: CA) -> None:
    """The fallback extraction yields exactly what the cryptography path yields."""
    leaf = smtpsec_ca.issue(
        "a.example.test",
        "*.b.example.test",
        ips=("127.0.0.1", "::1"),
        uri_sans=("smtp://c.example.test",),
        srv_names=("_submission.example.test",),
    )
    der = leaf_der(leaf)
    san = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    ref = ReferenceIdentity.for_host("a.example.test")
    assert identity._lenient_presented(der, ref) == identity._presented_names(san.value)


def test_identity_without_san_on_a_non_der_certificate(smtpsec_ca: CA) -> None:
    """No subjectAltName (CN only) is still refused when the strict parse fails elsewhere."""
    leaf = explicit_false(smtpsec_ca, smtpsec_ca.issue("localhost", san=False), oid=SKI_OID)
    with pytest.raises(smtpsec.CertificateError, match="no subjectAltName"):
        check_certificate_identity(leaf_der(leaf), ReferenceIdentity.for_host("localhost"))


def test_explicit_default_inside_basic_constraints(smtpsec_ca: CA) -> None:
    """``cA FALSE`` spelt out inside basicConstraints: names still read, pin unchanged."""
    leaf = smtpsec_ca.issue("localhost")
    der = leaf_der(explicit_ca_false(smtpsec_ca, leaf))
    with pytest.raises(ValueError, match="EncodedDefault"):
        x509.load_der_x509_certificate(der).extensions  # noqa: B018 - access is the point
    assert check_certificate_identity(der, ReferenceIdentity.for_host("localhost"))
    assert spki_pin(der) == cryptography_pin(leaf)
    (issue,) = certificate_facts(der).encoding_issues
    assert "basicConstraints" in issue


# --------------------------------------------------------------------------- tls_info


class _FakeTLS:
    """A TLS object whose peer presented ``der`` (to reach tls_info without OpenSSL)."""

    def __init__(self, der: bytes) -> None:
        self._der = der

    def getpeercert(self, binary_form: bool = False) -> bytes:
        return self._der

    def cipher(self) -> tuple[str, str, int]:
        return ("TLS_AES_128_GCM_SHA256", "TLSv1.3", 128)

    def version(self) -> str:
        return "TLSv1.3"


def test_tls_info_accepts_the_non_der_certificate(crafted: LeafCert, normal_leaf: LeafCert) -> None:
    info = tls_info(_FakeTLS(leaf_der(crafted)), verified=True)  # type: ignore[arg-type]
    assert info.spki_pin == cryptography_pin(normal_leaf)


@pytest.mark.parametrize("der", [b"\x30\x03junk", b"\x30\x00", b"not a certificate"])
def test_tls_info_on_garbage_is_a_certificate_error(der: bytes) -> None:
    with pytest.raises(smtpsec.CertificateError, match="could not be parsed"):
        tls_info(_FakeTLS(der), verified=False)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- probe


def test_certificate_facts_read_leniently_and_flag_the_encoding(
    crafted: LeafCert, normal_leaf: LeafCert
) -> None:
    facts = certificate_facts(leaf_der(crafted))
    assert facts.names == ("DNS:localhost", "IP:127.0.0.1", "IP:::1")
    assert facts.subject == "CN=localhost"
    assert facts.key == "EC secp256r1"
    assert facts.spki_pin == cryptography_pin(normal_leaf)
    assert len(facts.encoding_issues) == 1
    assert "subjectAltName" in facts.encoding_issues[0]
    assert "critical=FALSE" in facts.encoding_issues[0]
    assert certificate_facts(leaf_der(normal_leaf)).encoding_issues == ()


def test_probe_reports_the_non_der_certificate(
    smtpsec_server: ServerFactory,
    crafted: LeafCert,
    cafile: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """(e) ``smtpsec probe`` verifies the server, describes the certificate, warns on encoding."""
    srv = smtpsec_server(Security.IMPLICIT_TLS, cert=crafted, users={"ann": "x"})
    args = ["probe", "localhost", "--port", str(srv.port), "--mode", "implicit"]
    code = main([*args, "--cafile", str(cafile)])
    out = capsys.readouterr().out
    assert code == 1, out  # WARN: works securely, but the CA should reissue
    assert "certificate       verified for localhost" in out
    assert "names             DNS:localhost, IP:127.0.0.1, IP:::1" in out
    assert "encoding          NOT strict DER" in out
    assert "WARN  port" in out and "strict parsers" in out
    code = main([*args, "--cafile", str(cafile), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert report["ports"][0]["verified"] is True
    issues = report["ports"][0]["certificate"]["encoding_issues"]
    assert len(issues) == 1 and "subjectAltName" in issues[0]
    for capture in srv.connections:
        capture.wait_closed()
        assert set(capture.commands) <= {"EHLO", "STARTTLS", "QUIT"}
        assert capture.auth == []


def test_probe_keeps_going_when_a_certificate_is_unreadable() -> None:
    """The lenient reader's failure becomes a finding, not a crash."""
    certificate, problem = _read_certificate(b"\x30\x03junk")
    assert certificate is None
    assert problem is not None and "could not be parsed" in problem
    assert _read_certificate(None) == (None, None)
    port = PortFacts(
        port=465, mode=Security.IMPLICIT_TLS, reachable=True, certificate_error=problem
    )
    facts = ProbeFacts(host="h.test", trust="t", ports=(port,), explicit_port=True)
    verdict = judge(facts)
    assert any(problem in f.text and f.level == "WARN" for f in verdict.findings)
    assert render_json(facts, verdict)["ports"][0]["certificate_error"] == problem
