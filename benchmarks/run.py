"""Measure smtpsec against smtplib and aiosmtplib in one run and print Markdown tables.

Usage::

    python benchmarks/run.py [--rtt-ms 50] [--quick] [--json out.json]
                             [--postfix auto|yes|no] [--big-mib 80]

Round trips and wall time are measured through :class:`~benchmarks.proxy.DelayProxy`
(``--rtt-ms`` of added round-trip time) against ``smtpsec.testing.SMTPServer``
and, when it runs, the interop Postfix; the big-message test runs without the
proxy against :class:`~benchmarks.servers.SinkServer`, one subprocess per
library and repetition. See benchmarks/README.md and docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bigmessage import MIB, BigSample, measure_big, write_big_message
from benchmarks.clients import LIBRARIES, SMTPSEC_PLAIN
from benchmarks.report import (
    Check,
    auth_table,
    big_table,
    check_targets,
    latency_table,
    machine_info,
    targets_table,
)
from benchmarks.scenarios import Measurement, run_latency_suite
from benchmarks.servers import SinkServer, Target, fake_servers, postfix_target

__all__ = ["Config", "Results", "main", "render", "run"]


@dataclass(frozen=True, slots=True)
class Config:
    """What to measure.

    Attributes:
        rtt_ms: round-trip time the proxy adds, in milliseconds.
        repetitions: samples per latency scenario.
        batch_size: messages in the batch scenario.
        batch_repetitions: samples of the batch scenario.
        big_mib: size of the big message (0 skips the test).
        big_repetitions: subprocess runs per library for the big message.
        postfix: ``"auto"`` (when running), ``"yes"`` or ``"no"``.
        libraries: which clients to measure.
    """

    rtt_ms: float = 50.0
    repetitions: int = 5
    batch_size: int = 50
    batch_repetitions: int = 3
    big_mib: int = 80
    big_repetitions: int = 3
    postfix: str = "auto"
    libraries: tuple[str, ...] = LIBRARIES


@dataclass
class Results:
    """Everything one run measured."""

    config: Config
    command: str
    machine: dict[str, str]
    latency: list[Measurement] = field(default_factory=list)
    servers: list[str] = field(default_factory=list)
    big: list[BigSample] = field(default_factory=list)
    big_received_ok: bool = True
    notes: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0


def _log(line: str) -> None:
    print(f"[bench] {line}", file=sys.stderr, flush=True)


def run(config: Config, *, command: str = "", progress: Callable[[str], None] = _log) -> Results:
    """Run every measurement ``config`` asks for and judge the targets."""
    started = time.perf_counter()
    results = Results(config=config, command=command, machine=machine_info())
    with tempfile.TemporaryDirectory(prefix="smtpsec-bench-") as tmp:
        workdir = Path(tmp)
        targets: list[Target] = []
        with fake_servers(workdir) as fake:
            targets.append(fake)
            pf = postfix_target() if config.postfix != "no" else None
            if config.postfix == "yes" and pf is None:
                raise SystemExit("--postfix yes: the interop Postfix is not running")
            if pf is not None:
                targets.append(pf)
            elif config.postfix == "auto":
                results.notes.append(
                    "postfix left out: not running (start it with tests/interop/postfix.sh start)"
                )
            for target in targets:
                progress(f"latency suite against {target.name}")
                measured, error = _latency(config, target, progress)
                if target is fake and error:
                    raise RuntimeError(f"the latency suite against {target.name} failed: {error}")
                if error:
                    # The interop Postfix is shared: a test run may restart it (and
                    # change its password) under us. Wait for it and try once more.
                    again = _wait_for_postfix()
                    if again is not None:
                        measured, error = _latency(config, again, progress)
                if error:
                    results.notes.append(f"{target.name} left out: {error}")
                    continue
                results.latency += measured
                results.servers.append(target.name)
        if config.big_mib > 0:
            _run_big(config, workdir, results, progress)
    results.checks = check_targets(results.latency, results.big, batch_size=config.batch_size)
    results.seconds = time.perf_counter() - started
    return results


def _latency(
    config: Config, target: Target, progress: Callable[[str], None]
) -> tuple[list[Measurement], str]:
    """Run the latency suite; on failure return no measurements and the error in words."""
    try:
        measured = run_latency_suite(
            target,
            one_way_delay=config.rtt_ms / 2000.0,
            libraries=config.libraries,
            repetitions=config.repetitions,
            batch_size=config.batch_size,
            batch_repetitions=config.batch_repetitions,
            connect_only=(SMTPSEC_PLAIN,) if "smtpsec" in config.libraries else (),
            progress=progress,
        )
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        progress(f"{target.name}: {error}")
        return [], error
    return measured, ""


def _wait_for_postfix(timeout: float = 60.0) -> Target | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(2.0)
        target = postfix_target()
        if target is not None:
            return target
    return None


def _run_big(
    config: Config, workdir: Path, results: Results, progress: Callable[[str], None]
) -> None:
    path = workdir / "big.eml"
    with SinkServer(workdir) as sink:
        target = sink.target()
        recipient = target.recipients(1)[0]
        size = write_big_message(
            path, config.big_mib * MIB, sender=target.sender, recipient=recipient
        )
        for rep in range(config.big_repetitions):
            for library in config.libraries:
                results.big.append(
                    measure_big(
                        library,
                        host=target.host,
                        port=target.implicit_port,
                        cafile=target.cafile,
                        user=target.username,
                        password=target.password,
                        path=path,
                        sender=target.sender,
                        recipient=recipient,
                    )
                )
            progress(f"big message repetition {rep + 1}/{config.big_repetitions} done")
        # Every send must have delivered the whole file, or the timing means nothing.
        results.big_received_ok = len(sink.message_sizes) == len(results.big) and all(
            received >= size for received in sink.message_sizes
        )


def render(results: Results) -> str:
    """The Markdown report: setup, one table per server, the big message, the targets."""
    cfg = results.config
    m = results.machine
    out = [
        f"## smtpsec benchmark (RTT {cfg.rtt_ms:g} ms)",
        "",
        f"Command: `{results.command}`" if results.command else "",
        f"Machine: {m['nproc']} CPU ({m['cpu']}), Python {m['python']}, {m['os']}, "
        f"{m['openssl']}; smtpsec {m['smtpsec']}, aiosmtplib {m['aiosmtplib']}.",
        f"Repetitions: {cfg.repetitions} (batch {cfg.batch_repetitions}, big message "
        f"{cfg.big_repetitions}); total run time {results.seconds:.0f} s; load average at "
        f"start {m['loadavg']}.",
        "",
        "RT = round trips counted by the proxy (median; range when it varied); "
        "ms = median wall time of the call alone.",
    ]
    for server in results.servers:
        out += [
            "",
            f"### Through the {cfg.rtt_ms:g} ms proxy, server: {server}",
            "",
            latency_table(
                results.latency,
                server=server,
                batch_size=cfg.batch_size,
                libraries=cfg.libraries,
            ),
            "",
            f"Connect + login by SASL mechanism ({server}):",
            "",
            auth_table(results.latency, server=server),
        ]
    if results.big:
        size = results.big[0].size / MIB
        out += [
            "",
            f"### {size:.0f} MiB message from a file (no proxy, server: sink, implicit TLS)",
            "",
            big_table(results.big, libraries=cfg.libraries),
        ]
        if not results.big_received_ok:
            out += ["", "**The sink did not receive every big message in full.**"]
    out += [f"\n**Note:** {note}" for note in results.notes]
    out += ["", "### Targets", "", targets_table(results.checks), ""]
    return "\n".join(out)


def _to_json(results: Results) -> dict[str, object]:
    return {
        "command": results.command,
        "machine": results.machine,
        "config": asdict(results.config),
        "seconds": results.seconds,
        "latency": [
            {
                "scenario": m.scenario,
                "server": m.server,
                "library": m.library,
                "mechanism": m.mechanism,
                "round_trips_median": m.round_trips,
                "seconds_median": m.seconds,
                "samples": [asdict(s) for s in m.samples],
            }
            for m in results.latency
        ],
        "big": [{**asdict(s), "growth": s.growth} for s in results.big],
        "big_received_ok": results.big_received_ok,
        "checks": [asdict(c) for c in results.checks],
        "notes": results.notes,
    }


def parse_args(argv: Sequence[str]) -> tuple[Config, Path | None]:
    """Turn the command line into a :class:`Config` and the optional JSON path."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rtt-ms", type=float, default=50.0, help="added round-trip time")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--repetitions", type=int, help="samples per latency scenario")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--big-mib", type=int, default=80, help="0 skips the big message")
    parser.add_argument("--postfix", choices=("auto", "yes", "no"), default="auto")
    parser.add_argument("--libraries", default=",".join(LIBRARIES))
    parser.add_argument("--json", type=Path, help="also write all samples as JSON here")
    args = parser.parse_args(argv)
    libraries = tuple(x.strip() for x in args.libraries.split(",") if x.strip())
    unknown = set(libraries) - set(LIBRARIES)
    if unknown:
        parser.error(f"unknown libraries {sorted(unknown)}; choose from {', '.join(LIBRARIES)}")
    reps = args.repetitions or (2 if args.quick else 5)
    config = Config(
        rtt_ms=args.rtt_ms,
        repetitions=reps,
        batch_size=args.batch_size,
        batch_repetitions=min(reps, 1 if args.quick else 3),
        big_mib=args.big_mib,
        big_repetitions=1 if args.quick else 3,
        postfix=args.postfix,
        libraries=libraries,
    )
    return config, args.json


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    config, json_path = parse_args(argv)
    command = shlex.join(["python", "benchmarks/run.py", *argv])
    results = run(config, command=command)
    print(render(results))
    if json_path is not None:
        json_path.write_text(json.dumps(_to_json(results), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
