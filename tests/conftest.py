"""Fixtures shared by every test package."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

import smtpsec.policy
from smtpsec._engine._early import EHLO_REPLIES


@pytest.fixture(autouse=True)
def _no_early_pipelining_memory() -> Iterator[None]:
    """Every test starts and ends with an empty process-wide PIPECONNECT memory.

    Servers get ephemeral ports, which a later test's server may reuse; what
    one test taught the process must not steer another (early_pipelining=True).
    """
    EHLO_REPLIES.clear()
    yield
    EHLO_REPLIES.clear()


@pytest.fixture
def refused_submission_ports(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[int, int]]:
    """Stand-ins for ports 465 and 587 that refuse connections, owned by this test.

    Tests of "no port given: try 465, then 587" must not depend on what this
    machine runs on its real submission ports. Two sockets are bound on
    127.0.0.1 but never listen (so connecting is refused, and nobody else can
    take the ports while the test runs), and the plan uses them in place of
    465 and 587.
    """
    holders = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(2)]
    try:
        for holder in holders:
            holder.bind(("127.0.0.1", 0))
        implicit, starttls = (holder.getsockname()[1] for holder in holders)
        monkeypatch.setattr(smtpsec.policy, "SUBMISSIONS_PORT", implicit)
        monkeypatch.setattr(smtpsec.policy, "SUBMISSION_PORT", starttls)
        yield implicit, starttls
    finally:
        for holder in holders:
            holder.close()


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections for the whole test (bound, never listening)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        yield int(holder.getsockname()[1])
