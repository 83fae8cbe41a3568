"""TLS session resumption on reconnect: blocking (``session=``) and asyncio.

Resumption must happen when the same host, port and policy reconnect, and
never across a different name or policy; the resumed session is checked like
any other (the report says ``verified`` and ``tls_resumed``).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator

import pytest
from interop_harness import PostfixServer

import smtpsec
import smtpsec.aio
from smtpsec import Security, TLSSessionCache
from smtpsec.testing import CA, SMTPServer


@pytest.fixture(scope="module", params=[ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
def server(request: pytest.FixtureRequest) -> Iterator[SMTPServer]:
    ca = CA.create()
    leaf = ca.issue("localhost", ips=("127.0.0.1",))
    srv = SMTPServer(leaf, ca=ca, tls=Security.IMPLICIT_TLS, max_version=request.param).start()
    yield srv
    srv.stop()


def _policy(srv: SMTPServer) -> smtpsec.Policy:
    return smtpsec.Policy(cadata=srv.ca.cert_pem.decode())


def _reports(
    srv: SMTPServer, hosts: list[str], policies: list[smtpsec.Policy], cache: object
) -> list[smtpsec.SecurityReport]:
    reports = []
    for host, policy in zip(hosts, policies, strict=True):
        with smtpsec.connect(
            host,
            srv.port,
            security=Security.IMPLICIT_TLS,
            policy=policy,
            tls_sessions=cache,  # type: ignore[typeddict-item]
            timeout=10,
        ) as session:
            reports.append(session.report)
    return reports


def test_blocking_reconnect_resumes(server: SMTPServer) -> None:
    policy = _policy(server)
    first, second, third = _reports(server, ["localhost"] * 3, [policy] * 3, TLSSessionCache())
    assert not first.tls_resumed
    assert second.tls_resumed and third.tls_resumed
    assert second.verified and second.confidential and second.spki_pin == first.spki_pin


def test_never_across_names_or_policies(server: SMTPServer) -> None:
    policy = _policy(server)
    cache = TLSSessionCache()
    # Same server, same certificate, but another name: a full handshake.
    _first, other_name = _reports(server, ["localhost", "127.0.0.1"], [policy] * 2, cache)
    assert not other_name.tls_resumed
    other_policy = smtpsec.Policy(cadata=policy.cadata)
    cache.clear()
    _first, other = _reports(server, ["localhost"] * 2, [policy, other_policy], cache)
    assert not other.tls_resumed


def test_none_never_resumes(server: SMTPServer) -> None:
    policy = _policy(server)
    reports = _reports(server, ["localhost"] * 2, [policy] * 2, None)
    assert not any(report.tls_resumed for report in reports)


def test_asyncio_reconnect_resumes(server: SMTPServer) -> None:
    policy = _policy(server)
    cache = TLSSessionCache()

    async def run() -> list[smtpsec.SecurityReport]:
        reports = []
        for _ in range(3):
            async with smtpsec.aio.connect(
                "localhost",
                server.port,
                security=Security.IMPLICIT_TLS,
                policy=policy,
                tls_sessions=cache,
                timeout=10,
            ) as session:
                reports.append(session.report)
        return reports

    first, second, third = asyncio.run(run())
    assert not first.tls_resumed and second.tls_resumed and third.tls_resumed
    assert second.verified


def test_a_pool_resumes_on_its_own(server: SMTPServer) -> None:
    """No option given: the pool's one recipe keeps its own cache."""
    policy = _policy(server)

    async def run() -> list[bool]:
        seen = []
        async with smtpsec.aio.Pool(
            "localhost",
            server.port,
            size=1,
            max_idle=0.0,  # every borrow reconnects
            security=Security.IMPLICIT_TLS,
            policy=policy,
            timeout=10,
        ) as pool:
            for _ in range(3):
                async with pool.session() as session:
                    seen.append(session.report.tls_resumed)
                await asyncio.sleep(0.01)
        return seen

    seen = asyncio.run(run())
    assert seen[0] is False and True in seen[1:]


def test_starttls_resumes_with_postfix(postfix: PostfixServer) -> None:
    policy = smtpsec.Policy(cafile=str(postfix.cafile))
    cache = TLSSessionCache()
    reports = []
    for port, security in [(postfix.starttls_port, Security.STARTTLS)] * 2 + [
        (postfix.implicit_port, Security.IMPLICIT_TLS)
    ] * 2:
        with smtpsec.connect(
            "localhost",
            port,
            security=security,
            username=postfix.user,
            password=postfix.password,
            policy=policy,
            tls_sessions=cache,
            timeout=10,
        ) as session:
            reports.append(session.report)
    assert [r.tls_resumed for r in reports] == [False, True, False, True]
    assert all(r.verified for r in reports)
