"""Fixtures for the integration tests: Django settings (configured once), trust files,
and a check that code under test raises no deprecation warning."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from smtpsec import Policy
from smtpsec.testing import CA


@pytest.fixture(scope="session", autouse=True)
def _django_settings() -> None:
    """Configure Django once per process; tests change values with override_settings."""
    django = pytest.importorskip("django")
    from django.conf import settings
    from django_kit import legacy_settings_allowed

    if not settings.configured:
        with legacy_settings_allowed():
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


@pytest.fixture
def deprecation_free() -> Callable[[], contextlib.AbstractContextManager[None]]:
    """Return a context manager that fails the test on any deprecation warning inside it.

    Use it around smtpsec's code only (build the messages and settings first): a
    deprecated Django API that smtpsec calls warns with Django's own file as the
    origin, so a filter on smtpsec's modules alone would not see it.
    """

    @contextlib.contextmanager
    def window() -> Iterator[None]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        found = [
            f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}"
            for w in caught
            if issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))
        ]
        assert not found, "deprecation warnings while smtpsec ran:\n" + "\n".join(found)

    return window


@pytest.fixture(autouse=True)
def _fresh_shared_pools() -> Iterator[None]:
    """Each test starts and ends without pooled sessions of an earlier one."""
    from smtpsec import Pool

    Pool.close_shared()
    yield
    Pool.close_shared()
