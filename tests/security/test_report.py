"""The per-session SecurityReport: what it says, and that it never overstates (RFC 8314 §5).

Checklist R-8314-5-4 (never "confidential" unless verified TLS ≥ 1.2) and
R-8314-8-2 (the report talks about the submission hop only).
"""

from __future__ import annotations

import dataclasses

import pytest
from _security_kit import Kit

import smtpsec
from smtpsec import Security, SecurityReport

PIN = "sha256/" + "D" * 43 + "="


def report(**changes: object) -> SecurityReport:
    base = SecurityReport(
        security=Security.AUTO,
        mode=Security.IMPLICIT_TLS,
        reason="port 465 is 'submissions'",
        host="smtp.example.test",
        port=465,
        tls_version="TLSv1.3",
        cipher="TLS_AES_256_GCM_SHA384",
        verified=True,
        spki_pin=PIN,
        pinned=False,
        confidential=True,
        authenticated_as="ann",
        mechanism="PLAIN",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_defaults_claim_nothing() -> None:
    """A bare report claims no TLS, no verification, no confidentiality."""
    bare = SecurityReport(Security.PLAINTEXT, Security.PLAINTEXT, "asked for", "h", 25)
    assert (bare.tls_version, bare.cipher, bare.spki_pin) == (None, None, None)
    assert not bare.verified and not bare.pinned and not bare.confidential
    assert bare.authenticated_as is None and bare.mechanism is None


def test_verified_tls_text__R_8314_8_2() -> None:
    text = str(report())
    lines = text.splitlines()
    assert lines[0] == "submission hop   smtp.example.test:465"
    assert "mode             implicit_tls (requested AUTO)" in lines
    assert "why              port 465 is 'submissions'" in lines
    assert "tls              TLSv1.3 TLS_AES_256_GCM_SHA384" in lines
    assert "certificate      verified" in lines
    assert f"spki pin         {PIN}" in lines
    assert "confidential     yes" in lines
    assert "authenticated    ann via PLAIN" in lines


def test_pinned_unverified_text__R_8314_5_4_4() -> None:
    text = str(report(verified=False, pinned=True, confidential=False))
    assert "certificate      NOT verified" in text
    assert f"spki pin         {PIN} (matched)" in text
    assert "confidential     NO" in text


def test_tls_without_pin_has_no_pin_line() -> None:
    text = str(report(spki_pin=None, authenticated_as=None, mechanism=None))
    assert "spki pin" not in text
    assert "authenticated" not in text


def test_plaintext_text_is_loud__R_8314_5_4() -> None:
    text = str(
        report(
            security=Security.PLAINTEXT,
            mode=Security.PLAINTEXT,
            tls_version=None,
            cipher=None,
            verified=False,
            spki_pin=None,
            confidential=False,
        )
    )
    assert "tls              none: everything was sent in cleartext" in text
    assert "certificate" not in text
    assert "confidential     NO" in text
    assert "(requested PLAINTEXT)" in text


def test_report_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        report().confidential = False  # type: ignore[misc]


@pytest.mark.parametrize(
    ("mode", "security", "expected"),
    [
        (Security.IMPLICIT_TLS, Security.IMPLICIT_TLS, Security.IMPLICIT_TLS),
        (Security.STARTTLS, Security.STARTTLS, Security.STARTTLS),
        (Security.STARTTLS, Security.OPPORTUNISTIC, Security.STARTTLS),
    ],
)
def test_live_report_matches_the_session__R_8314_5_4(
    kit: Kit, mode: Security, security: Security, expected: Security
) -> None:
    """A real session's report names the mode, the server, TLS facts and the key pin."""
    srv = kit.server(mode)
    with kit.connect(srv, security) as session:
        live = session.report
    capture = kit.finished(srv)
    assert live.mode is expected
    assert live.security is security
    assert (live.host, live.port) == ("localhost", srv.port)
    assert live.tls_version == capture.tls_version
    assert live.cipher == capture.cipher
    assert live.spki_pin == kit.cert.spki_sha256_pin
    assert live.confidential and live.verified and not live.pinned
    assert live.reason == smtpsec.select_plan("localhost", srv.port, security).reason
    assert "confidential     yes" in str(live)


def test_live_plaintext_report_is_not_confidential__R_8314_5_4(kit: Kit) -> None:
    srv = kit.server(Security.PLAINTEXT)
    with kit.connect(srv, Security.PLAINTEXT, username=None) as session:
        live = session.report
    assert live.mode is Security.PLAINTEXT
    assert not live.confidential and not live.verified
    assert live.tls_version is None and live.spki_pin is None
    assert "loopback" in live.reason
