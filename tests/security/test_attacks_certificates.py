"""Certificate, TLS-version and pinning attacks, plus the good-server controls.

Every certificate fixture is tried in both implicit-TLS and STARTTLS modes
(R-EAST-T-1): the client must raise :class:`smtpsec.CertificateError` and send
nothing once the handshake has failed.
"""

from __future__ import annotations

import datetime
import ssl
import warnings
from collections.abc import Callable

import pytest
from _security_kit import Kit

import smtpsec
from smtpsec import Security
from smtpsec.testing import CA, Capture, LeafCert

MODES = [
    pytest.param(Security.IMPLICIT_TLS, Security.IMPLICIT_TLS, id="implicit"),
    pytest.param(Security.STARTTLS, Security.STARTTLS, id="starttls"),
]


def _past() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=2)


def _future() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=2)


#: fixture name -> how to build it from the trusted CA (checklist §0.2 item 2)
BAD_CERTS: dict[str, Callable[[CA], LeafCert]] = {
    # R-8314-4.4-1, EAST T_4
    "expired": lambda ca: ca.issue("localhost", not_after=_past()),
    # R-8314-5.3-1 (validity period)
    "not-yet-valid": lambda ca: ca.issue("localhost", not_before=_future()),
    # R-8314-5-3, EAST T_1
    "self-signed": lambda ca: CA.self_signed("localhost"),
    # R-7817-3-2, EAST T_2
    "unknown-ca": lambda ca: CA.create("evil CA").issue("localhost"),
    # R-7817-3-1, EAST T_3
    "wrong-name": lambda ca: ca.issue("other.example.test"),
    # R-7817-3-6 (RFC 9525: no CN fallback)
    "cn-only": lambda ca: ca.issue("localhost", san=False),
    # R-7817-3-5 (URI-IDs are never used)
    "uri-only": lambda ca: ca.issue(uri_sans=("smtp://localhost",), common_name="localhost"),
}
HINTS = {
    "expired": "renew",
    "not-yet-valid": "clocks",
    "self-signed": "pins=",
    "unknown-ca": "cafile",
    "wrong-name": "name listed on the certificate",
    "cn-only": "name listed on the certificate",
    "uri-only": "name listed on the certificate",
}


def assert_nothing_after_handshake(kit: Kit, capture: Capture, mode: str) -> None:
    """The handshake failed: no byte of SMTP inside TLS, and only EHLO/STARTTLS before it."""
    assert not capture.tls
    assert capture.post_tls == b""
    assert capture.commands_post_tls == []
    if mode is Security.IMPLICIT_TLS:
        assert capture.segments == []
    else:
        assert capture.commands_pre_tls == ["EHLO", "STARTTLS"]
    kit.assert_nothing_leaked(capture)


@pytest.mark.parametrize(("mode", "security"), MODES)
@pytest.mark.parametrize("fixture", sorted(BAD_CERTS))
def test_bad_certificate_is_fatal__R_8314_5_3_1__R_EAST_T_1(
    kit: Kit, fixture: str, mode: str, security: Security
) -> None:
    """Expired, not yet valid, self-signed, unknown CA, wrong name, CN-only, URI-only → fail."""
    srv = kit.server(mode, cert=BAD_CERTS[fixture](kit.ca))  # type: ignore[arg-type]
    with pytest.raises(smtpsec.CertificateError) as info:
        kit.connect(srv, security)
    capture = kit.finished(srv)
    assert HINTS[fixture] in str(info.value)
    assert "never disables verification" in str(info.value)
    assert_nothing_after_handshake(kit, capture, mode)


@pytest.mark.parametrize(("mode", "security"), MODES)
def test_ip_literal_matches_ip_san__R_9525_IP_1(kit: Kit, mode: str, security: Security) -> None:
    """``127.0.0.1`` with SAN ``IP:127.0.0.1`` passes."""
    srv = kit.server(mode, cert=kit.ca.issue(ips=("127.0.0.1",)))  # type: ignore[arg-type]
    with kit.connect(srv, security, host="127.0.0.1") as session:
        assert session.report.verified
        assert session.report.confidential
    assert kit.finished(srv).auth[0].success


@pytest.mark.parametrize(("mode", "security"), MODES)
def test_ip_literal_never_matches_dns_san__R_9525_IP_1(
    kit: Kit, mode: str, security: Security
) -> None:
    """``127.0.0.1`` against a certificate whose only SAN is ``DNS:127.0.0.1`` fails."""
    srv = kit.server(mode, cert=kit.ca.issue("127.0.0.1"))  # type: ignore[arg-type]
    with pytest.raises(smtpsec.CertificateError):
        kit.connect(srv, security, host="127.0.0.1")
    assert_nothing_after_handshake(kit, kit.finished(srv), mode)


def test_unknown_ca_reports_the_path_not_the_name__R_7817_3_2(kit: Kit) -> None:
    """A name-correct leaf from an unknown CA fails on the chain, not on the name."""
    srv = kit.server(Security.IMPLICIT_TLS, cert=CA.create("evil CA").issue("localhost"))
    with pytest.raises(smtpsec.CertificateError) as info:
        kit.connect(srv, Security.IMPLICIT_TLS)
    assert "issuer" in str(info.value)
    assert "mismatch" not in str(info.value).lower()


def test_default_trust_is_public_roots_only__R_8314_5_2_2(kit: Kit) -> None:
    """With a default Policy the private test CA is not trusted: no silent trust."""
    srv = kit.server(Security.IMPLICIT_TLS)
    with pytest.raises(smtpsec.CertificateError):
        kit.connect(srv, Security.IMPLICIT_TLS, policy=smtpsec.Policy())
    assert_nothing_after_handshake(kit, kit.finished(srv), Security.IMPLICIT_TLS)


# --------------------------------------------------------------------------- TLS versions


def _openssl_speaks_tls11(cert: LeafCert) -> bool:
    """Whether this OpenSSL can still negotiate TLS 1.1 at all (in memory, no sockets)."""
    if not getattr(ssl, "HAS_TLSv1_1", False):
        return False
    try:
        server = cert.server_context(max_version=ssl.TLSVersion.TLSv1_1)
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.check_hostname = False
        client.verify_mode = ssl.CERT_NONE
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            client.minimum_version = client.maximum_version = ssl.TLSVersion.TLSv1_1
        client.set_ciphers("DEFAULT:@SECLEVEL=0")
    except (ssl.SSLError, ValueError):
        return False
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    ends = [
        (client.wrap_bio(c_in, c_out, server_hostname="localhost"), c_out, s_in),
        (server.wrap_bio(s_in, s_out, server_side=True), s_out, c_in),
    ]
    done = [False, False]
    for _ in range(8):
        for index, (obj, out, peer_in) in enumerate(ends):
            try:
                obj.do_handshake()
                done[index] = True
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:
                return False
            peer_in.write(out.read())
        if all(done):
            return ends[0][0].version() == "TLSv1.1"
    return False


@pytest.fixture(scope="module")
def tls11_possible(smtpsec_cert: LeafCert) -> None:
    if not _openssl_speaks_tls11(smtpsec_cert):
        pytest.skip("the local OpenSSL cannot offer TLS 1.1 even at SECLEVEL=0")


@pytest.mark.usefixtures("tls11_possible")
@pytest.mark.parametrize(("mode", "security"), MODES)
def test_tls11_server_is_refused__R_8314_4_1_1(kit: Kit, mode: str, security: Security) -> None:
    """A server capped at TLS 1.1 → TLSVersionError, nothing sent inside the session."""
    srv = kit.server(mode, max_version=ssl.TLSVersion.TLSv1_1)  # type: ignore[arg-type]
    with pytest.raises(smtpsec.TLSVersionError) as info:
        kit.connect(srv, security)
    assert "TLS 1.2" in str(info.value)
    assert_nothing_after_handshake(kit, kit.finished(srv), mode)


@pytest.mark.usefixtures("tls11_possible")
def test_legacy_opt_in_reaches_tls11_but_is_not_confidential__R_8314_5_4(kit: Kit) -> None:
    """``allow_legacy_tls`` reaches a TLS 1.1 server; the report never says confidential."""
    srv = kit.server(Security.IMPLICIT_TLS, max_version=ssl.TLSVersion.TLSv1_1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # ssl deprecates TLSv1_1
        policy = kit.policy(min_tls_version=ssl.TLSVersion.TLSv1_1, allow_legacy_tls=True)
        with kit.connect(srv, Security.IMPLICIT_TLS, username=None, policy=policy) as session:
            report = session.report
    assert report.tls_version == "TLSv1.1"
    assert report.verified
    assert not report.confidential


@pytest.mark.parametrize(("mode", "security"), MODES)
def test_policy_can_require_tls13__R_8314_5_8(kit: Kit, mode: str, security: Security) -> None:
    """``Policy(min_tls_version=TLSv1_3)`` against a TLS 1.2-only server → TLSVersionError."""
    srv = kit.server(mode, max_version=ssl.TLSVersion.TLSv1_2)  # type: ignore[arg-type]
    with pytest.raises(smtpsec.TLSVersionError):
        kit.connect(srv, security, policy=kit.policy(min_tls_version=ssl.TLSVersion.TLSv1_3))
    assert_nothing_after_handshake(kit, kit.finished(srv), mode)


def test_floor_is_checked_after_the_handshake_too__R_3207_4_1_2(kit: Kit) -> None:
    """A caller's context allows TLS 1.2, the policy wants 1.3: the guard stops it afterwards."""
    srv = kit.server(max_version=ssl.TLSVersion.TLSv1_2)
    policy = smtpsec.Policy(
        ssl_context=kit.ca.client_context(), min_tls_version=ssl.TLSVersion.TLSv1_3
    )
    with pytest.raises(smtpsec.TLSVersionError, match=r"TLSv1\.2"):
        kit.connect(srv, Security.STARTTLS, policy=policy)
    capture = kit.finished(srv)
    assert capture.tls_version == "TLSv1.2"
    assert set(capture.commands_post_tls) <= {"QUIT"}
    kit.assert_nothing_leaked(capture)


@pytest.mark.parametrize(("mode", "security"), MODES)
@pytest.mark.parametrize(
    ("bound", "version"),
    [("max_version", ssl.TLSVersion.TLSv1_2), ("min_version", ssl.TLSVersion.TLSv1_3)],
    ids=["tls1.2-only", "tls1.3-only"],
)
def test_tls12_and_tls13_servers_work__R_8314_5_5(
    kit: Kit, mode: str, security: Security, bound: str, version: ssl.TLSVersion
) -> None:
    """Handshakes succeed against a TLS 1.2-only and a TLS 1.3-only server."""
    srv = kit.server(mode, **{bound: version})  # type: ignore[arg-type]
    with kit.connect(srv, security) as session:
        report = session.report
    expected = "TLSv1.2" if version is ssl.TLSVersion.TLSv1_2 else "TLSv1.3"
    assert report.tls_version == expected
    assert report.confidential
    assert kit.finished(srv).tls_version == expected


# --------------------------------------------------------------------------- controls


@pytest.mark.parametrize(("mode", "security"), MODES)
def test_good_server_delivers__R_8314_3_3_2(kit: Kit, mode: str, security: Security) -> None:
    """Control: a correct server with a valid certificate gets the message, inside TLS."""
    srv = kit.server(mode)  # type: ignore[arg-type]
    with kit.connect(srv, security) as session:
        result = session.send(kit.message())
        report = session.report
    capture = kit.finished(srv)
    assert result.accepted == ("bob@example.test",)
    assert kit.body.encode() in capture.messages[0].data
    assert capture.messages[0].tls
    assert report.confidential
    assert report.verified
    assert report.tls_version in ("TLSv1.2", "TLSv1.3")
    assert report.cipher
    assert report.spki_pin == kit.cert.spki_sha256_pin
    assert not report.pinned
    assert report.mode is mode
    assert report.authenticated_as == kit.user
    # R-3207-4-3: STARTTLS was the last thing in its write; nothing followed it in clear.
    assert capture.after_starttls == b""
    assert capture.commands_pre_tls == (
        [] if mode is Security.IMPLICIT_TLS else ["EHLO", "STARTTLS"]
    )
    kit.assert_nothing_leaked(capture)


# --------------------------------------------------------------------------- pins


@pytest.mark.parametrize(("mode", "security"), MODES)
def test_matching_pin_passes__R_8314_5_4(kit: Kit, mode: str, security: Security) -> None:
    """A pin on top of chain validation: the right key connects and is reported as pinned.

    A lone pin on the leaf works, with a warning that the next key change breaks it.
    """
    srv = kit.server(mode)  # type: ignore[arg-type]
    policy = kit.policy(pins={kit.cert.spki_sha256_pin})
    with pytest.warns(smtpsec.SMTPSecWarning, match="only configured pin"):
        session = kit.connect(srv, security, policy=policy)
    with session:
        assert session.report.pinned
        assert session.report.confidential  # chain validated too


@pytest.mark.parametrize(("mode", "security"), MODES)
def test_wrong_pin_is_fatal__R_8314_5_4(kit: Kit, mode: str, security: Security) -> None:
    """A key matching no pin → PinMismatchError naming the presented pin; no AUTH."""
    srv = kit.server(mode)  # type: ignore[arg-type]
    other = CA.self_signed("localhost").spki_sha256_pin
    with pytest.raises(smtpsec.PinMismatchError) as info:
        kit.connect(srv, security, policy=kit.policy(pins={other}))
    capture = kit.finished(srv)
    assert kit.cert.spki_sha256_pin in str(info.value)
    assert set(capture.commands_post_tls) <= {"QUIT"}
    kit.assert_nothing_leaked(capture)


def _pinned_only(kit: Kit, leaf: LeafCert, **extra: bool) -> smtpsec.Policy:
    return smtpsec.Policy(pins={leaf.spki_sha256_pin}, pinned_instead_of_ca=True, **extra)


@pytest.mark.parametrize(("mode", "security"), MODES)
def test_pinned_self_signed_is_not_confidential__R_8314_5_3_3__R_8314_5_4_4(
    kit: Kit, mode: str, security: Security
) -> None:
    """A self-signed server pinned at setup connects, but the session is never confidential."""
    leaf = CA.self_signed("localhost")
    srv = kit.server(mode, cert=leaf)  # type: ignore[arg-type]
    with kit.connect(srv, security, username=None, policy=_pinned_only(kit, leaf)) as session:
        report = session.report
    assert report.pinned
    assert not report.verified
    assert not report.confidential
    assert report.spki_pin == leaf.spki_sha256_pin
    assert "NOT verified" in str(report)


@pytest.mark.parametrize(("mode", "security"), MODES)
def test_pinned_self_signed_refuses_auth__R_8314_5_3_3(
    kit: Kit, mode: str, security: Security
) -> None:
    """Credentials over a pin-only session need ``allow_cleartext_auth``: InsecureAuthError."""
    leaf = CA.self_signed("localhost")
    srv = kit.server(mode, cert=leaf)  # type: ignore[arg-type]
    with pytest.raises(smtpsec.InsecureAuthError, match="not verified"):
        kit.connect(srv, security, policy=_pinned_only(kit, leaf))
    capture = kit.finished(srv)
    assert "AUTH" not in capture.commands
    assert capture.auth == []


def test_pinned_self_signed_auth_with_explicit_flag_warns__R_8314_5_3_3(kit: Kit) -> None:
    """With ``allow_cleartext_auth`` the pinned session authenticates, loudly."""
    leaf = CA.self_signed("localhost")
    srv = kit.server(Security.IMPLICIT_TLS, cert=leaf)
    policy = _pinned_only(kit, leaf, allow_cleartext_auth=True)
    with pytest.warns(smtpsec.InsecureConfigurationWarning):
        session = kit.connect(srv, Security.IMPLICIT_TLS, policy=policy)
    with session:
        assert session.report.authenticated_as == kit.user
        assert not session.report.confidential


def test_pinned_self_signed_wrong_pin__R_8314_5_4(kit: Kit) -> None:
    """Pin-only trust with the wrong pin fails: there is no chain to fall back on."""
    srv = kit.server(Security.IMPLICIT_TLS, cert=CA.self_signed("localhost"))
    with pytest.raises(smtpsec.PinMismatchError):
        kit.connect(srv, Security.IMPLICIT_TLS, policy=_pinned_only(kit, kit.cert))
    assert kit.finished(srv).commands == []


# --------------------------------------------------------------------------- own contexts


def test_context_without_hostname_check_is_not_verified__R_4954_14_1(kit: Kit) -> None:
    """A caller's chain-checking but name-blind context is not "verified": no AUTH over it."""
    ctx = kit.ca.client_context()
    ctx.check_hostname = False
    policy = smtpsec.Policy(ssl_context=ctx, allow_unverified_context=True)
    srv = kit.server(Security.IMPLICIT_TLS, cert=kit.ca.issue("other.example.test"))
    with kit.connect(srv, Security.IMPLICIT_TLS, username=None, policy=policy) as session:
        report = session.report
    assert not report.verified
    assert not report.confidential
    with pytest.raises(smtpsec.InsecureAuthError):
        kit.connect(srv, Security.IMPLICIT_TLS, policy=policy)
    assert all("AUTH" not in c.commands for c in srv.wait_for_connections(2))


def test_unverifying_context_is_never_confidential__R_4954_14_1(kit: Kit) -> None:
    """``CERT_NONE`` (explicitly allowed) reaches a self-signed server, reports it honestly."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    policy = smtpsec.Policy(ssl_context=ctx, allow_unverified_context=True)
    srv = kit.server(Security.STARTTLS, cert=CA.self_signed("localhost"))
    with pytest.raises(smtpsec.InsecureAuthError):
        kit.connect(srv, Security.STARTTLS, policy=policy)
    capture = kit.finished(srv)
    assert capture.tls
    assert "AUTH" not in capture.commands
    kit.assert_nothing_leaked(capture)
