"""Early pipelining (``early_pipelining=True``, PIPECONNECT, draft-harris-early-pipe).

A server that advertised ``PIPECONNECT`` over verified TLS is remembered for the
process; the next connection to it sends EHLO and the first AUTH line before the
greeting (implicit TLS) or right after the STARTTLS handshake, and the guard
still judges the real greeting and EHLO reply. Round trips are counted by the
relay of ``benchmarks/proxy.py``; the real Exim side is in tests/interop.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import sys
import warnings
from pathlib import Path

import pytest

import smtpsec
import smtpsec.aio
from smtpsec import Security
from smtpsec._engine._early import EHLO_REPLIES, early_key
from smtpsec._engine._recipe import Recipe
from smtpsec.errors import ReplyError
from smtpsec.sansio import Extensions
from smtpsec.testing import CA, DEFAULT_EXTENSIONS, HookSession, LeafCert, SMTPServer
from smtpsec.transports import SocketTransport

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.proxy import DelayProxy

EARLY = (*DEFAULT_EXTENSIONS, "PIPECONNECT")
#: What such a server's EHLO reply holds (the test server adds AUTH to EARLY).
KEPT = (*EARLY, "AUTH PLAIN LOGIN")
HELO = "[127.0.0.1]"
MESSAGE = b"From: ann@example.test\r\nTo: bob@example.test\r\nSubject: early\r\n\r\nhi\r\n"


@pytest.fixture(scope="module")
def policy(smtpsec_ca: CA, tmp_path_factory: pytest.TempPathFactory) -> smtpsec.Policy:
    return smtpsec.Policy(cafile=smtpsec_ca.write_cafile(tmp_path_factory.mktemp("ca") / "ca.pem"))


def _options(
    policy: smtpsec.Policy, security: Security = Security.IMPLICIT_TLS, *, early: bool = True
) -> smtpsec.ConnectOptions:
    """AUTH as ann over ``security``, trusting the test CA, with or without early pipelining."""
    return {
        "security": security,
        "username": "ann",
        "password": "pw",
        "policy": policy,
        "timeout": 10,
        "early_pipelining": early,
    }


def _connect(port: int, policy: smtpsec.Policy, security: Security, **extra: bool) -> bool:
    """One session with AUTH; True when it pipelined early."""
    options = _options(policy, security, early=extra.get("early", True))
    with smtpsec.connect("localhost", port, **options) as session:
        assert session.report.authenticated_as == "ann"
        return session.report.early_pipelining


def _key(port: int, policy: smtpsec.Policy, security: Security = Security.IMPLICIT_TLS) -> object:
    """Where the memory keeps this server's reply for these options."""
    options = {"security": security, "policy": policy}
    recipe = Recipe.prepare("localhost", port, options, where="test")
    return early_key(recipe, recipe.plan.attempts[0])


def _prime(port: int, policy: smtpsec.Policy, extensions: tuple[str, ...]) -> None:
    """Remember a reply as if an earlier session had seen it."""
    items = {line.split()[0]: tuple(line.split()[1:]) for line in extensions}
    EHLO_REPLIES.learn(_key(port, policy), Extensions(items))


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
    assert EHLO_REPLIES.get(_key(srv.port, policy)) is None


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
                    auth="PLAIN",
                    **_options(policy, security),
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
        _prime(srv.port, policy, KEPT)
        assert _connect(srv.port, policy, Security.IMPLICIT_TLS) is True
        assert EHLO_REPLIES.get(_key(srv.port, policy)) is None
        assert _connect(srv.port, policy, Security.IMPLICIT_TLS) is False


def test_a_server_that_refuses_the_early_flight_gets_one_normal_connection(
    smtpsec_cert: LeafCert, policy: smtpsec.Policy
) -> None:
    """Like Exim's synchronization error: refused, connected to again, never tried early again.

    The retry's guard is a new one; its warnings are not repeated (a lone pin
    on the server's key warns once per connect).
    """
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
        pinned = smtpsec.Policy(cafile=policy.cafile, pins={smtpsec_cert.spki_sha256_pin})
        _prime(srv.port, pinned, KEPT)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert _connect(srv.port, pinned, Security.IMPLICIT_TLS) is False
        assert len([w for w in caught if "renewal" in str(w.message)]) == 1
        captures = srv.wait_for_connections(2, timeout=10)
        assert len(captures) == 2
        assert [a.success for a in captures[0].auth] == []  # the early AUTH was never taken
        assert [a.success for a in captures[1].auth] == [True]
        # Refused for the life of the process, although it keeps advertising PIPECONNECT.
        for _ in range(2):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                assert _connect(srv.port, pinned, Security.IMPLICIT_TLS) is False
        assert EHLO_REPLIES.get(_key(srv.port, pinned)) is None


def test_the_guard_still_judges_the_real_greeting(
    smtpsec_cert: LeafCert, policy: smtpsec.Policy
) -> None:
    """A refusing greeting fails as it does without early pipelining (R-LIB-GREET-1)."""
    with SMTPServer(
        smtpsec_cert, users={"ann": "pw"}, extensions=EARLY, greeting=(554, "5.7.1 go away")
    ) as srv:
        _prime(srv.port, policy, KEPT)
        with pytest.raises(ReplyError, match="greeted with 554") as caught:
            _connect(srv.port, policy, Security.IMPLICIT_TLS)
        assert caught.value.code == 554
        captures = srv.wait_for_connections(1, timeout=10)
    # A genuine refusal is not retried, and nothing was delivered.
    assert len(captures) == 1
    assert not captures[0].messages
    # Forgotten, not marked: the server may be learnt again once it greets.
    key = _key(srv.port, policy)
    assert EHLO_REPLIES.get(key) is None
    EHLO_REPLIES.learn(key, Extensions({"PIPELINING": (), "PIPECONNECT": ()}))
    assert EHLO_REPLIES.get(key) is not None


def test_an_outdated_auth_offer_is_chosen_again_from_the_real_one(
    smtpsec_cert: LeafCert, policy: smtpsec.Policy
) -> None:
    """The kept reply offered SCRAM only; the server now offers PLAIN and LOGIN."""
    with SMTPServer(smtpsec_cert, users={"ann": "pw"}, extensions=EARLY) as srv:
        _prime(srv.port, policy, (*EARLY, "AUTH SCRAM-SHA-256"))
        assert _connect(srv.port, policy, Security.IMPLICIT_TLS) is True
        capture = srv.wait_for_connections(1, timeout=10)[0]
    auth_lines = [line.split()[1] for line in capture.lines_post_tls if line.startswith("AUTH")]
    assert auth_lines == ["SCRAM-SHA-256", "PLAIN"]  # the first was answered 504
    assert [(a.mechanism, a.success) for a in capture.auth] == [("PLAIN", True)]
    kept = EHLO_REPLIES.get(_key(srv.port, policy))
    assert kept is not None and kept.auth_mechanisms == {"PLAIN", "LOGIN"}


def test_wrong_credentials_are_not_retried(smtpsec_cert: LeafCert, policy: smtpsec.Policy) -> None:
    with SMTPServer(smtpsec_cert, users={"ann": "other"}, extensions=EARLY) as srv:
        _prime(srv.port, policy, KEPT)
        with pytest.raises(smtpsec.AuthenticationError):
            _connect(srv.port, policy, Security.IMPLICIT_TLS)
        captures = srv.wait_for_connections(1, timeout=10)
    assert len(captures) == 1
    assert [a.success for a in captures[0].auth] == [False]


def test_never_without_verified_tls(smtpsec_cert: LeafCert) -> None:
    """A pin-only session (no chain verified) neither uses nor feeds the memory."""
    unverified = smtpsec.Policy(
        pins={smtpsec_cert.spki_sha256_pin},
        pinned_instead_of_ca=True,
        allow_cleartext_auth=True,
    )
    with SMTPServer(smtpsec_cert, users={"ann": "pw"}, extensions=EARLY) as srv:
        _prime(srv.port, unverified, KEPT)  # as if it had been learnt: still not used
        with pytest.warns(smtpsec.InsecureConfigurationWarning):
            assert _connect(srv.port, unverified, Security.IMPLICIT_TLS) is False
        EHLO_REPLIES.clear()
        with pytest.warns(smtpsec.InsecureConfigurationWarning):
            assert _connect(srv.port, unverified, Security.IMPLICIT_TLS) is False
    assert EHLO_REPLIES.get(_key(srv.port, unverified)) is None  # and not learnt


def test_asyncio_sessions_pipeline_early_too(
    smtpsec_cert: LeafCert, policy: smtpsec.Policy
) -> None:
    async def two() -> list[bool]:
        used = []
        for _ in range(2):
            async with await smtpsec.aio.connect(
                "localhost", srv.port, **_options(policy)
            ) as session:
                used.append(session.report.early_pipelining)
        return used

    with SMTPServer(smtpsec_cert, users={"ann": "pw"}, extensions=EARLY) as srv:
        assert asyncio.run(two()) == [False, True]


def test_a_pool_pipelines_its_later_connections_early(
    smtpsec_cert: LeafCert, policy: smtpsec.Policy
) -> None:
    with SMTPServer(smtpsec_cert, users={"ann": "pw"}, extensions=EARLY) as srv:
        _prime(srv.port, policy, KEPT)
        with smtpsec.Pool("localhost", srv.port, **_options(policy)) as pool:
            with pool.session() as session:
                assert session.report.early_pipelining
            result = pool.send(MESSAGE, sender="ann@example.test", recipients=["bob@example.test"])
    assert result.accepted == ("bob@example.test",)


def test_the_option_must_be_a_bool() -> None:
    with pytest.raises(smtpsec.InvalidArgumentError, match="early_pipelining"):
        smtpsec.connect("localhost", 1, early_pipelining="yes")  # type: ignore[arg-type]


def test_wrong_credentials_are_not_retried_when_the_offer_grew(
    smtpsec_cert: LeafCert, policy: smtpsec.Policy
) -> None:
    """The kept reply offered PLAIN; the server now offers PLAIN and LOGIN: PLAIN's refusal
    is final (no second mechanism after a failed login)."""
    with SMTPServer(smtpsec_cert, users={"ann": "other"}, extensions=EARLY) as srv:
        _prime(srv.port, policy, (*EARLY, "AUTH PLAIN"))
        with pytest.raises(smtpsec.AuthenticationError):
            _connect(srv.port, policy, Security.IMPLICIT_TLS)
        captures = srv.wait_for_connections(1, timeout=10)
    assert [(a.mechanism, a.success) for a in captures[0].auth] == [("PLAIN", False)]


def test_a_server_that_stopped_offering_auth_says_so(
    smtpsec_cert: LeafCert, policy: smtpsec.Policy
) -> None:
    """Exim answers an AUTH it no longer advertises with 503: not session fixation here,
    but the same CapabilityError a normal connection gives."""
    with SMTPServer(
        smtpsec_cert,
        users={"ann": "pw"},
        extensions=EARLY,
        auth_mechanisms=(),
        auth_reply=(503, "5.5.1 AUTH command used when not advertised"),
    ) as srv:
        _prime(srv.port, policy, (*EARLY, "AUTH PLAIN"))
        with pytest.raises(smtpsec.CapabilityError, match="offers no AUTH"):
            _connect(srv.port, policy, Security.IMPLICIT_TLS)


def test_a_server_that_lets_early_input_time_out_is_not_tried_early_again(
    smtpsec_cert: LeafCert, policy: smtpsec.Policy
) -> None:
    def silent(_session: HookSession, _line: str) -> bytes:
        return b""  # greets, then answers nothing

    with SMTPServer(smtpsec_cert, users={"ann": "pw"}, extensions=EARLY, on_command=silent) as srv:
        _prime(srv.port, policy, KEPT)
        options = _options(policy)
        options["timeout"] = 1.5
        with pytest.raises(smtpsec.TimeoutError):
            smtpsec.connect("localhost", srv.port, **options)
        assert len(srv.wait_for_connections(1, timeout=10)) == 1  # not retried
    key = _key(srv.port, policy)
    assert EHLO_REPLIES.get(key) is None
    EHLO_REPLIES.learn(key, Extensions({"PIPELINING": (), "PIPECONNECT": ()}))
    assert EHLO_REPLIES.get(key) is None  # refused: not learnt again


def test_a_reply_learnt_under_one_policy_does_not_steer_another(
    smtpsec_cert: LeafCert, policy: smtpsec.Policy, smtpsec_ca: CA, tmp_path: Path
) -> None:
    """Another trust configuration (here another CA file) learns on its own."""
    other = smtpsec.Policy(cafile=smtpsec_ca.write_cafile(tmp_path / "other.pem"))
    with SMTPServer(smtpsec_cert, users={"ann": "pw"}, extensions=EARLY) as srv:
        assert _connect(srv.port, policy, Security.IMPLICIT_TLS) is False
        assert _connect(srv.port, other, Security.IMPLICIT_TLS) is False
        assert _connect(srv.port, policy, Security.IMPLICIT_TLS) is True


def test_a_callers_transport_cannot_pipeline_early(policy: smtpsec.Policy) -> None:
    sock = socket.socket()
    try:
        with pytest.raises(smtpsec.PolicyError, match="early_pipelining=True needs connect"):
            smtpsec.connect_transport(
                SocketTransport(sock), "localhost", 465, policy=policy, early_pipelining=True
            )
    finally:
        sock.close()


def test_a_server_that_stopped_advertising_it_and_dropped_the_early_auth_gets_a_retry(
    smtpsec_cert: LeafCert, policy: smtpsec.Policy
) -> None:
    """Its real EHLO reply lacks PIPECONNECT and it hangs up on the AUTH sent early
    (Postfix's "improper command pipelining" does that): one normal connection follows."""
    seen: list[int] = []

    def hang_up_on_first_auth(session: HookSession, line: str) -> bytes | None:
        if line.upper().startswith("AUTH") and not seen:
            seen.append(1)
            session.close()
            return b""  # hang up, unanswered
        return None

    with SMTPServer(smtpsec_cert, users={"ann": "pw"}, on_command=hang_up_on_first_auth) as srv:
        _prime(srv.port, policy, KEPT)
        assert _connect(srv.port, policy, Security.IMPLICIT_TLS) is False
        captures = srv.wait_for_connections(2, timeout=10)
    assert len(captures) == 2
    assert [a.success for a in captures[1].auth] == [True]
    key = _key(srv.port, policy)
    EHLO_REPLIES.learn(key, Extensions({"PIPELINING": (), "PIPECONNECT": ()}))
    assert EHLO_REPLIES.get(key) is None  # refused for the process


def test_a_policy_that_cannot_be_a_key_just_does_not_pipeline_early(
    smtpsec_cert: LeafCert, smtpsec_ca: CA
) -> None:
    """``cadata`` as a bytearray works as before; no TypeError escapes."""
    der = ssl.PEM_cert_to_DER_cert(smtpsec_ca.cert_pem.decode())
    unhashable = smtpsec.Policy(cadata=bytearray(der))  # type: ignore[arg-type]
    with SMTPServer(smtpsec_cert, users={"ann": "pw"}, extensions=EARLY) as srv:
        assert _connect(srv.port, unhashable, Security.IMPLICIT_TLS) is False
        assert _connect(srv.port, unhashable, Security.IMPLICIT_TLS) is False
