"""Every Python block in docs/accounts.md runs, or says it needs a real provider.

A block preceded by an ``<!-- no-run: ... -->`` comment (the marker the docs
runner reads) is only compiled, and must also start with a ``# needs a real
...`` comment so a reader sees why; the others run in order in one namespace,
like a reader pasting them into a REPL. The provider table there must list
every preset and every source URL.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

from smtpsec import providers

DOC = Path(__file__).resolve().parents[2] / "docs" / "accounts.md"
_BLOCK_RE = re.compile(r"^(<!-- no-run:[^>]*-->\n)?```python\n(.*?)^```", re.S | re.M)
NEEDS_REAL = "# needs a real "


def blocks() -> list[tuple[bool, str]]:
    """``(runs, code)`` for each Python block, in order."""
    found = _BLOCK_RE.findall(DOC.read_text(encoding="utf-8"))
    return [(not marker, code) for marker, code in found]


def test_docs_have_runnable_and_marked_blocks() -> None:
    found = blocks()
    assert any(not runs for runs, _code in found)
    assert sum(runs for runs, _code in found) >= 5
    for runs, code in found:
        # The HTML marker and the visible comment always go together.
        assert runs is not code.startswith(NEEDS_REAL), code.splitlines()[0]


def test_every_block_compiles_and_unmarked_blocks_run(capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict[str, object] = {"__name__": "docs_accounts"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an example that warns is a bad example
        for number, (runs, block) in enumerate(blocks(), 1):
            code = compile(block, f"docs/accounts.md block {number}", "exec")
            if runs:
                exec(code, namespace)  # noqa: S102 - the documentation's own examples
    out = capsys.readouterr().out
    assert "email-smtp.eu-west-1.amazonaws.com" in out
    assert "3 30" in out
    assert "{'size': 3, 'messages_per_minute': 30}" in out
    # TLS memory: verified once, then the stripped port is refused.
    assert "STARTTLS True" in out
    assert "refused: localhost:" in out
    assert "ports=(" in out
    # Pins: the CA pins hold across the renewal, the impostor is named.
    assert out.count("True\n") >= 2
    assert "('sha256/" in out


def test_preset_table_lists_every_preset_and_source() -> None:
    text = DOC.read_text(encoding="utf-8")
    for preset in providers.ALL:
        assert f"| `{preset.key}` |" in text
        assert f"`{preset.host}`" in text
        for url in preset.sources:
            assert f"({url})" in text
    for url in providers.AMAZON_SES_SOURCES:
        assert f"({url})" in text
