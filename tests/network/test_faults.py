"""Fault injection: hundreds of sends through an impaired link, through every client.

Between two namespaces the test makes, :mod:`netem` loses, delays (with
jitter), reorders and resets packets. Through it the native client, the
asyncio client and the drop-in each send a few hundred messages (a new
TLS connection each) to the test server. Every send must either succeed,
with the server holding that message exactly once, or fail with a typed
error (``smtpsec.SMTPSecError``; for the drop-in also an ``smtplib``
exception, or the ``OSError`` smtplib's ``connect`` raises); nothing hangs
(a watchdog bounds each client) and no message is stored twice. The counts
are printed (``-s``) for the record.
"""

from __future__ import annotations

import asyncio
import os
import smtplib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from typing import Final

import pytest
from netem import SERVER, Faults, Wire
from netns import Pair, entered, inside, require

import smtpsec
import smtpsec.aio
from smtpsec import Security
from smtpsec import smtplib as dropin
from smtpsec.testing import CA, SMTPServer

SENDS: Final = int(os.environ.get("SMTPSEC_FAULT_SENDS", "150"))
TIMEOUT: Final = 4.0
PORT: Final = 4650
#: Bounded waits in one send (connect, handshake, greeting, EHLO, MAIL..DATA, QUIT):
#: a send that takes longer than this many timeouts has hung.
STEPS: Final = 12


@pytest.fixture
def link() -> Iterator[tuple[SMTPServer, CA, Faults, str]]:
    require()
    with Pair(f"smtpsec-ft{os.getpid()}") as pair:
        faults = Faults()
        wire = Wire(pair.server, pair.client, faults).start()
        ca = CA.create()
        leaf = ca.issue("mail.test", ips=(SERVER,))
        srv = inside(
            pair.server,
            lambda: SMTPServer(leaf, tls=Security.IMPLICIT_TLS, host=SERVER, port=PORT).start(),
        )
        try:
            yield srv, ca, faults, pair.client
        finally:
            srv.stop()
            wire.stop()


def _message(token: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "ann@example.test"
    msg["To"] = "bob@example.test"
    msg["Subject"] = token
    msg.set_content(f"{token}\n" + "fault line\n" * 200)
    return msg


Outcome = tuple[str, str, float]  # token, "ok" or the error's class, seconds


def _native(ca: CA, outcomes: list[Outcome]) -> None:
    policy = smtpsec.Policy(cadata=ca.cert_pem.decode())
    for i in range(SENDS):
        token = f"FAULT-native-{i}"
        start = time.monotonic()
        try:
            smtpsec.send(
                _message(token),
                host=SERVER,
                port=PORT,
                security=Security.IMPLICIT_TLS,
                policy=policy,
                timeout=TIMEOUT,
            )
            outcomes.append((token, "ok", time.monotonic() - start))
        except smtpsec.SMTPSecError as exc:
            outcomes.append((token, type(exc).__name__, time.monotonic() - start))


def _aio(ca: CA, outcomes: list[Outcome]) -> None:
    policy = smtpsec.Policy(cadata=ca.cert_pem.decode())

    async def run() -> None:
        for i in range(SENDS):
            token = f"FAULT-aio-{i}"
            start = time.monotonic()
            try:
                await smtpsec.aio.send(
                    _message(token),
                    host=SERVER,
                    port=PORT,
                    security=Security.IMPLICIT_TLS,
                    policy=policy,
                    timeout=TIMEOUT,
                )
                outcomes.append((token, "ok", time.monotonic() - start))
            except smtpsec.SMTPSecError as exc:
                outcomes.append((token, type(exc).__name__, time.monotonic() - start))

    asyncio.run(run())


def _dropin(ca: CA, outcomes: list[Outcome]) -> None:
    import ssl

    context = ssl.create_default_context(cadata=ca.cert_pem.decode())
    for i in range(SENDS):
        token = f"FAULT-dropin-{i}"
        start = time.monotonic()
        try:
            with dropin.SMTP_SSL(SERVER, PORT, context=context, timeout=TIMEOUT) as client:
                client.send_message(_message(token))
            outcomes.append((token, "ok", time.monotonic() - start))
        except smtplib.SMTPException as exc:
            # The drop-in's errors are both: smtplib's class and smtpsec's tree.
            name = type(exc).__name__
            typed = isinstance(exc, smtpsec.SMTPSecError)
            outcomes.append((token, name if typed else f"UNTYPED {name}", time.monotonic() - start))
        except OSError as exc:  # smtplib's connect() raises OSError, as documented there
            outcomes.append((token, f"OSError:{type(exc).__name__}", time.monotonic() - start))


@pytest.mark.faults
def test_every_send_succeeds_once_or_fails_typed(
    link: tuple[SMTPServer, CA, Faults, str], capsys: pytest.CaptureFixture[str]
) -> None:
    srv, ca, faults, client_ns = link
    clients: dict[str, Callable[[CA, list[Outcome]], None]] = {
        "native": _native,
        "aio": _aio,
        "dropin": _dropin,
    }
    outcomes: dict[str, list[Outcome]] = {name: [] for name in clients}
    crashed: list[BaseException] = []

    def run(name: str) -> None:
        try:
            with entered(client_ns):
                clients[name](ca, outcomes[name])
        except BaseException as exc:  # an untyped error escaped a client
            crashed.append(exc)

    threads = [threading.Thread(target=run, args=(name,), daemon=True) for name in clients]
    for thread in threads:
        thread.start()
    watchdog = SENDS * STEPS * TIMEOUT
    for thread in threads:
        thread.join(timeout=watchdog)
        assert not thread.is_alive(), "a client hung (the watchdog expired)"
    assert not crashed, f"untyped errors escaped: {crashed!r}"

    stored = Counter(
        line.split(b":", 1)[1].strip().decode()
        for message in srv.messages
        for line in message.data.split(b"\r\n")
        if line.startswith(b"Subject:")
    )
    assert all(count == 1 for count in stored.values()), "a message was stored twice"
    report = []
    for name, results in outcomes.items():
        assert len(results) == SENDS, f"{name}: every send has exactly one outcome"
        assert len({token for token, _o, _s in results}) == SENDS
        kinds = Counter(outcome for _t, outcome, _s in results)
        for token, outcome, seconds in results:
            assert not outcome.startswith("UNTYPED"), (token, outcome)
            assert seconds < STEPS * TIMEOUT, f"{token} took {seconds:.1f}s: it hung"
            if outcome == "ok":
                assert stored[token] == 1, f"{token} succeeded but the server lacks it"
        slowest = max(seconds for _t, _o, seconds in results)
        report.append(f"{name}: {dict(kinds)} (slowest {slowest:.2f}s)")
    with capsys.disabled():
        print(f"\nfault injection, {SENDS} sends per client, link {faults.counts}:")
        for line in report:
            print(f"  {line}")
    # The faults really happened, and most sends still made it.
    assert faults.counts["lost"] and faults.counts["reordered"] and faults.counts["resets"]
    for name, results in outcomes.items():
        assert sum(outcome == "ok" for _t, outcome, _s in results) > SENDS // 2, name
