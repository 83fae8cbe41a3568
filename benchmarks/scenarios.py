"""The latency scenarios: every library, through the delay proxy, against one server.

For each library this measures, in the same run and interleaved repetition by
repetition (so drift hits every library alike):

1. ``connect_implicit``: connect + TLS + EHLO + AUTH on the implicit-TLS port;
2. ``connect_starttls``: the same on the STARTTLS port;
3. ``send_1``: one message to one recipient on an open session;
4. ``send_10``: one message to ten recipients on an open session;
5. ``batch``: N messages (one recipient each) on an open session, with the
   library's best API (``send_many`` for smtpsec, a loop elsewhere).

Each sample records the round trips the proxy counted and the wall time of the
call alone; closing a connection is never part of a sample.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from functools import partial
from typing import Final

from .clients import Adapter, make_adapter
from .proxy import DelayProxy
from .servers import Target

__all__ = ["SCENARIOS", "Measurement", "Sample", "run_latency_suite"]

#: Scenario key -> label, in table order.
SCENARIOS: Final = {
    "connect_implicit": "connect + login, implicit TLS",
    "connect_starttls": "connect + login, STARTTLS",
    "send_1": "1 message, 1 recipient (open session)",
    "send_10": "1 message, 10 recipients (open session)",
    "batch": "{n} messages, one connection (open session)",
}
_BODY: Final = "This is a benchmark message.\n" * 32  # about 1 KiB


@dataclass(frozen=True, slots=True)
class Sample:
    """One repetition: round trips counted by the proxy and wall time in seconds."""

    round_trips: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Measurement:
    """All repetitions of one scenario for one library against one server.

    Attributes:
        scenario: a key of :data:`SCENARIOS`.
        server: the :attr:`Target.name`.
        library: the client library.
        samples: one per repetition.
        mechanism: the SASL mechanism the library used (connect scenarios).
    """

    scenario: str
    server: str
    library: str
    samples: tuple[Sample, ...]
    mechanism: str | None = None

    @property
    def round_trips(self) -> float:
        """Median round trips."""
        return statistics.median(s.round_trips for s in self.samples)

    @property
    def round_trip_range(self) -> tuple[int, int]:
        """Fewest and most round trips seen (equal when the count is stable)."""
        counts = [s.round_trips for s in self.samples]
        return min(counts), max(counts)

    @property
    def seconds(self) -> float:
        """Median wall time."""
        return statistics.median(s.seconds for s in self.samples)


def make_message(target: Target, recipients: int, index: int = 0) -> EmailMessage:
    """A small text message from ``target.sender`` to ``recipients`` addresses."""
    msg = EmailMessage()
    msg["From"] = target.sender
    msg["To"] = ", ".join(target.recipients(recipients))
    msg["Subject"] = f"smtpsec benchmark {index}"
    msg.set_content(_BODY)
    return msg


def _timed(proxy: DelayProxy, action: Callable[[], None]) -> Sample:
    before = proxy.traffic()
    start = time.perf_counter()
    action()
    seconds = time.perf_counter() - start
    return Sample((proxy.traffic() - before).round_trips, seconds)


def _connect_sample(
    library: str, target: Target, proxy: DelayProxy, *, implicit: bool
) -> tuple[Sample, str | None]:
    adapter = make_adapter(library)
    port = proxy.address[1]
    try:
        sample = _timed(proxy, lambda: adapter.connect(target, port, implicit=implicit))
    finally:
        adapter.close()
        proxy.wait_idle()
    return sample, adapter.mechanism


def run_latency_suite(
    target: Target,
    *,
    one_way_delay: float,
    libraries: Sequence[str],
    repetitions: int,
    batch_size: int = 50,
    batch_repetitions: int | None = None,
    connect_only: Sequence[str] = (),
    progress: Callable[[str], None] = lambda _line: None,
) -> list[Measurement]:
    """Measure every scenario for every library through a fresh delay proxy.

    Args:
        target: the server.
        one_way_delay: seconds added each way (RTT is twice this).
        libraries: library names (see :data:`~benchmarks.clients.LIBRARIES`).
        repetitions: samples per scenario.
        batch_size: messages in the batch scenario.
        batch_repetitions: samples of the batch scenario (default ``repetitions``).
        connect_only: extra adapter names measured in the connect scenarios only
            (e.g. :data:`~benchmarks.clients.SMTPSEC_PLAIN`).
        progress: called with a short line after each step.

    Returns:
        One :class:`Measurement` per (scenario, library).
    """
    samples: dict[tuple[str, str], list[Sample]] = {}
    mechanisms: dict[tuple[str, str], str | None] = {}

    def add(scenario: str, library: str, sample: Sample) -> None:
        samples.setdefault((scenario, library), []).append(sample)

    with (
        DelayProxy((target.host, target.implicit_port), one_way_delay=one_way_delay) as implicit,
        DelayProxy((target.host, target.starttls_port), one_way_delay=one_way_delay) as starttls,
    ):
        for rep in range(repetitions):
            for library in [*libraries, *connect_only]:
                for key, proxy, is_implicit in (
                    ("connect_implicit", implicit, True),
                    ("connect_starttls", starttls, False),
                ):
                    sample, mech = _connect_sample(library, target, proxy, implicit=is_implicit)
                    add(key, library, sample)
                    mechanisms[(key, library)] = mech
            progress(f"{target.name}: connect repetition {rep + 1}/{repetitions} done")

        sessions: dict[str, Adapter] = {}
        try:
            for library in libraries:
                sessions[library] = make_adapter(library)
                sessions[library].connect(target, implicit.address[1], implicit=True)
            one = make_message(target, 1)
            ten = make_message(target, 10)
            batch = [make_message(target, 1, i) for i in range(batch_size)]
            for _rep in range(repetitions):
                for library, adapter in sessions.items():
                    add("send_1", library, _timed(implicit, partial(adapter.send, one)))
                    add("send_10", library, _timed(implicit, partial(adapter.send, ten)))
            progress(f"{target.name}: single-message scenarios done")
            for rep in range(batch_repetitions or repetitions):
                for library, adapter in sessions.items():
                    add("batch", library, _timed(implicit, partial(adapter.send_many, batch)))
                progress(f"{target.name}: batch repetition {rep + 1} done")
        finally:
            for adapter in sessions.values():
                adapter.close()
    return [
        Measurement(
            scenario=scenario,
            server=target.name,
            library=library,
            samples=tuple(found),
            mechanism=mechanisms.get((scenario, library)),
        )
        for (scenario, library), found in samples.items()
    ]
