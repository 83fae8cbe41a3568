"""Pytest wiring for the real Postfix + Dovecot server that ``postfix.sh start`` runs.

The shell script owns the server; this module only reads the ``env.json`` it
writes, hands tests a :class:`~interop_harness.PostfixServer` describing it, and
marks every test in this folder ``interop``. Without a server the tests skip,
unless CI promised one with ``SMTPSEC_INTEROP=1``, in which case they fail loudly.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, NoReturn

import pytest
from interop_harness import START_HINT, PostfixServer, state_dir

HERE: Final = Path(__file__).resolve().parent


def _unavailable(reason: str, *, skip: str | None = None) -> NoReturn:
    """Fail when CI promised the servers (``SMTPSEC_INTEROP=1``), else skip.

    ``skip``: the skip message (default: the Postfix one).
    """
    if os.environ.get("SMTPSEC_INTEROP") == "1":
        pytest.fail(f"SMTPSEC_INTEROP=1 but {reason}", pytrace=False)
    pytest.skip(skip or f"Postfix interop server not running: {START_HINT} ({reason})")


@pytest.fixture(scope="session")
def postfix() -> PostfixServer:
    """The running loopback Postfix + Dovecot server (skips or fails if absent)."""
    env_file = state_dir() / "env.json"
    if not env_file.is_file():
        _unavailable(f"{env_file} is missing")
    server = PostfixServer.from_env_file(env_file)
    try:
        socket.create_connection((server.host, server.starttls_port), timeout=5).close()
    except OSError as exc:
        _unavailable(f"{env_file} exists but {server.host}:{server.starttls_port} refused: {exc}")
    return server


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test collected from this folder as ``interop``."""
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.interop)


@pytest.fixture(scope="module")
def haraka(smtpsec_ca: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real Haraka (npm) on a free loopback port: STARTTLS, AUTH, a capture queue."""
    import node_servers

    why = node_servers.missing()
    if why is not None:
        _unavailable(why, skip=f"Node.js interop servers unavailable: {why}")
    server = node_servers.start_haraka(smtpsec_ca, tmp_path_factory.mktemp("haraka"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def smtp_server_js(smtpsec_ca: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Return ``start(requiretls)``: nodemailer's smtp-server with implicit TLS."""
    import node_servers

    why = node_servers.missing()
    if why is not None:
        _unavailable(why, skip=f"Node.js interop servers unavailable: {why}")
    started: list[Any] = []

    def start(*, requiretls: bool) -> Any:
        server = node_servers.start_smtp_server(
            smtpsec_ca, tmp_path_factory.mktemp("smtp-server"), requiretls=requiretls
        )
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


def _exim(ca: Any, *, pipe_connect: bool) -> Iterator[Any]:
    import exim_server

    why = exim_server.missing()
    if why is not None:
        _unavailable(
            why, skip=f"Exim interop server unavailable (run tests/interop/exim.sh): {why}"
        )
    # Exim runs as Debian-exim, which cannot enter pytest's root-only tmp_path:
    # running_exim uses a directory of its own in the system temp dir.
    with exim_server.running_exim(ca, pipe_connect=pipe_connect) as server:
        yield server


@pytest.fixture(scope="module")
def exim(smtpsec_ca: Any) -> Iterator[Any]:
    """A real Exim 4.96 on two free loopback ports: implicit TLS, STARTTLS, PIPECONNECT."""
    yield from _exim(smtpsec_ca, pipe_connect=True)


@pytest.fixture(scope="module")
def exim_without_pipeconnect(smtpsec_ca: Any) -> Iterator[Any]:
    """The same Exim set-up, advertising no PIPECONNECT."""
    yield from _exim(smtpsec_ca, pipe_connect=False)
