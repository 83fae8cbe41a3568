"""Smoke test for benchmarks/aio_pool.py: it runs end to end and its counts add up.

A benchmark is not a test: nothing here looks at a timing. Tiny numbers (20
messages, N = 1 and 2) keep it to a few seconds, most of it starting the
server process.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import aio_pool  # noqa: E402


def test_benchmark_runs_and_counts() -> None:
    config = aio_pool.Config(messages=20, connections=(1, 2), repetitions=1, batch=5)
    results = aio_pool.run(config, command="smoke", progress=lambda _line: None)

    assert len(results.samples) == 2 * 2 * 2  # payloads x N x libraries
    for sample in results.samples:
        assert sample.accepted == 20
        assert sample.server_messages == 20  # the server's own count agrees
        # Four batches of five over a pool of N, or N aiosmtplib clients: N connections.
        assert sample.server_connections == sample.connections
        assert sample.rate > 0

    text = aio_pool.render(results)
    assert "| Messages as | N | smtpsec.aio.Pool msg/s |" in text
    assert text.count("\n| `EmailMessage` |") == 2
    assert text.count("\n| bytes |") == 2
    assert "Command: `smoke`" in text
    dumped = json.loads(json.dumps(aio_pool._to_json(results)))
    assert dumped["config"]["messages"] == 20
    assert len(dumped["samples"]) == 8


def test_command_line_options() -> None:
    config, json_path = aio_pool.parse_args(
        ["--messages", "100", "--connections", "1,4", "--payload", "bytes", "--json", "o.json"]
    )
    assert (config.messages, config.connections, config.payloads) == (100, (1, 4), ("bytes",))
    assert json_path == Path("o.json")
    default, no_json = aio_pool.parse_args([])
    assert default == aio_pool.Config()
    assert (default.messages, default.connections) == (1000, (1, 2, 4, 8))
    assert no_json is None
