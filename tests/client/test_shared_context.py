"""Set-up paid once: connections without a policy share one TLS context.

Loading the default trust store (certifi) costs tens of milliseconds and
hundreds of KiB; every connection that names no policy uses the one shared
:data:`smtpsec.policy.DEFAULT_POLICY`, whose context is built once.
"""

from __future__ import annotations

import smtpsec
from smtpsec._engine import Recipe
from smtpsec.policy import DEFAULT_POLICY
from smtpsec.tls import build_context


def test_connections_without_a_policy_share_the_default_one() -> None:
    first = Recipe.prepare("smtp.example.test", 465, {}, where="connect")
    second = Recipe.prepare("smtp.example.test", 587, {"username": "ann"}, where="send")
    assert first.policy is DEFAULT_POLICY
    assert second.policy is DEFAULT_POLICY


def test_one_context_per_policy_and_host_name_mode() -> None:
    assert build_context(DEFAULT_POLICY) is build_context(DEFAULT_POLICY)
    policy = smtpsec.Policy(min_tls_version=DEFAULT_POLICY.min_tls_version)
    assert build_context(policy) is build_context(policy)
    assert build_context(policy) is not build_context(policy, check_hostname=False)


def test_an_equal_policy_means_one_shared_pool() -> None:
    """Pool.shared keys by value: equal policies (a Django backend per request) share."""
    options = {"policy": smtpsec.Policy(), "username": "ann", "password": "pw"}
    again = {"policy": smtpsec.Policy(), "username": "ann", "password": "pw"}
    try:
        assert smtpsec.Pool.shared("smtp.example.test", 465, **options) is smtpsec.Pool.shared(
            "smtp.example.test", 465, **again
        )
    finally:
        smtpsec.Pool.close_shared()
