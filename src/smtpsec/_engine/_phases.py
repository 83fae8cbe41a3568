"""The dialogue's phases, each written once and driven by every front end.

Greeting, EHLO (or LMTP's LHLO), the TLS handshake, the STARTTLS switch and
QUIT. The native set-up (:mod:`._setup`), the smtplib drop-in and the CLI
probe compose these; none of them parses replies, switches to TLS or checks
for injected bytes on its own.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable
from typing import Final

from .._advice import NATIVE, Advice
from .._types import QUIT_WAIT
from ..errors import (
    RemoteProtocolError,
    ReplyError,
    SMTPSecError,
    TLSUnavailableError,
)
from ..errors import TimeoutError as DeadlineError
from ..guard import Guard
from ..sansio import Command, Extensions, Reply, State
from ..tls import TLSInfo, translate_ssl_error
from ..transports import AnyTransport
from ._io import IO, Close, PendingPlaintext, StartTLS, perform
from ._wire import Wire

__all__ = [
    "abandon",
    "accepted_ehlo",
    "ask_starttls",
    "greeting",
    "handshake",
    "hello",
    "implicit_tls",
    "quit_quietly",
    "starttls",
    "switch_to_tls",
]

#: States in which QUIT cannot (or need not) be sent.
_NO_QUIT: Final = frozenset({State.CLOSED, State.TLS_PENDING, State.GREETING})


def handshake(
    transport: AnyTransport,
    context: ssl.SSLContext,
    *,
    host: str,
    port: int,
    timeout: float,
    implicit: bool,
    verify_identity: Callable[[bytes], object] | None,
    advice: Advice = NATIVE,
    session: ssl.SSLSession | None = None,
) -> IO[AnyTransport]:
    """Run the TLS handshake over ``transport``; return the TLS transport.

    Args:
        transport: the plaintext transport (finished afterwards, whatever happens).
        context: from :func:`smtpsec.tls.build_context` (or the caller's own).
        host: the name the certificate must match (also SNI).
        port: for messages.
        timeout: seconds for the handshake.
        implicit: implicit TLS (the first bytes) rather than after STARTTLS.
        verify_identity: the RFC 7817 identity check, when smtpsec does it.
        advice: the front end's words for the fixes.
        session: a TLS session to resume (same host, port and context only).

    Raises:
        CertificateError, TLSVersionError, TLSUnavailableError: the handshake
            failed (the ``ssl`` error is the cause); the transport is closed.
        TimeoutError: it did not finish in time; the transport is closed.
    """
    try:
        return (
            yield from perform(
                StartTLS(
                    transport,
                    context,
                    host,
                    timeout,
                    verify_identity=verify_identity,
                    session=session,
                )
            )
        )
    except ssl.SSLError as exc:
        yield from _close_quietly(transport)
        raise translate_ssl_error(
            exc, host=host, port=port, implicit=implicit, advice=advice
        ) from exc
    except DeadlineError as exc:
        yield from _close_quietly(transport)
        hint = f"; if this port speaks STARTTLS, {advice.starttls}" if implicit else ""
        raise DeadlineError(f"{exc}{hint}") from exc
    except BaseException:
        yield from _close_quietly(transport)
        raise


def greeting(wire: Wire, *, implicit: bool) -> IO[Reply]:
    """Read the server's greeting (its code is the guard's to judge).

    Args:
        wire: a fresh connection.
        implicit: TLS started with the first byte; without it, a silent or
            garbled port may be one that expects a TLS ClientHello.

    Raises:
        RemoteProtocolError: not an SMTP reply.
        TimeoutError: no (complete) greeting in time.
    """
    try:
        response = yield from wire.read()
    except RemoteProtocolError as exc:
        if implicit:
            raise
        raise RemoteProtocolError(
            f"{wire.peer} did not send an SMTP greeting ({exc}); if this port speaks "
            f"implicit TLS (port 465), {wire.advice.implicit_tls}"
        ) from exc
    except DeadlineError as exc:
        if implicit or wire.conn.partial_reply:
            raise
        raise DeadlineError(
            f"{wire.peer} sent no greeting within {wire.timeout:g}s; this port may speak "
            f"implicit TLS: {wire.advice.implicit_tls}"
        ) from exc
    return response.reply


def hello(wire: Wire, name: str, *, lmtp: bool = False) -> IO[Reply]:
    """Send EHLO (LHLO for LMTP) and return the reply; on 250 the extensions are known."""
    return (yield from wire.command(Command("LHLO" if lmtp else "EHLO", name)))


def accepted_ehlo(wire: Wire, reply: Reply) -> Extensions:
    """The extensions of a ``250`` EHLO reply; any other reply is refused.

    Raises:
        ReplyError: EHLO was refused; there is no fallback to HELO, which
            cannot carry STARTTLS (R-LIB-HELO-1).
    """
    if reply.code != 250:
        raise ReplyError(
            f"{wire.peer} refused EHLO with {reply.code}; smtpsec does not fall back to HELO",
            code=reply.code,
            enhanced_status=str(reply.enhanced_status) if reply.enhanced_status else None,
            text=reply.text,
            server_text_authenticated=wire.transport.tls is not None,
        )
    extensions = wire.conn.extensions
    assert extensions is not None
    return extensions


def starttls(
    wire: Wire,
    guard: Guard,
    context: ssl.SSLContext,
    *,
    verify_identity: Callable[[bytes], object] | None,
    session: ssl.SSLSession | None = None,
) -> IO[tuple[Reply, TLSInfo]]:
    """The one STARTTLS switch (RFC 3207): :func:`ask_starttls`, then :func:`switch_to_tls`.

    Returns:
        The ``220`` reply and the facts of the new TLS session.
    """
    reply = yield from ask_starttls(wire, guard)
    info = yield from switch_to_tls(wire, context, verify_identity=verify_identity, session=session)
    return reply, info


def ask_starttls(wire: Wire, guard: Guard) -> IO[Reply]:
    """Send STARTTLS, require 220, and refuse any byte that follows it before TLS.

    Raises:
        TLSUnavailableError: STARTTLS was refused (the guard's verdict).
        ResponseInjectionError: bytes arrived after the 220 and before the
            handshake (R-EAST-BR-1): an attack, never a genuine server.
    """
    reply = yield from wire.command(Command("STARTTLS"))
    guard.after_starttls_reply(reply)
    # Bytes after the 220 reached the parser (kept as evidence) or still wait
    # in the kernel: check both. A genuine server sends nothing until the
    # client's ClientHello.
    unread = yield from perform(PendingPlaintext(wire.transport))
    wire.conn.check_no_injection(unread, peer=wire.peer)
    return reply


def switch_to_tls(
    wire: Wire,
    context: ssl.SSLContext,
    *,
    verify_identity: Callable[[bytes], object] | None,
    session: ssl.SSLSession | None = None,
) -> IO[TLSInfo]:
    """After an accepted STARTTLS: the handshake, then the wire runs over TLS.

    Every capability learnt before is forgotten (a fresh EHLO is required,
    R-3207-4.2-1).

    Raises:
        CertificateError, TLSVersionError, TLSUnavailableError, TimeoutError:
            the handshake failed (the transport is closed).
    """
    info = yield from _secure(
        wire, context, implicit=False, verify_identity=verify_identity, session=session
    )
    wire.conn.tls_started()
    return info


def implicit_tls(
    wire: Wire,
    context: ssl.SSLContext,
    *,
    verify_identity: Callable[[bytes], object] | None,
    session: ssl.SSLSession | None = None,
) -> IO[TLSInfo]:
    """Implicit TLS (port 465): the handshake before any SMTP byte, then the greeting.

    Raises:
        CertificateError, TLSVersionError, TLSUnavailableError, TimeoutError:
            the handshake failed (the transport is closed).
    """
    return (
        yield from _secure(
            wire, context, implicit=True, verify_identity=verify_identity, session=session
        )
    )


def _secure(
    wire: Wire,
    context: ssl.SSLContext,
    *,
    implicit: bool,
    verify_identity: Callable[[bytes], object] | None,
    session: ssl.SSLSession | None = None,
) -> IO[TLSInfo]:
    """The handshake on the wire's transport; the wire then owns the TLS one."""
    tls = yield from handshake(
        wire.transport,
        context,
        host=wire.host,
        port=wire.port,
        timeout=wire.timeout,
        implicit=implicit,
        verify_identity=verify_identity,
        advice=wire.advice,
        session=session,
    )
    wire.upgraded(tls)
    info = tls.tls
    if info is None:  # pragma: no cover - a transport bug, never a server's doing
        raise TLSUnavailableError(f"the transport to {wire.peer} reports no TLS after a handshake")
    return info


def quit_quietly(wire: Wire, *, written: bool = False) -> IO[None]:
    """Say QUIT when the channel allows it, wait briefly for 221, then close.

    Used on every exit path: an error, a cancellation or a normal close. The
    wait is bounded (R-8314-3.4-2): a server that never answers must not hold
    the caller for a whole reply timeout. ``written``: QUIT already went out
    as the last command of a flight, and only its reply is awaited.
    """
    if wire.conn.state not in _NO_QUIT and (written or wire.conn.awaiting == 0):
        wire.timeout = min(wire.timeout, QUIT_WAIT)
        with contextlib.suppress(SMTPSecError):  # best effort: the original error matters
            if written:
                yield from wire.read()
            else:
                yield from wire.command(Command("QUIT"))
    yield from _close_quietly(wire.transport)
    wire.conn.close()


def abandon(wire: Wire) -> IO[None]:
    """Close without QUIT (cancellation, or a reply may still be due)."""
    wire.conn.close()
    yield from _close_quietly(wire.transport)


def _close_quietly(transport: AnyTransport) -> IO[None]:
    with contextlib.suppress(Exception):  # closing a broken transport may fail too
        yield from perform(Close(transport))
