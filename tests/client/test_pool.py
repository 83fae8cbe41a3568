"""``smtpsec.Pool``: real threads, a real fork, real loopback servers.

What the server saw (its per-connection captures) is the evidence: how many
connections, how many at once, which messages on which connection. No test
looks at a clock; the rate limiter's arithmetic is checked with a given clock.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

import smtpsec
from poolkit import Admission
from smtpsec import Security
from smtpsec._engine import PoolLimits, RateLimiter, Slots, is_connection_limit
from smtpsec.testing import CA, ServerSession, SMTPServer
from smtpsec.testing.plugin import ServerFactory

USER, PASSWORD = "ann", "pool-Pa55word"


def message(n: int) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "ann@example.test", "bob@example.test", f"m{n}"
    msg.set_content(f"message {n}\n")
    return msg


def subjects(srv: SMTPServer) -> list[str]:
    out = []
    for m in srv.messages:
        for line in m.data.split(b"\r\n"):
            if line.startswith(b"Subject: "):
                out.append(line[9:].decode())
    return out


@pytest.fixture
def options(smtpsec_ca: CA, tmp_path: Path) -> dict[str, Any]:
    cafile = smtpsec_ca.write_cafile(tmp_path / "ca.pem")
    return {
        "security": Security.IMPLICIT_TLS,
        "policy": smtpsec.Policy(cafile=cafile),
        "username": USER,
        "password": PASSWORD,
        "timeout": 10.0,
    }


def test_threads_share_at_most_size_connections(
    smtpsec_server: ServerFactory, options: dict[str, Any]
) -> None:
    admission = Admission()
    srv = smtpsec_server(Security.IMPLICIT_TLS, users={USER: PASSWORD}, on_command=admission)
    with smtpsec.Pool("localhost", srv.port, size=3, **options) as pool:
        with ThreadPoolExecutor(max_workers=8) as executor:
            results = list(executor.map(lambda n: pool.send(message(n)), range(40)))
        assert pool.open_connections <= 3
    assert all(isinstance(r, smtpsec.SendResult) for r in results)
    assert len(srv.messages) == 40
    assert sorted(subjects(srv)) == sorted(f"m{n}" for n in range(40))
    assert admission.peak <= 3
    assert len(srv.connections) <= 3
    # Each connection logged in once, however many messages it carried.
    assert all(len(c.auth) == 1 for c in srv.connections)


def test_default_size_is_three(smtpsec_server: ServerFactory, options: dict[str, Any]) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS, users={USER: PASSWORD})
    with smtpsec.Pool("localhost", srv.port, **options) as pool:
        assert pool.size == 3


def test_session_is_reused_and_checked(
    smtpsec_server: ServerFactory, options: dict[str, Any]
) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS, users={USER: PASSWORD})
    with smtpsec.Pool("localhost", srv.port, size=1, health_check_after=0, **options) as pool:
        for n in range(3):
            pool.send(message(n))
    (capture,) = srv.connections
    assert capture.commands_post_tls.count("NOOP") == 2  # before each reuse


def test_max_messages_per_connection_retires_sessions(
    smtpsec_server: ServerFactory, options: dict[str, Any]
) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS, users={USER: PASSWORD})
    with smtpsec.Pool(
        "localhost", srv.port, size=1, max_messages_per_connection=2, **options
    ) as pool:
        for n in range(5):
            pool.send(message(n))
    assert [len(c.messages) for c in srv.connections] == [2, 2, 1]


def test_send_many_batches_and_keeps_order(
    smtpsec_server: ServerFactory, options: dict[str, Any]
) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS, users={USER: PASSWORD})
    with smtpsec.Pool("localhost", srv.port, size=2, **options) as pool:
        outcomes = pool.send_many((message(n) for n in range(12)), batch=5)
    assert [type(o).__name__ for o in outcomes] == ["SendResult"] * 12
    assert subjects(srv) == [f"m{n}" for n in range(12)]


def test_421_at_connect_with_others_open_shrinks_and_waits(
    smtpsec_server: ServerFactory, options: dict[str, Any]
) -> None:
    """A server that admits two connections: the third thread waits, no message fails."""
    admission = Admission(limit=2)
    srv = smtpsec_server(Security.IMPLICIT_TLS, users={USER: PASSWORD}, on_command=admission)
    with smtpsec.Pool("localhost", srv.port, size=3, **options) as pool:
        hold = threading.Barrier(3)

        def send_after_all_started(n: int) -> smtpsec.SendResult:
            with pool.session() as session:
                hold.wait(timeout=10)  # three threads want a session at once
                return session.send(message(n))

        with ThreadPoolExecutor(max_workers=3) as executor:
            first = [executor.submit(send_after_all_started, n) for n in range(2)]
            later = executor.submit(pool.send, message(2))
            hold.wait(timeout=10)
            results = [f.result() for f in first] + [later.result()]
        assert pool.size == 2
    assert all(isinstance(r, smtpsec.SendResult) for r in results)
    assert admission.refused >= 1
    assert sorted(subjects(srv)) == ["m0", "m1", "m2"]


def test_432_to_a_message_with_others_open_is_sent_again_elsewhere(
    smtpsec_server: ServerFactory, options: dict[str, Any]
) -> None:
    """Microsoft 365's concurrent-connection limit, answered to MAIL: resend, shrink."""
    refused_once = threading.Event()

    def limit(session: ServerSession, line: str) -> bytes | None:
        if line.upper().startswith("MAIL") and not refused_once.is_set():
            refused_once.set()
            return b"432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded\r\n"
        return None

    srv = smtpsec_server(Security.IMPLICIT_TLS, users={USER: PASSWORD}, on_command=limit)
    with smtpsec.Pool("localhost", srv.port, size=2, **options) as pool:
        # Two sessions open, then the message meets the limit on one of them.
        with pool.session() as a, pool.session() as b:
            assert not a.closed and not b.closed
        result = pool.send(message(1))
        assert pool.size == 1
    assert result.accepted == ("bob@example.test",)
    assert subjects(srv) == ["m1"]


def test_432_on_the_only_connection_is_the_outcome(
    smtpsec_server: ServerFactory, options: dict[str, Any]
) -> None:
    def limit(session: ServerSession, line: str) -> bytes | None:
        if line.upper().startswith("MAIL"):
            return b"432 4.3.2 concurrent connections limit exceeded\r\n"
        return None

    srv = smtpsec_server(Security.IMPLICIT_TLS, users={USER: PASSWORD}, on_command=limit)
    with smtpsec.Pool("localhost", srv.port, size=2, **options) as pool:
        with pytest.raises(smtpsec.SenderRefused) as info:
            pool.send(message(1))
    assert info.value.code == 432
    assert srv.messages == []


def test_closed_pool_refuses_work_and_wakes_waiters(
    smtpsec_server: ServerFactory, options: dict[str, Any]
) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS, users={USER: PASSWORD})
    pool = smtpsec.Pool("localhost", srv.port, size=1, **options)
    failures: list[BaseException] = []
    with pool.session():
        waiter = threading.Thread(target=lambda: _record(failures, pool))
        waiter.start()
        pool.close()
        waiter.join(timeout=10)
    assert not waiter.is_alive()
    assert len(failures) == 1 and isinstance(failures[0], smtpsec.ConnectError)
    with pytest.raises(smtpsec.ConnectError, match="closed"):
        pool.send(message(1))
    assert all(c.wait_closed(10) for c in srv.connections)


def _record(failures: list[BaseException], pool: smtpsec.Pool) -> None:
    try:
        pool.send(message(9))
    except smtpsec.SMTPSecError as exc:
        failures.append(exc)


def test_misspelt_or_impossible_limits_fail_at_construction(options: dict[str, Any]) -> None:
    with pytest.raises(TypeError, match="usernme"):
        smtpsec.Pool("localhost", 1, usernme="x")  # type: ignore[call-arg]
    for bad in ({"size": 0}, {"messages_per_minute": 0}, {"max_messages_per_connection": 0}):
        with pytest.raises(smtpsec.PolicyError):
            smtpsec.Pool("localhost", 1, **bad, **options)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_child_after_fork_never_touches_the_parents_connection(
    smtpsec_server: ServerFactory, options: dict[str, Any]
) -> None:
    """A forked worker (gunicorn, Celery prefork) gets its own connection.

    If the child reused the parent's socket, the server would see the child's
    message on the parent's connection, and the parent's next send would
    meet replies out of step.
    """
    srv = smtpsec_server(Security.IMPLICIT_TLS, users={USER: PASSWORD})
    pool = smtpsec.Pool("localhost", srv.port, size=1, **options)
    pool.send(message(1))  # the parent's session is idle in the pool now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, which reports through the pipe
        code = 1
        try:
            result = pool.send(message(2))
            code = 0 if result.accepted else 1
            pool.close()
        finally:
            os.write(write, bytes([code]))
            os._exit(0)
    os.close(write)
    try:
        status = os.read(read, 1)
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert status == b"\x00"
    pool.send(message(3))  # the parent's session still works, in step
    pool.close()
    assert len(srv.connections) == 2
    parent, child = srv.connections
    assert [_subject(m.data) for m in parent.messages] == ["m1", "m3"]
    assert [_subject(m.data) for m in child.messages] == ["m2"]


def _subject(data: bytes) -> str:
    for line in data.split(b"\r\n"):
        if line.startswith(b"Subject: "):
            return line[9:].decode()
    return ""


# --------------------------------------------------------------------------- the rules


def test_rate_limiter_spaces_messages_evenly() -> None:
    limiter = RateLimiter(per_minute=60)  # one a second
    assert limiter.reserve(100.0) == 0.0
    assert limiter.reserve(100.0) == 1.0
    assert limiter.reserve(100.5) == 1.5
    assert limiter.reserve(110.0) == 0.0  # idle time is not saved up for a burst
    assert limiter.reserve(110.0, count=3) == 1.0
    assert limiter.reserve(110.0) == 4.0
    assert RateLimiter(None).reserve(0.0, count=1000) == 0.0


def test_connection_limit_replies() -> None:
    assert is_connection_limit(smtpsec.ReplyError("x", code=421))
    assert is_connection_limit(smtpsec.ReplyError("x", code=432, enhanced_status="4.3.2"))
    assert not is_connection_limit(smtpsec.ReplyError("x", code=432, enhanced_status="4.7.12"))
    assert not is_connection_limit(smtpsec.ReplyError("x", code=451))
    assert not is_connection_limit(smtpsec.ConnectError("x"))


def test_slots_resend_only_what_was_not_accepted() -> None:
    slots: Slots[object] = Slots(PoolLimits(size=3))
    slots.open = 3
    limit = smtpsec.ReplyError("limit", code=421)
    unsent = smtpsec.ConnectError("not sent")
    unknown = smtpsec.DeliveryUnknown("maybe")
    result = object()
    again = slots.to_resend([0, 1, 2, 3, 4], [result, limit, unsent, unknown, unsent])
    assert again == [1, 2, 4]
    assert slots.limit == 2
    lone: Slots[object] = Slots(PoolLimits(size=3))
    lone.open = 1
    assert lone.to_resend([0], [limit]) == []
