"""OAuth that keeps working: one fresh token, one retry, when the server refuses a token.

The scripted server knows one valid token per user and answers any other the
way Google does (an error challenge, then ``535``). A provider that implements
``refresh()`` gets exactly one more AUTH with a new token; a plain callable,
which may return the same cached token, gets none.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import smtpsec
import smtpsec.aio
from smtpsec import Security
from smtpsec.auth import RefreshingTokenProvider
from smtpsec.testing import CA
from smtpsec.testing.plugin import ServerFactory

USER = "ann@example.test"


class Provider:
    """A token cache with a refresh, as an MSAL or google-auth wrapper would be."""

    def __init__(self, first: str, *fresh: str) -> None:
        self.current = first
        self.fresh = list(fresh)
        self.calls = 0
        self.refreshes = 0

    def __call__(self) -> str:
        self.calls += 1
        return self.current

    def refresh(self) -> str:
        self.refreshes += 1
        self.current = self.fresh.pop(0)
        return self.current


@pytest.fixture
def oauth(smtpsec_ca: CA, tmp_path: Path) -> dict[str, Any]:
    return {
        "security": Security.IMPLICIT_TLS,
        "username": USER,
        "policy": smtpsec.Policy(cafile=smtpsec_ca.write_cafile(tmp_path / "ca.pem")),
        "timeout": 10.0,
    }


def _server(factory: ServerFactory, mechanism: str = "XOAUTH2") -> Any:
    return factory(
        Security.IMPLICIT_TLS, auth_mechanisms=(mechanism,), tokens={USER: "fresh-token"}
    )


def test_the_provider_protocol_is_structural() -> None:
    assert isinstance(Provider("a"), RefreshingTokenProvider)
    assert not isinstance(lambda: "a", RefreshingTokenProvider)


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
def test_a_refused_token_is_refreshed_once_and_auth_retried(
    smtpsec_server: ServerFactory, oauth: dict[str, Any], mechanism: str
) -> None:
    srv = _server(smtpsec_server, mechanism)
    provider = Provider("expired-token", "fresh-token")
    with smtpsec.connect("localhost", srv.port, token=provider, **oauth) as session:
        assert session.report.mechanism == mechanism
    assert provider.refreshes == 1
    attempts = srv.connections[0].auth
    assert [a.success for a in attempts] == [False, True]


def test_a_plain_callable_gets_no_retry(
    smtpsec_server: ServerFactory, oauth: dict[str, Any]
) -> None:
    srv = _server(smtpsec_server)
    with pytest.raises(smtpsec.AuthenticationError) as info:
        smtpsec.connect("localhost", srv.port, token=lambda: "expired-token", **oauth)
    assert "fresh token" in info.value.hint
    assert len(srv.wait_for_connections(1)[0].auth) == 1


def test_a_refreshed_token_that_is_refused_too_is_the_end(
    smtpsec_server: ServerFactory, oauth: dict[str, Any]
) -> None:
    srv = _server(smtpsec_server)
    provider = Provider("expired-token", "also-wrong", "never-asked")
    with pytest.raises(smtpsec.AuthenticationError):
        smtpsec.connect("localhost", srv.port, token=provider, **oauth)
    assert provider.refreshes == 1  # one retry, never a loop
    assert len(srv.wait_for_connections(1)[0].auth) == 2


def test_asyncio_refreshes_off_the_event_loop(
    smtpsec_server: ServerFactory, oauth: dict[str, Any]
) -> None:
    srv = _server(smtpsec_server)
    loop_threads: list[bool] = []

    class Blocking(Provider):
        def refresh(self) -> str:
            try:
                asyncio.get_running_loop()
                loop_threads.append(True)
            except RuntimeError:
                loop_threads.append(False)  # a worker thread: no loop here
            return super().refresh()

    provider = Blocking("expired-token", "fresh-token")

    async def run() -> str | None:
        async with smtpsec.aio.connect("localhost", srv.port, token=provider, **oauth) as s:
            return s.report.mechanism

    assert asyncio.run(run()) == "XOAUTH2"
    assert loop_threads == [False]


def test_microsoft_365_basic_auth_switch_off_is_explained(
    smtpsec_server: ServerFactory, oauth: dict[str, Any]
) -> None:
    srv = smtpsec_server(
        Security.IMPLICIT_TLS,
        users={USER: "pw"},
        auth_reply=(550, "5.7.30 Basic authentication is not supported for Client Submission."),
    )
    with pytest.raises(smtpsec.AuthenticationError) as info:
        smtpsec.connect("localhost", srv.port, password="pw", **oauth)
    hint = info.value.hint
    assert "Microsoft 365" in hint
    assert "OAuth 2.0" in hint
    assert "token=" in hint  # the native API's words
