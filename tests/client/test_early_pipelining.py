"""Early pipelining (``early_pipelining=True``, PIPECONNECT, draft-harris-early-pipe).

A server that advertised ``PIPECONNECT`` over verified TLS is remembered for the
process; the next connection to it sends EHLO and the first AUTH line before the
greeting (implicit TLS) or right after the STARTTLS handshake, and the guard
still judges the real greeting and EHLO reply. Round trips are counted by the
relay of ``benchmarks/proxy.py``; the real Exim side is in tests/interop.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import smtpsec
import smtpsec.aio
from smtpsec import Security
from smtpsec._engine._early import EHLO_REPLIES
from smtpsec.errors import ReplyError
from smtpsec.sansio import Extensions
from smtpsec.testing import CA, DEFAULT_EXTENSIONS, HookSession, LeafCert, SMTPServer

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.proxy import DelayProxy

EARLY = (*DEFAULT_EXTENSIONS, "PIPECONNECT")
HELO = "[127.0.0.1]"
MESSAGE = b"From: ann@example.test\r\nTo: bob@example.test\r\nSubject: early\r\n\r\nhi\r\n"


@pytest.fixture(autouse=True)
def _fresh_memory() -> Iterator[None]:
    EHLO_REPLIES.clear()
    yield
    EHLO_REPLIES.clear()


@pytest.fixture(scope="module")
def policy(smtpsec_ca: CA, tmp_path_factory: pytest.TempPathFactory) -> smtpsec.Policy:
    return smtpsec.Policy(cafile=smtpsec_ca.write_cafile(tmp_path_factory.mktemp("ca") / "ca.pem"))


def _connect(port: int, policy: smtpsec.Policy, security: Security, **extra: bool) -> bool:
    """One session with AUTH; True when it pipelined early."""
    with smtpsec.connect(
        "localhost",
        port,
        security=security,
        username="ann",
        password="pw",
        policy=policy,
        timeout=10,
        early_pipelining=extra.get("early", True),
    ) as session:
        assert session.report.authenticated_as == "ann"
        return session.report.early_pipelining


def _prime(port: int, implicit: bool, extensions: tuple[str, ...]) -> None:
    """Remember a reply as if an earlier session had seen it."""
    items = {line.split()[0]: tuple(line.split()[1:]) for line in extensions}
    EHLO_REPLIES.learn("localhost", port, implicit, HELO, Extensions(items))


@pytest.mark.parametrize("security", [Security.IMPLICIT_TLS, Security.STARTTLS])
def test_the_second_session_pipelines_early(
    smtpsec_cert: LeafCert, policy: smtpsec.Policy, security: Security
) -> None:
    with SMTPServer(smtpsec_cert, tls=security, users={"ann": "pw"}, extensions=EARLY) as srv:
        assert _connect(srv.port, policy, security) is False  # learns
        assert _connect(srv.port, policy, security) is True
        captures = srv.wait_for_connections(2, timeout=10)
    # The early session still said everything, in the usual order.
    assert captures[1].commands_post_tls[:2] == ["EHLO", "AUTH"]
    assert [a.success for a in captures[1].auth] == [True]


def test_it_is_opt_in(smtpsec_cert: LeafCert, policy: smtpsec.Policy) -> None:
    with SMTPServer(smtpsec_cert, users={"ann": "pw"}, extensions=EARLY) as srv:
        for _ in range(2):
            assert _connect(srv.port, policy, Security.IMPLICIT_TLS, early=False) is False
    assert EHLO_REPLIES.get("localhost", srv.port, True, HELO) is None


def test_a_server_without_pipeconnect_is_never_pipelined_early(
    smtpsec_cert: LeafCert, policy: smtpsec.Policy
) -> None:
    with SMTPServer(smtpsec_cert, users={"ann": "pw"}) as srv:
        for _ in range(2):
            assert _connect(srv.port, policy, Security.IMPLICIT_TLS) is False


@pytest.mark.parametrize(
    ("security", "normal", "early"),
    [
        # TLS handshake, greeting, EHLO, AUTH, MAIL+RCPT+BDAT LAST+QUIT; then the
        # greeting, EHLO and AUTH replies come back for one flight.
        (Security.IMPLICIT_TLS, 5, 3),
        # EHLO, STARTTLS, handshake, Finished+EHLO, AUTH, transaction; then
        # EHLO and AUTH go with the Finished.
        (Security.STARTTLS, 6, 5),
    ],
)
def test_early_pipelining_saves_round_trips(
    smtpsec_cert: LeafCert, policy: smtpsec.Policy, security: Security, normal: int, early: int
) -> None:
    with SMTPServer(smtpsec_cert, tls=security, users={"ann": "pw"}, extensions=EARLY) as srv:
        with DelayProxy(("127.0.0.1", srv.port), one_way_delay=0.05) as proxy:
            spent = []
            for _ in range(2):
                before = proxy.traffic()
                result = smtpsec.send(
                    MESSAGE,
                    sender="ann@example.test",
                    recipients=["bob@example.test"],
                    host="localhost",
                    port=proxy.address[1],
                    security=security,
                    username="ann",
                    password="pw",
                    auth="PLAIN",
                    policy=policy,
                    timeout=10,
                    early_pipelining=True,
                )
                spent.append((proxy.traffic() - before).round_trips)
                assert result.accepted == ("bob@example.test",)
                assert proxy.wait_idle(10.0)
        assert len(srv.wait_for_connections(2, timeout=10)) == 2
    assert spent == [normal, early]


def test_a_server_that_stopped_advertising_it_is_forgotten(
    smtpsec_cert: LeafCert, policy: smtpsec.Policy
) -> None:
    """It took the early flight anyway: the session goes on; the next one is normal."""
    with SMTPServer(smtpsec_cert, users={"ann": "pw"}) as srv:
        _prime(srv.port, True, EARLY)
        assert _connect(srv.port, policy, Security.IMPLICIT_TLS) is True
        assert EHLO_REPLIES.get("localhost", srv.port, True, HELO) is None
        assert _connect(srv.port, policy, Security.IMPLICIT_TLS) is False


def test_a_server_that_refuses_the_early_flight_gets_one_normal_connection(
    smtpsec_cert: LeafCert, policy: smtpsec.Policy
) -> None:
    """Like Exim's synchronization error: refused, forgotten, and connected to again."""
    seen: list[int] = []

    def refuse_first_ehlo(session: HookSession, line: str) -> bytes | None:
        if line.upper().startswith("EHLO") and not seen:
            seen.append(1)
            session.close()
            return b"554 5.5.0 SMTP synchronization error\r\n"
        return None

    with SMTPServer(
        smtpsec_cert, users={"ann": "pw"}, extensions=EARLY, on_command=refuse_first_ehlo
    ) as srv:
        _prime(srv.port, True, EARLY)
        assert _connect(srv.port, policy, Security.IMPLICIT_TLS) is False
        captures = srv.wait_for_connections(2, timeout=10)
    assert len(captures) == 2
    assert [a.success for a in captures[0].auth] == []  # the early AUTH was never taken
    assert [a.success for a in captures[1].auth] == [True]
    # The retry did not learn; the next connection will, normally.
    assert EHLO_REPLIES.get("localhost", srv.port, True, HELO) is None


def test_the_guard_still_judges_the_real_greeting(
    smtpsec_cert: LeafCert, policy: smtpsec.Policy
) -> None:
    """A refusing greeting fails as it does without early pipelining (R-LIB-GREET-1)."""
    with SMTPServer(
        smtpsec_cert, users={"ann": "pw"}, extensions=EARLY, greeting=(554, "5.7.1 go away")
    ) as srv:
        _prime(srv.port, True, EARLY)
        with pytest.raises(ReplyError, match="greeted with 554") as caught:
            _connect(srv.port, policy, Security.IMPLICIT_TLS)
        assert caught.value.code == 554
        captures = srv.wait_for_connections(2, timeout=10)
    assert all(not c.messages for c in captures)


def test_an_outdated_auth_offer_is_chosen_again_from_the_real_one(
    smtpsec_cert: LeafCert, policy: smtpsec.Policy
) -> None:
    """The kept reply offered SCRAM only; the server now offers PLAIN and LOGIN."""
    with SMTPServer(smtpsec_cert, users={"ann": "pw"}, extensions=EARLY) as srv:
        _prime(srv.port, True, (*EARLY, "AUTH SCRAM-SHA-256"))
        assert _connect(srv.port, policy, Security.IMPLICIT_TLS) is True
        capture = srv.wait_for_connections(1, timeout=10)[0]
    auth_lines = [line.split()[1] for line in capture.lines_post_tls if line.startswith("AUTH")]
    assert auth_lines == ["SCRAM-SHA-256", "PLAIN"]  # the first was answered 504
    assert [(a.mechanism, a.success) for a in capture.auth] == [("PLAIN", True)]
    kept = EHLO_REPLIES.get("localhost", srv.port, True, HELO)
    assert kept is not None and kept.auth_mechanisms == {"PLAIN", "LOGIN"}


def test_wrong_credentials_are_not_retried(smtpsec_cert: LeafCert, policy: smtpsec.Policy) -> None:
    with SMTPServer(smtpsec_cert, users={"ann": "other"}, extensions=EARLY) as srv:
        _prime(srv.port, True, EARLY)
        with pytest.raises(smtpsec.AuthenticationError):
            _connect(srv.port, policy, Security.IMPLICIT_TLS)
        captures = srv.wait_for_connections(1, timeout=10)
    assert len(captures) == 1
    assert [a.success for a in captures[0].auth] == [False]


def test_never_without_verified_tls(smtpsec_cert: LeafCert) -> None:
    """A pin-only session (no chain verified) neither uses nor feeds the memory."""
    with SMTPServer(smtpsec_cert, users={"ann": "pw"}, extensions=EARLY) as srv:
        _prime(srv.port, True, EARLY)
        unverified = smtpsec.Policy(
            pins={smtpsec_cert.spki_sha256_pin},
            pinned_instead_of_ca=True,
            allow_cleartext_auth=True,
        )
        with pytest.warns(smtpsec.InsecureConfigurationWarning):
            assert _connect(srv.port, unverified, Security.IMPLICIT_TLS) is False
        EHLO_REPLIES.clear()
        with pytest.warns(smtpsec.InsecureConfigurationWarning):
            assert _connect(srv.port, unverified, Security.IMPLICIT_TLS) is False
    assert EHLO_REPLIES.get("localhost", srv.port, True, HELO) is None


def test_asyncio_sessions_pipeline_early_too(
    smtpsec_cert: LeafCert, policy: smtpsec.Policy
) -> None:
    async def two() -> list[bool]:
        used = []
        for _ in range(2):
            async with await smtpsec.aio.connect(
                "localhost",
                srv.port,
                security=Security.IMPLICIT_TLS,
                username="ann",
                password="pw",
                policy=policy,
                timeout=10,
                early_pipelining=True,
            ) as session:
                used.append(session.report.early_pipelining)
        return used

    with SMTPServer(smtpsec_cert, users={"ann": "pw"}, extensions=EARLY) as srv:
        assert asyncio.run(two()) == [False, True]


def test_a_pool_pipelines_its_later_connections_early(
    smtpsec_cert: LeafCert, policy: smtpsec.Policy
) -> None:
    with SMTPServer(smtpsec_cert, users={"ann": "pw"}, extensions=EARLY) as srv:
        _prime(srv.port, True, EARLY)
        with smtpsec.Pool(
            "localhost",
            srv.port,
            security=Security.IMPLICIT_TLS,
            username="ann",
            password="pw",
            policy=policy,
            timeout=10,
            early_pipelining=True,
        ) as pool:
            result = pool.send(MESSAGE, sender="ann@example.test", recipients=["bob@example.test"])
        capture = srv.wait_for_connections(1, timeout=10)[0]
    assert result.accepted == ("bob@example.test",)
    assert capture.commands_post_tls[:2] == ["EHLO", "AUTH"]


def test_the_option_must_be_a_bool() -> None:
    with pytest.raises(smtpsec.InvalidArgumentError, match="early_pipelining"):
        smtpsec.connect("localhost", 1, early_pipelining="yes")  # type: ignore[arg-type]
