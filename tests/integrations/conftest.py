"""Fixtures for the integration tests: Django settings (configured once) and trust files."""

from __future__ import annotations

from pathlib import Path

import pytest

from smtpsec import Policy
from smtpsec.testing import CA


@pytest.fixture(scope="session", autouse=True)
def _django_settings() -> None:
    """Configure Django once per process; tests change values with override_settings."""
    django = pytest.importorskip("django")
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            EMAIL_BACKEND="smtpsec.integrations.django.EmailBackend",
            DEFAULT_FROM_EMAIL="webmaster@example.test",
            INSTALLED_APPS=[],
            USE_TZ=True,
        )
        django.setup()


@pytest.fixture(scope="session")
def ca_file(smtpsec_ca: CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session CA as a PEM file (what ``Policy(cafile=...)`` wants)."""
    return smtpsec_ca.write_cafile(tmp_path_factory.mktemp("trust") / "ca.pem")


@pytest.fixture(scope="session")
def trusting_policy(ca_file: Path) -> Policy:
    """A policy that trusts the throwaway CA, and nothing else."""
    return Policy(cafile=str(ca_file))
