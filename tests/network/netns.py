"""Network namespaces for the tests: two namespaces joined by a veth pair.

Only addresses inside namespaces the test itself creates are ever targets:
198.18.0.0/24 (RFC 2544's benchmarking range) and 2001:db8::/64 (the
documentation prefix), on a veth pair that has no route anywhere else.

:class:`Pair` creates ``<name>-s`` (the server side) and ``<name>-c`` (the
client side). Code enters a namespace per *thread* (``setns`` acts on the
calling thread; a socket stays in the namespace it was created in), or runs
as a subprocess under ``ip netns exec`` (which also mounts
``/etc/netns/<ns>/hosts`` over ``/etc/hosts``, giving the client a dual-stack
name without touching the machine's own ``/etc/hosts``).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final, TypeVar

import pytest

T = TypeVar("T")

CLONE_NEWNET: Final = 0x40000000
SERVER_V4: Final = "198.18.0.1"
CLIENT_V4: Final = "198.18.0.2"
CLIENT_V4_EXTRA: Final = "198.18.0.3"
SERVER_V6: Final = "2001:db8::1"
CLIENT_V6: Final = "2001:db8::2"
DUAL_NAME: Final = "dual.smtpsec.test"
SRC: Final = str(Path(__file__).resolve().parents[2] / "src")


def why_not() -> str | None:
    """Why namespaces cannot be used here, or ``None`` when they can."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "no `ip` (iproute2)"
    probe = f"smtpsec-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def require() -> None:
    """Skip loudly (or fail under ``SMTPSEC_INTEROP=1``) when namespaces are impossible."""
    reason = why_not()
    if reason is None:
        return
    if os.environ.get("SMTPSEC_INTEROP") == "1":
        pytest.fail(f"SMTPSEC_INTEROP=1 but {reason}", pytrace=False)
    pytest.skip(f"NOT TESTED: {reason}")


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


_libc = ctypes.CDLL(None, use_errno=True)


@contextlib.contextmanager
def entered(namespace: str) -> Iterator[None]:
    """This thread in ``namespace`` (sockets created meanwhile live there)."""
    with (
        open("/proc/thread-self/ns/net", "rb") as home,
        open(f"/var/run/netns/{namespace}", "rb") as target,
    ):
        if _libc.setns(target.fileno(), CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {namespace} failed")
        try:
            yield
        finally:
            _libc.setns(home.fileno(), CLONE_NEWNET)


def inside(namespace: str, work: Callable[[], T]) -> T:
    """Run ``work`` in a fresh thread that entered ``namespace``; return its result."""
    result: list[T] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            with entered(namespace):
                result.append(work())
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


class Pair:
    """Two namespaces on a veth pair, dual-stack, with optional blackholes."""

    def __init__(self, name: str) -> None:
        self.server = f"{name}-s"
        self.client = f"{name}-c"
        self._hosts = Path("/etc/netns") / self.client

    def __enter__(self) -> Pair:
        self.close()
        for ns in (self.server, self.client):
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
        ip("link", "add", "veth-smtps0", "netns", self.server, "type", "veth",
           "peer", "name", "veth-smtpc0", "netns", self.client)  # fmt: skip
        for ns, dev in ((self.server, "veth-smtps0"), (self.client, "veth-smtpc0")):
            ip("-n", ns, "link", "set", dev, "up")
        ip("-n", self.client, "addr", "add", f"{CLIENT_V4}/24", "dev", "veth-smtpc0")
        ip("-n", self.client, "addr", "add", f"{CLIENT_V4_EXTRA}/24", "dev", "veth-smtpc0")
        ip("-n", self.client, "-6", "addr", "add", f"{CLIENT_V6}/64", "dev", "veth-smtpc0", "nodad")
        self._hosts.mkdir(parents=True, exist_ok=True)
        # Both families for one name; IPv6 (2001:db8::/32 ranks above IPv4 in
        # RFC 6724's table) comes first.
        (self._hosts / "hosts").write_text(
            f"{SERVER_V6} {DUAL_NAME}\n{SERVER_V4} {DUAL_NAME}\n127.0.0.1 localhost\n",
            encoding="utf-8",
        )
        return self

    def serve(self, *, v4: bool = True, v6: bool = True) -> None:
        """Give the server its addresses; a family not served is *blackholed*: the
        server's address is there (the SYN arrives) but it has no route back, so
        the client never hears anything, like a firewall that drops."""
        # /32 and /128 with no prefix route: replies need the routes added below.
        ip("-n", self.server, "addr", "add", f"{SERVER_V4}/32", "dev", "veth-smtps0")
        ip("-n", self.server, "-6", "addr", "add", f"{SERVER_V6}/128", "dev", "veth-smtps0",
           "nodad")  # fmt: skip
        if v4:
            ip("-n", self.server, "route", "add", "198.18.0.0/24", "dev", "veth-smtps0")
        if v6:
            ip("-n", self.server, "-6", "route", "add", "2001:db8::/64", "dev", "veth-smtps0")

    def run_client(self, code: str, timeout: float = 60.0) -> object:
        """Run Python ``code`` in the client namespace (with its hosts file); it
        prints one JSON value, which is returned."""
        done = subprocess.run(
            ["ip", "netns", "exec", self.client, sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "PYTHONPATH": SRC},
        )
        if done.returncode != 0:
            raise AssertionError(f"client failed ({done.returncode}):\n{done.stderr}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    def close(self) -> None:
        for ns in (self.server, self.client):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        with contextlib.suppress(FileNotFoundError):
            (self._hosts / "hosts").unlink()
        with contextlib.suppress(OSError):
            self._hosts.rmdir()

    def __exit__(self, *exc: object) -> None:
        self.close()
