"""asyncio API on the same core: same policy, guard, errors, report and pipelining.

::

    import smtpsec.aio

    async with smtpsec.aio.connect("smtp.example.com", username="ann", password="...") as s:
        await s.send(message)
        print(s.report)

The dialogue code is shared with the blocking client (it is written once as
generators of I/O requests, see :mod:`smtpsec._io`); this package adds an
asyncio transport, the awaiting driver, and a connection :class:`Pool`.
"""

from __future__ import annotations

from ..client import Outgoing
from ._pool import Pool
from ._session import AsyncSession, Connecting, connect, send
from ._transport import AsyncTransport

__all__ = ["AsyncSession", "AsyncTransport", "Connecting", "Outgoing", "Pool", "connect", "send"]
