"""Behaviour of the shared protocol core found while testing smtpsec.aio, checked
through the blocking ``Session`` (the asyncio session gets it from the same core)."""

from __future__ import annotations

from pathlib import Path

import pytest

import smtpsec
from smtpsec import Security
from smtpsec.testing import Drip
from smtpsec.testing.plugin import ServerFactory


def test_blocking_noop_timeout_closes_the_session(
    smtpsec_server: ServerFactory, aio_cafile: Path
) -> None:
    """R-5321-4.5.3.2-1 + R-LIB-DESYNC-1: after a reply deadline the session is finished."""
    srv = smtpsec_server(
        Security.IMPLICIT_TLS, replies={"NOOP": Drip(b"250 " + b"x" * 200 + b"\r\n", 0.02)}
    )
    session = smtpsec.connect(
        "localhost",
        srv.port,
        security=smtpsec.Security.IMPLICIT_TLS,
        policy=smtpsec.Policy(cafile=aio_cafile),
        timeout=0.5,
    )
    try:
        with pytest.raises(smtpsec.TimeoutError):
            session.noop()
        assert session.closed  # as after a timeout in send()
    finally:
        session.close()
