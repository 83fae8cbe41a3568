"""Every code block in README.md and docs/*.md runs, or is type-checked and says why not.

The engine and the conventions are in ``_snippets.py`` (and ``README.md`` here).
The first half tests the pages; the second half tests the engine itself on
small made-up pages, so that a broken snippet is known to fail the build: a
block that raises, a wrong output, a type error, an unknown command, a marker
without a reason.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from _snippets import (
    PAGES,
    Page,
    SnippetFailed,
    StandIn,
    all_pages,
    dedent,
    parse_page,
    run_page,
    same_output,
    type_check,
)

from smtpsec.policy import DEFAULT_POLICY
from smtpsec.tls import build_context

_PARSED = all_pages()
_RUNNABLE = [
    page for page in _PARSED if any(b.kind in ("run", "pytest", "script") for b in page.blocks)
]


def test_the_pages_are_found() -> None:
    names = {page.name for page in _PARSED}
    assert {"README.md", "docs/quickstart.md", "docs/first-hour.md", "docs/testing.md"} <= names
    assert len(PAGES) == len(names)


@pytest.mark.parametrize("page", _PARSED, ids=[p.name for p in _PARSED])
def test_markers_are_well_formed(page: Page) -> None:
    assert page.problems == []


def test_every_code_block_is_run_or_says_why_not() -> None:
    blocks = [b for page in _PARSED for b in page.blocks if b.lang in ("python", "console")]
    silent = [b.where for b in blocks if b.kind in ("typecheck", "skip") and not b.reason]
    assert silent == []
    assert all(b.kind in ("run", "typecheck", "skip", "file", "pytest", "script") for b in blocks)


@pytest.mark.parametrize("page", _RUNNABLE, ids=[p.name for p in _RUNNABLE])
def test_page_runs(page: Page, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("SMTP_PASSWORD", "placeholder-app-password")
    with StandIn(monkeypatch, tmp_path) as stand_in:
        assert run_page(page, tmp_path) > 0
    assert stand_in.errors() == []


@pytest.fixture(scope="session")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mypy cache per worker: the second run re-checks only the pages."""
    return tmp_path_factory.mktemp("mypy-cache")


def test_blocks_type_check(tmp_path: Path, mypy_cache: Path) -> None:
    """``mypy --strict`` on every python block, the run ones and the type-check-only ones."""
    result = type_check(_PARSED, tmp_path, cache=mypy_cache)
    assert result.checked > 0
    assert result.errors == [], "\n".join(result.errors)
    assert result.status == 0


# --------------------------------------------------------------------------- the engine


def _page(tmp_path: Path, text: str) -> Page:
    path = tmp_path / "page.md"
    path.write_text(dedent(text), encoding="utf-8")
    return parse_page(path)


def _run(page: Page, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.chdir(tmp_path)
    with StandIn(monkeypatch, tmp_path):
        return run_page(page, tmp_path)


def test_engine_runs_blocks_in_one_namespace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = _page(
        tmp_path,
        """
        # A page

        ```python
        greeting = "hello"
        ```

        ```python
        print(greeting, len(msg["To"]))
        ```

        <!-- snippet: output -->
        ```text
        hello 15
        ```
        """,
    )
    assert page.problems == []
    assert _run(page, tmp_path, monkeypatch) == 2


def test_engine_fails_a_block_that_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    page = _page(
        tmp_path,
        """
        Text.

        ```python
        import smtpsec

        smtpsec.connect("localhost:1", 2)
        ```
        """,
    )
    with pytest.raises(SnippetFailed, match=r"page\.md:4: raised InvalidArgumentError") as info:
        _run(page, tmp_path, monkeypatch)
    assert 'page.md", line 6' in str(info.value)  # the traceback points into the page


def test_engine_fails_a_wrong_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    page = _page(
        tmp_path,
        """
        ```python
        print("what it prints")
        ```

        <!-- snippet: output -->
        ```text
        what the page claims
        ```
        """,
    )
    with pytest.raises(SnippetFailed, match=r"page\.md:7: is not what page\.md:2 printed"):
        _run(page, tmp_path, monkeypatch)


def test_engine_sends_through_the_stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    page = _page(
        tmp_path,
        """
        ```python
        import smtpsec

        with smtpsec.connect("smtp.example.com", 587, username="ann", password=pw) as s:
            s.send(msg)
            print(s.report.host, s.report.port, s.report.verified)
        ```

        <!-- snippet: output -->
        ```text
        smtp.example.com 587 True
        ```
        """,
    )
    monkeypatch.chdir(tmp_path)
    with StandIn(monkeypatch, tmp_path) as stand_in:
        assert run_page(page, tmp_path) == 1
    (received,) = stand_in.servers[587].messages
    assert received.recipients == ("bob@example.org",)


def test_stand_in_still_verifies_certificates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stand-in's certificate names smtp.example.com only, and it is checked."""
    monkeypatch.chdir(tmp_path)
    with StandIn(monkeypatch, tmp_path) as stand_in:
        port = stand_in.servers[465].port
        page = _page(
            tmp_path,
            f"""
            ```python
            import smtpsec

            smtpsec.connect("localhost", {port}, security=smtpsec.Security.IMPLICIT_TLS)
            ```
            """,
        )
        with pytest.raises(SnippetFailed, match="raised CertificateError"):
            run_page(page, tmp_path)


def test_stand_in_sets_the_default_trust_aside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default context (one per trust store) trusts the stand-in only while it runs."""
    before = build_context(DEFAULT_POLICY)
    with StandIn(monkeypatch, tmp_path) as stand_in:
        inside = build_context(DEFAULT_POLICY)
        assert inside is not before
        assert build_context(DEFAULT_POLICY) is inside  # still shared
        (anchor,) = inside.get_ca_certs(binary_form=True)
        assert anchor == ssl.PEM_cert_to_DER_cert(stand_in.ca.cert_pem.decode())
    monkeypatch.undo()  # certifi.where() names the real bundle again
    assert build_context(DEFAULT_POLICY) is before


def test_engine_runs_console_commands_and_checks_their_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = _page(
        tmp_path,
        """
        ```console
        $ smtpsec --version
        smtpsec ...
        ```
        """,
    )
    assert _run(good, tmp_path, monkeypatch) == 1
    wrong = _page(tmp_path, "```console\n$ python -m smtpsec --version\nsmtplib 3\n```\n")
    with pytest.raises(SnippetFailed, match="printed something else"):
        _run(wrong, tmp_path, monkeypatch)
    foreign = _page(tmp_path, "```console\n$ pip install smtpsec\n```\n")
    with pytest.raises(SnippetFailed, match="only smtpsec commands run in-process"):
        _run(foreign, tmp_path, monkeypatch)


def test_engine_reports_bad_markers(tmp_path: Path) -> None:
    page = _page(
        tmp_path,
        """
        <!-- snippet: typecheck -->
        ```python
        x = 1
        ```

        <!-- snippet: skip: not python -->
        ```python
        y = 2
        ```

        <!-- snippet: maybe: later -->
        ```console
        $ smtpsec demo
        ```

        <!-- snippet: typecheck: dangling -->
        Some prose.
        """,
    )
    assert page.problems == [
        "page.md:1: 'typecheck' must say why the block is not run",
        "page.md:6: 'skip' applies to ['console'] blocks",
        "page.md:11: unknown snippet kind 'maybe' (known: "
        "['file', 'output', 'pytest', 'script', 'skip', 'typecheck'])",
        "page.md:16: marker not followed by a block",
    ]


def test_type_check_reports_page_lines(tmp_path: Path, mypy_cache: Path) -> None:
    """A type error in a run block and one in a type-check-only block, at their page lines.

    (The pages' own check covers smtpsec's API; this one needs only the stdlib, so
    it stays fast.)
    """
    page = _page(
        tmp_path,
        """
        # Typed

        ```python
        count: int = "three"
        ```

        <!-- snippet: typecheck: needs something real -->
        ```python
        print(count + undefined_name)
        ```
        """,
    )
    result = type_check([page], tmp_path / "check", cache=mypy_cache)
    assert result.status != 0
    assert any(e.startswith("page.md:4: error:") and "int" in e for e in result.errors)
    assert any(e.startswith("page.md:9: error:") and "undefined_name" in e for e in result.errors)


def test_same_output_ignores_only_volatile_values() -> None:
    assert same_output("submission hop   localhost:41745", "submission hop   localhost:2525")
    assert same_output("a\n...\nz", "a\nb\nc\nz")
    assert same_output("one two\nthree", "one\n  two three")
    assert not same_output("mode implicit_tls", "mode starttls")
    assert not same_output("submission hop smtp.example.com:465", "smtp.example.com:587")
