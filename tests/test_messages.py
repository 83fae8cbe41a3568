"""What users read carries no internal requirement IDs.

Requirement IDs ("R-PY-11", "R-LIB-DESYNC-1") belong in tests, docstrings and
the docs' security page; nobody can look them up from an error message. Every
string literal in the package that is not a docstring ends up in an exception,
a warning, a log line or CLI output, so none may contain one.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Final

import smtpsec

_PACKAGE: Final = Path(smtpsec.__file__).parent
_REQUIREMENT_ID: Final = re.compile(r"R-[0-9A-Z]+(?:[.-][0-9A-Z]+)*")


def _docstrings(tree: ast.Module) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def test_no_user_facing_string_cites_a_requirement_id() -> None:
    offenders = []
    for path in sorted(_PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
                and _REQUIREMENT_ID.search(node.value)
            ):
                offenders.append(f"{path.relative_to(_PACKAGE)}:{node.lineno}: {node.value!r}")
    assert offenders == []


def test_the_check_sees_f_string_parts() -> None:
    """The scan covers the literal parts of f-strings, where most messages live."""
    tree = ast.parse('def f(x):\n    raise ValueError(f"bad {x} (R-PY-3)")\n')
    parts = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)]
    assert any(_REQUIREMENT_ID.search(str(part)) for part in parts)


def test_drop_in_and_cli_advice_name_their_own_api() -> None:
    """Every fix the drop-in and the CLI offer is worded in their API, never the native one.

    The engine and the guard take their fixes from an ``Advice``; this holds the
    two non-native vocabularies to it (the tests in tests/adapters and tests/cli
    check the messages users actually see).
    """
    from dataclasses import fields

    from smtpsec._advice import CLI, DROP_IN, NATIVE

    for advice in (DROP_IN, CLI):
        for field in fields(advice):
            phrase = getattr(advice, field.name)
            assert "Policy(" not in phrase, (field.name, phrase)
            assert "Security." not in phrase, (field.name, phrase)
    assert all(getattr(NATIVE, f.name) for f in fields(NATIVE) if f.name != "pin_self_signed")
