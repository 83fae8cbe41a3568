"""One protocol driver for blocking and asyncio code.

The dialogue code (set-up, transactions) is written once as generators that
*yield* I/O requests — "call ``read`` on this transport with these arguments" —
and receive the result. :func:`run_sync` performs the requests on a blocking
transport; :func:`run_async` awaits them on an asyncio transport. Exceptions are
thrown back into the generator at the point of the request, so the dialogue
code reads exactly like blocking code with ``yield from`` in front of I/O.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, TypeVar

__all__ = ["IO", "IORequest", "call", "run_async", "run_sync"]

T = TypeVar("T")

#: ``(transport, method name, positional args, keyword args)``.
IORequest = tuple[object, str, tuple[object, ...], dict[str, object]]
#: A dialogue step that performs I/O and finally returns a ``T``.
IO = Generator[IORequest, Any, T]


def call(target: object, method: str, *args: object, **kwargs: object) -> IO[Any]:
    """Ask the driver to run ``target.method(*args, **kwargs)``; return its result."""
    result = yield (target, method, args, kwargs)
    return result


def run_sync(steps: IO[T]) -> T:
    """Drive ``steps`` with blocking calls."""
    try:
        request = next(steps)
        while True:
            target, method, args, kwargs = request
            try:
                result = getattr(target, method)(*args, **kwargs)
            except BaseException as exc:  # re-raised inside the generator
                request = steps.throw(exc)
            else:
                request = steps.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


async def run_async(steps: IO[T]) -> T:
    """Drive ``steps`` by awaiting each call (the transport's methods are coroutines)."""
    try:
        request = next(steps)
        while True:
            target, method, args, kwargs = request
            try:
                result = await getattr(target, method)(*args, **kwargs)
            except BaseException as exc:  # incl. CancelledError: the dialogue cleans up
                request = steps.throw(exc)
            else:
                request = steps.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
