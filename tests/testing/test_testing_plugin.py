"""The pytest plugin: fixtures are registered, cheap to load and clean up after themselves."""

from __future__ import annotations

import smtplib
import ssl
import subprocess
import sys

import pytest

from smtpsec import Security
from smtpsec.testing import CA, LeafCert, SMTPServer

pytest_plugins = ["pytester"]


def test_fixtures_give_a_working_ca_cert_and_server(
    smtpsec_ca: CA, smtpsec_cert: LeafCert, smtpsec_client_context: ssl.SSLContext, smtpsec_server
) -> None:
    assert smtpsec_cert.issuer_pem == smtpsec_ca.cert_pem
    srv = smtpsec_server(Security.STARTTLS, users={"ann": "pw"})
    assert isinstance(srv, SMTPServer)
    assert srv.cert is smtpsec_cert
    assert srv.ca is smtpsec_ca  # the fixture's server knows its CA
    with smtplib.SMTP("localhost", srv.port) as client:
        client.starttls(context=smtpsec_client_context)
        client.login("ann", "pw")
    (capture,) = srv.wait_for_connections(1)
    assert capture.commands_pre_tls == ["EHLO", "STARTTLS"]
    assert capture.auth == [("PLAIN", "ann", True)]


def test_factory_accepts_another_cert_and_stops_servers(smtpsec_server, smtpsec_ca: CA) -> None:
    expired = smtpsec_ca.issue("localhost", not_after=smtpsec_ca.certificate.not_valid_before_utc)
    srv = smtpsec_server(cert=expired)
    assert srv.ca is smtpsec_ca  # issued by the session CA, so it is known
    stranger = smtpsec_server(cert=CA.self_signed("localhost"))
    with pytest.raises(ValueError, match="without the CA"):
        stranger.ca  # noqa: B018 - the property is the test
    other = CA.create("another CA")
    assert smtpsec_server(cert=other.issue("localhost"), ca=other).ca is other
    with pytest.raises(ssl.SSLCertVerificationError):
        smtplib.SMTP_SSL("localhost", srv.port, context=smtpsec_ca.client_context(), timeout=10)
    plain = smtpsec_server(Security.PLAINTEXT)
    assert plain.ssl_context is None


def test_plugin_module_is_import_light() -> None:
    """Loaded for every pytest run: it must not load the kit until a fixture needs it."""
    code = (
        "import sys, smtpsec.testing.plugin as p; "
        "print(sorted(m for m in sys.modules if m.startswith('smtpsec.testing.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "['smtpsec.testing.plugin']"


def test_lazy_package_attributes() -> None:
    import smtpsec.testing as kit

    assert kit.Behaviour is kit.Script
    assert "SMTPServer" in dir(kit)
    assert set(kit.__all__) <= set(dir(kit))
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = kit.no_such_name


def test_teardown_stops_servers_and_reports_hook_errors(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import socket

        from smtpsec import Security

        def boom(session, line):
            raise RuntimeError("hook exploded")

        def test_uses_server(smtpsec_server):
            srv = smtpsec_server(Security.PLAINTEXT, on_command=boom)
            with socket.create_connection((srv.host, srv.port)) as sock:
                sock.recv(100)
                sock.sendall(b"NOOP\\r\\n")
                assert sock.recv(100) == b""

        def test_clean(smtpsec_server):
            srv = smtpsec_server(Security.PLAINTEXT)
            assert srv.port
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*smtpsec fake server raised while serving*hook exploded*"])
