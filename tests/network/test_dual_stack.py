"""Dual stack, Happy Eyeballs (RFC 8305) and source_address, in namespaces the test makes.

A name with both AAAA and A records (through the client namespace's own
hosts file); one family blackholed (the server gets the SYN but can never
answer). The blocking client (our RFC 8305 loop) and the asyncio client (the
loop's ``happy_eyeballs_delay``) must connect over the other family, and the
report must say which address was used. Nothing here measures time: the
connect timeout (20 s) is far longer than the fallback needs, so a client
without Happy Eyeballs would fail these tests by timing out on the blackhole.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest
from netns import (
    CLIENT_V4,
    CLIENT_V4_EXTRA,
    DUAL_NAME,
    SERVER_V4,
    SERVER_V6,
    Pair,
    inside,
    require,
)

from smtpsec import Security
from smtpsec.testing import SMTPServer

PORT = 2525

_CLIENT = """
import asyncio, json, smtpsec, smtpsec.aio
from smtpsec import smtplib
out = {{}}
with smtpsec.connect({host!r}, {port}, security=smtpsec.Security.PLAINTEXT, timeout=20,
                     happy_eyeballs_delay={delay}, source_address={source!r}) as s:
    out["blocking"] = s.report.address
async def run():
    async with smtpsec.aio.connect({host!r}, {port}, security=smtpsec.Security.PLAINTEXT,
                                   timeout=20, happy_eyeballs_delay={delay},
                                   source_address={source!r}) as s:
        return s.report.address
out["asyncio"] = asyncio.run(run())
print(json.dumps(out))
"""


@pytest.fixture
def pair() -> Iterator[Pair]:
    require()
    with Pair(f"smtpsec-ds{os.getpid()}") as made:
        yield made


def _server(pair: Pair) -> SMTPServer:
    # "::" takes both families (IPV6_V6ONLY is off by default on Linux).
    return inside(
        pair.server, lambda: SMTPServer(tls=Security.PLAINTEXT, host="::", port=PORT).start()
    )


def _client(
    pair: Pair, *, host: str = DUAL_NAME, delay: float = 0.25, source: object = None
) -> dict[str, str]:
    result = pair.run_client(_CLIENT.format(host=host, port=PORT, delay=delay, source=source))
    assert isinstance(result, dict)
    return result


def test_ipv6_blackholed_falls_back_to_ipv4(pair: Pair) -> None:
    pair.serve(v4=True, v6=False)
    srv = _server(pair)
    try:
        used = _client(pair)
    finally:
        srv.stop()
    assert used == {"blocking": f"{SERVER_V4}:{PORT}", "asyncio": f"{SERVER_V4}:{PORT}"}
    peers = {capture.peer[0] for capture in srv.connections}
    assert peers == {f"::ffff:{CLIENT_V4}"}


def test_ipv4_blackholed_uses_ipv6(pair: Pair) -> None:
    pair.serve(v4=False, v6=True)
    srv = _server(pair)
    try:
        used = _client(pair)
    finally:
        srv.stop()
    assert used == {"blocking": f"[{SERVER_V6}]:{PORT}", "asyncio": f"[{SERVER_V6}]:{PORT}"}


def test_both_families_prefer_the_first_and_close_the_loser(pair: Pair) -> None:
    """Delay 0: both attempts start at once; one wins, the other is closed unused."""
    pair.serve()
    srv = _server(pair)
    try:
        used = _client(pair, delay=0.0)
        srv.wait_for_connections(2)
    finally:
        srv.stop()
    assert set(used.values()) <= {f"[{SERVER_V6}]:{PORT}", f"{SERVER_V4}:{PORT}"}
    # Each client sent EHLO on exactly one connection; any other one was closed unused.
    used_connections = [c for c in srv.connections if c.commands]
    assert len(used_connections) == 2


def test_source_address_binds_and_picks_the_family(pair: Pair) -> None:
    """With an IPv4 source address only IPv4 is tried, from that address."""
    pair.serve()
    srv = _server(pair)
    try:
        used = _client(pair, source=(CLIENT_V4_EXTRA, 0))
    finally:
        srv.stop()
    assert used == {"blocking": f"{SERVER_V4}:{PORT}", "asyncio": f"{SERVER_V4}:{PORT}"}
    assert {capture.peer[0] for capture in srv.connections} == {f"::ffff:{CLIENT_V4_EXTRA}"}


def test_dropin_source_address_for_real(pair: Pair) -> None:
    pair.serve()
    srv = _server(pair)
    code = f"""
import json
from smtpsec import smtplib
with smtplib.SMTP({SERVER_V4!r}, {PORT}, source_address=({CLIENT_V4_EXTRA!r}, 0), timeout=20) as c:
    c.noop()
print(json.dumps("ok"))
"""
    try:
        assert pair.run_client(code) == "ok"
    finally:
        srv.stop()
    assert {capture.peer[0] for capture in srv.connections} == {f"::ffff:{CLIENT_V4_EXTRA}"}


def test_loopback_dual_stack_addresses() -> None:
    """On the machine's own loopback: ``::1`` and ``127.0.0.1`` each, reported as used."""
    import smtpsec

    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("NOT TESTED: no IPv6 loopback on this machine")
    for host, expected in (("::1", "[::1]"), ("127.0.0.1", "127.0.0.1")):
        with (
            SMTPServer(tls=Security.PLAINTEXT, host=host) as srv,
            smtpsec.connect(host, srv.port, security=Security.PLAINTEXT, timeout=10) as session,
        ):
            assert session.report.address == f"{expected}:{srv.port}"
