"""Fixtures for the network tests: real proxies, the Postfix interop server, namespaces.

The proxies come from ``tests/interop/proxies.sh start`` (microsocks, dante,
tinyproxy and OpenSSH's ``ssh -D`` on loopback), Postfix from
``tests/interop/postfix.sh start``. Without them the tests skip, unless
``SMTPSEC_INTEROP=1`` (set by ``.ci/run``) promised them, in which case they
fail loudly.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NoReturn

import pytest

HERE: Final = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "interop"))

from interop_harness import PostfixServer, state_dir  # noqa: E402

PROXIES_ENV: Final = (
    Path(os.environ.get("SMTPSEC_PROXIES_DIR", "/tmp/smtpsec-proxies")) / "env.json"
)


def unavailable(reason: str) -> NoReturn:
    """Fail when CI promised the real parts (``SMTPSEC_INTEROP=1``), else skip loudly."""
    if os.environ.get("SMTPSEC_INTEROP") == "1":
        pytest.fail(f"SMTPSEC_INTEROP=1 but {reason}", pytrace=False)
    pytest.skip(f"NOT TESTED: {reason}")


@dataclass(frozen=True, slots=True)
class Proxies:
    """The real proxies on loopback (see tests/interop/proxies.sh)."""

    host: str
    socks5: int
    socks5_auth: int
    dante: int
    http: int
    http_auth: int
    ssh_socks: int
    user: str
    password: str

    def url(
        self, scheme: str, port: int, *, auth: bool = False, password: str | None = None
    ) -> str:
        if not auth:
            return f"{scheme}://{self.host}:{port}"
        return f"{scheme}://{self.user}:{password or self.password}@{self.host}:{port}"


@pytest.fixture(scope="session")
def proxies() -> Proxies:
    if not PROXIES_ENV.is_file():
        unavailable(
            f"no proxies running ({PROXIES_ENV} missing): run tests/interop/proxies.sh start"
        )
    data = json.loads(PROXIES_ENV.read_text(encoding="utf-8"))
    found = Proxies(
        host=data["SMTPSEC_PROXY_HOST"],
        socks5=int(data["SMTPSEC_PROXY_SOCKS5_PORT"]),
        socks5_auth=int(data["SMTPSEC_PROXY_SOCKS5_AUTH_PORT"]),
        dante=int(data["SMTPSEC_PROXY_DANTE_PORT"]),
        http=int(data["SMTPSEC_PROXY_HTTP_PORT"]),
        http_auth=int(data["SMTPSEC_PROXY_HTTP_AUTH_PORT"]),
        ssh_socks=int(data["SMTPSEC_PROXY_SSH_SOCKS_PORT"]),
        user=data["SMTPSEC_PROXY_USER"],
        password=data["SMTPSEC_PROXY_PASSWORD"],
    )
    ports = (found.socks5, found.socks5_auth, found.dante, found.http, found.http_auth)
    for port in (*ports, found.ssh_socks):
        try:
            socket.create_connection((found.host, port), timeout=5).close()
        except OSError as exc:
            unavailable(f"proxy port {port} from {PROXIES_ENV} refused: {exc}")
    return found


@pytest.fixture(scope="session")
def postfix() -> PostfixServer:
    env_file = state_dir() / "env.json"
    if not env_file.is_file():
        unavailable(f"no Postfix ({env_file} missing): run tests/interop/postfix.sh start")
    server = PostfixServer.from_env_file(env_file)
    try:
        socket.create_connection((server.host, server.starttls_port), timeout=5).close()
    except OSError as exc:
        unavailable(f"Postfix at {server.host}:{server.starttls_port} refused: {exc}")
    return server
