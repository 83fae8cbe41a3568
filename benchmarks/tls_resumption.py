"""CPU a reconnect saves when it resumes its TLS session (issue 15).

The server (``smtpsec.testing.SMTPServer``, implicit TLS) runs in a child
process, so ``time.process_time()`` here counts the client's CPU alone. Each
round opens N connections (connect, TLS handshake, greeting, EHLO, QUIT)
with resumption off (``tls_sessions=None``) and N with one shared
:class:`smtpsec.TLSSessionCache`, for TLS 1.3 and TLS 1.2, and reports the
client CPU per connection and the saving. It reports; it never asserts.

::

    python benchmarks/tls_resumption.py              # 200 connections per case
    python benchmarks/tls_resumption.py --connections 50 --key ec
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import ssl
import statistics
import sys
import time
from multiprocessing.connection import Connection

import smtpsec
from smtpsec import Security, TLSSessionCache
from smtpsec.testing import CA, SMTPServer


def _serve(conn: Connection, version: str) -> None:
    ca = CA.create()
    leaf = ca.issue("localhost", ips=("127.0.0.1",))
    tls = getattr(ssl.TLSVersion, version)
    with SMTPServer(leaf, tls=Security.IMPLICIT_TLS, max_version=tls) as srv:
        conn.send((srv.port, ca.cert_pem.decode()))
        conn.recv()  # until the parent is done


def _round(port: int, policy: smtpsec.Policy, count: int, cache: object) -> tuple[float, int]:
    resumed = 0
    start = time.process_time()
    for _ in range(count):
        with smtpsec.connect(
            "localhost",
            port,
            security=Security.IMPLICIT_TLS,
            policy=policy,
            tls_sessions=cache,  # type: ignore[arg-type]
            timeout=10,
        ) as session:
            resumed += session.report.tls_resumed
    return (time.process_time() - start) / count, resumed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    results = {}
    for version in ("TLSv1_3", "TLSv1_2"):
        parent, child = multiprocessing.Pipe()
        server = multiprocessing.Process(target=_serve, args=(child, version), daemon=True)
        server.start()
        port, cadata = parent.recv()
        policy = smtpsec.Policy(cadata=cadata)
        _round(port, policy, 5, None)  # warm up (imports, the context)
        full, fast, hits = [], [], 0
        for _ in range(args.repetitions):
            full.append(_round(port, policy, args.connections, None)[0])
            cache = TLSSessionCache()
            _round(port, policy, 1, cache)  # the first connection fills the cache
            cpu, resumed = _round(port, policy, args.connections, cache)
            fast.append(cpu)
            hits += resumed
        parent.send("done")
        server.join(timeout=10)
        f, r = statistics.median(full), statistics.median(fast)
        results[version] = {
            "full_handshake_ms": round(f * 1000, 3),
            "resumed_ms": round(r * 1000, 3),
            "saved_ms": round((f - r) * 1000, 3),
            "saved_percent": round(100 * (f - r) / f, 1),
            "resumed_connections": hits,
            "connections": args.connections * args.repetitions,
        }
    print("| TLS | client CPU / reconnect, full | resumed | saved | resumed/total |")
    print("|---|---|---|---|---|")
    for version, row in results.items():
        print(
            f"| {version.replace('_', '.')} | {row['full_handshake_ms']} ms | "
            f"{row['resumed_ms']} ms | {row['saved_ms']} ms ({row['saved_percent']} %) | "
            f"{row['resumed_connections']}/{row['connections']} |"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(results, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
