"""Network helpers for tests: servers on ports the test owns, whatever else runs here."""

from __future__ import annotations

import socket
from typing import Any


def start_aiosmtpd(handler: object, *, controller: Any = None, **options: Any) -> Any:
    """Start an aiosmtpd ``Controller`` on a free loopback port and return it.

    aiosmtpd needs a concrete port number. One is picked by binding port 0 and
    closing; if another process takes it in between, starting fails with
    ``EADDRINUSE`` and another port is tried, so the result never depends on
    what else runs on this machine.
    """
    from aiosmtpd.controller import Controller

    factory = controller or Controller
    last: OSError | None = None
    for _ in range(10):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        started = factory(handler, hostname="127.0.0.1", port=port, **options)
        try:
            started.start()
        except OSError as exc:
            last = exc
            continue
        return started
    raise AssertionError(f"could not start aiosmtpd on a free port: {last}")
