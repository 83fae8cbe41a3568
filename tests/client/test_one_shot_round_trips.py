"""Round trips of the one-shot ``smtpsec.send()``, counted by a relay on loopback.

The relay (``benchmarks/proxy.py``, smoke-tested in ``tests/test_benchmarks_smoke.py``)
charges one round trip whenever server bytes follow client bytes. The count is
read when ``send()`` returns, so it holds what the client waited for: the
server's answer to the client's close_notify, which R-8314-3.4-2 lets the
client leave unawaited, comes later. The relay's delay only keeps that order
clear; no timing is asserted.
"""

from __future__ import annotations

import asyncio
import sys
from email.message import EmailMessage
from pathlib import Path

import pytest

import smtpsec
import smtpsec.aio
from smtpsec import Security
from smtpsec.testing import CA, LeafCert, SMTPServer

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.proxy import DelayProxy, Traffic


@pytest.fixture(scope="module")
def policy(smtpsec_ca: CA, tmp_path_factory: pytest.TempPathFactory) -> smtpsec.Policy:
    return smtpsec.Policy(cafile=smtpsec_ca.write_cafile(tmp_path_factory.mktemp("ca") / "ca.pem"))


def _message() -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "ann@example.test", "bob@example.test", "rt"
    msg.set_content("hello\n")
    return msg


@pytest.mark.parametrize(
    ("security", "expected"),
    [
        # TLS handshake, greeting, EHLO, AUTH, MAIL+RCPT+BDAT LAST+QUIT.
        (Security.IMPLICIT_TLS, 5),
        # EHLO, STARTTLS, TLS handshake, Finished+EHLO, AUTH, MAIL+RCPT+BDAT LAST+QUIT.
        (Security.STARTTLS, 6),
    ],
)
@pytest.mark.parametrize("front", ["blocking", "asyncio"])
def test_one_shot_send_waits_for_no_round_trip_after_the_message(
    smtpsec_cert: LeafCert, policy: smtpsec.Policy, security: Security, expected: int, front: str
) -> None:
    """QUIT rides with the message (R-2920-3.1-1) and the server's close_notify is not
    awaited (R-8314-3.4-2): nothing after the transaction's flight costs a round trip,
    with ``smtpsec.send`` or ``smtpsec.aio.send``."""
    with SMTPServer(smtpsec_cert, tls=security, users={"ann": "pw"}) as srv:
        with DelayProxy(("127.0.0.1", srv.port), one_way_delay=0.05) as proxy:
            before = proxy.traffic()
            options: smtpsec.ConnectOptions = {
                "security": security,
                "username": "ann",
                "password": "pw",
                "auth": "PLAIN",
                "policy": policy,
                "timeout": 10,
            }
            port = proxy.address[1]
            if front == "blocking":
                result = smtpsec.send(_message(), host="localhost", port=port, **options)
                spent = proxy.traffic() - before
            else:

                async def one() -> tuple[smtpsec.SendResult, Traffic]:
                    sent = await smtpsec.aio.send(
                        _message(), host="localhost", port=port, **options
                    )
                    return sent, proxy.traffic() - before  # read when the call returns

                result, spent = asyncio.run(one())
            assert proxy.wait_idle(10.0)
        capture = srv.wait_for_connections(1, timeout=10)[0]
    assert result.accepted == ("bob@example.test",)
    assert spent.round_trips == expected
    assert capture.commands_post_tls[-1] == "QUIT"
    assert capture.close_notify  # R-8314-3.4-1: still a clean TLS end
