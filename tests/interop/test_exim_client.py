"""Early pipelining against a real Exim 4.96, which advertises PIPECONNECT.

Exim's main log says for each accepted message whether the client pipelined
early (``L*`` in the ``<=`` line): that is the server's own word, not the
client's. The first session learns that Exim advertises PIPECONNECT; later ones
with ``early_pipelining=True`` send EHLO and ``AUTH PLAIN`` before the greeting
(implicit TLS) or with the STARTTLS handshake's last flight.
"""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from typing import Any

import pytest
from exim_server import DOMAIN, message_id

import smtpsec
import smtpsec.aio
from smtpsec import Security
from smtpsec._engine._early import EHLO_REPLIES, early_key
from smtpsec._engine._recipe import Recipe
from smtpsec.sansio import Extensions


def _message(n: int) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"] = f"ann@{DOMAIN}", f"bob@{DOMAIN}"
    msg["Subject"] = f"early {n}"
    msg.set_content(f"message {n}\n")
    return msg


def _options(exim: Any, security: Security, *, early: bool = True) -> dict[str, Any]:
    return {
        "host": "localhost",
        "port": exim.implicit_port if security is Security.IMPLICIT_TLS else exim.starttls_port,
        "security": security,
        "username": exim.user,
        "password": exim.password,
        "auth": "PLAIN",
        "policy": smtpsec.Policy(cafile=str(exim.cafile)),
        "timeout": 20.0,
        "early_pipelining": early,
    }


@pytest.mark.parametrize("security", [Security.IMPLICIT_TLS, Security.STARTTLS])
def test_exim_sees_the_second_one_shot_pipeline_early(exim: Any, security: Security) -> None:
    ids = []
    for n in range(3):
        result = smtpsec.send(_message(n), **_options(exim, security))
        assert result.accepted == (f"bob@{DOMAIN}",)
        ids.append(message_id(result.text))
    used = [exim.early_pipelining_used(i) for i in ids]
    assert used == [False, True, True]
    for n, i in enumerate(ids):
        (copy,) = exim.delivered(i)
        assert f"Subject: early {n}".encode() in copy
        assert f"message {n}".encode() in copy


def test_without_the_option_exim_never_sees_it(exim: Any) -> None:
    ids = [
        message_id(
            smtpsec.send(_message(n), **_options(exim, Security.IMPLICIT_TLS, early=False)).text
        )
        for n in range(2)
    ]
    assert [exim.early_pipelining_used(i) for i in ids] == [False, False]


def test_the_session_report_says_so(exim: Any) -> None:
    options = _options(exim, Security.IMPLICIT_TLS)
    host, port = options.pop("host"), options.pop("port")
    reports = []
    for _ in range(2):
        with smtpsec.connect(host, port, **options) as session:
            reports.append(session.report)
    assert [r.early_pipelining for r in reports] == [False, True]
    assert all(r.verified and r.mechanism == "PLAIN" for r in reports)


def test_asyncio_sends_pipeline_early_with_exim(exim: Any) -> None:
    async def three() -> list[str]:
        results = [
            await smtpsec.aio.send(_message(n), **_options(exim, Security.IMPLICIT_TLS))
            for n in range(3)
        ]
        return [message_id(r.text) for r in results]

    ids = asyncio.run(three())
    assert [exim.early_pipelining_used(i) for i in ids] == [False, True, True]


def test_an_exim_that_stopped_advertising_it_is_forgotten(exim_without_pipeconnect: Any) -> None:
    """Kept from an earlier session, the reply says PIPECONNECT; this Exim no longer does.

    Over implicit TLS Exim still answers the early flight; the message goes
    through, and the server is forgotten, so the next session waits as usual.
    """
    exim = exim_without_pipeconnect
    options = _options(exim, Security.IMPLICIT_TLS)
    host, port = options.pop("host"), options.pop("port")
    recipe = Recipe.prepare(host, port, options, where="test")
    key = early_key(recipe, recipe.plan.attempts[0])
    EHLO_REPLIES.learn(key, Extensions({"PIPELINING": (), "PIPECONNECT": (), "AUTH": ("PLAIN",)}))
    first = smtpsec.send(_message(0), **_options(exim, Security.IMPLICIT_TLS))
    assert EHLO_REPLIES.get(key) is None
    second = smtpsec.send(_message(1), **_options(exim, Security.IMPLICIT_TLS))
    ids = [message_id(first.text), message_id(second.text)]
    assert [exim.early_pipelining_used(i) for i in ids] == [False, False]
    assert all(exim.delivered(i) for i in ids)
