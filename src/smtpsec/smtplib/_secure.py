"""The drop-in's STARTTLS and AUTH: the engine's one TLS switch and one AUTH loop.

:class:`_Secured` adds ``starttls()``, ``login()`` and ``auth()`` to the
session, with the guard's decisions worded for drop-in users, and maps their
failures to the classes smtplib users catch.
"""

from __future__ import annotations

import contextlib
import ssl
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .. import auth as sasl
from .._advice import DROP_IN
from .._engine import (
    authenticate,
    emit,
    phases,
)
from ..errors import (
    AuthenticationError,
    CertificateError,
    LocalProtocolError,
    RemoteProtocolError,
    SMTPSecError,
    TLSUnavailableError,
    TLSVersionError,
)
from ..guard import Guard
from ..modes import Security
from ..policy import DEFAULT_POLICY, Policy
from ..sansio import (
    Reply,
)
from ..tls import build_context
from . import _errors as errors
from ._commands import (
    reply_bytes,
    text_bytes,
)
from ._session import _Session

if TYPE_CHECKING:
    from smtplib import _AuthObject

    from _typeshed import StrOrBytesPath


#: smtpsec's order, plus CRAM-MD5 as the last resort: smtplib code relied on it,
#: and inside verified TLS (which login() requires) it exposes nothing extra.
_LOGIN_PREFERENCE = (*sasl.DEFAULT_PREFERENCE, "CRAM-MD5")


class _Secured(_Session):
    """STARTTLS and AUTH on top of the session; see :class:`SMTP`."""

    # ------------------------------------------------------------------ TLS

    def starttls(
        self,
        keyfile: StrOrBytesPath | None = None,
        certfile: StrOrBytesPath | None = None,
        context: ssl.SSLContext | None = None,
    ) -> tuple[int, bytes]:
        """Upgrade to TLS, required: any failure closes the connection.

        As in smtplib, no EHLO is sent after the handshake: the next
        :meth:`ehlo` (or the implicit one in :meth:`login` and
        :meth:`sendmail`) asks again, and nothing learnt before TLS is kept.

        Args:
            keyfile: deprecated (removed from smtplib in 3.12): client key file.
            certfile: deprecated: client certificate chain file.
            context: used as given; default :func:`smtpsec.tls.build_context`,
                which verifies the chain and host name (R-PY-1).

        Returns:
            ``(220, text)``.

        Raises:
            SMTPNotSupportedError: STARTTLS is not advertised; also a
                :class:`smtpsec.TLSUnavailableError` (a ``DowngradeError``).
            SMTPResponseException: STARTTLS was not answered 220; also a
                :class:`smtpsec.TLSUnavailableError`.
            ResponseInjectionError: bytes followed the 220 before the handshake.
            CertificateVerifyFailed: validation failed; also ``ssl.SSLCertVerificationError``.
        """
        ctx = client_context(keyfile, certfile, context)
        if self._tls is None and self.helo_resp is None and self.ehlo_resp is None:
            self._require_ehlo()  # no HELO fallback: HELO cannot offer STARTTLS (R-PY-8)
        if self._tls is not None:
            raise LocalProtocolError(
                "this connection already uses TLS; STARTTLS inside TLS is not allowed "
                "(RFC 3207 §4.2)"
            )
        wire = self._require_wire()
        guard = self._guard(Security.STARTTLS)
        try:
            guard.after_ehlo(self._extensions, tls=False)
        except TLSUnavailableError as exc:
            self.close()
            raise errors.StartTLSNotOffered(str(exc)) from None
        with self._handshake_errors():
            try:
                reply, info = self._run(phases.starttls(wire, guard, ctx, verify_identity=None))
            except TLSUnavailableError as exc:
                if exc.code is None:
                    raise
                raise errors.StartTLSRefused(
                    str(exc), code=exc.code, msg=exc.text.encode("utf-8", "replace")
                ) from None
            guard.after_handshake(info)
        self._tls = info
        # RFC 3207 §4.2: forget everything learnt before TLS; ask again (R-PY-7).
        self.helo_resp = self.ehlo_resp = None
        self.esmtp_features = {}
        self.does_esmtp = False
        self.file = None
        return reply.code, reply_bytes(reply)

    @contextlib.contextmanager
    def _handshake_errors(self) -> Iterator[None]:
        """Close on any TLS failure; give each the stdlib class users catch too."""
        try:
            yield
        except SMTPSecError as exc:
            self.close()
            cause = exc.__cause__
            if isinstance(exc, CertificateError) and isinstance(
                cause, ssl.SSLCertVerificationError
            ):
                raise errors.CertificateVerifyFailed(str(exc), cause=cause) from cause
            if isinstance(exc, TLSVersionError):
                raise errors.TLSVersionTooLow(str(exc)) from exc.__cause__
            if isinstance(exc, TLSUnavailableError) and isinstance(cause, ssl.SSLError):
                raise errors.TLSHandshakeFailed(str(exc)) from cause
            raise

    # ------------------------------------------------------------------ AUTH

    def _check_login_allowed(self) -> Guard:
        """Refuse AUTH before anything is sent: no connection, second AUTH, no verified TLS."""
        self._require_wire()
        if self._authenticated:
            raise LocalProtocolError(
                "already authenticated on this connection: AUTH may succeed only once per "
                "session (RFC 4954 §4); open a new connection to log in as someone else"
            )
        guard = self._guard(Security.STARTTLS)
        guard.before_auth(self._tls)
        return guard

    def login(
        self, user: str, password: str, *, initial_response_ok: bool = True
    ) -> tuple[int, bytes]:
        """Log in with one mechanism chosen from the post-TLS EHLO (R-PY-5).

        Preference: SCRAM-SHA-256, SCRAM-SHA-1, PLAIN, LOGIN, then CRAM-MD5 only
        when nothing else is offered. A failure is final: no other mechanism is
        tried with the same password.

        Raises:
            InsecureAuthError: no verified TLS (R-PY-3); nothing was sent.
            SMTPNotSupportedError: the server offers no AUTH (also a
                :class:`smtpsec.CapabilityError`).
            SMTPAuthenticationError: anything but 235, including 503 (R-PY-4);
                also a :class:`smtpsec.AuthenticationError` with a ``hint``.
        """
        self.ehlo_or_helo_if_needed()
        guard = self._check_login_allowed()
        offered = self._extensions.auth_mechanisms
        if not offered:
            raise errors.NoAuthExtension(
                f"SMTP AUTH extension not supported by server: {self._peer} offers no AUTH; "
                "check the host and port (465 or 587)"
            )
        mechanism = sasl.choose_mechanism(
            offered,
            credentials=sasl.Credentials(user, password),
            preference=_LOGIN_PREFERENCE,
            scram_max_iterations=self._policy.scram_max_iterations,
            advice=DROP_IN,
        )
        self.user, self.password = user, password
        reply = self._authenticate(mechanism, initial_response_ok)
        emit(guard.findings, stacklevel=2)
        return reply.code, reply_bytes(reply)

    def auth(
        self, mechanism: str, authobject: _AuthObject, *, initial_response_ok: bool = True
    ) -> tuple[int, bytes]:
        """smtplib's low-level AUTH with a callable; same TLS and 235-only rules as login()."""
        self._ehlo_inside_tls()
        guard = self._check_login_allowed()
        reply = self._authenticate(
            _CallbackMechanism(mechanism.upper(), authobject, self, initial_response_ok),
            initial_response_ok,
        )
        emit(guard.findings, stacklevel=2)
        return reply.code, reply_bytes(reply)

    def _authenticate(self, mechanism: sasl.Mechanism, initial_response: bool) -> Reply:
        wire = self._require_wire()
        self._secret = True
        try:
            reply = self._run(authenticate(wire, mechanism, initial_response=initial_response))
        except AuthenticationError as exc:
            raise errors.AuthFailed(
                str(exc),
                code=exc.code,
                msg=text_bytes(exc),
                hint=exc.hint,
            ) from None
        except errors.MalformedReply:
            raise
        except RemoteProtocolError as exc:  # 503 to the first AUTH: not our session
            with contextlib.suppress(SMTPSecError):
                self.quit()
            self.close()
            raise errors.AuthNotFresh(
                f"{exc}",
                code=503,
                msg=b"",
                hint="reconnect; if it happens again, something in the path tampers with SMTP",
            ) from None
        finally:
            self._secret = False
        self._authenticated = True
        return reply


class _CallbackMechanism:
    """smtplib's ``auth(mechanism, authobject)`` callable as a SASL mechanism."""

    def __init__(
        self, name: str, authobject: _AuthObject, owner: _Secured, initial_response_ok: bool
    ) -> None:
        self.name = name
        self._authobject = authobject
        self._owner = owner
        self._initial_ok = initial_response_ok

    def initial_response(self, *, max_encoded: int | None = None) -> bytes | None:
        if not self._initial_ok:
            self._owner._auth_challenge_count = 0
            return None
        self._owner._auth_challenge_count = 1
        answer = self._authobject(None)
        return None if answer is None else answer.encode("ascii")

    def respond(self, challenge: bytes) -> bytes:
        # smtplib's auth_login() reads this counter to know which prompt it answers.
        self._owner._auth_challenge_count += 1
        return self._authobject(challenge).encode("ascii")

    @property
    def server_error(self) -> sasl.OAuthErrorInfo | None:
        return None

    def verify_success(self, data: bytes | None) -> None:
        """The callable gives no server proof to check."""


def client_context(
    keyfile: StrOrBytesPath | None,
    certfile: StrOrBytesPath | None,
    context: ssl.SSLContext | None,
) -> ssl.SSLContext:
    """The caller's context as given, else smtpsec's verifying one (R-PY-1, R-PY-15).

    ``keyfile``/``certfile`` (deprecated, gone from smtplib in 3.12) are loaded
    into a fresh verifying context as the client certificate.

    Raises:
        ValueError: ``context`` together with ``keyfile``/``certfile`` (as
            smtplib), or ``keyfile`` without ``certfile``.
    """
    if context is not None:
        if keyfile is not None or certfile is not None:
            raise ValueError("context and keyfile/certfile arguments are mutually exclusive")
        return context
    if keyfile is None and certfile is None:
        return build_context(DEFAULT_POLICY)
    warnings.warn(
        "keyfile and certfile are deprecated (removed from smtplib in 3.12); load "
        "the client certificate into a context with ctx.load_cert_chain()",
        DeprecationWarning,
        stacklevel=3,
    )
    if certfile is None:
        raise ValueError("keyfile needs certfile (the client certificate chain)")
    return build_context(Policy(client_cert=(str(certfile), str(keyfile or certfile))))
