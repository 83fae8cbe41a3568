"""The sending engine against aiosmtpd, an independent server implementation: lock-step DATA
(aiosmtpd offers neither PIPELINING nor CHUNKING), dot-transparency, smuggling, SIZE and
SMTPUTF8 as a third party parses them (R-2920-3.1-1, R-5321-2.3.8-1, R-5321-4.5.2-1,
R-1870-2, R-6531-3.4-1)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sending_helpers import CANARY, message

import smtpsec
from netutil import start_aiosmtpd
from smtpsec.testing import LeafCert


class _Sink:
    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 2.0.0 queued"


@pytest.fixture
def aiosmtpd(smtpsec_cert: LeafCert) -> Iterator[tuple[Controller, _Sink]]:
    sink = _Sink()
    controller = start_aiosmtpd(
        sink,
        tls_context=smtpsec_cert.server_context(),
        require_starttls=True,
        enable_SMTPUTF8=True,
        data_size_limit=1_000_000,
        server_hostname="localhost",
    )
    try:
        yield controller, sink
    finally:
        controller.stop()


def test_send_many_against_aiosmtpd(aiosmtpd: tuple[Controller, _Sink], cafile: Path) -> None:
    controller, sink = aiosmtpd
    smuggle = b"Subject: s\r\n\r\na\nb\r.\r\nc\n.\nd\r.\re " + CANARY.encode() + b"\n..x\n.y"
    with smtpsec.connect(
        "localhost", controller.port, policy=smtpsec.Policy(cafile=str(cafile)), timeout=10
    ) as session:
        assert "PIPELINING" not in session.extensions
        results = [
            session.send(smuggle, sender="ann@example.test", recipients=["bob@example.test"]),
            session.send(message(to="用户@例子.测试")),
        ]
    plain, utf8 = sink.envelopes
    assert plain.original_content == (
        b"Subject: s\r\n\r\na\r\nb\r\n.\r\nc\r\n.\r\nd\r\n.\r\ne "
        + CANARY.encode()
        + b"\r\n..x\r\n.y\r\n"
    )
    assert len(plain.original_content) == results[0].size
    assert f"SIZE={results[0].size}" in plain.mail_options
    assert utf8.rcpt_tos == ["用户@例子.测试"]
    assert "SMTPUTF8" in utf8.mail_options and "BODY=8BITMIME" in utf8.mail_options
    assert b"Message-ID:" in utf8.original_content
