"""smtpsec.sansio does no I/O: no socket, ssl, time, logging or asyncio (DESIGN.md).

The check reads the source with :mod:`ast` (importing would be no proof:
``smtpsec.errors`` pulls in ``smtplib``, which imports ``socket``). Every
import in every sansio module must be on an allow-list; imports of other
smtpsec modules are followed and checked the same way, except that
``smtpsec.errors`` may import ``smtplib`` for the exception base class.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import smtpsec

PACKAGE_ROOT = Path(smtpsec.__file__).parent
SANSIO = PACKAGE_ROOT / "sansio"

FORBIDDEN = frozenset({"socket", "ssl", "time", "logging", "asyncio"})

#: What a sansio module may import (top-level module names / smtpsec modules).
ALLOWED_STDLIB = frozenset(
    {
        "__future__",
        "typing",
        "typing_extensions",
        "dataclasses",
        "collections",
        "collections.abc",
        "enum",
        "re",
        "base64",
        "binascii",
        "ipaddress",
        "codecs",
        "unicodedata",
        "itertools",
        "functools",
    }
)
ALLOWED_SMTPSEC = frozenset({"smtpsec.errors", "smtpsec._types"})
#: Extra imports allowed in the smtpsec modules sansio depends on.
EXTRA_ALLOWED = {"smtpsec.errors": frozenset({"builtins", "smtplib"})}


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE_ROOT.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (anywhere in the file)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    return imports_in_source(path.read_text(encoding="utf-8"), package)


def imports_in_source(source: str, package: str) -> set[str]:
    """Absolute names imported by ``source``, a module of ``package``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
                if node.module is None:
                    # "from . import x": each name is a module of that package.
                    found.update(f"{target}.{alias.name}" for alias in node.names)
                    continue
            else:
                assert node.module is not None
                target = node.module
            found.add(target)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__":
            found.add("<dynamic __import__>")
    return found


def path_of(module: str) -> Path:
    relative = Path(*module.split(".")[1:])
    candidate = PACKAGE_ROOT / relative.with_suffix(".py")
    return candidate if candidate.exists() else PACKAGE_ROOT / relative / "__init__.py"


SANSIO_FILES = sorted(SANSIO.glob("*.py"))


def test_sansio_files_found() -> None:
    names = {path.name for path in SANSIO_FILES}
    assert {"__init__.py", "_replies.py", "_commands.py", "_extensions.py", "_body.py"} <= names


@pytest.mark.parametrize("path", SANSIO_FILES, ids=lambda p: p.name)
def test_sansio_module_imports_only_allowed_modules(path: Path) -> None:
    for imported in sorted(imports_of(path)):
        top = imported.split(".")[0]
        assert top not in FORBIDDEN, f"{path.name} imports {imported}"
        if imported.startswith("smtpsec.sansio"):
            assert path_of(imported).exists(), f"{path.name}: {imported} not found"
            continue
        assert imported in ALLOWED_STDLIB or imported in ALLOWED_SMTPSEC, (
            f"{path.name} imports {imported}, which is not on the sansio allow-list"
        )


@pytest.mark.parametrize("module", sorted(ALLOWED_SMTPSEC))
def test_smtpsec_dependencies_of_sansio_stay_pure(module: str) -> None:
    """Follow imports into smtpsec.errors / smtpsec._types (and anything they import)."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for imported in imports_of(path_of(current)):
            assert imported.split(".")[0] not in FORBIDDEN, f"{current} imports {imported}"
            if imported.startswith("smtpsec"):
                todo.append(imported)
            else:
                allowed = ALLOWED_STDLIB | EXTRA_ALLOWED.get(current, frozenset())
                assert imported in allowed, f"{current} imports {imported}"


def test_checker_catches_forbidden_imports() -> None:
    """The checker itself sees plain, dotted, from-, nested and dynamic imports."""
    source = (
        "import os.path\n"
        "from time import monotonic\n"
        "def f():\n"
        "    import socket\n"
        "    from .. import _types\n"
        "    from ._replies import Reply\n"
        "    return __import__('ssl')\n"
    )
    found = imports_in_source(source, "smtpsec.sansio")
    assert found == {
        "os.path",
        "time",
        "socket",
        "smtpsec._types",
        "smtpsec.sansio._replies",
        "<dynamic __import__>",
    }
