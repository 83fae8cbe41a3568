"""EHLO reply -> immutable, case-insensitive extensions mapping (RFC 5321 §4.1.1.1)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Final

from ..errors import LocalProtocolError
from ._replies import Reply

__all__ = ["Extensions", "is_mechanism_name", "parse_ehlo"]

#: RFC 5321 §4.1.1.1: ehlo-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-").
_KEYWORD_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*", re.ASCII)
#: ehlo-param = 1*(%d33-126): printable ASCII, no space.
_PARAM_RE: Final = re.compile(r"[\x21-\x7e]+", re.ASCII)
#: RFC 4422 §3.1: sasl-mech = 1*20mech-char (upper-case letters, digits, "-", "_").
_MECH_RE: Final = re.compile(r"[A-Z0-9_-]{1,20}", re.ASCII)
#: RFC 1870 SIZE value: decimal digits only. 20 digits already exceed any real
#: limit, and the bound keeps int() away from absurdly long strings (R-1870-1).
_SIZE_RE: Final = re.compile(r"[0-9]{1,20}", re.ASCII)


def is_mechanism_name(name: str) -> bool:
    """Whether ``name`` is an RFC 4422 §3.1 SASL mechanism name (upper case).

    The one spelling of that rule: 1 to 20 upper-case letters, digits, "-" or
    "_". Servers compare names case-insensitively, so callers that accept any
    case pass ``name.upper()``.
    """
    return _MECH_RE.fullmatch(name) is not None


def _merge(into: dict[str, tuple[str, ...]], key: str, params: Iterable[str]) -> None:
    """Add ``params`` under ``key`` (upper-cased), keeping order and no duplicates."""
    key = key.upper()
    merged = list(into.get(key, ()))
    for param in params:
        if param not in merged:
            merged.append(param)
    into[key] = tuple(merged)


class Extensions(Mapping[str, tuple[str, ...]]):
    """The server's ESMTP extensions: ``KEYWORD -> parameters``.

    Keys are case-insensitive (stored upper-case); values are the parameters as
    given. ``AUTH=LOGIN PLAIN`` (legacy form) is merged into ``AUTH``. Immutable
    and hashable-free; build it with :func:`parse_ehlo` or ``Extensions({...})``.

    Args:
        items: keyword -> parameters. Keys differing only in case, and the
            legacy ``"AUTH="`` key, are merged (parameters keep their first
            position; duplicates are dropped).
    """

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, tuple[str, ...]] | None = None) -> None:
        merged: dict[str, tuple[str, ...]] = {}
        for key, params in (items or {}).items():
            _merge(merged, "AUTH" if key.upper() == "AUTH=" else key, params)
        self._items: Final = merged

    def __getitem__(self, key: str) -> tuple[str, ...]:
        if not isinstance(key, str):
            raise KeyError(key)
        return self._items[key.upper()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.upper() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Extensions({self._items!r})"

    @property
    def auth_mechanisms(self) -> frozenset[str]:
        """Upper-case SASL mechanism names offered (``AUTH`` and legacy ``AUTH=``).

        Names that are not valid SASL mechanism names (RFC 4422 §3.1) are left out.
        """
        names = (param.upper() for param in self._items.get("AUTH", ()))
        return frozenset(name for name in names if is_mechanism_name(name))

    @property
    def max_size(self) -> int | None:
        """The ``SIZE`` limit in octets; ``None`` when absent, 0, or malformed.

        Only plain decimal digits (at most 20) count; ``-1``, ``abc``, ``1e6``,
        Unicode digits and 21+ digit values all mean "no declared limit".
        """
        params = self._items.get("SIZE", ())
        if not params or not _SIZE_RE.fullmatch(params[0]):
            return None
        return int(params[0]) or None


def _parse_line(line: str) -> tuple[str, tuple[str, ...]] | None:
    """One extension line -> ``(KEYWORD, params)``, or ``None`` when malformed."""
    words = line.split(" ")
    words = [word for word in words if word]
    if not words:
        return None
    keyword, params = words[0], words[1:]
    if keyword.upper().startswith("AUTH="):
        # Legacy form (pre-RFC 2554 servers): "AUTH=LOGIN PLAIN".
        first = keyword[len("AUTH=") :]
        keyword = "AUTH"
        params = [first, *params] if first else params
    if not _KEYWORD_RE.fullmatch(keyword):
        return None
    if not all(_PARAM_RE.fullmatch(param) for param in params):
        return None
    if keyword.upper() == "SMTPUTF8":
        # RFC 6531 §3.1 item 3: parameters after SMTPUTF8 are ignored.
        params = []
    return keyword, tuple(params)


def parse_ehlo(reply: Reply) -> tuple[str, Extensions]:
    """Split a 250 EHLO reply into the server's name (first line) and extensions.

    Malformed extension lines (keyword not matching ``[A-Za-z0-9][A-Za-z0-9-]*``,
    or a parameter that is not printable ASCII) are skipped, never fatal.
    Parameters after ``SMTPUTF8`` are ignored (R-6531-3.1-1). Any 2yz code is
    accepted (unknown codes are judged by their first digit, R-5321-4.2-2).

    Args:
        reply: the server's reply to EHLO.

    Returns:
        ``(server name, extensions)``; the name is the first word of the first
        line (``""`` when that line is empty).

    Raises:
        LocalProtocolError: ``reply`` is not a success (2yz) reply; check the
            code before treating the reply as a capability list.
    """
    if not reply.is_success:
        raise LocalProtocolError(
            f"parse_ehlo() needs a successful (2yz) EHLO reply, got {reply.code}; "
            "check the reply code before parsing the capabilities"
        )
    first = reply.lines[0].split() if reply.lines else []
    name = first[0] if first else ""
    found: dict[str, tuple[str, ...]] = {}
    for line in reply.lines[1:]:
        parsed = _parse_line(line)
        if parsed is not None:
            _merge(found, *parsed)
    return name, Extensions(found)
