"""Every script in examples/ runs to completion against the bundled test server.

CI also runs each example directly; this test keeps them working under plain
``pytest`` and checks the conventions the docs promise (a module docstring that
says how to point the script at a real server).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.py"))
# Generous bound so a hung example fails the test instead of the whole run.
HANG_GUARD = 60


def test_examples_exist() -> None:
    names = {path.name for path in EXAMPLES}
    assert {
        "implicit_tls.py",
        "starttls_required.py",
        "catch_downgrade.py",
        "smtplib_dropin.py",
        "django_settings.py",
        "send_many.py",
        "oauth2_token_provider.py",
        "private_ca.py",
        "async_send.py",
    } <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_documents_real_server_use(path: Path) -> None:
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    assert docstring, f"{path.name} needs a module docstring"
    assert "SMTPSEC_HOST" in docstring, f"{path.name} must say how to use a real server"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_locally(path: Path) -> None:
    # Without SMTPSEC_* settings every example talks to a loopback test server.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPSEC_")}
    done = subprocess.run(
        [sys.executable, str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        check=False,
    )
    assert done.returncode == 0, f"{path.name} failed:\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr
