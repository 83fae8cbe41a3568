"""``ack_promptly``: TCP_QUICKACK after a TLS handshake, where the platform has it.

The wall-clock effect (a ~40 ms stall before Postfix's greeting on Linux) is
measured in benchmarks/one_shot.py and docs/performance.md, never asserted here.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

import smtpsec
import smtpsec.aio
from smtpsec import Security
from smtpsec.testing import CA, LeafCert, SMTPServer
from smtpsec.transports import _asyncio, _socket
from smtpsec.transports._socket import ack_promptly

QUICKACK = getattr(socket, "TCP_QUICKACK", None)


@pytest.mark.skipif(QUICKACK is None, reason="no TCP_QUICKACK on this platform")
def test_a_tcp_socket_acknowledges_at_once() -> None:
    assert QUICKACK is not None
    with socket.create_server(("127.0.0.1", 0)) as server:
        with socket.create_connection(server.getsockname()) as client:
            peer, _ = server.accept()
            with peer:
                client.setsockopt(socket.IPPROTO_TCP, QUICKACK, 0)
                assert client.getsockopt(socket.IPPROTO_TCP, QUICKACK) == 0
                ack_promptly(client)
                assert client.getsockopt(socket.IPPROTO_TCP, QUICKACK) == 1


def test_sockets_without_tcp_and_no_socket_are_left_alone() -> None:
    left, right = socket.socketpair()
    with left, right:
        ack_promptly(left)  # a Unix socket has no TCP options: nothing happens
        left.sendall(b"x")
        assert right.recv(1) == b"x"
    ack_promptly(None)  # a caller's transport without a socket


@pytest.mark.parametrize("security", [Security.IMPLICIT_TLS, Security.STARTTLS])
def test_every_handshake_asks_for_prompt_acks(
    monkeypatch: pytest.MonkeyPatch,
    smtpsec_cert: LeafCert,
    smtpsec_ca: CA,
    tmp_path: Path,
    security: Security,
) -> None:
    """Both transports call it on the TLS socket, right after each handshake."""
    calls: list[object] = []

    def spy(sock: socket.socket | None) -> None:
        calls.append(sock)
        ack_promptly(sock)

    monkeypatch.setattr(_socket, "ack_promptly", spy)
    monkeypatch.setattr(_asyncio, "ack_promptly", spy)
    policy = smtpsec.Policy(cafile=smtpsec_ca.write_cafile(tmp_path / "ca.pem"))

    async def aio_connect(port: int) -> None:
        session = await smtpsec.aio.connect("localhost", port, security=security, policy=policy)
        await session.close()

    with SMTPServer(smtpsec_cert, tls=security) as srv:
        smtpsec.connect("localhost", srv.port, security=security, policy=policy).close()
        assert len(calls) == 1
        asyncio.run(aio_connect(srv.port))
    assert len(calls) == 2
    assert all(sock is not None for sock in calls)
