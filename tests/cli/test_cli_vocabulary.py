"""Every fix the CLI suggests is a command-line option, never a library call.

The CLI runs the same engine and guard as the library; only the words differ
(``--cafile``, ``--security``, ``--auth``), so a CLI user is never told to
pass ``Policy(...)`` or ``Security.X``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from smtpsec import Security
from smtpsec._cli import main

USER, PASSWORD = "ann", "cli-vocabulary-Pa55"
LIBRARY_WORDS = ("Policy(", "Security.", "auth=")


@pytest.fixture
def eml(tmp_path: Path) -> str:
    path = tmp_path / "m.eml"
    path.write_bytes(b"From: ann@example.test\r\nTo: bob@example.test\r\nSubject: x\r\n\r\nhi\r\n")
    return str(path)


def _send(server: Any, eml: str, *extra: str) -> list[str]:
    return [
        "send",
        "--host=localhost",
        f"--port={server.port}",
        "--from=ann@example.test",
        "--to=bob@example.test",
        "--timeout=5",
        *extra,
        eml,
    ]


def _error_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, out + err
    assert "Traceback" not in err
    for word in LIBRARY_WORDS:
        assert word not in err, err
    return err


def test_untrusted_certificate_names_cafile(
    smtpsec_server: Any, eml: str, capsys: pytest.CaptureFixture[str]
) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS)
    err = _error_of(_send(srv, eml, "--security=implicit_tls"), capsys)
    assert "--cafile" in err


def test_stripped_starttls_names_security_option(
    smtpsec_server: Any, cafile: str, eml: str, capsys: pytest.CaptureFixture[str]
) -> None:
    srv = smtpsec_server(Security.STARTTLS, strip_starttls=True)
    err = _error_of(_send(srv, eml, "--security=starttls", f"--cafile={cafile}"), capsys)
    assert "--security implicit_tls" in err


def test_no_usable_mechanism_names_auth_option(
    smtpsec_server: Any,
    cafile: str,
    eml: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only CRAM-MD5 offered: it is allowed by naming it, with --auth."""
    monkeypatch.setenv("PW", PASSWORD)
    srv = smtpsec_server(
        Security.IMPLICIT_TLS, users={USER: PASSWORD}, auth_mechanisms=("CRAM-MD5",)
    )
    argv = _send(
        srv,
        eml,
        "--security=implicit_tls",
        f"--cafile={cafile}",
        f"--user={USER}",
        "--password-env=PW",
    )
    err = _error_of(argv, capsys)
    assert "--auth CRAM-MD5" in err


def test_auth_option_chooses_the_mechanism(
    smtpsec_server: Any,
    cafile: str,
    eml: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PW", PASSWORD)
    srv = smtpsec_server(
        Security.IMPLICIT_TLS, users={USER: PASSWORD}, auth_mechanisms=("PLAIN", "LOGIN")
    )
    argv = _send(
        srv,
        eml,
        "--security=implicit_tls",
        f"--cafile={cafile}",
        f"--user={USER}",
        "--password-env=PW",
        "--auth=LOGIN",
    )
    assert main(argv) == 0, capsys.readouterr().err
    assert "via LOGIN" in capsys.readouterr().out
    assert [a.mechanism for a in srv.connections[0].auth] == ["LOGIN"]


def test_probe_untrusted_certificate_names_cafile(
    smtpsec_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS)
    code = main(["probe", "localhost", f"--port={srv.port}", "--mode=implicit", "--timeout=5"])
    out, err = capsys.readouterr()
    assert code == 2
    assert "--cafile" in out + err
    for word in LIBRARY_WORDS:
        assert word not in out + err
