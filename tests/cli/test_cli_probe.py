"""``smtpsec probe`` against loopback servers: facts, verdicts, exit codes, and no secrets.

R-8314-5.1-7: the probe never sends AUTH or MAIL; every capture's verbs stay within
EHLO, STARTTLS and QUIT. R-8314-4.1 / RFC 8996: legacy TLS versions are reported.
"""

from __future__ import annotations

import json
import ssl
from typing import Any

import pytest

from smtpsec import Security
from smtpsec._cli import _probe as _cli_probe
from smtpsec._cli import main
from smtpsec.testing import CA, SMTPServer

ALLOWED = {"EHLO", "STARTTLS", "QUIT"}


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["probe", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code, out, _err = _run(capsys, *args, "--json")
    return code, json.loads(out)


def _only_safe_verbs(server: SMTPServer) -> None:
    for capture in server.connections:
        capture.wait_closed()
        assert set(capture.commands) <= ALLOWED, capture.commands
        assert capture.auth == []
        assert capture.messages == []


def test_good_implicit_server_passes(
    smtpsec_server: Any, cafile: str, capsys: pytest.CaptureFixture[str]
) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS)
    code, out, err = _run(
        capsys, "localhost", "--port", str(srv.port), "--mode", "implicit", "--cafile", cafile
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[-1].startswith("PASS: localhost offers verified TLS on")
    assert "certificate       verified for localhost" in out
    assert "TLSv1.2 accepted, TLSv1.3 accepted" in out
    assert "spki pin          sha256/" in out
    assert "names             DNS:localhost, IP:127.0.0.1, IP:::1" in out
    assert "progress" not in out and "verifying handshake" in err  # progress goes to stderr
    _only_safe_verbs(srv)


def test_good_starttls_server_json(
    smtpsec_server: Any, cafile: str, smtpsec_cert: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    srv = smtpsec_server(Security.STARTTLS)
    code, report = _json(
        capsys, "localhost", "--port", str(srv.port), "--mode", "starttls", "--cafile", cafile
    )
    assert code == 0
    assert report["verdict"] == "PASS"
    assert report["exit_code"] == 0
    (port,) = report["ports"]
    assert port["mode"] == "starttls"
    assert port["starttls_offered"] is True
    assert port["auth_before_tls"] == []
    assert port["auth_after_tls"] == ["PLAIN", "LOGIN"]
    assert port["verified"] is True
    assert port["key_extensions"] == {
        "PIPELINING": True,
        "CHUNKING": True,
        "SMTPUTF8": True,
        "SIZE": True,
        "DSN": True,
        "REQUIRETLS": False,
        "8BITMIME": True,
    }
    assert port["extensions"]["SIZE"] == ["10485760"]
    assert port["certificate"]["spki_pin"] == smtpsec_cert.spki_sha256_pin
    assert port["certificate"]["key"] == "EC secp256r1"
    assert port["certificate"]["days_left"] >= 360
    assert port["tls_versions"]["TLSv1.3"] == "accepted"
    _only_safe_verbs(srv)


def test_untrusted_certificate_fails_but_is_still_described(
    smtpsec_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --cafile the throwaway CA is unknown: FAIL (exit 2), yet the cert is shown."""
    srv = smtpsec_server(Security.IMPLICIT_TLS)
    code, out, err = _run(capsys, "localhost", "--port", str(srv.port), "--mode", "implicit")
    assert code == 2
    assert "certificate       NOT valid" in out
    assert "FAIL  port" in out and "certificate verify failed" in out
    assert "subject           CN=localhost" in out
    assert out.splitlines()[-1].startswith("FAIL: ")
    assert "inspecting the certificate" in err
    _only_safe_verbs(srv)


def test_self_signed_certificate(smtpsec_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    srv = smtpsec_server(Security.STARTTLS, cert=CA.self_signed("localhost"))
    code, report = _json(capsys, "localhost", "--port", str(srv.port), "--mode", "starttls")
    assert code == 2
    assert report["ports"][0]["certificate"]["self_signed"] is True
    assert "self-signed" in report["ports"][0]["verify_error"]


def test_stripped_starttls_fails_without_sending_anything(
    smtpsec_server: Any, cafile: str, capsys: pytest.CaptureFixture[str]
) -> None:
    srv = smtpsec_server(
        Security.STARTTLS, strip_starttls=True, require_tls=False, pre_tls_auth=("PLAIN",)
    )
    code, out, _err = _run(
        capsys, "localhost", "--port", str(srv.port), "--mode", "starttls", "--cafile", cafile
    )
    assert code == 2
    assert "starttls          NOT offered" in out
    assert "auth before tls   PLAIN  <- cleartext!" in out
    assert "does not offer STARTTLS" in out.splitlines()[-1]
    _only_safe_verbs(srv)


def test_auth_before_tls_and_legacy_tls_are_warnings(
    smtpsec_server: Any, cafile: str, capsys: pytest.CaptureFixture[str]
) -> None:
    srv = smtpsec_server(
        Security.STARTTLS, pre_tls_auth=("PLAIN", "LOGIN"), min_version=ssl.TLSVersion.TLSv1
    )
    code, report = _json(
        capsys, "localhost", "--port", str(srv.port), "--mode", "starttls", "--cafile", cafile
    )
    versions = report["ports"][0]["tls_versions"]
    assert versions["TLSv1.2"] == "accepted"
    assert versions["TLSv1"] in {"accepted", "not testable"}
    texts = [f["text"] for f in report["findings"]]
    assert any("offers AUTH LOGIN PLAIN before TLS" in t for t in texts)
    assert code == 1
    assert report["verdict"] == "WARN"
    if versions["TLSv1"] == "accepted":
        assert any("accepts TLSv1" in t and "RFC 8996" in t for t in texts)
    _only_safe_verbs(srv)


def test_tls12_only_server_refuses_13(
    smtpsec_server: Any, cafile: str, capsys: pytest.CaptureFixture[str]
) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS, max_version=ssl.TLSVersion.TLSv1_2)
    code, report = _json(
        capsys, "localhost", "--port", str(srv.port), "--mode", "implicit", "--cafile", cafile
    )
    assert code == 0
    assert report["ports"][0]["tls_version"] == "TLSv1.2"
    assert report["ports"][0]["tls_versions"]["TLSv1.3"] == "refused"
    assert report["ports"][0]["tls_versions"]["TLSv1.1"] == "refused"


def test_unreachable_port_fails(
    capsys: pytest.CaptureFixture[str], cafile: str, refused_port: int
) -> None:
    port = refused_port
    code, out, _err = _run(capsys, "127.0.0.1", "--port", str(port), "--mode", "starttls")
    assert code == 2
    assert f"port {port} is unreachable" in out.splitlines()[-1]
    assert "reachable         no: cannot connect" in out


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"starttls_inject": b"250-AUTH PLAIN\r\n"}, "after the 220 reply to STARTTLS"),
        ({"starttls_reply": (454, "4.7.0 TLS not available")}, "refused STARTTLS with 454"),
        ({"greeting": (554, "5.3.2 go away")}, "greeted with 554"),
        ({"replies": {"EHLO": (502, "5.5.1 no EHLO")}}, "refused EHLO: 502"),
    ],
)
def test_broken_starttls_servers_fail(
    smtpsec_server: Any,
    cafile: str,
    capsys: pytest.CaptureFixture[str],
    options: dict[str, Any],
    expected: str,
) -> None:
    srv = smtpsec_server(Security.STARTTLS, **options)
    code, out, _err = _run(
        capsys, "localhost", "--port", str(srv.port), "--mode", "starttls", "--cafile", cafile
    )
    assert code == 2
    assert expected in out
    _only_safe_verbs(srv)


def test_failure_inside_tls_still_reports_versions(
    smtpsec_server: Any, cafile: str, capsys: pytest.CaptureFixture[str]
) -> None:
    srv = smtpsec_server(Security.STARTTLS, post_tls_replies={"EHLO": (421, "4.3.2 shutting down")})
    code, report = _json(
        capsys, "localhost", "--port", str(srv.port), "--mode", "starttls", "--cafile", cafile
    )
    assert code == 2
    port = report["ports"][0]
    assert port["verified"] is True
    assert port["tls_versions"]["TLSv1.3"] == "accepted"
    assert port["extensions"] is None


def test_version_check_that_cannot_reach_tls_reports_an_error(
    smtpsec_server: Any, cafile: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only the first STARTTLS is accepted: the per-version attempts record the error."""
    seen = []

    def first_starttls_only(session: Any, line: str) -> bytes | None:
        if line.upper() == "STARTTLS":
            seen.append(line)
            if len(seen) > 1:
                return b"454 4.7.0 not now\r\n"
        return None

    srv = smtpsec_server(Security.STARTTLS, on_command=first_starttls_only)
    code, report = _json(
        capsys, "localhost", "--port", str(srv.port), "--mode", "starttls", "--cafile", cafile
    )
    assert code == 0
    assert report["ports"][0]["tls_versions"]["TLSv1.2"].startswith("error: ")


def test_silent_server_times_out(
    smtpsec_server: Any, cafile: str, capsys: pytest.CaptureFixture[str]
) -> None:
    srv = smtpsec_server(Security.STARTTLS, greeting=None)
    code, out, _err = _run(
        capsys,
        "localhost",
        "--port",
        str(srv.port),
        "--mode",
        "starttls",
        "--cafile",
        cafile,
        "--timeout",
        "0.3",
    )
    assert code == 2
    assert "sent no greeting within 0.3s" in out


def test_mode_is_detected_on_unusual_ports(
    smtpsec_server: Any,
    cafile: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    refused_port: int,
) -> None:
    """A port that greets speaks STARTTLS; one that stays silent waits for a ClientHello."""
    monkeypatch.setattr(_cli_probe, "GREETING_WAIT", 0.2)
    plain = smtpsec_server(Security.STARTTLS)
    tls = smtpsec_server(Security.IMPLICIT_TLS)
    _code, report = _json(capsys, "localhost", "--port", str(plain.port), "--cafile", cafile)
    assert report["ports"][0]["mode"] == "starttls"
    _code, report = _json(capsys, "localhost", "--port", str(tls.port), "--cafile", cafile)
    assert report["ports"][0]["mode"] == "implicit_tls"
    assert report["verdict"] == "PASS"
    assert _cli_probe.detect_mode("127.0.0.1", refused_port, 1.0) is Security.STARTTLS


def test_default_scan_uses_the_port_table(
    smtpsec_server: Any,
    cafile: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    refused_port: int,
) -> None:
    """Without --port every entry of the table is probed (here: loopback stand-ins)."""
    implicit = smtpsec_server(Security.IMPLICIT_TLS)
    starttls = smtpsec_server(Security.STARTTLS)
    monkeypatch.setattr(
        _cli_probe,
        "DEFAULT_PORTS",
        (
            (implicit.port, Security.IMPLICIT_TLS),
            (starttls.port, Security.STARTTLS),
            (refused_port, Security.STARTTLS),
        ),
    )
    code, report = _json(capsys, "localhost", "--cafile", cafile)
    assert [p["reachable"] for p in report["ports"]] == [True, True, False]
    assert code == 0  # an unreachable extra port is not a finding in a scan
    assert report["summary"].startswith("PASS")


def test_a_known_port_number_picks_its_mode(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--port 465 (auto) means implicit TLS without waiting for a greeting."""
    monkeypatch.setattr(_cli_probe, "detect_mode", lambda *a: pytest.fail("no detection"))
    code, report = _json(capsys, "127.0.0.1", "--port", "465", "--timeout", "2")
    assert report["ports"][0]["mode"] == "implicit_tls"
    assert code == 2  # unreachable, or not trusted for 127.0.0.1: never a PASS


def test_bad_cafile_is_one_error_line(capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    code, out, err = _run(capsys, "localhost", "--cafile", str(tmp_path / "missing.pem"))
    assert code == 2
    assert out == ""
    assert err.startswith("smtpsec: error: cannot load --cafile")
    assert "Traceback" not in err


def test_mode_without_port_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "localhost", "--mode", "implicit")
    assert code == 2
    assert out == ""
    assert (
        err
        == "smtpsec: error: --mode applies to --port; a scan of 465, 587 and 25 knows each mode\n"
    )


def test_versions_this_openssl_cannot_offer_are_not_testable(
    monkeypatch: pytest.MonkeyPatch,
    smtpsec_server: Any,
    cafile: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    real = _cli_probe.inspection_context

    def no_legacy(version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
        if version is not None and version < ssl.TLSVersion.TLSv1_2:
            raise ssl.SSLError("this build has no TLS 1.0")
        return real(version)

    monkeypatch.setattr(_cli_probe, "inspection_context", no_legacy)
    srv = smtpsec_server(Security.IMPLICIT_TLS)
    _code, report = _json(
        capsys, "localhost", "--port", str(srv.port), "--mode", "implicit", "--cafile", cafile
    )
    assert report["ports"][0]["tls_versions"]["TLSv1"] == "not testable"
    assert report["ports"][0]["tls_versions"]["TLSv1.3"] == "accepted"


def test_probe_prints_the_verified_chains_pins(
    capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    """Leaf, intermediate and root pins: the candidates for a backup pin (RFC 8314 §5.4)."""
    root = CA.create("probe root")
    issuing = root.issue_intermediate("probe issuing CA")
    leaf = issuing.issue("localhost", ips=("127.0.0.1",))
    cafile = str(root.write_cafile(tmp_path / "root.pem"))
    with SMTPServer(leaf, tls=Security.IMPLICIT_TLS) as srv:
        args = ("localhost", "--port", str(srv.port), "--mode", "implicit", "--cafile", cafile)
        code, out, _err = _run(capsys, *args)
        assert code == 0
        order = [out.index(f"{role}  ") for role in ("leaf    ", "intermediate", "root    ")]
        assert order == sorted(order)
        assert f"leaf          {leaf.spki_sha256_pin} (CN=localhost)" in out
        assert f"intermediate  {issuing.spki_sha256_pin} (CN=probe issuing CA" in out
        assert f"root          {root.spki_sha256_pin} (CN=probe root" in out
        code, report = _json(capsys, *args)
        assert code == 0
        (port,) = report["ports"]
        assert [(key["role"], key["spki_pin"]) for key in port["chain"]] == [
            ("leaf", leaf.spki_sha256_pin),
            ("intermediate", issuing.spki_sha256_pin),
            ("root", root.spki_sha256_pin),
        ]
        _only_safe_verbs(srv)


def test_probe_shows_no_chain_pins_for_an_unverified_chain(
    smtpsec_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A chain that did not verify offers no CA pins: only its leaf pin is printed."""
    srv = smtpsec_server(Security.IMPLICIT_TLS)
    args = ("localhost", "--port", str(srv.port), "--mode", "implicit")  # certifi: untrusted
    code, out, _err = _run(capsys, *args)
    assert code != 0
    assert "spki pin          sha256/" in out
    assert "chain pins        not shown: the chain did not verify" in out
    _code, report = _json(capsys, *args)
    assert report["ports"][0]["chain"] == []


def test_host_with_a_port_probes_that_port(
    smtpsec_server: Any, cafile: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``probe HOST:PORT`` is ``probe HOST --port PORT`` (as smtplib reads ``host:port``)."""
    srv = smtpsec_server(Security.IMPLICIT_TLS)
    code, report = _json(capsys, f"localhost:{srv.port}", "--mode", "implicit", "--cafile", cafile)
    assert code == 0
    assert report["host"] == "localhost"
    assert [p["port"] for p in report["ports"]] == [srv.port]
    _only_safe_verbs(srv)


def test_host_and_port_that_disagree_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "localhost:2525", "--port", "587")
    assert code == 2
    assert out == ""
    assert err == (
        "smtpsec: error: HOST 'localhost:2525' names port 2525, but --port 587 was given "
        "too; give the port only once\n"
    )


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["example.test", "--discover", "--proxy", "socks5h://127.0.0.1:1"], "--discover"),
        (["example.test", "--proxy", "socks5h://u:secret-pw@127.0.0.1:1"], "--proxy-env"),
        (["example.test", "--proxy", "ftp://127.0.0.1:1"], "--proxy"),
    ],
)
def test_probe_proxy_usage_errors(
    capsys: pytest.CaptureFixture[str], args: list[str], fragment: str
) -> None:
    """A proxy with --discover (its DNS would go around the proxy), a password on the
    command line, or an unknown scheme: usage errors, and the password is never echoed."""
    code, out, err = _run(capsys, *args)
    assert code == 2
    assert fragment in err
    assert "secret-pw" not in out + err


def test_probe_through_an_unreachable_proxy_names_the_proxy(
    capsys: pytest.CaptureFixture[str], refused_port: int
) -> None:
    """The probe's connection failure names the proxy, not the mail server."""
    code, report = _json(
        capsys,
        "mail.example.test",
        "--port",
        "465",
        "--proxy",
        f"socks5h://127.0.0.1:{refused_port}",
    )
    assert report["proxy"] == f"socks5h://127.0.0.1:{refused_port}"
    (port,) = report["ports"]
    assert port["reachable"] is False
    assert f"127.0.0.1:{refused_port}" in port["error"] and "proxy" in port["error"]
    assert code == 2
