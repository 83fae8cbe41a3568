"""The one SMTP engine every front end drives (private).

Layers inside, bottom up: ``_io`` (typed I/O requests and the two drivers),
``_wire`` (sole owner of the transport and the protocol state), ``_phases``
and ``_auth`` (greeting, EHLO, the STARTTLS switch, the AUTH exchange, QUIT),
``_message``/``_envelope``/``_transactions`` (mail at the round-trip minimum),
``_recipe``, ``_login``, ``_early`` and ``_setup`` (the connect), and
``_session`` (what the native and asyncio sessions share).
The front ends (:mod:`smtpsec.client`, :mod:`smtpsec.aio`,
:mod:`smtpsec.smtplib`, the CLI) import from here and nowhere deeper.
"""

from __future__ import annotations

from . import _phases as phases
from ._auth import authenticate
from ._envelope import plan_envelope
from ._io import (
    IO,
    Close,
    Offload,
    OpenConnection,
    PendingPlaintext,
    Poll,
    Read,
    Request,
    StartTLS,
    Write,
    perform,
    run_async,
    run_sync,
)
from ._message import (
    PreparedMessage,
    check_headers,
    envelope_from_headers,
    flatten,
    prepare_message,
)
from ._pooling import DEFAULT_SIZE as DEFAULT_POOL_SIZE
from ._pooling import Entry, PoolLimits, RateLimiter, Slots, is_connection_limit
from ._recipe import DEFAULT_TIMEOUT, Recipe
from ._session import SessionState, emit, single
from ._setup import Established, connect_steps, establish, transport_steps
from ._transactions import run_transactions
from ._wire import Wire

__all__ = [
    "DEFAULT_POOL_SIZE",
    "DEFAULT_TIMEOUT",
    "IO",
    "Close",
    "Entry",
    "Established",
    "Offload",
    "OpenConnection",
    "PendingPlaintext",
    "Poll",
    "PoolLimits",
    "PreparedMessage",
    "RateLimiter",
    "Read",
    "Recipe",
    "Request",
    "SessionState",
    "Slots",
    "StartTLS",
    "Wire",
    "Write",
    "authenticate",
    "check_headers",
    "connect_steps",
    "emit",
    "envelope_from_headers",
    "establish",
    "flatten",
    "is_connection_limit",
    "perform",
    "phases",
    "plan_envelope",
    "prepare_message",
    "run_async",
    "run_sync",
    "run_transactions",
    "single",
    "transport_steps",
]
