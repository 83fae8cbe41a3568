"""asyncio API on the same engine: same policy, guard, errors, report and pipelining.

::

    import smtpsec.aio

    async with smtpsec.aio.connect("smtp.example.com", username="ann", password="...") as s:
        await s.send(message)
        print(s.report)

The dialogue is written once as generators of typed I/O requests and driven
here awaited (and blocking by :mod:`smtpsec.client`); this package adds the
awaiting facade and a connection :class:`Pool`. The asyncio transport is
:class:`smtpsec.transports.AsyncTransport`.
"""

from ._pool import Pool
from ._session import AsyncSession, Connecting, connect, send

__all__ = ["AsyncSession", "Connecting", "Pool", "connect", "send"]
