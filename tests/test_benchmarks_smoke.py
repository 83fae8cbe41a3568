"""Smoke test for benchmarks/: the harness runs end to end and counts round trips.

Benchmarks are not tests: nothing here looks at a timing. It checks that the
delay proxy counts round trips the way its definition says (a lock-step
exchange is one round trip per command, a pipelined one is one in all), that
every scenario produces a sample for every library, and that the report and
the JSON can be rendered. Sizes are tiny so the whole file runs in seconds.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import run as bench  # noqa: E402
from benchmarks.clients import LIBRARIES, SMTPSEC_PLAIN  # noqa: E402
from benchmarks.proxy import DelayProxy, Traffic  # noqa: E402
from benchmarks.scenarios import SCENARIOS  # noqa: E402


@pytest.fixture
def line_echo() -> Iterator[tuple[str, int]]:
    """A loopback server that answers every line it reads with ``ok\\r\\n``."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5.0)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn, conn.makefile("rb") as lines:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for _line in lines:
                conn.sendall(b"ok\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[:2]
    listener.close()
    thread.join(5.0)


def _talk(address: tuple[str, int], *, pipelined: bool, commands: int) -> None:
    with socket.create_connection(address, timeout=5.0) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = sock.makefile("rb")
        if pipelined:
            sock.sendall(b"NOOP\r\n" * commands)
            replies = [reader.readline() for _ in range(commands)]
        else:
            replies = []
            for _ in range(commands):
                sock.sendall(b"NOOP\r\n")
                replies.append(reader.readline())
        assert replies == [b"ok\r\n"] * commands
        reader.close()


@pytest.mark.parametrize(("pipelined", "expected"), [(False, 5), (True, 1)])
def test_proxy_counts_round_trips(
    line_echo: tuple[str, int], pipelined: bool, expected: int
) -> None:
    """Lock-step: one round trip per command; pipelined: one for the whole group."""
    with DelayProxy(line_echo, one_way_delay=0.005) as proxy:
        before = proxy.traffic()
        _talk(proxy.address, pipelined=pipelined, commands=5)
        spent = proxy.traffic() - before
        assert proxy.wait_idle(5.0)
    assert spent.round_trips == expected
    assert spent.client_bytes == len(b"NOOP\r\n") * 5
    assert spent.server_bytes == len(b"ok\r\n") * 5
    assert spent.connections == 1


def test_proxy_rejects_negative_delay() -> None:
    with pytest.raises(ValueError, match="one_way_delay"):
        DelayProxy(("127.0.0.1", 1), one_way_delay=-0.1)


def test_proxy_closes_client_when_upstream_refuses(refused_port: int) -> None:
    """An unreachable target ends the client's connection instead of hanging it."""
    with DelayProxy(("127.0.0.1", refused_port), one_way_delay=0.0) as proxy:
        with socket.create_connection(proxy.address, timeout=5.0) as sock:
            assert sock.recv(10) == b""
        assert proxy.wait_idle(5.0)
        assert proxy.traffic() == Traffic(connections=1)


def test_quick_flag_lowers_repetitions() -> None:
    config, json_path = bench.parse_args(["--quick", "--json", "x.json", "--rtt-ms", "20"])
    assert (config.repetitions, config.batch_repetitions, config.big_repetitions) == (2, 1, 1)
    assert config.rtt_ms == 20.0
    assert json_path == Path("x.json")


def test_harness_runs_every_scenario_and_counts(tmp_path: Path) -> None:
    """One tiny run: every scenario x library has a sample, with plausible counts."""
    config = bench.Config(
        rtt_ms=4.0,
        repetitions=1,
        batch_size=3,
        batch_repetitions=1,
        big_mib=1,
        big_repetitions=1,
        postfix="no",
    )
    results = bench.run(config, command="smoke", progress=lambda _line: None)

    found = {(m.scenario, m.library): m for m in results.latency}
    for scenario in SCENARIOS:
        for library in LIBRARIES:
            m = found[(scenario, library)]
            assert len(m.samples) == 1
            assert m.samples[0].round_trips >= 1
    assert {k for k in found if k[1] == SMTPSEC_PLAIN} == {
        ("connect_implicit", SMTPSEC_PLAIN),
        ("connect_starttls", SMTPSEC_PLAIN),
    }
    # Lock-step clients pay MAIL + 10 RCPT + DATA + body: each is its own round trip.
    assert found[("send_10", "smtplib")].round_trips >= 13
    assert found[("send_10", "aiosmtplib")].round_trips >= 13
    # smtpsec pipelines the whole transaction (PIPELINING + CHUNKING).
    assert found[("send_10", "smtpsec")].round_trips < found[("send_10", "smtplib")].round_trips
    assert found[("batch", "smtplib")].round_trips >= 4 * config.batch_size
    assert found[("connect_implicit", "smtpsec")].mechanism == "PLAIN"

    assert {s.library for s in results.big} == set(LIBRARIES)
    assert all(s.size >= 1024 * 1024 and s.growth >= 0 for s in results.big)
    assert results.big_received_ok

    checks = {(c.target, c.server) for c in results.checks}
    assert ("1 message to 10 recipients ≤ 1.5 round trips", "smtpsec.testing") in checks

    text = bench.render(results)
    assert "| Scenario |" in text
    assert "### Targets" in text
    out = tmp_path / "out.json"
    out.write_text(json.dumps(bench._to_json(results)))
    assert json.loads(out.read_text())["config"]["batch_size"] == 3


def test_web_requests_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """The per-request benchmark runs end to end with tiny numbers (no timing checked)."""
    from benchmarks import web_requests

    argv = ["--requests", "2", "--threads", "2", "--rtt-ms", "0", "--no-django"]
    assert web_requests.main(argv) == 0
    out = capsys.readouterr().out
    for row in ("| smtplib |", "| smtpsec.send |", "| smtpsec Pool.shared |"):
        assert row in out


def test_setup_cost_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """The set-up cost benchmark connects and logs in for every case (no timing checked)."""
    from benchmarks import setup_cost

    assert setup_cost.main(["--connections", "1", "--repetitions", "1"]) == 0
    out = capsys.readouterr().out
    assert "| one CA |" in out
    assert " roots |" in out
    assert "smtplib, a context per connection" in out


def test_cpu_per_message_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """The CPU-per-message benchmark sends every message of every case (no timing checked)."""
    from benchmarks import cpu_per_message

    argv = ["--messages", "30", "--repetitions", "1", "--warmup", "2", "--raw-window", "7"]
    assert cpu_per_message.main(argv) == 0  # 1 when a message was not accepted by both ends
    out = capsys.readouterr().out
    for call in ("send_many(Outgoing(bytes", "send_many(EmailMessage)", "`sendmail` loop", "raw"):
        assert call in out
    assert "not all accepted" not in out


def test_one_shot_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """The one-shot benchmark runs every client in both TLS modes; early pipelining pays off.

    Round trips are counts, not timings: with PIPECONNECT learnt, the early
    one-shot waits for fewer of them than the normal one.
    """
    from benchmarks import one_shot

    # A delay keeps the relay's count of who spoke when unambiguous.
    assert one_shot.main(["--server", "testing", "--repeat", "1", "--rtt-ms", "20"]) == 0
    out = capsys.readouterr().out
    tables = out.split("### ")[1:]
    assert [t.splitlines()[0] for t in tables] == [
        "smtpsec.testing, implicit TLS, 20 ms RTT",
        "smtpsec.testing, STARTTLS, 20 ms RTT",
    ]
    for table in tables:
        trips = {
            line.split("|")[1].strip(): float(line.split("|")[2])
            for line in table.splitlines()
            if line.startswith("| ") and not line.startswith("| client")
        }
        assert set(trips) == set(one_shot.CLIENTS)
        assert trips["smtpsec.send early"] < trips["smtpsec.send"] < trips["smtplib"]
