"""Pins for short-lived certificates: pin sets, CA keys in the verified chain (RFC 8314 §5.4).

Public certificate lifetimes fall to 200 days (2026), 100 (2027) and 47 (2029),
so a pin on the server's own key breaks at each renewal that changes the key.
A pin set (any match passes) can hold a backup key, and a pin may name an
intermediate's or the root's key, but only of the chain OpenSSL *verified*:
a certificate the server merely appended to its chain never counts, and with
pin-only trust (``pinned_instead_of_ca=True``) only the leaf counts
(R-8314-5.4-2, R-8314-5.3-3).

The servers are real loopback servers presenting root → intermediate → leaf
chains from :meth:`smtpsec.testing.CA.issue_intermediate`; every test runs with
the blocking and the asyncio client (``kit``).
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
from _security_kit import Kit

import smtpsec
from smtpsec import Security
from smtpsec import smtplib as dropin
from smtpsec.guard import Guard
from smtpsec.policy import Attempt, Policy
from smtpsec.testing import CA, LeafCert
from smtpsec.tls import TLSInfo, _verified_chain, describe_chain, pin_candidates

MODES = [Security.IMPLICIT_TLS, Security.STARTTLS]


@pytest.fixture(scope="module")
def intermediate(smtpsec_ca: CA) -> CA:
    """An intermediate under the session CA (which the kit's policy trusts as a root)."""
    return smtpsec_ca.issue_intermediate("smtpsec test issuing CA")


@pytest.fixture(scope="module")
def leaf(intermediate: CA) -> LeafCert:
    return intermediate.issue("localhost", ips=("127.0.0.1",))


@pytest.fixture(scope="module")
def renewed(intermediate: CA) -> LeafCert:
    """The same server after a renewal that changed its key."""
    return intermediate.issue("localhost", ips=("127.0.0.1",))


def _unrelated_pin() -> str:
    return CA.self_signed("unrelated.example.test").spki_sha256_pin


def _connect_quietly(kit: Kit, *args: object, **kwargs: object) -> smtpsec.Session:
    """Connect and fail on any warning: a CA pin or a pin set needs no advice."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return kit.connect(*args, **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- CA pins


@pytest.mark.parametrize("mode", MODES)
def test_intermediate_pin_survives_a_key_rotation(
    kit: Kit, intermediate: CA, leaf: LeafCert, renewed: LeafCert, mode: Security
) -> None:
    """One pin on the issuing CA's key matches the server before and after its renewal."""
    policy = kit.policy(pins={intermediate.spki_sha256_pin})
    for cert in (leaf, renewed):
        srv = kit.server(mode, cert=cert)
        with _connect_quietly(kit, srv, mode, policy=policy) as session:
            report = session.report
        assert report.pinned
        assert report.verified
        assert report.confidential  # a CA pin adds to chain validation
        assert report.spki_pin == cert.spki_sha256_pin
    assert leaf.spki_sha256_pin != renewed.spki_sha256_pin


@pytest.mark.parametrize("mode", MODES)
def test_root_pin_matches_the_anchor_from_the_trust_store(
    kit: Kit, smtpsec_ca: CA, intermediate: CA, leaf: LeafCert, mode: Security
) -> None:
    """The server never sends its root; the verified chain still ends in it."""
    srv = kit.server(mode, cert=leaf)
    policy = kit.policy(pins={smtpsec_ca.spki_sha256_pin})
    with _connect_quietly(kit, srv, mode, policy=policy) as session:
        assert session.report.pinned
        # On every supported Python the whole verified chain is seen (3.13's
        # public get_verified_chain, or the same call on 3.10-3.12's _sslobj).
        assert session.report.chain_pins == (
            leaf.spki_sha256_pin,
            intermediate.spki_sha256_pin,
            smtpsec_ca.spki_sha256_pin,
        )


@pytest.mark.parametrize("mode", MODES)
def test_ca_pin_holds_on_every_reconnect_with_a_session_cache(
    kit: Kit, intermediate: CA, leaf: LeafCert, mode: Security
) -> None:
    """A resumed handshake verifies no chain, so a pinned policy never resumes.

    Found by reconnecting the way a pool does (one shared cache): the second
    connection resumed and failed its CA pin, the leaf being all it had.
    """
    srv = kit.server(mode, cert=leaf)
    policy = kit.policy(pins={intermediate.spki_sha256_pin})
    cache = smtpsec.TLSSessionCache()
    for _ in range(3):
        with _connect_quietly(kit, srv, mode, policy=policy, tls_sessions=cache) as session:
            report = session.report
        assert report.pinned and report.verified and not report.tls_resumed
        assert intermediate.spki_sha256_pin in report.chain_pins
    assert len(cache) == 0


@pytest.mark.parametrize("mode", MODES)
def test_pin_set_passes_on_any_match(
    kit: Kit, leaf: LeafCert, renewed: LeafCert, mode: Security
) -> None:
    """Current key and next key pinned: both servers connect, an unrelated one does not."""
    policy = kit.policy(pins={leaf.spki_sha256_pin, renewed.spki_sha256_pin})
    for cert in (leaf, renewed):
        srv = kit.server(mode, cert=cert)
        with _connect_quietly(kit, srv, mode, policy=policy) as session:
            assert session.report.pinned
    stranger = kit.server(mode)  # the kit's own leaf, straight under the root
    with pytest.raises(smtpsec.PinMismatchError):
        kit.connect(stranger, mode, policy=policy)
    kit.assert_nothing_leaked(kit.finished(stranger))


# --------------------------------------------------------------------------- attacks


@pytest.mark.parametrize("mode", MODES)
def test_appended_copy_of_the_pinned_ca_does_not_count(
    kit: Kit, smtpsec_ca: CA, intermediate: CA, mode: Security, tmp_path: Path
) -> None:
    """An attacker holding a valid certificate from *another* trusted CA appends the pinned
    intermediate's certificate to its chain. It is in what the server sent, not in the
    chain OpenSSL verified, so the pin fails and nothing is authenticated."""
    other_root = CA.create("another trusted CA")
    forged = other_root.issue("localhost", ips=("127.0.0.1",))
    forged = dataclasses.replace(
        forged, intermediates_pem=forged.intermediates_pem + intermediate.cert_pem
    )
    trust = tmp_path / "two-roots.pem"
    trust.write_bytes(smtpsec_ca.root_pem + other_root.root_pem)
    srv = kit.server(mode, cert=forged)
    pinned = intermediate.spki_sha256_pin
    with pytest.raises(smtpsec.PinMismatchError) as info:
        kit.connect(srv, mode, policy=smtpsec.Policy(cafile=trust, pins={pinned}))
    error = info.value
    assert error.expected == (pinned,)
    assert error.presented == (forged.spki_sha256_pin, other_root.spki_sha256_pin)
    assert pinned not in error.presented
    capture = kit.finished(srv)
    assert set(capture.commands_post_tls) <= {"QUIT"}
    assert capture.auth == []
    kit.assert_nothing_leaked(capture)


@pytest.mark.parametrize("mode", MODES)
def test_pin_only_trust_counts_only_the_leaf(
    kit: Kit, intermediate: CA, leaf: LeafCert, mode: Security
) -> None:
    """With ``pinned_instead_of_ca`` no chain is verified: a CA pin cannot vouch for a leaf."""
    srv = kit.server(mode, cert=leaf)
    ca_pin_only = smtpsec.Policy(pins={intermediate.spki_sha256_pin}, pinned_instead_of_ca=True)
    with pytest.raises(smtpsec.PinMismatchError, match="pin-only trust") as info:
        kit.connect(srv, mode, username=None, policy=ca_pin_only)
    assert info.value.presented == (leaf.spki_sha256_pin,)
    leaf_pin_only = smtpsec.Policy(pins={leaf.spki_sha256_pin}, pinned_instead_of_ca=True)
    with _connect_quietly(kit, srv, mode, username=None, policy=leaf_pin_only) as session:
        assert session.report.pinned
        assert not session.report.verified
        assert session.report.chain_pins == (leaf.spki_sha256_pin,)


# --------------------------------------------------------------------------- messages


@pytest.mark.parametrize("mode", MODES)
def test_mismatch_lists_expected_pins_and_presented_keys(
    kit: Kit, smtpsec_ca: CA, intermediate: CA, leaf: LeafCert, mode: Security
) -> None:
    srv = kit.server(mode, cert=leaf)
    expected = sorted({_unrelated_pin(), _unrelated_pin()})
    with pytest.raises(smtpsec.PinMismatchError) as info:
        kit.connect(srv, mode, policy=kit.policy(pins=set(expected)))
    error = info.value
    assert list(error.expected) == expected
    assert error.presented == (
        leaf.spki_sha256_pin,
        intermediate.spki_sha256_pin,
        smtpsec_ca.spki_sha256_pin,
    )
    text = str(error)
    assert f"Expected one of: {expected[0]}, {expected[1]}." in text
    assert f"leaf {leaf.spki_sha256_pin} (CN=localhost)" in text
    assert f"intermediate {intermediate.spki_sha256_pin} (CN=smtpsec test issuing CA" in text
    assert f"root {smtpsec_ca.spki_sha256_pin} (CN=smtpsec test CA" in text
    assert "update Policy(pins=...)" in text  # the native API's words
    assert "do not simply pin what was presented" in text


@pytest.mark.parametrize("mode", MODES)
def test_lone_leaf_pin_warns_and_names_the_backup_candidates(
    kit: Kit, smtpsec_ca: CA, intermediate: CA, leaf: LeafCert, mode: Security
) -> None:
    """One pin, on the server's own key, in CA-verified mode: it works, and warns."""
    srv = kit.server(mode, cert=leaf)
    with pytest.warns(smtpsec.SMTPSecWarning, match="only configured pin") as caught:
        session = kit.connect(srv, mode, policy=kit.policy(pins={leaf.spki_sha256_pin}))
    with session:
        assert session.report.pinned
    (warning,) = [w for w in caught if "only configured pin" in str(w.message)]
    text = str(warning.message)
    assert intermediate.spki_sha256_pin in text
    assert smtpsec_ca.spki_sha256_pin in text
    assert "update Policy(pins=...)" in text


def test_lone_pin_in_pin_only_mode_does_not_warn(kit: Kit) -> None:
    """A self-signed server has one key by design; rotating it is the owner's act."""
    own = CA.self_signed("localhost")
    srv = kit.server(Security.IMPLICIT_TLS, cert=own)
    policy = smtpsec.Policy(pins={own.spki_sha256_pin}, pinned_instead_of_ca=True)
    with _connect_quietly(kit, srv, Security.IMPLICIT_TLS, username=None, policy=policy) as s:
        assert s.report.pinned


def test_dropin_reaches_a_server_with_an_intermediate_chain(
    smtpsec_ca: CA, leaf: LeafCert, smtpsec_server: object
) -> None:
    """The drop-in has no pin setting (smtplib has none); it verifies the same chains."""
    srv = smtpsec_server(Security.IMPLICIT_TLS, cert=leaf)  # type: ignore[operator]
    client = dropin.SMTP_SSL("localhost", srv.port, context=smtpsec_ca.client_context())
    try:
        assert client.noop()[0] == 250
    finally:
        client.quit()


# --------------------------------------------------------------------------- the rule, purely


def _info(*, verified: bool, chain: tuple[bytes, ...], leaf: LeafCert) -> TLSInfo:
    return TLSInfo(
        version="TLSv1.3",
        cipher="TLS_AES_128_GCM_SHA256",
        verified=verified,
        peer_certificate=leaf.cert_der,
        spki_pin=leaf.spki_sha256_pin,
        verified_chain=chain,
    )


def _der(pem: bytes) -> bytes:
    return LeafCert(cert_pem=pem, key_pem=b"", issuer_pem=pem).cert_der


def test_an_unverified_session_never_offers_its_chain(intermediate: CA, leaf: LeafCert) -> None:
    """Even if a chain were attached to an unverified session, only the leaf counts."""
    chain = (leaf.cert_der, _der(intermediate.cert_pem), _der(intermediate.root_pem))
    assert len(pin_candidates(_info(verified=True, chain=chain, leaf=leaf))) == 3
    unverified = _info(verified=False, chain=chain, leaf=leaf)
    assert pin_candidates(unverified) == (leaf.spki_sha256_pin,)
    assert [key.role for key in describe_chain(unverified)] == ["leaf"]


def test_a_python_without_the_chain_fails_closed(intermediate: CA, leaf: LeafCert) -> None:
    """No verified chain to read: a CA pin cannot match, and the error says why."""
    assert _verified_chain(SimpleNamespace()) == ()  # type: ignore[arg-type]
    no_chain = SimpleNamespace(_sslobj=SimpleNamespace(get_verified_chain=lambda: None))
    assert _verified_chain(no_chain) == ()  # type: ignore[arg-type]
    guard = Guard(
        Policy(pins={intermediate.spki_sha256_pin}), Attempt(465, Security.IMPLICIT_TLS), "h"
    )
    with pytest.raises(smtpsec.PinMismatchError, match="did not show the verified chain"):
        guard.after_handshake(_info(verified=True, chain=(), leaf=leaf))
