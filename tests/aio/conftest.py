"""Fixtures of the asyncio tests (helpers live in ``_aio_kit``, a name no other directory uses)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _aio_kit import PASSWORD, TIMEOUT, USER

import smtpsec
from smtpsec.testing import CA


@pytest.fixture(scope="session")
def aio_cafile(smtpsec_ca: CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session CA as a PEM file, for ``Policy(cafile=...)``."""
    return smtpsec_ca.write_cafile(tmp_path_factory.mktemp("aio-trust") / "ca.pem")


@pytest.fixture
def tls_args(aio_cafile: Path) -> dict[str, Any]:
    """``connect()`` options for an implicit-TLS test server on an ephemeral port.

    An ephemeral port is not 465, so ``Security.AUTO`` would require STARTTLS:
    implicit TLS has to be named.
    """
    return {
        "security": smtpsec.Security.IMPLICIT_TLS,
        "policy": smtpsec.Policy(cafile=aio_cafile),
        "timeout": TIMEOUT,
    }


@pytest.fixture
def login_args(tls_args: dict[str, Any]) -> dict[str, Any]:
    """:func:`tls_args` plus the test user's credentials."""
    return {**tls_args, "username": USER, "password": PASSWORD}


@pytest.fixture
def users() -> dict[str, str]:
    """The accounts the test servers know."""
    return {USER: PASSWORD}
