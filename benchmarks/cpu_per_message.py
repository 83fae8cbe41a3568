"""Client CPU per message on one open connection: smtpsec, smtplib, aiosmtplib, raw I/O.

Usage::

    python benchmarks/cpu_per_message.py [--messages 5000] [--repetitions 3]
                                         [--libraries smtpsec,smtplib,aiosmtplib,raw]
                                         [--per-reply-writes] [--json out.json]
                                         [--profile PREFIX]

Each sample opens one implicit-TLS connection and logs in (not timed), sends a
few warm-up messages (not timed), then sends N small messages (about 1 KiB,
one recipient, a new address each) and measures ``time.process_time()`` (user + system CPU of this
process) and wall time around the sending alone:

* smtpsec: one ``Session.send_many`` call, with ``Outgoing(bytes, sender,
  recipients)`` items or with ``EmailMessage`` objects;
* smtplib: a loop of ``sendmail(bytes)`` or ``send_message(EmailMessage)`` on one
  ``smtplib.SMTP_SSL``;
* aiosmtplib: the same two loops on one ``aiosmtplib.SMTP`` (left out with a
  note when it is not installed);
* raw: a plain ``ssl`` socket writing pre-built ``MAIL``/``RCPT``/``BDAT n LAST``
  commands for a window of messages in one write and reading the replies: what
  the I/O alone costs, the lower bound for any client.

The server is :class:`~benchmarks.servers.SinkServer` in a child process (so its
CPU is not counted here), coalescing the replies to a pipelined group into one
write as Postfix does (``--per-reply-writes`` sends each reply on its own).
Every client gets the same verifying TLS setup (``ssl.create_default_context
(cafile=…)``, ``Policy(cafile=…)`` for smtpsec), the EHLO name
``bench.localhost`` and AUTH PLAIN; messages are built before the timing.
Repetitions are interleaved client by client. The Markdown table goes to stdout,
progress to stderr. It reports; it never asserts a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import gc
import io
import json
import pstats
import shlex
import smtplib
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

import smtpsec
from benchmarks import messages
from benchmarks.clients import EHLO_NAME, TIMEOUT, aiosmtplib_client
from benchmarks.report import machine_info, run_footer
from benchmarks.servers import PASSWORD, USER, SinkServer, serve_in_child
from smtpsec import Security

__all__ = ["Config", "Results", "Sample", "main", "render", "run"]

HOST: Final = "127.0.0.1"
LIBRARIES: Final = ("smtpsec", "smtplib", "aiosmtplib", "raw")
#: (library, message kind) in table order; ``raw`` only sends bytes.
CASES: Final = (
    ("smtpsec", "bytes"),
    ("smtplib", "bytes"),
    ("aiosmtplib", "bytes"),
    ("raw", "bytes"),
    ("smtpsec", "email"),
    ("smtplib", "email"),
    ("aiosmtplib", "email"),
)
_CALLS: Final = {
    ("smtpsec", "bytes"): "smtpsec `send_many(Outgoing(bytes, …))`",
    ("smtpsec", "email"): "smtpsec `send_many(EmailMessage)`",
    ("smtplib", "bytes"): "smtplib `sendmail` loop",
    ("smtplib", "email"): "smtplib `send_message` loop",
    ("aiosmtplib", "bytes"): "aiosmtplib `sendmail` loop",
    ("aiosmtplib", "email"): "aiosmtplib `send_message` loop",
    ("raw", "bytes"): "raw `ssl` socket, pre-built pipelined commands",
}


@dataclass(frozen=True, slots=True)
class Config:
    """What to measure.

    Attributes:
        messages: timed messages per sample.
        repetitions: samples per case (interleaved; the median is reported).
        warmup: untimed messages sent on the connection before each sample.
        raw_window: messages per write of the raw client.
        libraries: which of :data:`LIBRARIES` to measure.
        coalesce: the sink sends the replies to a pipelined group in one write.
    """

    messages: int = 5000
    repetitions: int = 3
    warmup: int = 20
    raw_window: int = 200
    libraries: tuple[str, ...] = LIBRARIES
    coalesce: bool = True


@dataclass(frozen=True, slots=True)
class Sample:
    """One timed run of one case.

    Attributes:
        library: one of :data:`LIBRARIES`.
        kind: ``"bytes"`` or ``"email"``.
        messages: messages timed.
        cpu: client CPU seconds (``time.process_time``) for all of them.
        wall: wall seconds for all of them.
        accepted: messages the client saw accepted.
        server_messages: timed messages the sink recorded (warm-up excluded).
    """

    library: str
    kind: str
    messages: int
    cpu: float
    wall: float
    accepted: int
    server_messages: int

    @property
    def cpu_us(self) -> float:
        """Client CPU microseconds per message."""
        return self.cpu / self.messages * 1e6

    @property
    def wall_us(self) -> float:
        """Wall microseconds per message."""
        return self.wall / self.messages * 1e6

    @property
    def ok(self) -> bool:
        """Every message accepted by the client's account and the sink's."""
        return self.accepted == self.messages == self.server_messages


@dataclass
class Results:
    """Everything one run measured."""

    config: Config
    command: str
    machine: dict[str, str]
    samples: list[Sample] = field(default_factory=list)
    seconds: float = 0.0

    def runs(self, library: str, kind: str) -> list[Sample]:
        """The samples of one case."""
        return [s for s in self.samples if (s.library, s.kind) == (library, kind)]


# ---------------------------------------------------------------------------- the server


def _serve(pipe: Connection, workdir: str, coalesce: bool) -> None:
    """Child process: run the sink, report its port and CA file, answer count requests."""
    with SinkServer(Path(workdir), coalesce=coalesce) as sink:
        pipe.send((sink.port, sink.cafile))
        while pipe.recv() == "count":
            pipe.send(len(sink.message_sizes))


@dataclass(frozen=True, slots=True)
class _Server:
    port: int
    cafile: str
    pipe: Connection

    def count(self) -> int:
        """Messages the sink has recorded so far."""
        self.pipe.send("count")
        return int(self.pipe.recv())


@contextmanager
def _server_process(workdir: Path, coalesce: bool) -> Iterator[_Server]:
    with serve_in_child(_serve, str(workdir), coalesce) as (pipe, (port, cafile)):
        yield _Server(int(port), str(cafile), pipe)


# ---------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class _Batch:
    """One sample's messages in the form its kind needs."""

    emails: list[EmailMessage]
    raw: list[messages.Raw]

    @classmethod
    def build(cls, kind: str, count: int, first: int = 0) -> _Batch:
        emails = messages.emails(count, subject="smtpsec cpu benchmark", first=first)
        return cls([], messages.rendered(emails)) if kind == "bytes" else cls(emails, [])

    def __len__(self) -> int:
        return len(self.raw) or len(self.emails)


# ---------------------------------------------------------------------------- the clients

#: Runs one sample: (server, kind, warm-up batch, timed batch, config) -> (cpu, wall, accepted).
_Runner = Callable[[_Server, str, _Batch, _Batch, Config], tuple[float, float, int]]


@contextmanager
def _timer(out: list[float]) -> Iterator[None]:
    """Append the CPU and wall seconds of the block to ``out``."""
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    out += [time.process_time() - cpu, time.perf_counter() - wall]


def _smtpsec_session(server: _Server) -> smtpsec.Session:
    return smtpsec.connect(
        HOST,
        server.port,
        security=Security.IMPLICIT_TLS,
        username=USER,
        password=PASSWORD,
        auth="PLAIN",
        policy=smtpsec.Policy(cafile=server.cafile),
        local_hostname=EHLO_NAME,
        timeout=TIMEOUT,
    )


def _smtpsec_items(kind: str, batch: _Batch) -> list[EmailMessage] | list[smtpsec.Outgoing]:
    if kind == "email":
        return batch.emails
    return [smtpsec.Outgoing(data, sender, rcpts) for sender, rcpts, data in batch.raw]


def _run_smtpsec(
    server: _Server, kind: str, warm: _Batch, batch: _Batch, config: Config
) -> tuple[float, float, int]:
    times: list[float] = []
    with _smtpsec_session(server) as session:
        session.send_many(_smtpsec_items(kind, warm))
        items = _smtpsec_items(kind, batch)  # the Outgoing wrappers are built untimed
        with _timer(times):
            outcomes = session.send_many(items)
    return times[0], times[1], sum(isinstance(o, smtpsec.SendResult) for o in outcomes)


def _run_smtplib(
    server: _Server, kind: str, warm: _Batch, batch: _Batch, config: Config
) -> tuple[float, float, int]:
    context = ssl.create_default_context(cafile=server.cafile)
    times: list[float] = []
    with smtplib.SMTP_SSL(
        HOST, server.port, local_hostname=EHLO_NAME, timeout=TIMEOUT, context=context
    ) as smtp:
        smtp.login(USER, PASSWORD)  # EHLO and AUTH PLAIN, untimed

        def send(b: _Batch) -> int:
            if kind == "email":
                for msg in b.emails:
                    smtp.send_message(msg)
            else:
                for sender, rcpts, data in b.raw:
                    smtp.sendmail(sender, rcpts, data)
            return len(b)  # a refusal raises

        send(warm)
        with _timer(times):
            accepted = send(batch)
    return times[0], times[1], accepted


def _run_aiosmtplib(
    server: _Server, kind: str, warm: _Batch, batch: _Batch, config: Config
) -> tuple[float, float, int]:
    context = ssl.create_default_context(cafile=server.cafile)
    times: list[float] = []

    async def main() -> int:
        smtp = aiosmtplib_client(
            HOST, server.port, username=USER, password=PASSWORD, context=context
        )
        await smtp.connect()  # logs in, given credentials

        async def send(b: _Batch) -> int:
            if kind == "email":
                for msg in b.emails:
                    await smtp.send_message(msg)
            else:
                for sender, rcpts, data in b.raw:
                    await smtp.sendmail(sender, rcpts, data)
            return len(b)  # a refusal raises

        try:
            await send(warm)
            with _timer(times):
                return await send(batch)
        finally:
            await smtp.quit()

    accepted = asyncio.run(main())
    return times[0], times[1], accepted


class _RawClient:
    """The I/O floor: one TLS socket, pre-built pipelined transactions, minimal reply checks."""

    def __init__(self, server: _Server) -> None:
        context = ssl.create_default_context(cafile=server.cafile)
        raw = socket.create_connection((HOST, server.port), timeout=TIMEOUT)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = context.wrap_socket(raw, server_hostname=HOST)
        self.buf = b""
        self._expect(1)  # greeting
        self.sock.sendall(f"EHLO {EHLO_NAME}\r\n".encode())
        self._expect(1, last_line=True)
        self.sock.sendall(b"AUTH PLAIN " + _plain_token() + b"\r\n")
        self._expect(1)

    def _expect(self, replies: int, *, last_line: bool = False) -> bytes:
        """Read ``replies`` single-line replies (or one multiline one) and return them."""
        data = self.buf
        while True:
            if last_line:
                end = data.find(b"250 ")
                if end >= 0 and (stop := data.find(b"\n", end)) >= 0:
                    break
            elif data.count(b"\n") >= replies:
                stop = -1
                for _ in range(replies):
                    stop = data.index(b"\n", stop + 1)
                break
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the sink closed the connection")
            data += chunk
        self.buf = data[stop + 1 :]
        return data[: stop + 1]

    @staticmethod
    def commands(batch: _Batch, window: int) -> list[tuple[int, bytes]]:
        """Each window's message count and its one write: MAIL, RCPT, BDAT LAST, body."""
        out = []
        for start in range(0, len(batch.raw), window):
            part = batch.raw[start : start + window]
            out.append(
                (
                    len(part),
                    b"".join(
                        b"MAIL FROM:<%s>\r\n%sBDAT %d LAST\r\n%s"
                        % (
                            sender.encode(),
                            b"".join(b"RCPT TO:<%s>\r\n" % r.encode() for r in rcpts),
                            len(data),
                            data,
                        )
                        for sender, rcpts, data in part
                    ),
                )
            )
        return out

    def send(self, windows: list[tuple[int, bytes]], replies_per_message: int) -> int:
        """Write each window in one go and read its replies; return the messages accepted."""
        accepted = 0
        recv, sendall = self.sock.recv, self.sock.sendall
        for count, payload in windows:
            sendall(payload)
            want = count * replies_per_message
            parts = [self.buf]
            lines = self.buf.count(b"\n")
            while lines < want:
                chunk = recv(262144)
                if not chunk:
                    raise ConnectionError("the sink closed the connection")
                parts.append(chunk)
                lines += chunk.count(b"\n")
            data = b"".join(parts)
            self.buf = b""  # nothing was asked beyond this window
            if lines != want or data.count(b"\n250 ") + data.startswith(b"250 ") != want:
                raise RuntimeError(f"unexpected replies: {data[-200:]!r}")
            accepted += count
        return accepted

    def close(self) -> None:
        try:
            self.sock.sendall(b"QUIT\r\n")
            self._expect(1)
        finally:
            self.sock.close()


def _plain_token() -> bytes:
    return base64.b64encode(f"\0{USER}\0{PASSWORD}".encode())


def _run_raw(
    server: _Server, kind: str, warm: _Batch, batch: _Batch, config: Config
) -> tuple[float, float, int]:
    client = _RawClient(server)
    per_message = 2 + max(len(r) for _s, r, _d in batch.raw)  # MAIL + RCPT(s) + BDAT
    times: list[float] = []
    try:
        client.send(_RawClient.commands(warm, config.raw_window), per_message)
        windows = _RawClient.commands(batch, config.raw_window)  # pre-built, untimed
        with _timer(times):
            accepted = client.send(windows, per_message)
    finally:
        client.close()
    return times[0], times[1], accepted


_RUNNERS: Final[dict[str, _Runner]] = {
    "smtpsec": _run_smtpsec,
    "smtplib": _run_smtplib,
    "aiosmtplib": _run_aiosmtplib,
    "raw": _run_raw,
}


def _sample(server: _Server, library: str, kind: str, config: Config, first: int) -> Sample:
    warm = _Batch.build(kind, config.warmup, first)
    batch = _Batch.build(kind, config.messages, first + config.warmup)
    before = server.count()
    cpu, wall, accepted = _RUNNERS[library](server, kind, warm, batch, config)
    received = server.count() - before - len(warm)
    return Sample(library, kind, config.messages, cpu, wall, accepted, received)


# ---------------------------------------------------------------------------- run and report


def _log(line: str) -> None:
    print(f"[cpu-bench] {line}", file=sys.stderr, flush=True)


def _cases(config: Config) -> list[tuple[str, str]]:
    return [case for case in CASES if case[0] in config.libraries]


def run(config: Config, *, command: str = "", progress: Callable[[str], None] = _log) -> Results:
    """Measure every case, repetitions interleaved case by case."""
    started = time.perf_counter()
    results = Results(config=config, command=command, machine=machine_info())
    with (
        tempfile.TemporaryDirectory(prefix="smtpsec-cpu-bench-") as tmp,
        _server_process(Path(tmp), config.coalesce) as server,
    ):
        first = 0
        for repetition in range(config.repetitions):
            for library, kind in _cases(config):
                sample = _sample(server, library, kind, config, first)
                first += config.warmup + config.messages
                progress(
                    f"#{repetition + 1} {library} {kind}: {sample.cpu_us:,.1f} µs CPU/msg, "
                    f"{sample.wall_us:,.1f} µs wall/msg"
                    + ("" if sample.ok else f" — NOT ALL ACCEPTED: {sample}")
                )
                results.samples.append(sample)
    results.seconds = time.perf_counter() - started
    return results


def profile_smtpsec(
    config: Config, prefix: Path, *, top: int = 25, progress: Callable[[str], None] = _log
) -> list[Path]:
    """Profile one ``send_many`` per message kind; write ``PREFIX-KIND.prof``, log the top.

    The top ``top`` functions by cumulative and by own time go to stderr.
    """
    written = []
    with (
        tempfile.TemporaryDirectory(prefix="smtpsec-cpu-prof-") as tmp,
        _server_process(Path(tmp), config.coalesce) as server,
    ):
        for kind in ("bytes", "email"):
            warm = _Batch.build(kind, config.warmup)
            batch = _Batch.build(kind, config.messages, config.warmup)
            with _smtpsec_session(server) as session:
                session.send_many(_smtpsec_items(kind, warm))
                items = _smtpsec_items(kind, batch)
                gc.collect()
                profiler = cProfile.Profile()
                profiler.runcall(session.send_many, items)
            path = prefix.with_name(f"{prefix.name}-{kind}.prof")
            profiler.dump_stats(path)
            written.append(path)
            for order in ("cumulative", "tottime"):
                text = io.StringIO()
                pstats.Stats(profiler, stream=text).sort_stats(order).print_stats(top)
                progress(f"profile of send_many({kind}), {config.messages} messages, by {order}:")
                print(text.getvalue(), file=sys.stderr)
    return written


def render(results: Results) -> str:
    """The Markdown report: one row per case, median CPU per message, ratio to smtplib."""
    config = results.config
    replies = "in one write per pipelined group" if config.coalesce else "each in its own write"
    lines = [
        f"{config.messages:,} messages of about 1 KiB, one recipient each, on one open "
        f"implicit-TLS connection (connect, login and {config.warmup} warm-up messages not "
        f"timed); median of {config.repetitions}. CPU = `time.process_time()` of the client "
        f"process (user + system); the sink runs in its own process and sends its replies "
        f"{replies}.",
        "",
        "| Client | Messages as | CPU µs/msg | range | × smtplib | wall µs/msg |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for library, kind in _cases(config):
        runs = results.runs(library, kind)
        cpu = statistics.median(s.cpu_us for s in runs)
        base = results.runs("smtplib", kind)
        ratio = (
            f"×{cpu / statistics.median(s.cpu_us for s in base):.2f}"
            if base and library != "smtplib"
            else ("×1" if base else "–")
        )
        low, high = min(s.cpu_us for s in runs), max(s.cpu_us for s in runs)
        flag = "" if all(s.ok for s in runs) else " **(not all accepted)**"
        lines.append(
            f"| {_CALLS[(library, kind)]}{flag} | {messages.PAYLOADS[kind]} | {cpu:,.1f} "
            f"| {low:,.1f}–{high:,.1f} | {ratio} "
            f"| {statistics.median(s.wall_us for s in runs):,.1f} |"
        )
    lines += ["", *run_footer(results.machine, results.command, results.seconds)]
    return "\n".join(lines)


def _to_json(results: Results) -> dict[str, Any]:
    return {
        "config": asdict(results.config),
        "command": results.command,
        "machine": results.machine,
        "seconds": results.seconds,
        "samples": [
            {**asdict(s), "cpu_us_per_message": s.cpu_us, "wall_us_per_message": s.wall_us}
            for s in results.samples
        ],
    }


def parse_args(argv: Sequence[str]) -> tuple[Config, Path | None, Path | None]:
    """Turn the command line into a :class:`Config`, the JSON path and the profile prefix."""
    default = Config()
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--messages", type=int, default=default.messages)
    parser.add_argument("--repetitions", type=int, default=default.repetitions)
    parser.add_argument("--warmup", type=int, default=default.warmup)
    parser.add_argument(
        "--raw-window", type=int, default=default.raw_window, help="messages per raw write"
    )
    parser.add_argument("--libraries", default=",".join(LIBRARIES))
    parser.add_argument(
        "--per-reply-writes",
        action="store_true",
        help="the sink writes every reply on its own instead of one write per group",
    )
    parser.add_argument("--json", type=Path, default=None, help="write every sample here")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="PREFIX",
        help="also cProfile smtpsec send_many (PREFIX-bytes.prof, PREFIX-email.prof)",
    )
    args = parser.parse_args(list(argv))
    libraries = tuple(x.strip() for x in args.libraries.split(",") if x.strip())
    unknown = set(libraries) - set(LIBRARIES)
    if unknown:
        parser.error(f"unknown libraries {sorted(unknown)}; choose from {', '.join(LIBRARIES)}")
    if args.messages < 1 or args.repetitions < 1 or args.raw_window < 1 or args.warmup < 0:
        parser.error("--messages, --repetitions and --raw-window must be positive")
    config = Config(
        messages=args.messages,
        repetitions=args.repetitions,
        warmup=args.warmup,
        raw_window=args.raw_window,
        libraries=libraries,
        coalesce=not args.per_reply_writes,
    )
    return config, args.json, args.profile


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the Markdown report; 1 if a message went missing."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    config, json_path, profile = parse_args(arguments)
    command = shlex.join(["python", "benchmarks/cpu_per_message.py", *arguments])
    results = run(config, command=command)
    print(render(results))
    if json_path is not None:
        json_path.write_text(json.dumps(_to_json(results), indent=2) + "\n")
    if profile is not None:
        profile_smtpsec(results.config, profile)
    failed = [s for s in results.samples if not s.ok]
    if failed:
        _log(f"{len(failed)} sample(s) did not get every message accepted: {failed}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
