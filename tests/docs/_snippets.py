"""The docs tests' engine: find the code blocks of the Markdown pages, run them, type-check them.

``test_docs_snippets.py`` drives it; ``README.md`` in this directory describes
the conventions for people who write docs. In short:

* Every fenced ``python`` block of ``README.md`` and ``docs/*.md`` is **run**,
  in page order, in one namespace per page, and every one of them is
  **type-checked** with ``mypy --strict`` (the blocks of a page form one module).
* Every ``console`` block is run too: its ``$ smtpsec ...`` and
  ``$ python -m smtpsec ...`` commands go to ``smtpsec._cli.main`` in-process,
  and the lines under a command are the output it must print.
* A block that cannot run says so, and why, in an HTML comment right above its
  fence (invisible on GitHub and in the built docs, plain in the source):

  ``<!-- snippet: typecheck: REASON -->``
      a ``python`` block that is type-checked but not run (a real provider, a
      configured Django project).
  ``<!-- snippet: skip: REASON -->``
      a ``console`` block that is not run (it installs software, or needs a
      network).
  ``<!-- snippet: output -->``
      a ``text`` block holding the output of the block run just before it;
      it must match (see :func:`same_output`).
  ``<!-- snippet: file -->`` / ``<!-- snippet: pytest -->`` / ``<!-- snippet: script -->``
      a ``python`` block whose first line is a comment naming a path
      (``# myapp/alerts.py``): it is written there, in a scratch directory,
      instead of being run in the page's namespace; a ``pytest`` file is then
      run by pytest in a subprocess, with smtpsec's plugin, as a user's test
      suite would be, and a ``script`` by ``python path`` in a subprocess (its
      output can be checked by an ``output`` block).

* Placeholders: the names in :data:`PLACEHOLDERS` (``app_password``, ``msg``,
  ``user``...) stand for the reader's own values. They are bound before a page
  runs and declared for the type checker; anything else a block uses, it (or
  an earlier block of its page) must define.
* ``smtp.example.com`` is a stand-in (:class:`StandIn`): while a page runs, that
  name resolves to two loopback :class:`smtpsec.testing.SMTPServer` instances,
  port 465 with implicit TLS and port 587 with required STARTTLS, whose
  certificate is for ``smtp.example.com`` and whose CA takes the place of the
  certifi roots. ``HOME`` and the working directory are a scratch directory.
  Nothing else is changed: certificates are verified as always.
"""

from __future__ import annotations

import asyncio
import contextlib
import doctest
import email.message
import inspect
import io
import logging
import os
import re
import shlex
import socket
import subprocess
import sys
import textwrap
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import smtpsec

ROOT: Final = Path(__file__).resolve().parents[2]
#: The pages whose code blocks are tested.
PAGES: Final = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))

KINDS: Final = frozenset({"run", "typecheck", "skip", "output", "file", "pytest", "script"})
#: Kinds whose block is a file of its own (the first line names its path).
FILE_KINDS: Final = frozenset({"file", "pytest", "script"})
#: The kinds that need a reason, and the block languages each one applies to.
_NEEDS_REASON: Final = frozenset({"typecheck", "skip"})
_LANGS: Final[dict[str, frozenset[str]]] = {
    "typecheck": frozenset({"python"}),
    "skip": frozenset({"console"}),
    "output": frozenset({"text", "console"}),
    "file": frozenset({"python"}),
    "pytest": frozenset({"python"}),
    "script": frozenset({"python"}),
}
#: Languages that are code: run unless a marker says otherwise.
CODE_LANGS: Final = frozenset({"python", "console"})

_FENCE: Final = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_MARKER: Final = re.compile(r"^\s*<!--\s*snippet:\s*(?P<body>.*?)\s*-->\s*$")
_PATH_COMMENT: Final = re.compile(r"^# (?P<path>[\w./-]+\.py)\s*$")

# -------------------------------------------------------------------------- placeholders

#: The one password every password placeholder holds; the stand-in server accepts it.
PASSWORD: Final = "placeholder-app-password"
#: User names the docs log in with; each one has :data:`PASSWORD` on the stand-in.
USERS: Final = ("ann", "ann@example.com", "app@example.com", "svc")


def _message(number: int = 1) -> email.message.EmailMessage:
    msg = email.message.EmailMessage()
    msg["From"] = "ann@example.com"
    msg["To"] = "bob@example.org"
    msg["Subject"] = f"placeholder message {number}"
    msg.set_content("A message standing in for yours.\n")
    return msg


_RAW: Final = (
    b"From: ann@example.com\r\nTo: bob@example.org\r\nSubject: placeholder\r\n\r\nHello.\r\n"
)

#: Placeholder name -> (its type for the type checker, a factory for its value).
PLACEHOLDERS: Final[dict[str, tuple[str, Callable[[], object]]]] = {
    "app_password": ("str", lambda: PASSWORD),
    "password": ("str", lambda: PASSWORD),
    "pw": ("str", lambda: PASSWORD),
    "secret": ("str", lambda: PASSWORD),
    "user": ("str", lambda: "ann@example.com"),
    "access_token": ("str", lambda: "placeholder-oauth-token"),
    "msg": ("_docs_email.EmailMessage", _message),
    "message": ("_docs_email.EmailMessage", _message),
    "msg1": ("_docs_email.EmailMessage", lambda: _message(1)),
    "msg2": ("_docs_email.EmailMessage", lambda: _message(2)),
    "first": ("_docs_email.EmailMessage", lambda: _message(1)),
    "second": ("_docs_email.EmailMessage", lambda: _message(2)),
    "messages": ("list[_docs_email.EmailMessage]", lambda: [_message(n) for n in range(3)]),
    "raw": ("bytes", lambda: _RAW),
    "raw_message": ("bytes", lambda: _RAW),
    "sender": ("str", lambda: "ann@example.com"),
    "recipients": ("list[str]", lambda: ["bob@example.org"]),
    # Django's EmailMessage objects (Django ships no types: Any to the checker).
    "first_batch": ("list[_docs_typing.Any]", list),
    "second_batch": ("list[_docs_typing.Any]", list),
}


def placeholder_values() -> dict[str, object]:
    """Fresh values for :data:`PLACEHOLDERS` (a page may change a message it was given)."""
    return {name: make() for name, (_type, make) in PLACEHOLDERS.items()}


def prelude() -> str:
    """The placeholders declared for the type checker, as one line (it goes on line 1)."""
    names = "; ".join(f"{name}: {kind}" for name, (kind, _make) in PLACEHOLDERS.items())
    return f"import email.message as _docs_email; import typing as _docs_typing; {names}"


# -------------------------------------------------------------------------- blocks


@dataclass(frozen=True, slots=True)
class Block:
    """One fenced block of a page.

    Attributes:
        line: the page line of the block's first code line (1-based).
        kind: ``run`` unless a marker says otherwise (:data:`KINDS`).
        reason: why the block is not run (``typecheck``, ``skip``).
    """

    page: Path
    line: int
    lang: str
    code: str
    kind: str
    reason: str = ""

    @property
    def where(self) -> str:
        """``docs/page.md:LINE``, for messages."""
        return f"{_relative(self.page)}:{self.line}"

    @property
    def path(self) -> str:
        """For ``file`` and ``pytest`` blocks: the path named on the first line."""
        first = self.code.split("\n", 1)[0]
        match = _PATH_COMMENT.match(first)
        if match is None:
            raise ValueError(f"{self.where}: a {self.kind} block starts with '# path/name.py'")
        return match["path"]


@dataclass(slots=True)
class Page:
    """A page's blocks, and what is wrong with its markers."""

    path: Path
    blocks: list[Block] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The page as written in messages (``docs/quickstart.md``)."""
        return _relative(self.path)

    def python(self) -> list[Block]:
        """The ``python`` blocks that belong to the page's module (not files)."""
        return [b for b in self.blocks if b.lang == "python" and b.kind in ("run", "typecheck")]


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:  # a made-up page of the self-tests
        return path.name


def parse_page(path: Path) -> Page:
    """Split a Markdown page into its fenced blocks and check the markers."""
    page = Page(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    marker: tuple[int, str, str] | None = None  # (line, kind, reason) awaiting its fence
    index = 0
    while index < len(lines):
        text = lines[index]
        found = _MARKER.match(text)
        if found:
            if marker is not None:
                page.problems.append(f"{page.name}:{marker[0]}: marker not followed by a block")
            kind, _, reason = found["body"].partition(":")
            marker = (index + 1, kind.strip(), reason.strip())
            index += 1
            continue
        fence = _FENCE.match(text)
        if fence is None:
            if text.strip() and marker is not None:
                page.problems.append(f"{page.name}:{marker[0]}: marker not followed by a block")
                marker = None
            index += 1
            continue
        indent, marks = len(fence["indent"]), fence["fence"]
        lang = fence["info"].strip().split(" ", 1)[0]
        closing = re.compile(rf"^ *{re.escape(marks[0])}{{{len(marks)},}}\s*$")
        end = index + 1
        while end < len(lines) and not closing.match(lines[end]):
            end += 1
        body = [
            line[indent:] if line[:indent].isspace() else line for line in lines[index + 1 : end]
        ]
        kind, reason = ("run", "") if marker is None else marker[1:]
        block = Block(path, index + 2, lang, "\n".join(body) + "\n", kind, reason)
        if marker is not None:
            page.problems.extend(_check_marker(f"{page.name}:{marker[0]}", block))
        if marker is not None or lang in CODE_LANGS:
            page.blocks.append(block)
        marker = None
        index = end + 1
    if marker is not None:
        page.problems.append(f"{page.name}:{marker[0]}: marker not followed by a block")
    return page


def _check_marker(where: str, block: Block) -> Iterator[str]:
    if block.kind not in KINDS - {"run"}:
        yield f"{where}: unknown snippet kind {block.kind!r} (known: {sorted(KINDS - {'run'})})"
        return
    if block.lang not in _LANGS[block.kind]:
        yield f"{where}: '{block.kind}' applies to {sorted(_LANGS[block.kind])} blocks"
    if block.kind in _NEEDS_REASON and not block.reason:
        yield f"{where}: '{block.kind}' must say why the block is not run"
    if block.kind in FILE_KINDS:
        try:
            block.path  # noqa: B018 - validates the first line
        except ValueError as exc:
            yield str(exc)


def all_pages() -> list[Page]:
    """Every tested page, parsed."""
    return [parse_page(path) for path in PAGES]


# -------------------------------------------------------------------------- output


#: Values that differ from run to run, replaced in both the expected and the
#: actual output before they are compared.
VOLATILE: Final = (
    (re.compile(r"\b(localhost|127\.0\.0\.1|\[::1\]):\d+"), r"\1:PORT"),
    (re.compile(r'("localhost", )\d+'), r"\1PORT"),
    (re.compile(r"sha256/[A-Za-z0-9+/]{43}="), "sha256/PIN"),
    (re.compile(r"\b\d+ octets\b"), "N octets"),
    (re.compile(r"\bin \d+(?:\.\d+)? s\b"), "in N s"),
    (re.compile(r"queued as \S+"), "queued as ID"),
)


def _normalise(text: str) -> str:
    for pattern, replacement in VOLATILE:
        text = pattern.sub(replacement, text)
    return text


def same_output(expected: str, actual: str) -> bool:
    """Whether ``actual`` is what a page shows as ``expected``.

    The volatile values (:data:`VOLATILE`: ephemeral ports, SPKI pins, sizes,
    durations, queue ids) are replaced on both sides; then doctest's rules
    apply with ``ELLIPSIS`` (``...`` stands for any text, so a page may
    shorten long output) and ``NORMALIZE_WHITESPACE`` (line wrapping differs).
    """
    checker = doctest.OutputChecker()
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    want, got = _normalise(expected).rstrip() + "\n", _normalise(actual).rstrip() + "\n"
    return checker.check_output(want, got, flags)


# -------------------------------------------------------------------------- the stand-in


class StandIn:
    """``smtp.example.com`` for the length of a page: two loopback test servers.

    Port 465 speaks implicit TLS, port 587 requires STARTTLS; both present a
    certificate for ``smtp.example.com`` from a throwaway CA, accept the users
    in :data:`USERS` with :data:`PASSWORD`, and record what they receive.
    ``socket.getaddrinfo`` answers for that one name (and only for ports 465
    and 587), and ``certifi.where()`` names a file holding only the throwaway
    CA, so the client verifies the certificate exactly as it would a real one.
    ``DEFAULT_POLICY`` shares one TLS context per trust store, keyed by the
    file ``certifi.where()`` names, so a page's connections get a context that
    trusts the stand-in's CA and the rest of the test run never does.
    """

    HOST: Final = "smtp.example.com"

    def __init__(self, monkeypatch: Any, scratch: Path) -> None:
        from smtpsec.testing import CA, SMTPServer

        self.ca = CA.create("docs stand-in CA")
        leaf = self.ca.issue(self.HOST)
        users = dict.fromkeys(USERS, PASSWORD)
        self.servers = {
            465: SMTPServer(leaf, ca=self.ca, tls=smtpsec.Security.IMPLICIT_TLS, users=users),
            587: SMTPServer(leaf, ca=self.ca, tls=smtpsec.Security.STARTTLS, users=users),
        }
        bundle = self.ca.write_cafile(scratch / "stand-in-ca.pem")
        real = socket.getaddrinfo

        def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            if host == self.HOST:
                server = self.servers.get(int(port or 0))
                if server is None:
                    raise socket.gaierror(socket.EAI_SERVICE, f"the stand-in has no port {port}")
                return real("127.0.0.1", server.port, *args, **kwargs)
            return real(host, port, *args, **kwargs)

        import certifi

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        monkeypatch.setattr(certifi, "where", lambda: str(bundle))

    def __enter__(self) -> StandIn:
        for server in self.servers.values():
            server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # Sessions a page left in the process-wide pools end while the servers
        # still listen (the logging handler and the Django backend use them).
        smtpsec.Pool.close_shared()
        for server in self.servers.values():
            server.stop()

    def messages(self) -> list[Any]:
        """Every message the stand-in received, on either port."""
        return [m for server in self.servers.values() for m in server.messages]

    def errors(self) -> list[BaseException]:
        """What the servers raised while serving (a bug in the test kit)."""
        return [error for server in self.servers.values() for error in server.errors]


# -------------------------------------------------------------------------- running


class SnippetFailed(AssertionError):
    """A block did not do what its page says (its location leads the message)."""


def _code(block: Block) -> Any:
    """Compile with the page's line numbers (tracebacks point into the page)."""
    source = "\n" * (block.line - 1) + block.code
    flags = getattr(__import__("ast"), "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)
    return compile(source, str(block.page), "exec", flags=flags, dont_inherit=True)


@contextlib.contextmanager
def _captured() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        yield buffer


def _fail(block: Block, what: str) -> SnippetFailed:
    return SnippetFailed(f"{block.where}: {what}")


def _run_python(block: Block, namespace: dict[str, Any], loop: asyncio.AbstractEventLoop) -> str:
    code = _code(block)
    with _captured() as out:
        try:
            if code.co_flags & inspect.CO_COROUTINE:  # top-level await
                loop.run_until_complete(eval(code, namespace))  # noqa: S307 - the docs' own code
            else:
                exec(code, namespace)  # noqa: S102 - the docs' own code
        except Exception as exc:
            trace = "".join(traceback.format_exception(exc))
            raise _fail(block, f"raised {type(exc).__name__}\n{trace}") from exc
    printed = out.getvalue()
    if "Traceback (most recent call last)" in printed:
        # An error that was caught and printed (logging's handleError does so).
        raise _fail(block, f"printed a traceback:\n{printed}")
    return printed


def _console_commands(block: Block) -> list[tuple[str, str]]:
    """``(command, expected output)`` pairs of a console block."""
    commands: list[tuple[str, str]] = []
    lines = block.code.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.startswith("$ "):
            raise _fail(block, f"output before any command: {line!r}")
        command = line[2:]
        while command.endswith("\\"):
            index += 1
            command = command[:-1] + " " + lines[index].strip()
        index += 1
        output = []
        while index < len(lines) and not lines[index].startswith("$ "):
            output.append(lines[index])
            index += 1
        commands.append((command, "\n".join(output)))
    return commands


def _cli_argv(block: Block, command: str) -> list[str]:
    words = shlex.split(command, comments=True)
    if words[:1] == ["smtpsec"]:
        return words[1:]
    if words[:3] == ["python", "-m", "smtpsec"]:
        return words[3:]
    raise _fail(
        block,
        f"cannot run {command!r}: only smtpsec commands run in-process; mark the block "
        "'<!-- snippet: skip: why -->' if it cannot run",
    )


def _run_console(block: Block) -> str:
    from smtpsec._cli import main

    printed = []
    for command, expected in _console_commands(block):
        with _captured() as out:
            code = main(_cli_argv(block, command))
        text = out.getvalue()
        if code != 0:
            raise _fail(block, f"{command!r} exited with {code}:\n{text}")
        if expected.strip() and not same_output(expected, text):
            raise _fail(block, f"{command!r} printed something else:\n{text}")
        printed.append(text)
    return "".join(printed)


def _write_file(block: Block, scratch: Path) -> Path:
    target = scratch / block.path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n" * (block.line - 1) + block.code, encoding="utf-8")
    return target


def _smtpsec_path() -> str:
    """The directory smtpsec under test was imported from (a checkout's ``src``)."""
    return str(Path(smtpsec.__file__).resolve().parents[1])


def _run_file(block: Block, scratch: Path) -> str:
    """A ``pytest`` or ``script`` block, in a subprocess (the smtpsec under test)."""
    target = _write_file(block, scratch)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(scratch), _smtpsec_path(), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    if block.kind == "pytest":
        # Only smtpsec's plugin (what the page relies on): the other plugins of
        # this environment (hypothesis, xdist, ...) cost seconds to load.
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        command += ["-p", "smtpsec.testing.plugin", str(target)]
    else:
        command = [sys.executable, str(target)]
    done = subprocess.run(
        command, cwd=scratch, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        raise _fail(block, f"{block.kind} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def run_page(page: Page, scratch: Path) -> int:
    """Run a page's blocks in order (inside a :class:`StandIn`); return how many ran.

    Raises:
        SnippetFailed: a block raised, printed something else than its page
            shows, or a command failed.
    """
    namespace: dict[str, Any] = {"__name__": "__docs__", **placeholder_values()}
    loop = asyncio.new_event_loop()
    ran, last_output, last_block = 0, None, None
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level  # a page may add a handler
    try:
        for block in page.blocks:
            if block.kind == "output":
                if last_output is None or last_block is None:
                    raise _fail(block, "an output block needs a block run just before it")
                if not same_output(block.code, last_output):
                    raise _fail(
                        block,
                        f"is not what {last_block.where} printed; it printed:\n{last_output}",
                    )
                continue
            last_output, last_block = None, block
            if block.kind == "run" and block.lang == "python":
                last_output = _run_python(block, namespace, loop)
            elif block.kind == "run" and block.lang == "console":
                last_output = _run_console(block)
            elif block.kind == "file":
                _write_file(block, scratch)
            elif block.kind in ("pytest", "script"):
                last_output = _run_file(block, scratch)
            else:
                continue  # typecheck, skip: not run (the reason is on the page)
            ran += 1
    finally:
        loop.close()
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(level)
    return ran


# -------------------------------------------------------------------------- type checking

_MYPY_CONFIG: Final = """\
[mypy]
strict = True
warn_unreachable = True
# Pages show fragments of coroutines ("await session.send(msg)").
disable_error_code = top-level-await

[mypy-django.*]
ignore_missing_imports = True
"""


def module_source(page: Page) -> str | None:
    """The page's ``python`` blocks as one module, each at its page line numbers.

    Line 1 declares the placeholders; the blocks follow at the lines where they
    are on the page, so the type checker's line numbers are the page's.
    """
    blocks = page.python()
    if not blocks:
        return None
    lines = [prelude()]
    for block in blocks:
        if block.line <= len(lines):
            raise ValueError(f"{block.where}: a block cannot start on the first line")
        lines.extend([""] * (block.line - 1 - len(lines)))
        lines.extend(block.code.rstrip("\n").split("\n"))
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class TypeCheck:
    """What ``mypy --strict`` said about the pages' blocks."""

    status: int
    errors: list[str]
    checked: int


def type_check(pages: list[Page], scratch: Path, *, cache: Path | None = None) -> TypeCheck:
    """Run ``mypy --strict`` over every page's module and its ``file``/``pytest`` blocks.

    Error locations are rewritten to the pages' own (``docs/x.md:LINE``).
    ``cache`` is mypy's cache directory (a fresh one under ``scratch`` if not given).
    """
    modules = scratch / "pages"
    files = scratch / "files"
    modules.mkdir(parents=True)
    files.mkdir()
    where: dict[str, str] = {}
    targets: list[str] = []
    checked = 0
    for number, page in enumerate(pages):
        source = module_source(page)
        if source is not None:
            stem = re.sub(r"\W", "_", page.path.stem)
            module = modules / f"page{number}_{stem}.py"
            module.write_text(source, encoding="utf-8")
            where[str(module.relative_to(scratch))] = page.name
            targets.append(str(module))
            checked += len(page.python())
        for block in page.blocks:
            if block.kind in FILE_KINDS:
                written = _write_file(block, files)
                where[str(written.relative_to(scratch))] = page.name
                checked += 1
                if block.kind != "file":  # a plain file is checked where it is imported
                    targets.append(str(written))
    config = scratch / "mypy.ini"
    config.write_text(_MYPY_CONFIG, encoding="utf-8")
    env = {**os.environ, "MYPYPATH": os.pathsep.join([_smtpsec_path(), str(files)])}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(config),
            "--cache-dir",
            str(cache if cache is not None else scratch / ".mypy_cache"),
            "--no-error-summary",
            "--hide-error-context",
            *targets,
        ],
        cwd=scratch,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    errors = []
    for line in (done.stdout + done.stderr).splitlines():
        name, colon, rest = line.partition(":")
        errors.append(f"{where[name]}:{rest}" if colon and name in where else line)
    return TypeCheck(done.returncode, [e for e in errors if e.strip()], checked)


def dedent(text: str) -> str:
    """``textwrap.dedent`` for the self-tests' inline pages."""
    return textwrap.dedent(text).lstrip("\n")
