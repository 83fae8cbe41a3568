"""docs/accounts.md lists every provider preset and every source URL.

Its code blocks are run (or type-checked, with the reason on the page) by the
docs tests in ``tests/docs``, like every other page's.
"""

from __future__ import annotations

from pathlib import Path

from smtpsec import providers

DOC = Path(__file__).resolve().parents[2] / "docs" / "accounts.md"


def test_preset_table_lists_every_preset_and_source() -> None:
    text = DOC.read_text(encoding="utf-8")
    for preset in providers.ALL:
        assert f"| `{preset.key}` |" in text
        assert f"`{preset.host}`" in text
        for url in preset.sources:
            assert f"({url})" in text
    for url in providers.AMAZON_SES_SOURCES:
        assert f"({url})" in text
