"""One message per connection: connect, AUTH PLAIN, send, QUIT, over a 50 ms link.

Usage::

    python benchmarks/one_shot.py [--repeat 7] [--rtt-ms 50] [--server exim,testing,postfix]
                                  [--direct]

Per library and TLS mode, ``--repeat`` one-shot sends, each on a new connection:

* ``smtplib``: ``SMTP_SSL`` (or ``SMTP`` + ``starttls``) + ``login`` +
  ``send_message`` + ``quit``;
* ``aiosmtplib``: ``SMTP(...).connect()`` (logs in) + ``send_message`` + ``quit``;
* ``smtpsec.send``: the one-shot ``smtpsec.send(..., auth="PLAIN")``;
* ``smtpsec.send early``: the same with ``early_pipelining=True``; one send
  before the measured ones lets the process learn that the server advertises
  ``PIPECONNECT``;
* ``smtpsec.aio.send`` and ``smtpsec.aio.send early``: the same through
  ``smtpsec.aio.send``, each call in ``asyncio.run``.

Servers: a real Exim 4.96 (``tests/interop/exim.sh`` unpacks it; this script
starts a private instance with ``PIPECONNECT`` advertised),
``smtpsec.testing.SMTPServer`` advertising ``PIPECONNECT``, and the interop
Postfix when ``tests/interop/postfix.sh start`` runs it (no ``PIPECONNECT``).
Every client reaches the server through the delay proxy of
``benchmarks/proxy.py``, which counts round trips; ``--direct`` connects
without it (loopback, no round trips counted), where what the server's TCP
stack does with delayed ACKs shows. Reported: round trips and milliseconds per
message (medians) and the ratio to smtplib in the same run. Nothing here
asserts a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Final

if __package__ in (None, ""):  # run as a script: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import smtpsec
import smtpsec.aio
from benchmarks.clients import EHLO_NAME, TIMEOUT, AiosmtplibAdapter, SmtplibAdapter
from benchmarks.proxy import DelayProxy
from benchmarks.report import machine_info, machine_line
from benchmarks.servers import Target, fake_servers, postfix_target
from smtpsec import ConnectOptions
from smtpsec.testing import CA, DEFAULT_EXTENSIONS

INTEROP: Final = Path(__file__).resolve().parent.parent / "tests" / "interop"
CLIENTS: Final = (
    "smtplib",
    "aiosmtplib",
    "smtpsec.send",
    "smtpsec.send early",
    "smtpsec.aio.send",
    "smtpsec.aio.send early",
)
_MISSING: Final = {
    "exim": "unpack it with tests/interop/exim.sh",
    "postfix": "not running (tests/interop/postfix.sh start)",
}


def _message(target: Target, n: int) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"] = target.sender, target.recipients(1)[0]
    msg["Subject"] = f"one-shot {n}"
    msg.set_content("A password reset link.\n" * 10)
    return msg


@contextlib.contextmanager
def testing_server(workdir: Path) -> Iterator[Target]:
    """``smtpsec.testing.SMTPServer`` on two ports, advertising PIPECONNECT."""
    with fake_servers(workdir, extensions=(*DEFAULT_EXTENSIONS, "PIPECONNECT")) as target:
        yield target


@contextlib.contextmanager
def exim_server(workdir: Path) -> Iterator[Target | None]:
    """A private Exim (see tests/interop/exim_server.py), or ``None`` when it cannot run."""
    del workdir  # Exim's user cannot enter a root-only temp dir: it makes its own
    sys.path.insert(0, str(INTEROP))
    import exim_server

    if exim_server.missing() is not None:
        yield None
        return
    with exim_server.running_exim(CA.create("smtpsec benchmark CA")) as server:
        yield Target(
            name="Exim 4.96",
            host="localhost",
            implicit_port=server.implicit_port,
            starttls_port=server.starttls_port,
            cafile=str(server.cafile),
            username=server.user,
            password=server.password,
            sender=f"sender@{exim_server.DOMAIN}",
            recipient_domain=exim_server.DOMAIN,
        )


@contextlib.contextmanager
def postfix_server(workdir: Path) -> Iterator[Target | None]:
    """The interop Postfix, when it runs."""
    del workdir
    yield postfix_target()


SERVERS: Final = {"exim": exim_server, "testing": testing_server, "postfix": postfix_server}


def _senders(target: Target, port: int, implicit: bool) -> dict[str, Callable[[int], object]]:
    security = smtpsec.Security.IMPLICIT_TLS if implicit else smtpsec.Security.STARTTLS
    policy = smtpsec.Policy(cafile=target.cafile)

    def library(adapter: Callable[[], SmtplibAdapter | AiosmtplibAdapter]) -> Callable[[int], None]:
        def send(n: int) -> None:
            client = adapter()
            client.connect(target, port, implicit=implicit)
            client.send(_message(target, n))
            client.close()

        return send

    def options(early: bool) -> ConnectOptions:
        return {
            "security": security,
            "username": target.username,
            "password": target.password,
            "auth": "PLAIN",
            "policy": policy,
            "timeout": TIMEOUT,
            "local_hostname": EHLO_NAME,
            "early_pipelining": early,
        }

    def one_shot(early: bool) -> Callable[[int], object]:
        def send(n: int) -> object:
            return smtpsec.send(_message(target, n), host=target.host, port=port, **options(early))

        return send

    def aio_one_shot(early: bool) -> Callable[[int], object]:
        def send(n: int) -> object:
            return asyncio.run(
                smtpsec.aio.send(_message(target, n), host=target.host, port=port, **options(early))
            )

        return send

    return {
        "smtplib": library(SmtplibAdapter),
        "aiosmtplib": library(AiosmtplibAdapter),
        "smtpsec.send": one_shot(False),
        "smtpsec.send early": one_shot(True),
        "smtpsec.aio.send": aio_one_shot(False),
        "smtpsec.aio.send early": aio_one_shot(True),
    }


def measure(
    target: Target, *, implicit: bool, repeat: int, rtt_ms: float, direct: bool = False
) -> dict[str, tuple[float | None, float]]:
    """Median round trips (``None`` when ``direct``) and milliseconds per message, per client."""
    port = target.implicit_port if implicit else target.starttls_port
    results: dict[str, tuple[float | None, float]] = {}
    with contextlib.ExitStack() as stack:
        proxy = None
        if not direct:
            proxy = stack.enter_context(
                DelayProxy((target.host, port), one_way_delay=rtt_ms / 2000)
            )
            port = proxy.address[1]
        for name, send in _senders(target, port, implicit).items():
            send(-1)  # warm-up; for "early" it is the session that learns PIPECONNECT
            trips, times = [], []
            for n in range(repeat):
                if proxy is not None:
                    proxy.wait_idle()
                    before = proxy.traffic()
                start = time.perf_counter()
                send(n)
                times.append(time.perf_counter() - start)
                if proxy is not None:
                    trips.append((proxy.traffic() - before).round_trips)
            median_trips = statistics.median(trips) if trips else None
            results[name] = (median_trips, statistics.median(times) * 1000)
    return results


def _table(
    target: Target, implicit: bool, results: dict[str, tuple[float | None, float]], *, how: str
) -> None:
    mode = "implicit TLS" if implicit else "STARTTLS"
    base = results["smtplib"][1]
    print(f"### {target.name}, {mode}, {how}")
    print()
    print("| client | round trips | ms per message | × smtplib |")
    print("|---|---:|---:|---:|")
    for name in CLIENTS:
        trips, ms = results[name]
        shown = "–" if trips is None else f"{trips:g}"
        print(f"| {name} | {shown} | {ms:.1f} | {ms / base:.2f} |")
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--rtt-ms", type=float, default=50.0)
    parser.add_argument(
        "--server", default="exim,testing,postfix", help="comma-separated: exim, testing, postfix"
    )
    parser.add_argument("--direct", action="store_true", help="no delay proxy (loopback)")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.server.split(",") if name.strip()]
    unknown = sorted(set(names) - set(SERVERS))
    if unknown:
        parser.error(f"unknown --server {', '.join(unknown)}; choose from {', '.join(SERVERS)}")
    how = "direct (loopback)" if args.direct else f"{args.rtt_ms:g} ms RTT"
    print(f"## One message per connection, {how}")
    print()
    direct = " --direct" if args.direct else f" --rtt-ms {args.rtt_ms:g}"
    print(
        f"Command: `python benchmarks/one_shot.py --repeat {args.repeat}{direct} "
        f"--server {','.join(names)}`  "
    )
    print(machine_line(machine_info()))
    print()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for name in names:
            with SERVERS[name](workdir) as target:
                if target is None:
                    print(f"{name} left out: {_MISSING[name]}")
                    print()
                    continue
                for implicit in (True, False):
                    results = measure(
                        target,
                        implicit=implicit,
                        repeat=args.repeat,
                        rtt_ms=args.rtt_ms,
                        direct=args.direct,
                    )
                    _table(target, implicit, results, how=how)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
