"""Sphinx configuration for the smtpsec documentation (furo theme, MyST Markdown).

CI builds with ``sphinx-build -q -n -W -b html docs docs/_build/html``: nitpicky,
every warning an error, and no network. Two choices below follow from that:

* **Intersphinx is opt-in.** Fetching ``objects.inv`` from docs.python.org fails
  offline, and Sphinx reports that as a warning, which ``-W`` turns into a failed
  build. So the Python inventory is used only when a network is known to exist:
  on Read the Docs (``READTHEDOCS`` is set there) or when
  ``SMTPSEC_DOCS_INTERSPHINX=1``. Nothing fetched is committed to the tree.
* **Standard-library targets are ignored, not guessed.** Without the inventory,
  references such as ``ssl.SSLContext`` cannot resolve, so ``nitpick_ignore_regex``
  lists the stdlib modules we mention. Only stdlib names are ignored: a broken
  reference to an smtpsec name still fails the build.

Two small hooks keep the API page honest without editing the package:

* Public names are documented where users import them (``smtpsec.Policy``), but
  docstrings and annotations refer to where they are defined
  (``smtpsec.policy.Policy``) or use a short name relative to that module
  (``Plan``). autodoc records the defining path as ``:canonical:``; the
  ``missing-reference`` hook below resolves the remaining short or private
  spellings to the one documented smtpsec object with that name, and only when
  exactly one exists (otherwise the warning stands).
* Napoleon reads a leading ``word:`` in an attribute or property docstring as the
  attribute's type ("4xx: the recipient may..." would render a type called
  ``4xx``). smtpsec takes types from annotations only, so when that "type" is not
  a Python expression the hook puts the text back where it was.
"""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parent.parent
# Import the package from the tree being documented, even without an install.
sys.path.insert(0, str(_ROOT / "src"))

import smtpsec  # noqa: E402  (needs the sys.path line above)

project = "smtpsec"
author = "The smtpsec developers"
copyright = "The smtpsec developers"
release = smtpsec.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# -- MyST ---------------------------------------------------------------------------

myst_enable_extensions = ["colon_fence", "deflist"]
# Stable anchors for "#heading" links inside and between pages.
myst_heading_anchors = 3

# -- autodoc / napoleon -------------------------------------------------------------

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = True

# -- cross references ---------------------------------------------------------------

nitpicky = True

_ONLINE = bool(os.environ.get("READTHEDOCS")) or os.environ.get("SMTPSEC_DOCS_INTERSPHINX") == "1"
intersphinx_mapping: dict[str, tuple[str, str | None]] = (
    {"python": ("https://docs.python.org/3", None)} if _ONLINE else {}
)

# Standard-library modules our docstrings and pages refer to. Ignored only as
# py:* targets; with intersphinx on they resolve anyway.
_STDLIB = (
    "_ssl",  # ssl.SSLSession is defined there
    "builtins",
    "collections",
    "contextlib",
    "datetime",
    "email",
    "enum",
    "io",
    "ipaddress",
    "logging",
    "os",
    "pathlib",
    "random",
    "smtplib",
    "socket",
    "ssl",
    "types",
    "typing",
    "warnings",
)
nitpick_ignore_regex = [
    (r"py:.*", rf"({'|'.join(_STDLIB)})(\..+)?"),
    # Builtin names as annotations render them (no module prefix).
    (
        r"py:.*",
        r"(str|bytes|bytearray|memoryview|int|float|bool|object|None|tuple|list|dict|set"
        r"|frozenset|type|Exception|BaseException|ValueError|ConnectionError|TimeoutError"
        r"|UserWarning|Callable|Iterable|Iterator|Mapping|Sequence|BinaryIO|Literal|Any"
        r"|Final|Self|Union|Optional|NoneType)",
    ),
    # Third-party types in signatures (cryptography, dnspython, pytest).
    (r"py:.*", r"(cryptography|dns|pytest|_pytest|django|typing_extensions)(\..+)?"),
]
nitpick_ignore = [
    # MemoryTransport's docstring names its default TLS facts, which
    # smtpsec.transports does not export (yet): nothing public to link to.
    ("py:data", "FAKE_TLS"),
    # ReferenceIdentity.from_endpoint takes anything with reference_identity();
    # the structural Protocol is private on purpose (it only breaks an import cycle).
    ("py:class", "smtpsec.identity._Discovered"),
]

# -- HTML -----------------------------------------------------------------------------

html_theme = "furo"
html_title = f"smtpsec {release}"
html_static_path: list[str] = []


# -- hooks ---------------------------------------------------------------------------


def _restore_inline_text(
    app: Any, what: str, name: str, obj: object, options: object, lines: list[str]
) -> None:
    """Undo napoleon's "type: text" split when the "type" is prose, not a type."""
    if what not in ("attribute", "property", "data") or not lines:
        return
    last = lines[-1]
    if not last.startswith(":type: "):
        return
    candidate = last.removeprefix(":type: ")
    try:
        ast.parse(candidate, mode="eval")
    except SyntaxError:
        del lines[-1]
        while lines and not lines[-1].strip():
            del lines[-1]
        for index, line in enumerate(lines):
            if line.strip():
                lines[index] = f"{candidate}: {line.lstrip()}"
                break


def _resolve_smtpsec_alias(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """Resolve ``Plan`` / ``smtpsec._x.Name`` to the single documented smtpsec object."""
    if node.get("refdomain") != "py":
        return None
    target = str(node.get("reftarget", "")).lstrip(".~")
    parts = target.split(".")
    # Drop leading *module* names only: "smtpsec.client.Session.send" is tried as
    # "client.Session.send" and "Session.send", never as a bare "send" (which
    # could name another object); a bare "Plan" is tried as it is.
    starts = [0] if parts[0] != "smtpsec" else []
    for index, part in enumerate(parts[:-1], start=1):
        if not part[:1].islower():
            break
        starts.append(index)
    domain = env.get_domain("py")
    for start in starts:
        tail = ".".join(parts[start:])
        # Canonical aliases point at the same entry; count each documented object once.
        matches = {
            full
            for full, entry in domain.objects.items()
            if not entry.aliased
            and full.startswith("smtpsec")
            and (full == tail or full.endswith("." + tail))
        }
        if len(matches) > 1:
            return None  # ambiguous: keep the warning
        if matches:
            (full,) = matches
            refdoc = node["refdoc"]
            found = domain.resolve_xref(
                env, refdoc, app.builder, node["reftype"], full, node, contnode
            )
            if found is None:
                anywhere = domain.resolve_any_xref(env, refdoc, app.builder, full, node, contnode)
                found = anywhere[0][1] if anywhere else None
            return found
    return None


def setup(app: Any) -> None:
    """Register the two hooks described in the module docstring."""
    # After napoleon (priority 500) has rewritten the docstring.
    app.connect("autodoc-process-docstring", _restore_inline_text, priority=600)
    app.connect("missing-reference", _resolve_smtpsec_alias)
