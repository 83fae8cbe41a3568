"""SASLprep (RFC 4013), the stringprep profile for user names and passwords.

Built only on the standard library: :mod:`stringprep` holds the RFC 3454 tables
and ``unicodedata.ucd_3_2_0`` the Unicode 3.2 data those tables were cut from.
Strings are prepared as *queries* (RFC 3454 §7): unassigned code points pass,
so a password typed with a newer emoji still works; the server decides.
"""

from __future__ import annotations

import stringprep
import unicodedata
from collections.abc import Callable
from typing import Final

from ..errors import InvalidArgumentError

__all__ = ["saslprep"]

# RFC 4013 §2.3 prohibited output, with a word for the error message. C.1.1 (the
# ASCII space) is absent on purpose: SASLprep allows it.
_PROHIBITED: Final[tuple[tuple[Callable[[str], bool], str], ...]] = (
    (stringprep.in_table_c12, "non-ASCII space"),
    (stringprep.in_table_c21_c22, "control character"),
    (stringprep.in_table_c3, "private-use character"),
    (stringprep.in_table_c4, "non-character code point"),
    (stringprep.in_table_c5, "surrogate code point"),
    (stringprep.in_table_c6, "character inappropriate for plain text"),
    (stringprep.in_table_c7, "character inappropriate for canonical representation"),
    (stringprep.in_table_c8, "display-changing or deprecated character"),
    (stringprep.in_table_c9, "tagging character"),
)


def saslprep(text: str, *, what: str) -> str:
    """Prepare ``text`` with SASLprep (RFC 4013) and return the result.

    Steps: map non-ASCII spaces (C.1.2) to U+0020 and "commonly mapped to
    nothing" characters (B.1, e.g. the soft hyphen U+00AD) to nothing; NFKC;
    refuse the prohibited tables; apply the RFC 3454 §6 bidi rule.

    Args:
        text: the user name or password.
        what: ``"username"`` or ``"password"``, for the error message only (the
            message never quotes the value, which may be secret).

    Raises:
        InvalidArgumentError: a prohibited character or a bidi violation.
    """
    if text.isascii() and text.isprintable():
        return text  # printable ASCII is unchanged by every step; skip the tables
    mapped = "".join(
        " " if stringprep.in_table_c12(ch) else ch for ch in text if not stringprep.in_table_b1(ch)
    )
    prepared = unicodedata.ucd_3_2_0.normalize("NFKC", mapped)
    for ch in prepared:
        for in_table, label in _PROHIBITED:
            if in_table(ch):
                raise InvalidArgumentError(
                    f"the {what} contains a {label}, which SASLprep (RFC 4013) "
                    f"forbids; remove it from the {what}"
                )
    if any(stringprep.in_table_d1(ch) for ch in prepared) and (
        any(stringprep.in_table_d2(ch) for ch in prepared)
        or not stringprep.in_table_d1(prepared[0])
        or not stringprep.in_table_d1(prepared[-1])
    ):
        raise InvalidArgumentError(
            f"the {what} mixes right-to-left and left-to-right text in a way SASLprep "
            f"(RFC 4013 §6) forbids; check the {what} for stray direction characters"
        )
    return prepared
