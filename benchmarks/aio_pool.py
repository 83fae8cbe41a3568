"""asyncio throughput: many small messages over N connections, smtpsec.aio.Pool vs aiosmtplib.

Usage::

    python benchmarks/aio_pool.py [--messages 1000] [--connections 1,2,4,8]
                                  [--repetitions 3] [--batch 50]
                                  [--payload email|bytes|both] [--json out.json]

For each N, smtpsec sends every message with ``Pool(size=N).send_many(...)``
(pipelined batches spread over the pool's connections), and aiosmtplib with N
concurrent ``aiosmtplib.SMTP`` clients that each send their share with
``send_message`` in a loop. Both use implicit TLS with a context that trusts
the server's CA, AUTH PLAIN and the same EHLO name; a sample is the time from
the first connection attempt until the last message was accepted (logging in
included, closing not). The server is ``smtpsec.testing.SMTPServer`` with
TCP_NODELAY, run in its own process so that its threads do not compete with the
client for the interpreter lock; it counts what it received, and every run is
checked against those counts.

The Markdown table goes to stdout, progress to stderr. Nothing here asserts a
timing; ``tests/aio/test_aio_benchmark_smoke.py`` runs it with tiny numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import socket
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

if __package__ in (None, ""):  # run as a script: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiosmtplib

import smtpsec
import smtpsec.aio
from benchmarks import messages
from benchmarks.clients import EHLO_NAME, TIMEOUT, aiosmtplib_client
from benchmarks.report import machine_info, run_footer
from benchmarks.servers import PASSWORD, USER, serve_in_child
from smtpsec import Security

__all__ = ["Config", "Results", "Sample", "main", "render", "run"]

HOST: Final = "127.0.0.1"
LIBRARIES: Final = ("smtpsec", "aiosmtplib")
#: ``email``: EmailMessage objects (``send_message``); ``bytes``: the same messages
#: rendered beforehand (``Outgoing(bytes, …)`` / ``sendmail``), which leaves out
#: each library's message preparation.
PAYLOADS: Final = ("email", "bytes")


@dataclass(frozen=True, slots=True)
class Config:
    """What to measure.

    Attributes:
        messages: messages per sample.
        connections: the connection counts (N) to compare.
        repetitions: samples per library and N (interleaved; the median is reported).
        batch: ``send_many`` batch size for the pool.
        payloads: which of :data:`PAYLOADS` to measure.
    """

    messages: int = 1000
    connections: tuple[int, ...] = (1, 2, 4, 8)
    repetitions: int = 3
    batch: int = 50
    payloads: tuple[str, ...] = PAYLOADS


@dataclass(frozen=True, slots=True)
class Sample:
    """One timed run.

    Attributes:
        library: ``"smtpsec"`` or ``"aiosmtplib"``.
        payload: ``"email"`` or ``"bytes"`` (see :data:`PAYLOADS`).
        connections: N.
        seconds: wall time from the first connection attempt to the last acceptance.
        accepted: messages the client saw accepted.
        server_messages: messages the server recorded during the run.
        server_connections: connections the server accepted during the run.
    """

    library: str
    payload: str
    connections: int
    seconds: float
    accepted: int
    server_messages: int
    server_connections: int

    @property
    def rate(self) -> float:
        """Messages per second."""
        return self.accepted / self.seconds


@dataclass
class Results:
    """Everything one run measured."""

    config: Config
    command: str
    machine: dict[str, str]
    samples: list[Sample] = field(default_factory=list)
    seconds: float = 0.0

    def runs(self, library: str, payload: str, connections: int) -> list[Sample]:
        """The samples of one library, payload and N."""
        key = (library, payload, connections)
        return [s for s in self.samples if (s.library, s.payload, s.connections) == key]

    def median_rate(self, library: str, payload: str, connections: int) -> float:
        """Median messages per second of one library, payload and N."""
        return statistics.median(s.rate for s in self.runs(library, payload, connections))


# ---------------------------------------------------------------------------- the server


def _serve(pipe: Connection) -> None:
    """Child process: run the server, report its port and CA, answer count requests."""
    from smtpsec.testing import CA, Script, SMTPServer

    class NoDelayServer(SMTPServer):
        # The server writes each reply to a pipelined group on its own; without
        # TCP_NODELAY, Nagle's algorithm would hold the second one for an ACK.
        def _spawn(self, conn: socket.socket, peer: tuple[Any, ...]) -> None:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            super()._spawn(conn, peer)

    ca = CA.create("smtpsec aio benchmark CA")
    leaf = ca.issue("localhost", ips=(HOST,))
    script = Script(users={USER: PASSWORD}, require_auth=True)
    with NoDelayServer(leaf, tls=Security.IMPLICIT_TLS, script=script, timeout=TIMEOUT) as server:
        pipe.send((server.port, ca.cert_pem))
        while pipe.recv() == "count":
            pipe.send((len(server.messages), len(server.connections)))


@dataclass(frozen=True, slots=True)
class _Server:
    port: int
    cafile: str
    pipe: Connection

    def counts(self) -> tuple[int, int]:
        """``(messages, connections)`` the server has recorded so far."""
        self.pipe.send("count")
        messages, connections = self.pipe.recv()
        return int(messages), int(connections)


@contextmanager
def _server_process(workdir: Path) -> Iterator[_Server]:
    with serve_in_child(_serve) as (pipe, (port, ca_pem)):
        cafile = workdir / "aio-bench-ca.pem"
        cafile.write_bytes(ca_pem)
        yield _Server(port, str(cafile), pipe)


# ---------------------------------------------------------------------------- the clients


@dataclass(frozen=True, slots=True)
class _Payload:
    """The messages of one sample: EmailMessage objects, or the same rendered to bytes."""

    emails: list[EmailMessage]
    raw: list[messages.Raw] | None

    def __len__(self) -> int:
        return len(self.emails)


def _payload(count: int, kind: str) -> _Payload:
    """Fresh messages for one sample, built outside the timing (ten recipients in turn)."""
    emails = messages.emails(count, subject="smtpsec aio benchmark", mailboxes=10)
    return _Payload(emails, None if kind == "email" else messages.rendered(emails))


async def _smtpsec(server: _Server, n: int, payload: _Payload, batch: int) -> tuple[float, int]:
    pool = smtpsec.aio.Pool(
        HOST,
        server.port,
        size=n,
        security=smtpsec.Security.IMPLICIT_TLS,
        username=USER,
        password=PASSWORD,
        policy=smtpsec.Policy(cafile=server.cafile),
        local_hostname=EHLO_NAME,
        timeout=TIMEOUT,
    )
    items: list[EmailMessage] | list[smtpsec.Outgoing] = payload.emails
    if payload.raw is not None:
        items = [smtpsec.Outgoing(data, sender, rcpts) for sender, rcpts, data in payload.raw]
    start = time.perf_counter()
    try:
        outcomes = await pool.send_many(items, batch=batch)
        seconds = time.perf_counter() - start
    finally:
        await pool.close()  # not timed
    return seconds, sum(isinstance(o, smtpsec.SendResult) for o in outcomes)


async def _aiosmtplib(server: _Server, n: int, payload: _Payload) -> tuple[float, int]:
    context = ssl.create_default_context(cafile=server.cafile)

    async def client(share: range) -> aiosmtplib.SMTP:
        smtp = aiosmtplib_client(
            HOST, server.port, username=USER, password=PASSWORD, context=context
        )
        await smtp.connect()  # logs in, given credentials
        for index in share:
            if payload.raw is None:
                await smtp.send_message(payload.emails[index])
            else:
                sender, rcpts, data = payload.raw[index]
                await smtp.sendmail(sender, rcpts, data)
        return smtp

    start = time.perf_counter()
    clients = await asyncio.gather(*(client(range(i, len(payload), n)) for i in range(n)))
    seconds = time.perf_counter() - start
    for smtp in clients:  # not timed
        await smtp.quit()
    return seconds, len(payload)


def _sample(server: _Server, library: str, n: int, kind: str, config: Config) -> Sample:
    payload = _payload(config.messages, kind)
    before = server.counts()
    if library == "smtpsec":
        seconds, accepted = asyncio.run(_smtpsec(server, n, payload, config.batch))
    else:
        seconds, accepted = asyncio.run(_aiosmtplib(server, n, payload))
    after = server.counts()
    return Sample(
        library=library,
        payload=kind,
        connections=n,
        seconds=seconds,
        accepted=accepted,
        server_messages=after[0] - before[0],
        server_connections=after[1] - before[1],
    )


# ---------------------------------------------------------------------------- run and report


def _log(line: str) -> None:
    print(f"[aio-bench] {line}", file=sys.stderr, flush=True)


def run(config: Config, *, command: str = "", progress: Callable[[str], None] = _log) -> Results:
    """Measure every N for both libraries, repetitions interleaved library by library."""
    started = time.perf_counter()
    results = Results(config=config, command=command, machine=machine_info())
    with (
        tempfile.TemporaryDirectory(prefix="smtpsec-aio-bench-") as tmp,
        _server_process(Path(tmp)) as server,
    ):
        for kind in config.payloads:
            for n in config.connections:
                for repetition in range(config.repetitions):
                    for library in LIBRARIES:
                        sample = _sample(server, library, n, kind, config)
                        progress(
                            f"{kind} N={n} #{repetition + 1} {library}: {sample.rate:,.0f} "
                            f"msg/s ({sample.server_connections} connections)"
                        )
                        results.samples.append(sample)
    results.seconds = time.perf_counter() - started
    return results


def render(results: Results) -> str:
    """The Markdown report: one row per payload and N, the median rates and their ratio."""
    config = results.config
    lines = [
        f"{config.messages:,} messages of about 1 KiB, implicit TLS, AUTH PLAIN; median of "
        f"{config.repetitions} runs; pool batch size {config.batch}.",
        "",
        "| Messages as | N | smtpsec.aio.Pool msg/s | aiosmtplib msg/s | smtpsec ÷ aiosmtplib "
        "| server connections (smtpsec / aiosmtplib) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind in config.payloads:
        for n in config.connections:
            mine = results.median_rate("smtpsec", kind, n)
            theirs = results.median_rate("aiosmtplib", kind, n)
            lines.append(
                f"| {messages.PAYLOADS[kind]} | {n} | {mine:,.0f} | {theirs:,.0f} "
                f"| ×{mine / theirs:.2f} "
                f"| {_connections(results.runs('smtpsec', kind, n))} / "
                f"{_connections(results.runs('aiosmtplib', kind, n))} |"
            )
    lines += ["", *run_footer(results.machine, results.command, results.seconds)]
    return "\n".join(lines)


def _connections(runs: list[Sample]) -> str:
    """The server-side connection count of some runs (a range if they differ)."""
    counts = sorted({s.server_connections for s in runs})
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"


def _to_json(results: Results) -> dict[str, Any]:
    return {
        "config": asdict(results.config),
        "command": results.command,
        "machine": results.machine,
        "seconds": results.seconds,
        "samples": [{**asdict(s), "rate": s.rate} for s in results.samples],
    }


def parse_args(argv: Sequence[str]) -> tuple[Config, Path | None]:
    """Turn the command line into a :class:`Config` and the JSON path."""
    default = Config()
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--messages", type=int, default=default.messages)
    parser.add_argument(
        "--connections",
        default=",".join(str(n) for n in default.connections),
        help="comma-separated connection counts (default: 1,2,4,8)",
    )
    parser.add_argument("--repetitions", type=int, default=default.repetitions)
    parser.add_argument("--batch", type=int, default=default.batch)
    parser.add_argument(
        "--payload",
        choices=(*PAYLOADS, "both"),
        default="both",
        help="EmailMessage objects, pre-rendered bytes, or both (default)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write every sample here")
    args = parser.parse_args(list(argv))
    connections = tuple(int(part) for part in args.connections.split(",") if part.strip())
    if args.messages < 1 or args.repetitions < 1 or args.batch < 1 or not connections:
        parser.error("--messages, --repetitions, --batch and --connections must be positive")
    if any(n < 1 for n in connections):
        parser.error("every connection count must be at least 1")
    payloads = PAYLOADS if args.payload == "both" else (args.payload,)
    config = Config(args.messages, connections, args.repetitions, args.batch, payloads)
    return config, args.json


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the Markdown report."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    config, json_path = parse_args(arguments)
    command = shlex.join(["python", "benchmarks/aio_pool.py", *arguments])
    results = run(config, command=command)
    failed = [s for s in results.samples if s.accepted != config.messages]
    print(render(results))
    if json_path is not None:
        json_path.write_text(json.dumps(_to_json(results), indent=2))
    if failed:
        _log(f"{len(failed)} run(s) did not get every message accepted: {failed}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
