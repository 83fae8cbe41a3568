"""Nothing blocks the event loop: PBKDF2 for SCRAM and the TLS memory's file I/O run in
a thread under asyncio (checked by the thread they run on, never by timing)."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import pytest
from _aio_kit import PASSWORD, USER, async_test

import smtpsec
import smtpsec.aio
from smtpsec import Security
from smtpsec.memory import TLSMemory
from smtpsec.testing.plugin import ServerFactory


@async_test
async def test_scram_pbkdf2_runs_off_the_event_loop(
    smtpsec_server: ServerFactory, login_args: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server may ask for many PBKDF2 iterations; the loop keeps serving other tasks."""
    srv = smtpsec_server(
        Security.IMPLICIT_TLS, users={USER: PASSWORD}, auth_mechanisms=("SCRAM-SHA-256",)
    )
    loop_thread = threading.current_thread()
    seen: list[threading.Thread] = []
    real = hashlib.pbkdf2_hmac

    def recording(*args: Any, **kwargs: Any) -> bytes:
        seen.append(threading.current_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(hashlib, "pbkdf2_hmac", recording)
    async with smtpsec.aio.connect("localhost", srv.port, **login_args) as session:
        assert session.report.mechanism == "SCRAM-SHA-256"
    client_calls = [thread for thread in seen if thread is not loop_thread]
    assert client_calls, "the client's PBKDF2 ran on the event loop's thread"
    # The fake server runs in threads of its own; none of the calls was the loop's.
    assert loop_thread not in seen


@async_test
async def test_tls_memory_file_io_runs_off_the_event_loop(
    smtpsec_server: ServerFactory,
    tls_args: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS)
    memory = TLSMemory(tmp_path / "memory.json")
    loop_thread = threading.current_thread()
    seen: dict[str, threading.Thread] = {}
    for name in ("requires_tls", "record"):
        real = getattr(TLSMemory, name)

        def recording(
            self: TLSMemory, *args: Any, _real: Any = real, _name: str = name, **kwargs: Any
        ) -> Any:
            seen[_name] = threading.current_thread()
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(TLSMemory, name, recording)
    args = {**tls_args, "policy": smtpsec.Policy(cafile=tls_args["policy"].cafile, memory=memory)}
    async with smtpsec.aio.connect("localhost", srv.port, **args):
        pass
    assert set(seen) == {"requires_tls", "record"}
    assert loop_thread not in seen.values()
    assert memory.accounts()  # the session was really recorded
