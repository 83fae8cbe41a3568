"""The ``smtpsec`` command line as a whole: version, usage errors, the demo, ``python -m``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import smtpsec
from smtpsec import Security
from smtpsec._cli import EXIT_FAILURE, EXIT_OK, main
from smtpsec._cli import _demo as _cli_demo


def test_version_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == EXIT_OK
    assert capsys.readouterr().out.strip() == f"smtpsec {smtpsec.__version__}"


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == EXIT_FAILURE
    assert "usage: smtpsec" in capsys.readouterr().err


def test_help_mentions_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "Exit codes" in out
    assert "smtpsec demo" in out


def test_main_module_in_process(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``python -m smtpsec`` exits with main()'s code (run here as ``-m`` runs it)."""
    import importlib.util

    spec = importlib.util.find_spec("smtpsec.__main__")
    assert spec is not None and spec.origin is not None
    code = compile(Path(spec.origin).read_text(encoding="utf-8"), spec.origin, "exec")
    monkeypatch.setattr(sys, "argv", ["smtpsec", "--version"])
    namespace = {"__name__": "__main__", "__spec__": spec, "__package__": "smtpsec"}
    with pytest.raises(SystemExit) as info:
        exec(code, namespace)  # noqa: S102 - the module's own code, as runpy would run it
    assert info.value.code == 0
    assert smtpsec.__version__ in capsys.readouterr().out


def test_importing_main_module_runs_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    import importlib

    module = importlib.import_module("smtpsec.__main__")
    assert module.main is main
    assert capsys.readouterr().out == ""


def test_python_dash_m_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "smtpsec", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0
    assert done.stdout.strip() == f"smtpsec {smtpsec.__version__}"


def test_python_dash_m_demo() -> None:
    """The README's first command: no network, exit 0, both attacks refused."""
    done = subprocess.run(
        [sys.executable, "-m", "smtpsec", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "all 4 checks passed" in done.stdout
    assert done.stderr == ""


def test_demo_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.count("ok: ") == 4
    assert "mode             implicit_tls" in out
    assert "mode             starttls" in out
    assert "refused: TLSUnavailableError" in out
    assert "refused: CertificateError" in out
    assert "AUTH attempts: 0; password on the wire: no" in out
    assert "UNEXPECTED" not in out
    # Sentences joined from several sources read as one: no ".;" or "..".
    # (The OpenSSL text "...for 'localhost'." used to be followed by "; connect using".)
    assert "not valid for 'localhost'; connect using a name listed" in out
    # "password=..." is the demo's own ellipsis; any other doubled mark is a seam.
    assert not re.search(r"[.;,:][.;,:]", out.replace("...", "")), out


def test_demo_reports_a_step_that_misbehaves(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo checks its own outcomes; a wrong one is reported, with exit code 2."""
    monkeypatch.setattr(_cli_demo, "_wrong_name_attack", lambda setup: False)
    assert main(["demo"]) == EXIT_FAILURE
    assert "1 of 4 checks did NOT behave as expected" in capsys.readouterr().out


def test_demo_flags_an_attack_that_was_not_refused(smtpsec_server: Any, cafile: str) -> None:
    """If a connection the demo expects to fail succeeds, it says so (never 'ok')."""
    import io

    from smtpsec import CertificateError, Policy

    srv = smtpsec_server(Security.IMPLICIT_TLS, users={"demo": "pw"})
    out = io.StringIO()
    setup = _cli_demo._Setup(
        ca=None,  # type: ignore[arg-type]
        leaf=None,  # type: ignore[arg-type]
        policy=Policy(cafile=cafile),
        password="pw",
        out=out,
    )
    assert not _cli_demo._expect_refusal(setup, srv, Security.IMPLICIT_TLS, CertificateError)
    assert "NOT refused" in out.getvalue()
    _cli_demo._verdict(setup, False, "refused")
    assert "UNEXPECTED: not refused" in out.getvalue()
