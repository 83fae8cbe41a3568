"""``smtpsec probe DOMAIN --discover`` against the loopback DNS responder (issue: accounts)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from https_server import Route, serve
from loopback_dns import LoopbackDNS

from smtpsec._cli import main
from smtpsec.testing import CA

SUBS = "_submissions._tcp.example.test."
SUB = "_submission._tcp.example.test."


@pytest.fixture
def dns_server() -> Iterator[LoopbackDNS]:
    server = LoopbackDNS()
    yield server
    server.close()


def _run(dns_server: LoopbackDNS, *extra: str) -> int:
    return main(
        [
            "probe",
            "example.test",
            "--discover",
            "--nameserver",
            f"127.0.0.1:{dns_server.port}",
            *extra,
        ]
    )


def test_discover_lists_endpoints_and_identities(
    dns_server: LoopbackDNS, capsys: pytest.CaptureFixture[str]
) -> None:
    dns_server.add(SUBS, "SRV", "0 1 465 smtp.example.test.")
    dns_server.add(SUB, "SRV", "0 1 587 smtp.example.test.")
    assert _run(dns_server) == 0
    out = capsys.readouterr().out
    assert "_submissions" in out
    assert "smtp.example.test:465  implicit TLS" in out
    assert "smtp.example.test:587  STARTTLS (required)" in out
    assert "_submissions.example.test" in out  # the SRV-ID the certificate may carry
    assert out.strip().splitlines()[-1].startswith("PASS")
    assert out.index(":465") < out.index(":587")  # ties go to implicit TLS


def test_discover_foreign_unsigned_target_warns(
    dns_server: LoopbackDNS, capsys: pytest.CaptureFixture[str]
) -> None:
    """R-8314-5.1-5: an unsigned answer pointing outside the domain needs confirmation."""
    dns_server.add(SUBS, "SRV", "0 1 465 mail.provider.test.")
    assert _run(dns_server, "--json") == 1
    report = json.loads(capsys.readouterr().out)
    (endpoint,) = report["endpoints"]
    assert endpoint["needs_confirmation"] is True
    assert endpoint["dnssec_validated"] is False
    assert report["verdict"].startswith("WARN")


def test_discover_signed_answer_is_usable(
    dns_server: LoopbackDNS, capsys: pytest.CaptureFixture[str]
) -> None:
    dns_server.add(SUBS, "SRV", "0 1 465 mail.provider.test.")
    dns_server.signed.add(SUBS)
    assert _run(dns_server, "--json") == 0
    (endpoint,) = json.loads(capsys.readouterr().out)["endpoints"]
    assert endpoint["dnssec_validated"] is True
    assert endpoint["needs_confirmation"] is False


def test_discover_nothing_fails(
    dns_server: LoopbackDNS, capsys: pytest.CaptureFixture[str]
) -> None:
    """R-8314-4.5-1: MX records are never a submission configuration."""
    dns_server.add("example.test.", "MX", "10 mx.example.test.")
    assert _run(dns_server) == 2
    out = capsys.readouterr().out
    assert "(no endpoints)" in out
    assert "FAIL" in out


def test_nameserver_without_discover_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "example.test", "--nameserver", "127.0.0.1"]) == 2
    assert "--discover" in capsys.readouterr().err


def test_discover_without_dnspython_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "dns.resolver", None)
    assert main(["probe", "example.test", "--discover", "--nameserver", "127.0.0.1:53"]) == 2
    assert "pip install dnspython (smtpsec's 'dns' extra)" in capsys.readouterr().err


def test_discover_with_autoconfig_merges_and_shows_provenance(
    dns_server: LoopbackDNS,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    ca = CA.create()
    dns_server.add(SUB, "SRV", "0 1 587 smtp.example.test.")
    for web in serve(ca.issue("autoconfig.example.test")):
        web.routes["/mail/config-v1.1.xml"] = Route(
            body=b'<clientConfig version="1.1"><emailProvider id="example.test">'
            b'<outgoingServer type="smtp"><hostname>smtp.example.test</hostname>'
            b"<port>465</port><socketType>SSL</socketType>"
            b"<authentication>OAuth2</authentication></outgoingServer>"
            b"</emailProvider></clientConfig>"
        )
        monkeypatch.setattr("smtpsec.autoconfig.open_tcp", web.opener)
        cafile = ca.write_cafile(tmp_path / "ca.pem")
        assert _run(dns_server, "--autoconfig", "--cafile", str(cafile)) == 0
        out = capsys.readouterr().out
        assert out.startswith("SRV and autoconfig discovery for example.test")
        assert "autoconfig    smtp.example.test:465  implicit TLS" in out
        assert "autoconfig over verified HTTPS" in out
        assert "from https://autoconfig.example.test/mail/config-v1.1.xml" in out
        assert "SRV, not DNSSEC-validated" in out
        assert out.index(":465") < out.index(":587")  # verified HTTPS before unsigned SRV
        assert _run(dns_server, "--autoconfig", "--cafile", str(cafile), "--json") == 0
        report = json.loads(capsys.readouterr().out)
        assert [e["provenance"] for e in report["endpoints"]] == [
            "autoconfig_https",
            "srv_unsigned",
        ]
        assert report["endpoints"][0]["security"] == "implicit_tls"
        assert report["endpoints"][0]["sasl_mechanisms"] == ["XOAUTH2", "OAUTHBEARER"]


def test_autoconfig_without_discover_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "example.test", "--autoconfig"]) == 2
    assert "--discover" in capsys.readouterr().err
