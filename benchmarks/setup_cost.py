"""Client CPU per connect + login with a full-size trust store (issue 14, "set-up paid once").

A connection trusts either a one-CA file or a *bundle* the size of the
default trust (certifi's roots plus the test CA, written to one file). The
server (``smtpsec.testing.SMTPServer``, implicit TLS, AUTH PLAIN) runs in a
child process, so ``time.process_time()`` here counts the client's CPU alone.
Each case opens N connections (connect, TLS, greeting, EHLO, AUTH, QUIT):

* smtpsec with one ``Policy(cafile=...)`` for all N (its TLS context is built
  once per policy and shared; the default policy does the same for certifi);
* smtplib with ``ssl.create_default_context(cafile=...)`` built for each
  connection, as code that passes no context effectively does;
* smtplib with one context reused by all N (the best smtplib can do).

TLS session resumption is off for smtpsec (``tls_sessions=None``), so every
connection does a full handshake, as smtplib's do. It reports; it never asserts.

::

    python benchmarks/setup_cost.py                  # 100 connections per case
    python benchmarks/setup_cost.py --connections 20 --json out.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import smtplib
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

import certifi

import smtpsec
from smtpsec import Security
from smtpsec.testing import CA, SMTPServer

USER, PASSWORD = "bench@example.test", "bench-password"
EHLO_NAME = "bench.localhost"


def _serve(conn: Connection) -> None:
    ca = CA.create()
    leaf = ca.issue("localhost", ips=("127.0.0.1",))
    with SMTPServer(leaf, ca=ca, tls=Security.IMPLICIT_TLS, users={USER: PASSWORD}) as srv:
        conn.send((srv.port, ca.cert_pem.decode()))
        conn.recv()  # until the parent is done


def _smtpsec(port: int, cafile: str) -> Callable[[], None]:
    policy = smtpsec.Policy(cafile=cafile)

    def once() -> None:
        with smtpsec.connect(
            "localhost",
            port,
            security=Security.IMPLICIT_TLS,
            username=USER,
            password=PASSWORD,
            policy=policy,
            local_hostname=EHLO_NAME,
            tls_sessions=None,
            timeout=10,
        ):
            pass

    return once


def _smtplib(port: int, cafile: str, *, reuse: bool) -> Callable[[], None]:
    shared = ssl.create_default_context(cafile=cafile)

    def once() -> None:
        context = shared if reuse else ssl.create_default_context(cafile=cafile)
        with smtplib.SMTP_SSL(
            "localhost", port, local_hostname=EHLO_NAME, context=context, timeout=10
        ) as client:
            client.login(USER, PASSWORD)

    return once


def _cpu_ms(once: Callable[[], None], count: int) -> float:
    start = time.process_time()
    for _ in range(count):
        once()
    return (time.process_time() - start) / count * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.Process(target=_serve, args=(child,), daemon=True)
    server.start()
    port, ca_pem = parent.recv()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        one = Path(tmp, "one-ca.pem")
        one.write_text(ca_pem, encoding="ascii")
        bundle = Path(tmp, "bundle.pem")
        bundle.write_text(Path(certifi.where()).read_text(encoding="ascii") + ca_pem, "ascii")
        roots = len(ssl.create_default_context(cafile=str(bundle)).get_ca_certs())
        for trust, path in (("one CA", one), (f"{roots} roots", bundle)):
            cases = {
                "smtpsec, one Policy": _smtpsec(port, str(path)),
                "smtplib, a context per connection": _smtplib(port, str(path), reuse=False),
                "smtplib, one reused context": _smtplib(port, str(path), reuse=True),
            }
            samples: dict[str, list[float]] = {name: [] for name in cases}
            for once in cases.values():
                _cpu_ms(once, 3)  # warm up: imports, smtpsec's shared context
            for _ in range(args.repetitions):  # interleaved, so drift hits all alike
                for name, once in cases.items():
                    samples[name].append(_cpu_ms(once, args.connections))
            results[trust] = {name: statistics.median(ms) for name, ms in samples.items()}
            print(f"{trust}: done", file=sys.stderr)
    parent.send("done")
    server.join(timeout=10)

    names = list(next(iter(results.values())))
    print("| trust | " + " | ".join(f"{n}: client CPU ms" for n in names) + " |")
    print("|---|" + "---:|" * len(names))
    for trust, row in results.items():
        print(f"| {trust} | " + " | ".join(f"{row[n]:.2f}" for n in names) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
