"""Shared helpers for the sending-engine tests: a STARTTLS fake MSA and a client for it.

Every test talks to :class:`smtpsec.testing.SMTPServer` on loopback with a real
TLS handshake, and asserts on what the server captured (commands, ``recv()``
segments, delivered messages).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import smtpsec
from smtpsec import Security
from smtpsec.testing import CA, SMTPServer

Serve = Callable[..., SMTPServer]
Connect = Callable[..., smtpsec.Session]


@pytest.fixture(scope="session")
def cafile(smtpsec_ca: CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test CA as a PEM file, for ``Policy(cafile=...)``."""
    return smtpsec_ca.write_cafile(tmp_path_factory.mktemp("ca") / "ca.pem")


@pytest.fixture
def serve(smtpsec_server: Any) -> Serve:
    """Start a STARTTLS fake MSA (port-587 style); keywords are Script fields."""

    def start(**script: Any) -> SMTPServer:
        return smtpsec_server(Security.STARTTLS, **script)  # type: ignore[no-any-return]

    return start


@pytest.fixture
def connect(cafile: Path) -> Iterator[Connect]:
    """Open sessions to a fake server (closed at teardown)."""
    sessions: list[smtpsec.Session] = []

    def open_session(server: SMTPServer, **options: Any) -> smtpsec.Session:
        session = smtpsec.connect(
            "localhost", server.port, policy=smtpsec.Policy(cafile=str(cafile)), **options
        )
        sessions.append(session)
        return session

    yield open_session
    for session in sessions:
        session.close()
