"""A web application's mail: one message per request, over a 50 ms link.

Usage::

    python benchmarks/web_requests.py [--requests 20] [--rtt-ms 50] [--threads 1,2,4,8]

Part 1, "requests": ``--requests`` messages sent one after another, each as a
web request would send it:

* ``smtplib``: ``SMTP_SSL`` + ``login`` + ``send_message`` + ``quit`` per message;
* ``smtpsec.send``: the one-shot ``smtpsec.send()`` per message;
* ``smtpsec Pool.shared``: ``smtpsec.Pool.shared(...).send()`` per message (the
  first request connects and logs in; later ones reuse the session);
* ``Django send_mail``: ``django.core.mail.send_mail`` with smtpsec's backend
  (which uses ``Pool.shared``), when Django is installed.

Part 2, "threads": 8 x ``--requests`` messages sent by T threads at once,
``smtplib`` with one connection per thread (each reused for its share) against
``smtpsec.Pool(size=min(T, 3))`` shared by the threads.

Every client talks implicit TLS to ``smtpsec.testing.SMTPServer`` through the
delay proxy of ``benchmarks/proxy.py``, which counts round trips. Reported:
round trips and milliseconds per message (medians), and the ratio to smtplib
in the same run. Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import contextlib
import smtplib
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Final

if __package__ in (None, ""):  # run as a script: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import smtpsec
from benchmarks.proxy import DelayProxy
from benchmarks.report import machine_info, machine_line
from benchmarks.servers import Target, fake_servers

EHLO_NAME: Final = "bench.localhost"
TIMEOUT: Final = 60.0


def _message(target: Target, n: int) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"] = target.sender, target.recipients(1)[0]
    msg["Subject"] = f"password reset {n}"
    msg.set_content("Follow the link to choose a new password.\n" * 10)
    return msg


def _options(target: Target) -> dict[str, Any]:
    return {
        "security": smtpsec.Security.IMPLICIT_TLS,
        "username": target.username,
        "password": target.password,
        "policy": smtpsec.Policy(cafile=target.cafile),
        "timeout": TIMEOUT,
        "local_hostname": EHLO_NAME,
    }


def _smtplib_request(target: Target, port: int, msg: EmailMessage) -> None:
    with smtplib.SMTP_SSL(
        target.host,
        port,
        local_hostname=EHLO_NAME,
        timeout=TIMEOUT,
        context=target.client_context(),
    ) as client:
        client.login(target.username, target.password)
        client.send_message(msg)


def _django_sender(target: Target, port: int) -> Callable[[EmailMessage], None] | None:
    try:
        import django
        from django.conf import settings
    except ImportError:
        return None
    if not settings.configured:
        settings.configure(
            EMAIL_BACKEND="smtpsec.integrations.django.EmailBackend",
            EMAIL_HOST=target.host,
            EMAIL_PORT=port,
            EMAIL_HOST_USER=target.username,
            EMAIL_HOST_PASSWORD=target.password,
            EMAIL_USE_SSL=True,
            SMTPSEC_POLICY=smtpsec.Policy(cafile=target.cafile),
        )
        django.setup()
    from django.core.mail import send_mail

    def send(msg: EmailMessage) -> None:
        send_mail(str(msg["Subject"]), msg.get_content(), target.sender, [str(msg["To"])])

    return send


def _per_request(
    proxy: DelayProxy, requests: int, send: Callable[[int], object], *, closes: bool = False
) -> tuple[list[int], list[float]]:
    """Time each request and count the round trips the client waited for.

    The count is taken when ``send`` returns: a server's answer to the
    client's close_notify, which nobody waits for, arrives later and is not
    charged. With ``closes`` (one connection per request) the proxy is let go
    idle before the next request, so those late bytes cannot land in it.
    """
    trips, times = [], []
    for n in range(requests):
        before = proxy.traffic()
        start = time.perf_counter()
        send(n)
        times.append(time.perf_counter() - start)
        trips.append((proxy.traffic() - before).round_trips)
        if closes:
            proxy.wait_idle()
    return trips, times


def _smtplib_per_thread(
    target: Target, port: int
) -> tuple[Callable[[int], None], list[smtplib.SMTP_SSL]]:
    """smtplib as threads use it: one logged-in connection per thread, reused."""
    local = threading.local()
    clients: list[smtplib.SMTP_SSL] = []

    def work(n: int) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = smtplib.SMTP_SSL(
                target.host,
                port,
                local_hostname=EHLO_NAME,
                timeout=TIMEOUT,
                context=target.client_context(),
            )
            client.login(target.username, target.password)
            local.client = client
            clients.append(client)
        client.send_message(_message(target, n))

    return work, clients


def _threads(threads: int, total: int, work: Callable[[int], object]) -> float:
    """Seconds for ``threads`` threads to send ``total`` messages between them."""
    counter = iter(range(total))
    lock = threading.Lock()

    def run() -> None:
        while True:
            with lock:
                n = next(counter, None)
            if n is None:
                return
            work(n)

    start = time.perf_counter()
    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--rtt-ms", type=float, default=50.0)
    parser.add_argument("--threads", default="1,2,4,8")
    parser.add_argument("--no-django", action="store_true", help="leave out the Django row")
    args = parser.parse_args(argv)
    print(
        "## One message per request, 50 ms RTT"
        if args.rtt_ms == 50
        else f"## One message per request, {args.rtt_ms:g} ms RTT"
    )
    print()
    print(
        f"Command: `python benchmarks/web_requests.py --requests {args.requests} "
        f"--rtt-ms {args.rtt_ms:g} --threads {args.threads}`  "
    )
    print(machine_line(machine_info()))
    print()
    with (
        tempfile.TemporaryDirectory() as tmp,
        fake_servers(Path(tmp)) as target,
        DelayProxy((target.host, target.implicit_port), one_way_delay=args.rtt_ms / 2000) as proxy,
    ):
        port = proxy.address[1]
        options = _options(target)
        rows: dict[str, tuple[list[int], list[float]]] = {}
        rows["smtplib"] = _per_request(
            proxy,
            args.requests,
            lambda n: _smtplib_request(target, port, _message(target, n)),
            closes=True,
        )
        rows["smtpsec.send"] = _per_request(
            proxy,
            args.requests,
            lambda n: smtpsec.send(_message(target, n), host=target.host, port=port, **options),
            closes=True,
        )
        rows["smtpsec Pool.shared"] = _per_request(
            proxy,
            args.requests,
            lambda n: smtpsec.Pool.shared(target.host, port, **options).send(_message(target, n)),
        )
        smtpsec.Pool.close_shared()
        proxy.wait_idle()
        django_send = None if args.no_django else _django_sender(target, port)
        if django_send is not None:
            rows["Django send_mail (smtpsec backend)"] = _per_request(
                proxy, args.requests, lambda n: django_send(_message(target, n))
            )
            smtpsec.Pool.close_shared()
        base = statistics.median(rows["smtplib"][1])
        print(
            "| Client, per request | first request RT | later requests RT (median) "
            "| ms per request (median) | time ÷ smtplib |"
        )
        print("|---|---:|---:|---:|---:|")
        for name, (trips, times) in rows.items():
            later = statistics.median(trips[1:]) if len(trips) > 1 else trips[0]
            ms = statistics.median(times)
            print(f"| {name} | {trips[0]} | {later:g} | {ms * 1000:.0f} | ×{ms / base:.2f} |")
        print()
        total = args.requests * 8
        print(f"### {total} messages from T threads")
        print()
        print(
            "| T | smtplib, a connection per thread: msg/s | smtpsec.Pool: msg/s "
            "| pool size | smtpsec ÷ smtplib |"
        )
        print("|---:|---:|---:|---:|---:|")
        for threads in (int(t) for t in args.threads.split(",")):
            smtplib_work, clients = _smtplib_per_thread(target, port)
            seconds_smtplib = _threads(threads, total, smtplib_work)
            for client in clients:
                with contextlib.suppress(smtplib.SMTPException, OSError):
                    client.quit()
            size = min(threads, 3)
            with smtpsec.Pool(target.host, port, size=size, **options) as pool:
                seconds_pool = _threads(threads, total, lambda n: pool.send(_message(target, n)))
            a, b = total / seconds_smtplib, total / seconds_pool
            print(f"| {threads} | {a:,.0f} | {b:,.0f} | {size} | ×{b / a:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
