"""Turn measurements into Markdown tables, target verdicts and a machine description.

The targets are the ones stated in the issue "Sending at the protocol's
round-trip minimum"; each verdict names the measured numbers next to smtplib's
and aiosmtplib's from the same run, so a reader can check the ratio themselves.
"""

from __future__ import annotations

import os
import platform
import ssl
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Final

from .bigmessage import MIB, BigSample
from .clients import LIBRARIES, SMTPSEC_PLAIN
from .scenarios import SCENARIOS, Measurement

__all__ = [
    "Check",
    "auth_table",
    "big_table",
    "check_targets",
    "latency_table",
    "machine_info",
    "targets_table",
]

SUBJECT: Final = "smtpsec"
#: Round-trip ceilings from the issue (smtpsec only).
MAX_RT_TEN_RECIPIENTS: Final = 1.5
MAX_RT_BATCH: Final = 10
MAX_GROWTH_MIB: Final = 32


@dataclass(frozen=True, slots=True)
class Check:
    """One target verdict.

    Attributes:
        target: the target in words.
        server: which server the numbers come from.
        measured: smtpsec's number and the peers' numbers, in words.
        met: whether smtpsec met the target.
    """

    target: str
    server: str
    measured: str
    met: bool


def _find(ms: Sequence[Measurement], scenario: str, server: str, lib: str) -> Measurement | None:
    return next(
        (m for m in ms if m.scenario == scenario and m.server == server and m.library == lib), None
    )


def _rt(m: Measurement | None) -> str:
    if m is None:
        return "–"
    low, high = m.round_trip_range
    median = f"{m.round_trips:g}"
    return median if low == high else f"{median} ({low}–{high})"


def _ms(m: Measurement | None) -> str:
    return "–" if m is None else f"{m.seconds * 1000:.0f}"


def _ratio(num: float | None, den: float | None) -> str:
    if num is None or den is None or den <= 0:
        return "–"
    return f"×{num / den:.2f}"


def _label(scenario: str, batch_size: int) -> str:
    return SCENARIOS[scenario].format(n=batch_size)


def latency_table(
    measurements: Sequence[Measurement], *, server: str, batch_size: int, libraries: Sequence[str]
) -> str:
    """Markdown: round trips and median wall time per scenario and library, plus time ratios."""
    peers = [lib for lib in libraries if lib != SUBJECT]
    head = (
        ["Scenario"]
        + [f"{lib} RT" for lib in libraries]
        + [f"{lib} ms" for lib in libraries]
        + [f"{SUBJECT} time ÷ {peer}" for peer in peers if SUBJECT in libraries]
    )
    rows = []
    for scenario in SCENARIOS:
        found = {lib: _find(measurements, scenario, server, lib) for lib in libraries}
        if not any(found.values()):
            continue
        mine = found.get(SUBJECT)
        row = [_label(scenario, batch_size)]
        row += [_rt(found[lib]) for lib in libraries]
        row += [_ms(found[lib]) for lib in libraries]
        if SUBJECT in libraries:
            for peer in peers:
                other = found[peer]
                row.append(_ratio(mine.seconds if mine else None, other.seconds if other else None))
        rows.append(row)
    return _markdown(head, rows)


def auth_table(measurements: Sequence[Measurement], *, server: str) -> str:
    """Markdown: connect + login for smtpsec's own mechanism choice, AUTH PLAIN, and smtplib."""
    head = ["Client (mechanism)", "implicit TLS RT", "ms", "STARTTLS RT", "ms"]
    rows = []
    for lib in (SUBJECT, SMTPSEC_PLAIN, "smtplib", "aiosmtplib"):
        implicit = _find(measurements, "connect_implicit", server, lib)
        starttls = _find(measurements, "connect_starttls", server, lib)
        if implicit is None and starttls is None:
            continue
        mech = (implicit or starttls).mechanism  # type: ignore[union-attr]
        name = 'smtpsec, auth="PLAIN"' if lib == SMTPSEC_PLAIN else lib
        rows.append(
            [f"{name} ({mech or '?'})", _rt(implicit), _ms(implicit), _rt(starttls), _ms(starttls)]
        )
    return _markdown(head, rows)


def big_table(samples: Sequence[BigSample], *, libraries: Sequence[str]) -> str:
    """Markdown: median time, throughput and worst peak-RSS growth per library."""
    head = ["Library", "median s", "MiB/s", "peak RSS growth MiB (worst)", "time ÷ smtplib"]
    base = _median_seconds(samples, "smtplib")
    rows = []
    for lib in libraries:
        mine = [s for s in samples if s.library == lib]
        if not mine:
            continue
        seconds = _median_seconds(samples, lib)
        size = mine[0].size
        rows.append(
            [
                lib,
                f"{seconds:.2f}",
                f"{size / MIB / seconds:.0f}" if seconds else "–",
                f"{max(s.growth for s in mine) / MIB:.1f}",
                _ratio(seconds, base),
            ]
        )
    return _markdown(head, rows)


def _median_seconds(samples: Sequence[BigSample], library: str) -> float | None:
    times = [s.seconds for s in samples if s.library == library]
    return statistics.median(times) if times else None


def check_targets(
    measurements: Sequence[Measurement], big: Sequence[BigSample], *, batch_size: int
) -> list[Check]:
    """Judge smtpsec against the issue's targets, per server measured."""
    checks = []
    for server in dict.fromkeys(m.server for m in measurements):

        def trio(scenario: str, srv: str = server) -> tuple[Measurement | None, ...]:
            return tuple(_find(measurements, scenario, srv, lib) for lib in LIBRARIES)

        mine, lib, aio = trio("send_10")
        if mine is not None:
            checks.append(
                Check(
                    f"1 message to 10 recipients ≤ {MAX_RT_TEN_RECIPIENTS:g} round trips",
                    server,
                    f"{_rt(mine)} RT (smtplib {_rt(lib)}, aiosmtplib {_rt(aio)})",
                    mine.round_trip_range[1] <= MAX_RT_TEN_RECIPIENTS,
                )
            )
        mine, lib, aio = trio("batch")
        if mine is not None:
            checks.append(
                Check(
                    f"{batch_size} messages via send_many ≤ {MAX_RT_BATCH} round trips",
                    server,
                    f"{_rt(mine)} RT (smtplib {_rt(lib)}, aiosmtplib {_rt(aio)})",
                    mine.round_trip_range[1] <= MAX_RT_BATCH,
                )
            )
        for scenario in ("connect_implicit", "connect_starttls"):
            mine, lib, aio = trio(scenario)
            if mine is None or lib is None:
                continue
            plain = _find(measurements, scenario, server, SMTPSEC_PLAIN)
            aside = ""
            if plain is not None and plain.mechanism != mine.mechanism:
                ratio = _ratio(plain.seconds, lib.seconds)
                aside = f'; with auth="PLAIN": {_rt(plain)} RT, time {ratio} smtplib\'s'
            checks.append(
                Check(
                    f"{SCENARIOS[scenario]}: no more round trips than smtplib",
                    server,
                    f"{_rt(mine)} RT via {mine.mechanism} vs smtplib {_rt(lib)} via "
                    f"{lib.mechanism}; time {_ratio(mine.seconds, lib.seconds)} smtplib's, "
                    f"{_ratio(mine.seconds, aio.seconds if aio else None)} aiosmtplib's" + aside,
                    mine.round_trips <= lib.round_trips,
                )
            )
    mine_big = [s for s in big if s.library == SUBJECT]
    if mine_big:
        worst = max(s.growth for s in mine_big) / MIB
        size = mine_big[0].size / MIB
        checks.append(
            Check(
                f"{size:.0f} MiB message: peak RSS growth ≤ {MAX_GROWTH_MIB} MiB",
                "sink",
                f"{worst:.1f} MiB (smtplib {_worst(big, 'smtplib')}, "
                f"aiosmtplib {_worst(big, 'aiosmtplib')})",
                worst <= MAX_GROWTH_MIB,
            )
        )
        mine_s = _median_seconds(big, SUBJECT)
        base = _median_seconds(big, "smtplib")
        if mine_s is not None and base is not None:
            checks.append(
                Check(
                    f"{size:.0f} MiB message: time ≤ smtplib's",
                    "sink",
                    f"{mine_s:.2f} s vs smtplib {base:.2f} s ({_ratio(mine_s, base)})",
                    mine_s <= base,
                )
            )
    return checks


def _worst(big: Sequence[BigSample], library: str) -> str:
    growth = [s.growth for s in big if s.library == library]
    return f"{max(growth) / MIB:.1f} MiB" if growth else "–"


def targets_table(checks: Sequence[Check]) -> str:
    """Markdown: one row per target verdict."""
    rows = [[c.target, c.server, c.measured, "yes" if c.met else "**NO**"] for c in checks]
    return _markdown(["Target", "Server", "Measured", "Met"], rows, numeric=False)


def _markdown(head: Sequence[str], rows: Sequence[Sequence[str]], *, numeric: bool = True) -> str:
    """A Markdown table; with ``numeric`` every column but the first is right-aligned."""
    lines = ["| " + " | ".join(head) + " |"]
    lines.append("|" + "|".join("---:" if i and numeric else "---" for i in range(len(head))) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def machine_line(info: Mapping[str, str]) -> str:
    """``Machine: key value, ...``: the short form the scripts print under their title."""
    return "Machine: " + ", ".join(f"{key} {value}" for key, value in info.items())


def run_footer(machine: Mapping[str, str], command: str | None, seconds: float) -> list[str]:
    """The lines that end a throughput report: the command, then the machine and run time."""
    lines = [f"Command: `{command}`"] if command else []
    lines.append(
        f"Machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['os']}, "
        f"{machine['implementation']} {machine['python']}, {machine['openssl']}; "
        f"smtpsec {machine['smtpsec']}, aiosmtplib {machine['aiosmtplib']}; load average "
        f"at the start {machine['loadavg']}; total run time {seconds:.0f} s."
    )
    return lines


def machine_info() -> dict[str, str]:
    """Describe the machine and the library versions for the record."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {}
    for dist in ("smtpsec", "aiosmtplib"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "os": platform.platform(),
        "openssl": ssl.OPENSSL_VERSION,
        # Other work on the machine skews CPU-bound numbers (the big message most).
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        **versions,
    }
