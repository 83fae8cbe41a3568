"""``dir()`` of a public package shows its API, not its imports.

What ``dir(smtpsec)`` lists is what tab completion and ``help()`` offer a new
user. For every package whose ``__init__`` is a curated API, the rule is:
``dir()`` lists exactly the names in ``__all__``, plus dunders and the package's
own submodules (Python adds a submodule as an attribute once it is imported).
Nothing else: no ``annotations`` from ``from __future__ import annotations``,
no ``Any`` or ``TYPE_CHECKING`` from ``typing``, no private helper tables.

Under pytest, smtpsec's modules carry two more names, ``@py_builtins`` and
``@pytest_ar``: smtpsec is a pytest plugin (``smtpsec.testing.plugin``), so
pytest rewrites the asserts of the whole distribution. They are not valid
identifiers, users never see them, and the test ignores exactly those.

``smtpsec.smtplib`` is left out on purpose: it mirrors the standard library's
``smtplib`` module, which has public names outside ``__all__`` (``SMTP_PORT``,
``CRLF``, ``socket``) that code and CPython's own tests reach for.
"""

from __future__ import annotations

import importlib
import types

import pytest

#: Packages whose ``__init__`` is a curated public API.
CURATED = (
    "smtpsec",
    "smtpsec.aio",
    "smtpsec.integrations",
    "smtpsec.sansio",
    "smtpsec.testing",
    "smtpsec.transports",
)


#: Added by pytest's assertion rewriting, only while pytest runs (see above).
PYTEST_REWRITE_NAMES = frozenset({"@py_builtins", "@pytest_ar"})


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def _is_own_submodule(package: types.ModuleType, name: str) -> bool:
    value = package.__dict__.get(name)
    return isinstance(value, types.ModuleType) and value.__name__ == f"{package.__name__}.{name}"


@pytest.mark.parametrize("name", CURATED)
def test_dir_lists_only_the_public_api(name: str) -> None:
    package = importlib.import_module(name)
    public = set(package.__all__)
    listed = set(dir(package)) - PYTEST_REWRITE_NAMES
    stray = sorted(
        n for n in listed - public if not _is_dunder(n) and not _is_own_submodule(package, n)
    )
    assert stray == [], f"dir({name}) shows names that are not its API: {stray}"
    assert public <= listed, f"dir({name}) hides public names: {sorted(public - listed)}"


@pytest.mark.parametrize("name", CURATED)
def test_every_public_name_resolves(name: str) -> None:
    package = importlib.import_module(name)
    for public in package.__all__:
        getattr(package, public)  # lazily loaded names included


def test_dir_of_smtpsec_has_no_future_import() -> None:
    """The report that started this: ``annotations`` leaked into ``dir(smtpsec)``."""
    import smtpsec
    import smtpsec.aio
    import smtpsec.testing

    for package in (smtpsec, smtpsec.aio, smtpsec.testing):
        assert "annotations" not in dir(package)
