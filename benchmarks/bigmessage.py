"""The big-message test: time and peak memory growth for one message read from a file.

Each library runs in a fresh subprocess (``python -m benchmarks.bigmessage``)
so that one library's allocations cannot hide another's. The worker connects
and logs in first, then resets the kernel's peak-RSS mark (``/proc/self/clear_refs``)
and sends; the growth is the peak resident set size during the send minus the
resident set size just before it. Nothing here goes through the delay proxy:
the test is about bytes, not round trips.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ["BigSample", "measure_big", "write_big_message"]

MIB: Final = 1024 * 1024
_REPO: Final = Path(__file__).resolve().parent.parent
_LINE: Final = b"The quick brown fox jumps over the lazy dog; 0123456789 abcdefghijklmnopqrs\r\n"


@dataclass(frozen=True, slots=True)
class BigSample:
    """One subprocess run.

    Attributes:
        library: which client sent.
        seconds: wall time of the send call alone (connected and logged in before).
        rss_before: resident set size just before the send, bytes.
        peak_rss: peak resident set size during the send, bytes.
        hwm_reset: whether the peak mark could be reset (else the peak since
            process start is used, which can only under-report growth).
        size: octets in the file.
    """

    library: str
    seconds: float
    rss_before: int
    peak_rss: int
    hwm_reset: bool
    size: int

    @property
    def growth(self) -> int:
        """Peak RSS growth caused by the send, bytes (never negative)."""
        return max(0, self.peak_rss - self.rss_before)

    @property
    def mib_per_second(self) -> float:
        """Throughput in MiB/s."""
        return self.size / MIB / self.seconds if self.seconds > 0 else 0.0


def write_big_message(path: Path, size: int, *, sender: str, recipient: str) -> int:
    """Write an ASCII RFC 5322 message of ``size`` octets (CRLF lines of at most 78 octets).

    Returns:
        The exact number of octets written.
    """
    head = (
        f"From: <{sender}>\r\nTo: <{recipient}>\r\nSubject: smtpsec benchmark, big message\r\n"
        "Message-ID: <big@bench.test>\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
    ).encode("ascii")
    block = _LINE * (MIB // len(_LINE))
    written = 0
    with path.open("wb") as fp:
        written += fp.write(head)
        while written + len(block) <= size:
            written += fp.write(block)
        written += fp.write(_LINE * ((size - written) // len(_LINE)))
        if size - written >= 2:  # one short line makes the size exact
            written += fp.write(b"x" * (size - written - 2) + b"\r\n")
    return written


def _status(field: str) -> int:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in bytes.

    Without ``/proc`` (macOS) both fall back to the peak since process start.
    """
    status = Path("/proc/self/status")
    if not status.exists():
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere
    for line in status.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} missing from /proc/self/status")


def _reset_peak() -> bool:
    # Writing "5" resets VmHWM to the current RSS (Linux >= 4.0); allowed on our own process.
    if not Path("/proc/self/status").exists():
        return False
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _worker(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(description="send one big message and report JSON")
    for name in ("library", "host", "cafile", "user", "password", "file", "sender", "recipient"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)

    from .clients import make_adapter
    from .servers import Target

    target = Target(
        name="sink",
        host=args.host,
        implicit_port=args.port,
        starttls_port=args.port,
        cafile=args.cafile,
        username=args.user,
        password=args.password,
        sender=args.sender,
        recipient_domain="unused",
    )
    path = Path(args.file)
    adapter = make_adapter(args.library)
    adapter.connect(target, args.port, implicit=True)
    rss_before = _status("VmRSS")
    reset = _reset_peak()
    if not reset:
        rss_before = _status("VmHWM")
    start = time.perf_counter()
    adapter.send_file(path, args.sender, [args.recipient])
    seconds = time.perf_counter() - start
    peak = _status("VmHWM")
    adapter.close()
    sample = BigSample(
        library=args.library,
        seconds=seconds,
        rss_before=rss_before,
        peak_rss=peak,
        hwm_reset=reset,
        size=path.stat().st_size,
    )
    print(json.dumps({f: getattr(sample, f) for f in BigSample.__dataclass_fields__}))


def measure_big(
    library: str,
    *,
    host: str,
    port: int,
    cafile: str,
    user: str,
    password: str,
    path: Path,
    sender: str,
    recipient: str,
    timeout: float = 300.0,
) -> BigSample:
    """Run one fresh worker subprocess for ``library`` and return its sample.

    Raises:
        RuntimeError: the worker failed (its stderr is included).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "benchmarks.bigmessage"]
    options = {
        "library": library,
        "host": host,
        "port": str(port),
        "cafile": cafile,
        "user": user,
        "password": password,
        "file": str(path),
        "sender": sender,
        "recipient": recipient,
    }
    for key, value in options.items():
        command += [f"--{key}", value]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{library} big-message worker failed:\n{done.stderr.strip()}")
    return BigSample(**json.loads(done.stdout.strip().splitlines()[-1]))


if __name__ == "__main__":
    _worker(sys.argv[1:])
