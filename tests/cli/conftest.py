"""Fixtures for the command-line tests: the session CA as a file for ``--cafile``."""

from __future__ import annotations

from pathlib import Path

import pytest

from smtpsec.testing import CA


@pytest.fixture(scope="session")
def cafile(smtpsec_ca: CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Path of a PEM file holding the session CA."""
    path: Path = smtpsec_ca.write_cafile(tmp_path_factory.mktemp("cli-trust") / "ca.pem")
    return str(path)
