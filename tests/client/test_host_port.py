"""``"host:port"`` in the host argument, as smtplib accepts it.

``connect("localhost:587")`` used to fail with "cannot connect to
localhost:587:465". Now a port written into the host is used when no ``port``
is given, the same port given twice is fine, and two different ports are an
``InvalidArgumentError`` raised before any connection is tried. IPv6 literals
keep their colons: ``"[::1]:587"`` has a port, ``"::1"`` and ``"[::1]"`` do not.
The rule is written once (``smtpsec.policy.split_host_port``); every front end
that takes a host uses it (the CLI's tests are in ``tests/cli``).
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

import smtpsec
import smtpsec.aio
from smtpsec import InvalidArgumentError, Security
from smtpsec.policy import split_host_port
from smtpsec.testing import CA, SMTPServer

MESSAGE = b"From: a@example.test\r\nTo: b@example.test\r\nSubject: x\r\n\r\nhi\r\n"
ENVELOPE = {"sender": "a@example.test", "recipients": ["b@example.test"]}


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("smtp.example.com", None, ("smtp.example.com", None)),
        ("smtp.example.com", 465, ("smtp.example.com", 465)),
        ("smtp.example.com:587", None, ("smtp.example.com", 587)),
        ("smtp.example.com:587", 587, ("smtp.example.com", 587)),
        ("127.0.0.1:2525", None, ("127.0.0.1", 2525)),
        ("[::1]:587", None, ("[::1]", 587)),
        ("[2001:db8::1]:465", 465, ("[2001:db8::1]", 465)),
        ("[::1]", None, ("[::1]", None)),
        ("::1", 25, ("::1", 25)),  # a bare literal's colons are the address's own
        ("2001:db8::25", None, ("2001:db8::25", None)),
    ],
)
def test_split(host: str, port: int | None, expected: tuple[str, int | None]) -> None:
    assert split_host_port(host, port) == expected


@pytest.mark.parametrize(
    ("host", "port", "words"),
    [
        ("smtp.example.com:587", 465, "names port 587, but port=465 was given too"),
        ("[::1]:587", 25, "names port 587, but port=25 was given too"),
        ("smtp.example.com:smtp", None, "does not end in a port number"),
        ("smtp.example.com:", None, "does not end in a port number"),
        ("smtp.example.com:٥٨٧", None, "does not end in a port number"),  # non-ASCII digits
        ("[::1]:", None, "does not end in a port number"),
        (":587", None, "names no host"),
        ("[::1", None, "is not an address literal"),
        ("[::1]587", None, "is not an address literal"),
    ],
)
def test_refused(host: str, port: int | None, words: str) -> None:
    with pytest.raises(InvalidArgumentError, match=words.replace("[", r"\[")) as info:
        split_host_port(host, port)
    assert host in str(info.value)


def test_messages_use_the_callers_words() -> None:
    with pytest.raises(InvalidArgumentError) as info:
        split_host_port("h:1", 2, host_name="--host", port_name="--port ")
    assert str(info.value) == (
        "--host 'h:1' names port 1, but --port 2 was given too; give the port only once"
    )


@pytest.fixture
def cafile(tmp_path: Path, smtpsec_ca: CA) -> str:
    return str(smtpsec_ca.write_cafile(tmp_path / "ca.pem"))


def test_connect_takes_the_port_from_the_host(smtpsec_server, cafile: str) -> None:
    srv = smtpsec_server(Security.STARTTLS)
    policy = smtpsec.Policy(cafile=cafile)
    with smtpsec.connect(f"localhost:{srv.port}", policy=policy, timeout=10) as session:
        # AUTO chose from the port that was written into the host.
        assert session.report.port == srv.port
        assert session.report.host == "localhost"
        session.send(MESSAGE, **ENVELOPE)
    assert len(srv.messages) == 1


def test_send_and_aio_take_it_too(smtpsec_server, cafile: str) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS)
    options = {"security": Security.IMPLICIT_TLS, "policy": smtpsec.Policy(cafile=cafile)}
    smtpsec.send(MESSAGE, **ENVELOPE, host=f"localhost:{srv.port}", timeout=10, **options)

    async def run() -> None:
        await smtpsec.aio.send(
            MESSAGE, **ENVELOPE, host=f"127.0.0.1:{srv.port}", timeout=10, **options
        )
        async with smtpsec.aio.Pool(f"localhost:{srv.port}", size=1, **options) as pool:
            await pool.send(MESSAGE, **ENVELOPE)

    asyncio.run(run())
    assert len(srv.messages) == 3


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="this machine has no IPv6 loopback")
def test_ipv6_literal_with_port(cafile: str, smtpsec_ca: CA) -> None:
    leaf = smtpsec_ca.issue("localhost", ips=("::1",))
    with SMTPServer(leaf, ca=smtpsec_ca, host="::1", tls=Security.IMPLICIT_TLS) as srv:
        with smtpsec.connect(
            f"[::1]:{srv.port}",
            security=Security.IMPLICIT_TLS,
            policy=smtpsec.Policy(cafile=cafile),
            timeout=10,
        ) as session:
            session.send(MESSAGE, **ENVELOPE)
            assert session.report.verified
    assert len(srv.messages) == 1


def test_disagreeing_ports_fail_before_any_connection(smtpsec_server) -> None:
    srv = smtpsec_server(Security.STARTTLS)
    with pytest.raises(InvalidArgumentError, match="port=587 was given too"):
        smtpsec.connect(f"localhost:{srv.port}", 587)
    with pytest.raises(InvalidArgumentError, match="does not end in a port number"):
        smtpsec.connect("localhost:submission")
    assert srv.connections == []  # nothing was even opened
