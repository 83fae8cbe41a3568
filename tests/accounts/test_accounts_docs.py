"""Every Python block in docs/accounts.md runs, or says it needs a real provider.

Blocks whose first line is a ``# needs a real ...`` comment are only compiled;
the others run in order in one namespace, like a reader pasting them into a
REPL. The provider table there must list every preset and every source URL.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from smtpsec import providers

DOC = Path(__file__).resolve().parents[2] / "docs" / "accounts.md"
_BLOCK_RE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
NEEDS_REAL = "# needs a real "


def blocks() -> list[str]:
    return _BLOCK_RE.findall(DOC.read_text(encoding="utf-8"))


def test_docs_have_runnable_and_marked_blocks() -> None:
    found = blocks()
    assert any(b.startswith(NEEDS_REAL) for b in found)
    assert sum(not b.startswith(NEEDS_REAL) for b in found) >= 3


def test_every_block_compiles_and_unmarked_blocks_run(capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict[str, object] = {"__name__": "docs_accounts"}
    for number, block in enumerate(blocks(), 1):
        code = compile(block, f"docs/accounts.md block {number}", "exec")
        if block.startswith(NEEDS_REAL):
            continue
        exec(code, namespace)  # noqa: S102 - the documentation's own examples
    out = capsys.readouterr().out
    assert "email-smtp.eu-west-1.amazonaws.com" in out
    assert "3 30" in out


def test_preset_table_lists_every_preset_and_source() -> None:
    text = DOC.read_text(encoding="utf-8")
    for preset in providers.ALL:
        assert f"| `{preset.key}` |" in text
        assert f"`{preset.host}`" in text
        for url in preset.sources:
            assert f"({url})" in text
    for url in providers.AMAZON_SES_SOURCES:
        assert f"({url})" in text
