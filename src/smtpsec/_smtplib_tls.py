"""TLS for the smtplib drop-in: the default context, the handshake, required STARTTLS.

smtplib's ``SMTP_SSL(context=None)`` and ``starttls(context=None)`` use a context
that verifies nothing (R-PY-1). Here ``context=None`` means
:func:`smtpsec.tls.build_context`, and every step of STARTTLS fails closed: the
connection is closed before anything else is sent (R-PY-2, R-PY-6, R-PY-17).
"""

from __future__ import annotations

import socket
import ssl
import warnings
from typing import TYPE_CHECKING

from ._smtplib_compat import WireSMTP, reply_bytes
from ._smtplib_errors import (
    CertificateVerifyFailed,
    ReplyTimeout,
    StartTLSNotOffered,
    StartTLSRefused,
)
from ._smtplib_io import plaintext_pending
from .errors import (
    CertificateError,
    LocalProtocolError,
    ResponseInjectionError,
    SecurityError,
    TLSUnavailableError,
)
from .policy import Policy
from .sansio import Extensions
from .tls import build_context, tls_info, translate_ssl_error

if TYPE_CHECKING:
    from _typeshed import StrOrBytesPath

__all__ = ["client_context", "handshake", "starttls"]


def client_context(
    keyfile: StrOrBytesPath | None,
    certfile: StrOrBytesPath | None,
    context: ssl.SSLContext | None,
) -> ssl.SSLContext:
    """The caller's context as given, else smtpsec's verifying one (R-PY-1, R-PY-15).

    ``keyfile``/``certfile`` (deprecated, gone from smtplib in 3.12) are loaded
    into the verifying context as the client certificate.

    Raises:
        ValueError: ``context`` together with ``keyfile``/``certfile`` (as
            smtplib), or ``keyfile`` without ``certfile``.
    """
    if context is not None:
        if keyfile is not None or certfile is not None:
            raise ValueError("context and keyfile/certfile arguments are mutually exclusive")
        return context
    ctx = build_context(Policy())
    if keyfile is not None or certfile is not None:
        warnings.warn(
            "keyfile and certfile are deprecated (removed from smtplib in 3.12); load "
            "the client certificate into a context with ctx.load_cert_chain()",
            DeprecationWarning,
            stacklevel=3,
        )
        if certfile is None:
            raise ValueError("keyfile needs certfile (the client certificate chain)")
        ctx.load_cert_chain(certfile, keyfile)
    return ctx


def _failure(conn: WireSMTP, exc: ssl.SSLError, *, implicit: bool) -> SecurityError:
    error = translate_ssl_error(exc, host=conn._host, port=conn._port, implicit=implicit)
    if isinstance(exc, ssl.SSLCertVerificationError) and isinstance(error, CertificateError):
        return CertificateVerifyFailed(str(error), cause=exc)
    return error


def handshake(
    conn: WireSMTP, sock: socket.socket, ctx: ssl.SSLContext, *, implicit: bool
) -> ssl.SSLSocket:
    """Wrap ``sock`` for ``conn``'s host and check the session with the guard.

    On success ``conn`` records the :class:`~smtpsec.tls.TLSInfo` and drops its
    reply buffer: nothing read before the handshake survives it (R-PY-17).
    On failure ``sock`` is closed.

    Raises:
        CertificateVerifyFailed: validation failed (a ``CertificateError`` and
            an ``ssl.SSLCertVerificationError``; the original is the cause).
        SecurityError: another handshake failure, translated (wrong mode, TLS
            version), or the negotiated version is below the guard's floor.
        ReplyTimeout: the handshake did not finish within the timeout.
    """
    try:
        tls_sock = ctx.wrap_socket(sock, server_hostname=conn._host)
    except ssl.SSLError as exc:
        sock.close()
        raise _failure(conn, exc, implicit=implicit) from exc
    except TimeoutError:
        sock.close()
        raise ReplyTimeout(
            f"the TLS handshake with {conn._peer} did not finish within "
            f"{conn.timeout:g} s; nothing was sent"
        ) from None
    verified = ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    try:
        # tls_info raises CertificateError (a SecurityError) for an unreadable certificate.
        info = tls_info(tls_sock, verified=verified)
        conn._guard("implicit" if implicit else "starttls").after_handshake(info)
    except SecurityError:
        tls_sock.close()
        raise
    conn._tls = info
    conn._reader = None
    return tls_sock


def starttls(conn: WireSMTP, ctx: ssl.SSLContext) -> tuple[int, bytes]:
    """Required STARTTLS on ``conn``: EHLO, STARTTLS, checks, handshake, EHLO again.

    Any failure closes the connection, so code that catches the error and carries
    on cannot send anything in cleartext by accident.

    Returns:
        ``(220, text)`` of the STARTTLS reply, as smtplib.
    """
    if conn._tls is not None:
        raise LocalProtocolError(
            "this connection already uses TLS; STARTTLS inside TLS is not allowed (RFC 3207 §4.2)"
        )
    if conn.helo_resp is None and conn.ehlo_resp is None:
        conn._require_ehlo()
    guard = conn._guard("starttls")
    try:
        guard.after_ehlo(conn._extensions or Extensions(), tls=False)
    except TLSUnavailableError as exc:
        conn.close()
        raise StartTLSNotOffered(str(exc)) from None
    conn.putcmd("STARTTLS")
    reply = conn._read_reply()
    try:
        guard.after_starttls_reply(reply)
    except TLSUnavailableError as exc:
        conn.close()
        raise StartTLSRefused(str(exc), code=reply.code, msg=reply_bytes(reply)) from None
    sock = conn.sock
    assert sock is not None  # _read_reply() closes and raises otherwise
    reader = conn._reader
    # Bytes after the 220 either reached our buffer or still wait in the kernel:
    # check both (R-EAST-BR-1). A genuine server sends nothing until the handshake.
    if (reader is not None and reader.has_buffered) or plaintext_pending(sock, conn.timeout):
        conn.close()
        raise ResponseInjectionError(
            f"{conn._peer} (or an attacker in the path) sent data after the 220 reply "
            "to STARTTLS and before the TLS handshake; the connection was closed "
            "(response injection). A genuine server never does this"
        )
    try:
        conn.sock = handshake(conn, sock, ctx, implicit=False)
    except OSError:  # every smtpsec/smtplib error is one; close() forgets the session
        conn.close()
        raise
    conn.file = None
    # RFC 3207 §4.2: forget everything learnt before TLS, then ask again (R-PY-7).
    conn.helo_resp = conn.ehlo_resp = None
    conn.esmtp_features = {}
    conn.does_esmtp = False
    conn._extensions = None
    conn._require_ehlo()
    return reply.code, reply_bytes(reply)
