"""No exported buffer outlives its owner, on success, error and cancellation paths.

CPython 3.12 (gh-111049, gh-111211) and 3.13 (gh-111331) crash or raise
``BufferError`` when the garbage collector breaks a reference cycle that holds
a ``memoryview`` of a ``BytesIO`` (or of a caller's ``bytearray``) together
with its owner. The message paths below used to build exactly such cycles:
a send refused before anything went out (no recipients, over ``SIZE``), then
``gc.collect()``. Each scenario runs in a fresh interpreter, so a crash is a
failed assertion here rather than the end of the test run.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

import smtpsec
from smtpsec import Security

IMPLICIT = smtpsec.Security.IMPLICIT_TLS

#: Runs in a child interpreter: every path that refuses a message, then a
#: full collection. Prints OK when nothing went wrong.
_SCENARIO = textwrap.dedent(
    """
    import asyncio, gc, sys
    from email.message import EmailMessage
    import smtpsec, smtpsec.aio
    from smtpsec.testing import CA, SMTPServer

    problems = []
    sys.unraisablehook = lambda info: problems.append(repr(info.exc_value))

    ca = CA.create()
    cafile = sys.argv[1]
    ca.write_cafile(cafile)
    policy = smtpsec.Policy(cafile=cafile)
    IMPLICIT = smtpsec.Security.IMPLICIT_TLS

    def message(body="hello\\n", to=True):
        msg = EmailMessage()
        msg["From"] = "ann@example.test"
        if to:
            msg["To"] = "bob@example.test"
        msg["Subject"] = "buffers"
        msg.set_content(body)
        return msg

    big = message("x" * 5000)
    with SMTPServer(ca.issue("localhost"), tls=IMPLICIT, extensions=("SIZE 1000",
            "PIPELINING", "8BITMIME")) as srv:
        with smtpsec.connect("localhost", srv.port, security=IMPLICIT, policy=policy) as session:
            for bad in (message(to=False), big):
                try:
                    session.send(bad)
                except smtpsec.SMTPSecError:
                    pass
            outcomes = session.send_many([message(to=False), big, message()])
            assert [type(o).__name__ for o in outcomes] == [
                "InvalidArgumentError", "CapabilityError", "SendResult"], outcomes
            buffer = bytearray(b"From: a@example.test\\r\\n\\r\\n" + b"y" * 5000)
            try:
                session.send(buffer, sender="a@example.test", recipients=["b@example.test"])
            except smtpsec.CapabilityError:
                pass
            buffer.extend(b"the caller may still resize its own buffer")
        del outcomes

        async def cancelled():
            port = srv.port
            connecting = smtpsec.aio.connect("localhost", port, security=IMPLICIT, policy=policy)
            async with connecting as s:
                task = asyncio.ensure_future(s.send(message("z" * 100)))
                await asyncio.sleep(0)
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        asyncio.run(cancelled())
    gc.collect()
    gc.collect()
    print("PROBLEMS", problems) if problems else print("OK")
    """
)


def test_refused_messages_then_gc_collect_do_not_crash(tmp_path: Path) -> None:
    """The reported crash: refusals caught by the caller, then ``gc.collect()``."""
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-c", _SCENARIO, str(tmp_path / "ca.pem")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "OK", done.stdout + done.stderr[-3000:]
    assert "BufferError" not in done.stderr
    assert "deallocated BytesIO" not in done.stderr


def test_caller_bytearray_is_free_to_resize_after_a_refusal(
    smtpsec_server: Any, smtpsec_ca: Any, tmp_path: Path
) -> None:
    """A message given as ``bytearray`` is not pinned by smtpsec after the call returns."""
    cafile = smtpsec_ca.write_cafile(tmp_path / "ca.pem")
    srv = smtpsec_server(Security.IMPLICIT_TLS, extensions=("SIZE 100", "PIPELINING"))
    buffer = bytearray(b"Subject: big\r\n\r\n" + b"b" * 500)
    with smtpsec.connect(
        "localhost", srv.port, security=IMPLICIT, policy=smtpsec.Policy(cafile=str(cafile))
    ) as s:
        with pytest.raises(smtpsec.CapabilityError):
            s.send(buffer, sender="a@example.test", recipients=["b@example.test"])
        buffer.extend(b"more")  # BufferError if a view of it were still exported
        gc.collect()
        result = s.send(
            bytearray(b"Subject: ok\r\n\r\nfine\r\n"),
            sender="a@example.test",
            recipients=["b@example.test"],
        )
    assert result.code == 250


def test_refused_email_messages_leave_no_export_behind(
    smtpsec_server: Any, smtpsec_ca: Any, tmp_path: Path
) -> None:
    """``EmailMessage`` refusals (no recipients, over SIZE) leave nothing for the collector."""
    cafile = smtpsec_ca.write_cafile(tmp_path / "ca.pem")
    srv = smtpsec_server(Security.IMPLICIT_TLS, extensions=("SIZE 200", "PIPELINING"))
    no_rcpt = EmailMessage()
    no_rcpt["From"] = "ann@example.test"
    no_rcpt.set_content("no recipients")
    too_big = EmailMessage()
    too_big["From"] = "ann@example.test"
    too_big["To"] = "bob@example.test"
    too_big.set_content("x" * 1000)
    unraisable: list[BaseException | None] = []
    previous = sys.unraisablehook
    sys.unraisablehook = lambda info: unraisable.append(info.exc_value)
    try:
        with smtpsec.connect(
            "localhost", srv.port, security=IMPLICIT, policy=smtpsec.Policy(cafile=str(cafile))
        ) as session:
            for _ in range(10):
                with pytest.raises(smtpsec.InvalidArgumentError, match="no recipients"):
                    session.send(no_rcpt)
                with pytest.raises(smtpsec.CapabilityError, match="SIZE"):
                    session.send(too_big)
        gc.collect()
    finally:
        sys.unraisablehook = previous
    assert unraisable == []
