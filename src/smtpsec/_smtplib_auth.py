"""AUTH for the smtplib drop-in: verified TLS first, one mechanism, only 235 succeeds.

smtplib's ``login()`` sends credentials over any socket (R-PY-3), returns
normally on ``503`` (R-PY-4) and walks CRAM-MD5 → PLAIN → LOGIN on failures,
offering the same password to weaker mechanisms (R-PY-5). Here the guard
decides whether credentials may leave, :func:`smtpsec.auth.choose_mechanism`
picks one mechanism from the post-TLS EHLO, and its failure is final.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from smtplib import SMTPException, SMTPServerDisconnected
from typing import TYPE_CHECKING, Final

from ._smtplib_compat import WireSMTP, reply_bytes
from ._smtplib_errors import AuthFailed, AuthNotFresh, NoAuthExtension
from ._smtplib_io import success_data
from .auth import (
    DEFAULT_PREFERENCE,
    Credentials,
    auth_command,
    auth_failure_hint,
    choose_mechanism,
    decode_challenge,
    encode_response,
)
from .errors import InsecureAuthError, LocalProtocolError, RemoteProtocolError
from .sansio import Reply

if TYPE_CHECKING:
    from smtplib import _AuthObject

__all__ = ["auth", "login"]

#: smtplib's bound on AUTH challenge rounds (a server looping forever is broken).
_MAX_CHALLENGES: Final = 5
#: smtpsec's order, plus CRAM-MD5 as the last resort: smtplib code relied on it,
#: and inside verified TLS (which login() requires) it exposes nothing extra.
_LOGIN_PREFERENCE: Final = (*DEFAULT_PREFERENCE, "CRAM-MD5")


def _check_allowed(conn: WireSMTP) -> None:
    """Refuse AUTH before anything is sent: no connection, second AUTH, no verified TLS."""
    if conn.sock is None:
        raise SMTPServerDisconnected("please run connect() first")
    if conn._authenticated:
        raise LocalProtocolError(
            "already authenticated on this connection: AUTH may succeed only once per "
            "session (RFC 4954 §4); open a new connection to log in as someone else"
        )
    try:
        conn._guard("starttls").before_auth(conn._tls)
    except InsecureAuthError:
        how = "in cleartext" if conn._tls is None else "over TLS without a verified certificate"
        raise InsecureAuthError(
            f"refusing to send credentials {how} to {conn._peer}: call starttls() first, "
            "or use SMTP_SSL, with context=None or a context that verifies certificates "
            "and host names. allow_cleartext_auth=True exists for loopback test "
            "servers only"
        ) from None


def _cancel(conn: WireSMTP) -> None:
    """Cancel the exchange with ``*`` (RFC 4954 §4); its reply does not matter."""
    with contextlib.suppress(SMTPException):
        conn.putcmd("*")
        conn._read_reply()


def _failure(conn: WireSMTP, reply: Reply, mechanism: str, *, first: bool) -> AuthFailed:
    msg = reply_bytes(reply)
    if reply.code == 503 and first:
        conn._quit_quietly()
        return AuthNotFresh(
            f"{conn._peer} answered the first AUTH with 503 ('already authenticated' "
            "or out of sequence): this session was not set up by us (session fixation "
            "or injection); the connection was closed",
            code=503,
            msg=msg,
            hint="reconnect; if it happens again, something in the path tampers with SMTP",
        )
    enhanced = str(reply.enhanced_status) if reply.enhanced_status else None
    hint = auth_failure_hint(reply.code, enhanced, mechanism)
    return AuthFailed(
        f"authentication with {mechanism} failed ({reply.code}): {hint}",
        code=reply.code,
        msg=msg,
        hint=hint,
    )


def _exchange(
    conn: WireSMTP, first_line: str, mechanism: str, respond: Callable[[bytes], str]
) -> Reply:
    """Run one AUTH exchange; return the 235 reply or raise (only 235 counts, R-PY-4)."""
    with conn._redacting():
        conn.putcmd(first_line)
        reply = conn._read_reply()
        rounds = 0
        while reply.code == 334:
            rounds += 1
            if rounds > _MAX_CHALLENGES:
                _cancel(conn)
                raise RemoteProtocolError(
                    f"{conn._peer} sent more than {_MAX_CHALLENGES} AUTH {mechanism} "
                    "challenges; the exchange was cancelled"
                )
            try:
                answer = respond(decode_challenge(reply.lines[0] if reply.lines else ""))
            except RemoteProtocolError:
                _cancel(conn)
                raise
            conn.putcmd(answer)
            reply = conn._read_reply()
    if reply.code == 235:
        return reply
    raise _failure(conn, reply, mechanism, first=rounds == 0)


def login(
    conn: WireSMTP, user: str, password: str, *, initial_response_ok: bool
) -> tuple[int, bytes]:
    """``SMTP.login()``: one mechanism from the post-TLS EHLO, no fallback."""
    _check_allowed(conn)
    conn.ehlo_or_helo_if_needed()
    offered = conn._extensions.auth_mechanisms if conn._extensions else frozenset()
    if not offered:
        raise NoAuthExtension(
            f"{conn._peer} offers no AUTH (SMTP AUTH extension not supported by server); "
            "check the host and port (465 or 587)"
        )
    mech = choose_mechanism(
        offered, credentials=Credentials(user, password), preference=_LOGIN_PREFERENCE
    )
    conn.user, conn.password = user, password
    # line_limit=0 leaves no room for an initial response: the mechanism then
    # answers the server's first empty 334 with it instead (RFC 4954 §4).
    first_line = auth_command(mech) if initial_response_ok else auth_command(mech, line_limit=0)
    reply = _exchange(conn, first_line, mech.name, lambda c: encode_response(mech.respond(c)))
    mech.verify_success(success_data(reply))
    conn._authenticated = True
    return reply.code, reply_bytes(reply)


def auth(
    conn: WireSMTP, mechanism: str, authobject: _AuthObject, *, initial_response_ok: bool
) -> tuple[int, bytes]:
    """``SMTP.auth()``: smtplib's callable protocol with login()'s TLS and 235 rules."""
    _check_allowed(conn)
    mechanism = mechanism.upper()
    initial = authobject() if initial_response_ok else None
    if initial is not None:
        encoded = encode_response(initial.encode("ascii"), initial=True)
        first_line = f"AUTH {mechanism} {encoded}"
        conn._auth_challenge_count = 1
    else:
        first_line = f"AUTH {mechanism}"
        conn._auth_challenge_count = 0

    def respond(challenge: bytes) -> str:
        # smtplib's auth_login() reads this counter to know which prompt it answers.
        conn._auth_challenge_count += 1
        return encode_response(authobject(challenge).encode("ascii"))

    reply = _exchange(conn, first_line, mechanism, respond)
    conn._authenticated = True
    return reply.code, reply_bytes(reply)
