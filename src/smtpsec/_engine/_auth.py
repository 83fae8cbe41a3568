"""The one SMTP AUTH exchange loop (RFC 4954), shared by every front end.

The mechanisms themselves are pure encoders (:mod:`smtpsec.auth`); this loop
sends their lines, answers each ``334`` challenge, cancels with ``*`` when a
challenge cannot be answered (R-4954-4-2), bounds the number of rounds, and
accepts only ``235`` as success, after the mechanism checked any proof the
server owes (SCRAM). Every mechanism step runs as :class:`~._io.Offload`: in
a thread under asyncio, because PBKDF2 for SCRAM and a caller's token provider
may take a while.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Final

from .. import auth as sasl
from .._types import MAX_COMMAND_LINE
from ..errors import AuthenticationError, RemoteProtocolError, SMTPSecError
from ..sansio import Command, Reply
from ._io import IO, Offload, perform
from ._wire import Wire

__all__ = ["MAX_ROUNDS", "auth_line", "authenticate"]

#: More ``334`` rounds than any mechanism needs (SCRAM: 2); a server that keeps
#: challenging is broken or hostile.
MAX_ROUNDS: Final = 5


def auth_line(mechanism: sasl.Mechanism, *, initial_response: bool = True) -> IO[Command]:
    """The AUTH command that starts an exchange with ``mechanism``.

    Args:
        mechanism: a fresh mechanism object (one per attempt).
        initial_response: put the initial response on the AUTH line when it
            fits (RFC 4954 §4); ``False`` sends it after the first ``334``.
    """
    limit = MAX_COMMAND_LINE if initial_response else 0
    line = yield from perform(
        Offload(functools.partial(sasl.auth_command, mechanism, line_limit=limit))
    )
    return Command("AUTH", line.removeprefix("AUTH "), redact=True)


def authenticate(
    wire: Wire,
    mechanism: sasl.Mechanism,
    *,
    initial_response: bool = True,
    queued: bool = False,
    outdated: bool = False,
) -> IO[Reply]:
    """Run one AUTH exchange with ``mechanism``; return the ``235`` reply.

    Args:
        wire: the connection (after the post-TLS EHLO).
        mechanism: a fresh mechanism object (one per attempt).
        initial_response: see :func:`auth_line`.
        queued: its :func:`auth_line` is already queued behind an early EHLO,
            and that EHLO's reply has been taken; only the replies are read.
        outdated: ``queued`` was chosen from a kept EHLO reply that the server's
            real one no longer matches: a ``503`` to it is a refusal like any
            other (Exim: "AUTH command used when not advertised"), not a sign
            of session fixation.

    Raises:
        AuthenticationError: the server refused (``hint`` says what usually
            fixes it), or a mechanism limit was hit (the exchange was cancelled).
        RemoteProtocolError: a malformed challenge (cancelled), too many rounds,
            or ``503`` to the first AUTH: the session was not set up by us
            (session fixation or injection, R-4954-4-6).
        SecurityError: the server could not prove it knows the password (SCRAM).
    """
    if not queued:
        wire.queue((yield from auth_line(mechanism, initial_response=initial_response)))
    reply = (yield from wire.read()).reply
    rounds = 0
    while reply.code == 334:
        rounds += 1
        try:
            if rounds > MAX_ROUNDS:
                raise RemoteProtocolError(
                    f"{wire.peer} sent more than {MAX_ROUNDS} AUTH {mechanism.name} "
                    "challenges; the exchange was cancelled"
                )
            challenge = sasl.decode_challenge(reply.lines[0] if reply.lines else "")
            answer = yield from perform(Offload(functools.partial(mechanism.respond, challenge)))
        except SMTPSecError:
            yield from _cancel(wire)
            raise
        reply = yield from wire.command(Command("", sasl.encode_response(answer), redact=True))
    if reply.code == 235:
        mechanism.verify_success(sasl.decode_success_data(reply.lines[0] if reply.lines else ""))
        return reply
    if reply.code == 503 and rounds == 0 and not outdated:
        raise RemoteProtocolError(
            f"{wire.peer} answered the first AUTH with 503 ('already authenticated' or out "
            "of sequence): this session was not set up by us (session fixation or "
            "injection); the connection was closed"
        )
    enhanced = str(reply.enhanced_status) if reply.enhanced_status else None
    hint = sasl.auth_failure_hint(
        reply.code,
        enhanced,
        mechanism.name,
        server_error=mechanism.server_error,
        advice=wire.advice,
    )
    raise AuthenticationError(
        f"authentication with {mechanism.name} failed: "
        f"{' '.join(filter(None, (str(reply.code), enhanced, reply.text.rstrip(' .'))))}; {hint}",
        code=reply.code,
        enhanced_status=enhanced,
        text=reply.text,
        hint=hint,
    )


def _cancel(wire: Wire) -> IO[None]:
    """Answer ``*`` (RFC 4954 §4); the reply to the cancellation does not matter."""
    with contextlib.suppress(SMTPSecError):
        yield from wire.command(Command("", "*"))
