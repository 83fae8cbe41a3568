"""The AUTH failure hints read as sentences in every front end's words.

The provider hint ("use an app password, or OAuth 2.0 ...") takes the front
end's way of passing a token, which may carry parentheses of its own; wrapped
in another pair it read "(pass token= (a token, or ...))".
"""

from __future__ import annotations

import pytest

from smtpsec._advice import DROP_IN, NATIVE, Advice
from smtpsec.auth import auth_failure_hint


def _depth(text: str) -> int:
    deepest = depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        deepest = max(deepest, depth)
    return deepest


@pytest.mark.parametrize("advice", [NATIVE, DROP_IN], ids=["native", "drop-in"])
@pytest.mark.parametrize(("code", "enhanced"), [(534, "5.7.9"), (535, "5.7.8")])
def test_provider_hint_has_no_nested_parentheses(advice: Advice, code: int, enhanced: str) -> None:
    hint = auth_failure_hint(code, enhanced, "PLAIN", advice=advice)
    assert advice.use_oauth in hint
    assert _depth(hint) == 1, hint
