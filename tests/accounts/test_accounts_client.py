"""RFC 8314 §5 account features wired into the client: TLS memory in every mode, discovered
endpoints with RFC 7817 identity, per-account pins, client certificates + SASL EXTERNAL."""

from __future__ import annotations

import json
import re
import ssl
import warnings
from pathlib import Path

import pytest

import smtpsec
from smtpsec import Security
from smtpsec.discovery import Endpoint
from smtpsec.testing import CA, SMTPServer

PASSWORD = "CANARY-PW-accounts-7f3a"
USERS = {"ann": PASSWORD}


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA.create()


@pytest.fixture(scope="module")
def cafile(ca: CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ca.write_cafile(tmp_path_factory.mktemp("ca") / "ca.pem")


def _leaf(ca: CA):  # type: ignore[no-untyped-def]
    return ca.issue("localhost", ips=("127.0.0.1",))


def test_memory_records_then_refuses_stripped_server_in_opportunistic_mode(
    ca: CA, cafile: Path, tmp_path: Path
) -> None:
    """R-LIB-GUARD-1: verified STARTTLS once; stripped later → DowngradeError, no AUTH/MAIL."""
    memory = smtpsec.TLSMemory(tmp_path / "memory.json")
    policy = smtpsec.Policy(cafile=cafile, memory=memory)
    with SMTPServer(_leaf(ca), tls=Security.STARTTLS, users=USERS) as good:
        with smtpsec.connect(
            "localhost",
            good.port,
            security=smtpsec.Security.OPPORTUNISTIC,
            username="ann",
            password=PASSWORD,
            policy=policy,
            timeout=5,
        ) as session:
            assert session.report.mode is Security.STARTTLS
        port = good.port
        account = smtpsec.Account("ann", "localhost")
        assert memory.requires_tls(account)
    # Same account (user, host, port), now behind an attacker that strips STARTTLS.
    with SMTPServer(
        _leaf(ca), tls=Security.STARTTLS, users=USERS, strip_starttls=True, port=port
    ) as bad:
        with pytest.raises(smtpsec.DowngradeError):
            smtpsec.connect(
                "localhost",
                bad.port,
                security=smtpsec.Security.OPPORTUNISTIC,
                username="ann",
                password=PASSWORD,
                policy=policy,
                timeout=5,
            )
        capture = bad.connections[0]
        assert capture.pre_tls_verbs_subset_of({"EHLO", "STARTTLS", "QUIT"})
        assert capture.secrets_leaked(PASSWORD) == []


def test_memory_refuses_plaintext_mode_before_connecting(tmp_path: Path) -> None:
    """R-LIB-GUARD-1: a PLAINTEXT plan for a remembered account never opens a socket."""
    memory = smtpsec.TLSMemory(tmp_path / "memory.json")
    memory.record(
        smtpsec.Account("", "localhost"), mode=Security.STARTTLS, tls_version="TLSv1.3", port=2525
    )
    with SMTPServer(tls=Security.PLAINTEXT, port=0) as srv:
        with pytest.raises(smtpsec.DowngradeError, match="TLS memory"):
            smtpsec.connect(
                "localhost",
                srv.port,
                security=smtpsec.Security.PLAINTEXT,
                policy=smtpsec.Policy(memory=memory),
                timeout=3,
            )
        assert srv.connections == []


def test_corrupt_memory_fails_closed(ca: CA, tmp_path: Path) -> None:
    """R-LIB-GUARD-2: a corrupt store treats every account as TLS-required."""
    path = tmp_path / "memory.json"
    path.write_text("{not json")
    memory = smtpsec.TLSMemory(path)
    with SMTPServer(_leaf(ca), tls=Security.STARTTLS, strip_starttls=True) as srv:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(smtpsec.DowngradeError):
                smtpsec.connect(
                    "localhost",
                    srv.port,
                    security=smtpsec.Security.OPPORTUNISTIC,
                    policy=smtpsec.Policy(memory=memory),
                    timeout=3,
                )
        assert not srv.messages


def test_format_1_memory_from_an_older_smtpsec_protects_every_port(ca: CA, tmp_path: Path) -> None:
    """A per-port (format 1) store written before the upgrade is migrated on first use and
    protects every port of the account at once (R-LIB-GUARD-1, R-LIB-GUARD-2)."""
    path = tmp_path / "memory.json"
    path.write_text(
        json.dumps(
            {
                "version": 1,
                "accounts": [
                    {
                        "user": "",
                        "host": "localhost",
                        "port": 1,  # the one port the older version knew about
                        "mode": "starttls",
                        "tls_version": "TLSv1.3",
                        "verified": True,
                        "first_seen": "2026-01-01T00:00:00+00:00",
                        "last_seen": "2026-01-01T00:00:00+00:00",
                    }
                ],
            }
        )
    )
    memory = smtpsec.TLSMemory(path)
    with SMTPServer(_leaf(ca), tls=Security.STARTTLS, strip_starttls=True) as srv:
        with pytest.raises(smtpsec.DowngradeError, match="TLS memory"):
            smtpsec.connect(
                "localhost",
                srv.port,
                security=smtpsec.Security.OPPORTUNISTIC,
                policy=smtpsec.Policy(memory=memory),
                timeout=3,
            )
        assert not srv.messages
    stored = json.loads(path.read_text())
    assert stored["version"] == 2
    assert stored["accounts"][0]["ports"] == [1]


def _endpoint(port: int, *, domain: str, dnssec: bool = False) -> Endpoint:
    return Endpoint(
        host="localhost",
        port=port,
        security=smtpsec.Security.IMPLICIT_TLS,
        priority=0,
        weight=0,
        service="_submissions",
        domain=domain,
        dnssec_validated=dnssec,
    )


def test_unconfirmed_foreign_srv_target_is_refused_before_connecting(ca: CA, cafile: Path) -> None:
    """R-8314-5.1-5: unsigned SRV pointing outside the domain needs confirmation."""
    with SMTPServer(_leaf(ca), tls=Security.IMPLICIT_TLS) as srv:
        with pytest.raises(smtpsec.UntrustedDiscoveryError, match="confirmed_target=True"):
            smtpsec.connect(
                _endpoint(srv.port, domain="example.test"), policy=smtpsec.Policy(cafile=cafile)
            )
        assert srv.connections == []


def test_srv_id_certificate_is_accepted_for_the_users_domain(ca: CA, cafile: Path) -> None:
    """R-7817-3-4: a cert carrying SRV-ID _submissions.<domain> (and not the target) passes."""
    leaf = ca.issue("mail.provider.test", srv_names=("_submissions.example.test",))
    with SMTPServer(leaf, tls=Security.IMPLICIT_TLS) as srv:
        with smtpsec.connect(
            _endpoint(srv.port, domain="example.test"),
            policy=smtpsec.Policy(cafile=cafile),
            confirmed_target=True,
            timeout=5,
        ) as session:
            report = session.report
    assert report.verified and report.confidential
    assert report.mode is Security.IMPLICIT_TLS


def test_target_name_only_counts_when_confirmed_or_dnssec(ca: CA, cafile: Path) -> None:
    """R-7817-3-4: a cert only for the SRV target is accepted once the target is trusted."""
    leaf = ca.issue("localhost")
    with SMTPServer(leaf, tls=Security.IMPLICIT_TLS) as srv:
        ep = _endpoint(srv.port, domain="example.test", dnssec=True)
        with smtpsec.connect(ep, policy=smtpsec.Policy(cafile=cafile), timeout=5) as session:
            assert session.report.verified


def test_certificate_for_another_name_fails_identity(ca: CA, cafile: Path) -> None:
    """R-7817-3-1: neither the domain, the SRV-ID nor the trusted target → CertificateError."""
    leaf = ca.issue("elsewhere.test")
    with SMTPServer(leaf, tls=Security.IMPLICIT_TLS, users=USERS) as srv:
        with pytest.raises(smtpsec.CertificateError):
            smtpsec.connect(
                _endpoint(srv.port, domain="example.test"),
                username="ann",
                password=PASSWORD,
                policy=smtpsec.Policy(cafile=cafile),
                confirmed_target=True,
                timeout=5,
            )
        assert srv.connections[0].commands_post_tls == []


def test_endpoint_rejects_conflicting_settings(ca: CA, cafile: Path) -> None:
    ep = _endpoint(465, domain="example.test", dnssec=True)
    with pytest.raises(smtpsec.PolicyError, match="IMPLICIT_TLS"):
        smtpsec.connect(ep, security=smtpsec.Security.PLAINTEXT)
    with pytest.raises(smtpsec.PolicyError, match="port"):
        smtpsec.connect(ep, 587)


def test_pin_for_one_account_does_not_help_another_server(ca: CA, cafile: Path) -> None:
    """R-8314-5.4-2: a pin matches one key; another server's key fails with the presented pin."""
    with (
        SMTPServer(_leaf(ca), tls=Security.IMPLICIT_TLS) as first,
        SMTPServer(_leaf(ca), tls=Security.IMPLICIT_TLS) as second,
    ):
        assert first.cert is not None and second.cert is not None
        pin = first.cert.spki_sha256_pin
        backup = CA.self_signed("backup.example.test").spki_sha256_pin  # matches neither
        policy = smtpsec.Policy(cafile=cafile, pins=frozenset({pin, backup}))
        implicit = smtpsec.Security.IMPLICIT_TLS
        with smtpsec.connect(
            "localhost", first.port, security=implicit, policy=policy, timeout=5
        ) as session:
            assert session.report.pinned
        with pytest.raises(smtpsec.PinMismatchError, match=re.escape(second.cert.spki_sha256_pin)):
            smtpsec.connect("localhost", second.port, security=implicit, policy=policy, timeout=5)


def test_client_certificate_and_sasl_external(ca: CA, cafile: Path, tmp_path: Path) -> None:
    """R-8314-5.5-3: with a client certificate and EXTERNAL offered, AUTH EXTERNAL = is sent."""
    client = ca.issue_client("ann@example.test")
    certfile, keyfile = client.write(tmp_path)
    with SMTPServer(
        _leaf(ca),
        tls=Security.IMPLICIT_TLS,
        request_client_cert=True,
        client_ca=ca,
        auth_mechanisms=("EXTERNAL", "PLAIN"),
    ) as srv:
        policy = smtpsec.Policy(cafile=cafile, client_cert=(str(certfile), str(keyfile)))
        with smtpsec.connect(
            "localhost", srv.port, security=smtpsec.Security.IMPLICIT_TLS, policy=policy, timeout=5
        ) as session:
            assert session.report.mechanism == "EXTERNAL"
        capture = srv.connections[0]
        assert capture.client_cert_der is not None
        assert "AUTH EXTERNAL =" in capture.lines_post_tls


def test_client_certificate_over_tls_1_2_warns_r_8314_8_1(
    ca: CA, cafile: Path, tmp_path: Path
) -> None:
    """R-8314-8-1: before TLS 1.3 the client certificate is visible; say so."""
    client = ca.issue_client("ann@example.test")
    certfile, keyfile = client.write(tmp_path)
    policy = smtpsec.Policy(cafile=cafile, client_cert=(str(certfile), str(keyfile)))
    with SMTPServer(
        _leaf(ca),
        tls=Security.IMPLICIT_TLS,
        max_version=ssl.TLSVersion.TLSv1_2,
        request_client_cert=True,
        client_ca=ca,
        auth_mechanisms=("EXTERNAL",),
    ) as srv:
        with pytest.warns(smtpsec.SMTPSecWarning, match="TLS 1.3"):
            with smtpsec.connect(
                "localhost",
                srv.port,
                security=smtpsec.Security.IMPLICIT_TLS,
                policy=policy,
                timeout=5,
            ) as session:
                assert session.report.tls_version == "TLSv1.2"
