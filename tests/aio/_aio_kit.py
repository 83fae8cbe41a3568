"""Helpers for the asyncio tests: run a coroutine test, wait for the server, build messages.

pytest-asyncio is not used: :func:`async_test` turns an ``async def`` test into
a plain one that runs under :func:`asyncio.run`, and afterwards checks that the
test left no task behind (every asyncio test doubles as a task-leak check).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from email.message import EmailMessage
from typing import Any, Final

from smtpsec.testing import Capture, SMTPServer

USER: Final = "ann"
PASSWORD: Final = "CANARY-PW-aio-7d1e"
#: Small enough to keep the suite fast, large enough for a loaded CI machine.
TIMEOUT: Final = 5.0
#: Bound on every "wait until the server saw X" loop, so a broken test fails instead of hanging.
SETTLE: Final = 10.0


def async_test(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run the coroutine test ``fn`` with :func:`asyncio.run`, then check for leaked tasks.

    :func:`functools.wraps` keeps the signature, so pytest still injects fixtures.
    """

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        async def body() -> None:
            await fn(*args, **kwargs)
            assert_no_leaked_tasks()

        asyncio.run(body())

    return run


def assert_no_leaked_tasks() -> None:
    """Only the running task is left: nothing smtpsec started is still running."""
    others = asyncio.all_tasks() - {asyncio.current_task()}
    assert not others, f"tasks leaked: {others}"


async def eventually(check: Callable[[], bool], what: str) -> None:
    """Yield to the loop until ``check()`` holds (bounded by :data:`SETTLE`)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE
    while not check():
        assert loop.time() < deadline, f"gave up waiting: {what}"
        await asyncio.sleep(0.005)


async def wait_closed(capture: Capture) -> bool:
    """Wait (off the event loop) until the server finished this connection."""
    return await asyncio.to_thread(capture.wait_closed, SETTLE)


async def first_capture(srv: SMTPServer) -> Capture:
    """The server's first connection, once it was accepted."""
    await eventually(lambda: bool(srv.connections), "the server accepting a connection")
    return srv.connections[0]


async def cancelled(task: asyncio.Task[Any]) -> bool:
    """Cancel ``task`` and report whether it ended with :class:`asyncio.CancelledError`."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        return True
    return False


def message(number: int = 0, *, to: str = "bob@example.test", body: str = "") -> EmailMessage:
    """A small message, numbered in its subject so order can be checked at the server."""
    msg = EmailMessage()
    msg["From"] = "ann@example.test"
    msg["To"] = to
    msg["Subject"] = f"message {number}"
    msg.set_content(body or f"This is message {number}.\n")
    return msg


def subject(data: bytes) -> str:
    """The Subject of a received message (to check order at the server)."""
    for line in data.split(b"\r\n"):
        if line.startswith(b"Subject: "):
            return line[len(b"Subject: ") :].decode()
    raise AssertionError(f"no Subject in {data[:200]!r}")
