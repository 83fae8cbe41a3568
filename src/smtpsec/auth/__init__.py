"""SASL mechanisms for SMTP AUTH (RFC 4954) as pure, I/O-free encoders.

Nothing here touches a socket, TLS or a logger. The client drives a mechanism::

    mech = choose_mechanism(post_tls_auth_names, credentials=creds)
    send(auth_command(mech))                      # "AUTH NAME [initial-response]"
    while reply.code == 334:                      # challenge -> response rounds
        try:
            answer = encode_response(mech.respond(decode_challenge(reply.text)))
        except SMTPSecError:
            send("*"); ...                        # cancel (RFC 4954 §4), then raise
        send(answer)
    if reply.code == 235:
        mech.verify_success(decode_success_data(reply.text))  # SCRAM: server proof
    else:
        hint = auth_failure_hint(code, enhanced, mech.name, server_error=mech.server_error)

A mechanism object serves exactly one AUTH attempt; make a new one per attempt.
Every line built from a mechanism carries secrets and must be logged redacted.
User names and passwords for the password mechanisms go through SASLprep
(RFC 4013); OAuth user names and authzids are sent as given, controls refused.

Preference order (:data:`DEFAULT_PREFERENCE`), strongest first (R-LIB-MECH-1):

1. ``EXTERNAL`` - only with a configured client certificate: no secret is sent.
2. ``SCRAM-SHA-256``, ``SCRAM-SHA-1`` - the password never crosses the wire and the
   server must prove it knows it too, which unmasks an impostor even behind a
   mis-issued certificate.
3. ``OAUTHBEARER``, ``XOAUTH2`` - scoped tokens that expire and can be revoked,
   but a token is still a bearer secret and the server proves nothing.
4. ``PLAIN`` - the password itself; fine inside TLS with a verified certificate,
   which smtpsec requires before any AUTH (R-4954-9-1).
5. ``LOGIN`` - the same secret as PLAIN in a legacy, unstandardised dialogue;
   used only when PLAIN is not offered.

``CRAM-MD5`` is never chosen automatically: it does not authenticate the server
and it forces the server to store the plaintext password. Name it in
``explicit=`` or put it in ``preference=`` to opt in.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from typing import Final, Protocol

from .._advice import NATIVE, Advice
from .._types import MAX_COMMAND_LINE
from ..errors import CapabilityError, PolicyError, RemoteProtocolError
from ..policy import DEFAULT_SCRAM_MAX_ITERATIONS
from ..sansio import is_mechanism_name
from ._mechanisms import (
    B64_RE,
    CramMD5,
    Credentials,
    External,
    Login,
    OAuthBearer,
    OAuthErrorInfo,
    Plain,
    RefreshingTokenProvider,
    Token,
    TokenProvider,
    XOAuth2,
)
from ._scram import ScramSHA1, ScramSHA256

__all__ = [
    "DEFAULT_PREFERENCE",
    "SUPPORTED_MECHANISMS",
    "CramMD5",
    "Credentials",
    "External",
    "Login",
    "Mechanism",
    "OAuthBearer",
    "OAuthErrorInfo",
    "Plain",
    "RefreshingTokenProvider",
    "ScramSHA1",
    "ScramSHA256",
    "Token",
    "TokenProvider",
    "XOAuth2",
    "auth_command",
    "auth_failure_hint",
    "choose_mechanism",
    "decode_challenge",
    "decode_success_data",
    "encode_response",
    "token_refused",
]

#: Automatic choice order; see the module docstring for why. CRAM-MD5 is absent.
DEFAULT_PREFERENCE: Final = (
    "EXTERNAL",
    "SCRAM-SHA-256",
    "SCRAM-SHA-1",
    "OAUTHBEARER",
    "XOAUTH2",
    "PLAIN",
    "LOGIN",
)
#: Every mechanism smtpsec can speak (none with a security layer: R-4954-4-7).
SUPPORTED_MECHANISMS: Final = (*DEFAULT_PREFERENCE, "CRAM-MD5")

_PASSWORD_MECHS: Final = frozenset({"SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN", "LOGIN", "CRAM-MD5"})
_TOKEN_MECHS: Final = frozenset({"OAUTHBEARER", "XOAUTH2"})


class Mechanism(Protocol):
    """What the client needs from a SASL mechanism (one object per AUTH attempt)."""

    @property
    def name(self) -> str:
        """The SASL name sent after ``AUTH`` (``"PLAIN"``, ``"SCRAM-SHA-256"``...)."""
        ...

    def initial_response(self, *, max_encoded: int | None = None) -> bytes | None:
        """The initial response to put on the AUTH line, or ``None`` to send none.

        Args:
            max_encoded: the most base64 characters the line has room for; a
                longer initial response is withheld and given to the first
                (empty) ``334`` instead (R-4954-4-3).

        Returns:
            Raw bytes (``b""`` must be sent as ``=``), or ``None``.
        """
        ...

    def respond(self, challenge: bytes) -> bytes:
        """Answer one decoded ``334`` challenge with raw bytes (caller base64s them)."""
        ...

    @property
    def server_error(self) -> OAuthErrorInfo | None:
        """The OAuth error JSON a ``334`` carried (XOAUTH2/OAUTHBEARER), else ``None``."""
        ...

    def verify_success(self, data: bytes | None) -> None:
        """Check a ``235`` (with its decoded additional data, if any).

        Raises:
            SecurityError: the server did not prove its identity (SCRAM).
        """
        ...


def decode_challenge(text: str) -> bytes:
    """Decode a ``334`` challenge strictly (R-4954-4-2, R-4954-4-4).

    Args:
        text: the reply text after ``334``; ``""`` for a bare ``334`` or ``334 ``.

    Returns:
        The decoded bytes; ``b""`` for an empty challenge.

    Raises:
        RemoteProtocolError: characters outside the base64 alphabet, ``=``
            anywhere but the end, or a length that is not a multiple of four.
            The client must then answer ``*`` and fail.
    """
    text = text.strip(" \t")
    if not B64_RE.fullmatch(text):
        raise RemoteProtocolError(
            "the server sent an AUTH challenge that is not valid base64 (RFC 4954 §4); "
            "the exchange must be cancelled with '*'. The server is broken or the "
            "connection was tampered with"
        )
    return base64.b64decode(text)


def decode_success_data(text: str) -> bytes | None:
    """The additional data a ``235`` carries, or ``None`` when there is none.

    Only text that is strictly non-empty base64 counts: ordinary human text such
    as ``Authentication successful`` gives ``None``. Feed the result to
    :meth:`Mechanism.verify_success`.
    """
    text = text.strip(" \t")
    return base64.b64decode(text) if text and B64_RE.fullmatch(text) else None


def encode_response(data: bytes, *, initial: bool = False) -> str:
    """Base64-encode one SASL response line.

    Args:
        data: raw response bytes.
        initial: ``True`` for the initial response on the AUTH line, where an
            empty response is written ``=`` (R-4954-4-3); otherwise ``b""``
            gives ``""`` and the client sends an empty line.
    """
    if not data:
        return "=" if initial else ""
    return base64.b64encode(data).decode("ascii")


def auth_command(mechanism: Mechanism, *, line_limit: int = MAX_COMMAND_LINE) -> str:
    """Build the ``AUTH`` command text (without CRLF) for a fresh mechanism.

    The initial response is included only when the whole line, CRLF included,
    fits in ``line_limit`` octets; otherwise the mechanism answers the first
    empty ``334`` with it (R-4954-4-3). The result contains secrets: log it
    redacted (R-LIB-SECRETS-1).
    """
    prefix = f"AUTH {mechanism.name}"
    room = line_limit - len(prefix) - len(" \r\n")
    ir = mechanism.initial_response(max_encoded=room)
    return prefix if ir is None else f"{prefix} {encode_response(ir, initial=True)}"


# --------------------------------------------------------------------------- choice

_NEEDS: Final = {
    **dict.fromkeys(_PASSWORD_MECHS, "a username and password"),
    "OAUTHBEARER": "an OAuth token",
    "XOAUTH2": "a username and an OAuth token",
    "EXTERNAL": "a configured TLS client certificate",
}


def _usable(credentials: Credentials | None, token: Token | None, client_cert: bool) -> set[str]:
    """The mechanisms the given secrets can drive."""
    usable: set[str] = set()
    if credentials is not None and credentials.password is not None:
        usable |= _PASSWORD_MECHS
    if token is not None:
        usable.add("OAUTHBEARER")
        if credentials is not None:
            usable.add("XOAUTH2")
    if client_cert:
        usable.add("EXTERNAL")
    return usable


def _build(
    name: str,
    credentials: Credentials | None,
    token: Token | None,
    scram_max_iterations: int,
    advice: Advice,
) -> Mechanism:
    if name == "EXTERNAL":
        return External(authzid=credentials.authzid if credentials else "")
    if name == "OAUTHBEARER":
        assert token is not None
        user = (credentials.authzid or credentials.username) if credentials else ""
        return OAuthBearer(token, authzid=user)
    assert credentials is not None
    if name == "XOAUTH2":
        assert token is not None
        return XOAuth2(credentials.username, token)
    if name == "SCRAM-SHA-256":
        return ScramSHA256(credentials, max_iterations=scram_max_iterations, advice=advice)
    if name == "SCRAM-SHA-1":
        return ScramSHA1(credentials, max_iterations=scram_max_iterations, advice=advice)
    password_classes: dict[str, type[Plain | Login | CramMD5]] = {
        "PLAIN": Plain,
        "LOGIN": Login,
        "CRAM-MD5": CramMD5,
    }
    return password_classes[name](credentials)


def _nothing_usable(server: set[str], usable: set[str], order: list[str], advice: Advice) -> str:
    """Say why no mechanism fits, and what the caller can change."""
    hints = []
    if not server:
        hints.append("it accepts no login here; check the host and port (465 or 587)")
    for name in sorted(server & usable - set(order)):
        why = " (it does not authenticate the server)" if name == "CRAM-MD5" else ""
        how = advice.choose_mechanism.format(name=name)
        hints.append(f"{how} to allow {name} explicitly{why}")
    if server & _TOKEN_MECHS and not usable & _TOKEN_MECHS:
        hints.append(f"it takes OAuth 2.0 tokens: {advice.use_oauth}")
    if "XOAUTH2" in server and "OAUTHBEARER" in usable - server:
        hints.append("XOAUTH2 needs the username as well as the token")
    if server & _PASSWORD_MECHS - {"CRAM-MD5"} and not usable & _PASSWORD_MECHS:
        hints.append("it takes passwords: pass username and password")
    if "EXTERNAL" in server and "EXTERNAL" not in usable:
        hints.append("configure a TLS client certificate to use EXTERNAL")
    if not hints:
        hints.append(f"smtpsec implements {', '.join(SUPPORTED_MECHANISMS)}")
    shown = ", ".join(sorted(server)) or "no mechanism"
    return f"no usable AUTH mechanism: the server offers {shown} after TLS; " + "; ".join(hints)


def choose_mechanism(
    offered: Iterable[str],
    *,
    credentials: Credentials | None = None,
    token: Token | None = None,
    client_cert: bool = False,
    preference: Iterable[str] = DEFAULT_PREFERENCE,
    explicit: str | None = None,
    scram_max_iterations: int = DEFAULT_SCRAM_MAX_ITERATIONS,
    advice: Advice = NATIVE,
) -> Mechanism:
    """Pick one mechanism and build it, ready for a single AUTH attempt.

    The choice is the first name in ``preference`` that the server offers and
    the given secrets can drive (R-4954-4-1). After a failure the client must not
    retry with a weaker one automatically.

    Args:
        offered: the ``AUTH`` names from the post-TLS EHLO (R-4954-3-1), any case.
        credentials: username and password (password may be ``None`` when only
            a token or a certificate is used; the username still feeds XOAUTH2 and
            the OAUTHBEARER authzid).
        token: an OAuth 2.0 access token or a provider called once per attempt.
        client_cert: ``True`` when a client certificate for *this* account is
            configured, which enables EXTERNAL (R-8314-5.5-3).
        preference: the caller's ordered allow-list; CRAM-MD5 is usable only
            when named here or in ``explicit`` (R-LIB-MECH-1).
        explicit: use exactly this mechanism or fail.
        scram_max_iterations: the most PBKDF2 iterations SCRAM may be asked for
            (``Policy.scram_max_iterations``).
        advice: how failure messages word the fix (the front end's own terms).

    Raises:
        PolicyError: an unknown mechanism name, no secrets at all, or an
            ``explicit`` mechanism the given secrets cannot drive.
        CapabilityError: the server offers nothing usable, or not ``explicit``;
            the message lists what it offers and how to fix it.
        InvalidArgumentError: the credentials cannot be encoded safely.
    """
    server = {n.upper() for n in offered if is_mechanism_name(n.upper())}
    order = [n.upper() for n in preference]
    wanted = [*order, explicit.upper()] if explicit is not None else order
    for name in wanted:
        if name not in SUPPORTED_MECHANISMS:
            raise PolicyError(
                f"smtpsec does not implement AUTH {name!r}; choose from "
                f"{', '.join(SUPPORTED_MECHANISMS)}"
            )
    usable = _usable(credentials, token, client_cert)
    if not usable:
        raise PolicyError(
            "nothing to authenticate with: pass a username and password, an OAuth "
            "token, or configure a TLS client certificate"
        )
    if explicit is not None:
        name = explicit.upper()
        if name not in server:
            shown = ", ".join(sorted(server)) or "no mechanism"
            raise CapabilityError(
                f"the server does not offer AUTH {name} after TLS (it offers {shown}); "
                "use one of those, or let smtpsec choose"
            )
        if name not in usable:
            raise PolicyError(f"AUTH {name} needs {_NEEDS[name]}, which was not given")
        return _build(name, credentials, token, scram_max_iterations, advice)
    for name in order:
        if name in server and name in usable:
            return _build(name, credentials, token, scram_max_iterations, advice)
    raise CapabilityError(_nothing_usable(server, usable, order, advice))


# --------------------------------------------------------------------------- failure hints


def _provider_hint(advice: Advice) -> str:
    return (
        # Not "OAuth 2.0 (...)": the advice has parentheses of its own.
        "Gmail and Outlook/Microsoft 365 refuse the account password for SMTP: use an app "
        f"password, or OAuth 2.0: {advice.use_oauth}"
    )


def token_refused(code: int, mechanism: str, server_error: OAuthErrorInfo | None) -> bool:
    """Whether a failed OAuth AUTH means "this token is no good" (worth one fresh token).

    ``535`` to XOAUTH2/OAUTHBEARER (Google and Microsoft answer so for an
    expired or revoked token), or an error challenge whose status is ``401``
    or ``invalid_token`` (RFC 7628 §3.2.2).
    """
    if mechanism.upper() not in _TOKEN_MECHS:
        return False
    status = (server_error.status or "") if server_error is not None else ""
    return code == 535 or status in ("401", "invalid_token")


def auth_failure_hint(
    code: int,
    enhanced: str | None,
    mechanism: str,
    *,
    server_error: OAuthErrorInfo | None = None,
    advice: Advice = NATIVE,
) -> str:
    """Say what usually fixes a failed AUTH, for :attr:`AuthenticationError.hint`.

    The distinct outcomes follow RFC 4954 §6 (R-4954-6-1).

    Args:
        code: the failure reply code.
        enhanced: its enhanced status code (``"5.7.8"``) or ``None``.
        mechanism: the mechanism that was tried.
        server_error: the OAuth error JSON the mechanism captured, if any.
        advice: how the hint words the fix (the front end's own terms).
    """
    mech = mechanism.upper()
    status = (
        f" {enhanced}" if enhanced and re.fullmatch(r"[245]\.\d{1,3}\.\d{1,3}", enhanced) else ""
    )
    said = f" (server said: {server_error.describe()})" if server_error else ""
    if code == 432:
        return f"the server needs a password change first (432{status}): change it, then retry"
    if code == 454:
        return (
            f"temporary failure on the server's side (454{status}): retry later; the "
            "credentials were not judged, so do not ask for a new password"
        )
    if 400 <= code < 500:
        return f"temporary failure ({code}{status}): retry later"
    if code == 500 and enhanced == "5.5.6":
        return (
            "the server found the AUTH line too long (500 5.5.6): retry with the initial "
            "response omitted, sending it after the server's 334 prompt"
        )
    if code == 504:
        return (
            f"the server does not implement AUTH {mech} (504{status}); use another "
            f"mechanism ({advice.choose_mechanism.format(name='...')})"
        )
    if code == 530:
        return f"the server requires authentication (530{status}): pass credentials"
    if code == 534:
        return (
            f"the server refuses {mech} as too weak, or wants a web sign-in first "
            f"(534{status}). {_provider_hint(advice)}"
        )
    if code == 535 and mech in _TOKEN_MECHS:
        return (
            f"the OAuth token was refused (535{status}){said}: it may have expired or lack "
            "the mail scope (Gmail: https://mail.google.com/, Microsoft 365: SMTP.Send); "
            "fetch a fresh token"
        )
    if code == 550 and enhanced == "5.7.30":
        return (
            "Microsoft 365 no longer accepts passwords (basic authentication) for SMTP "
            "submission in this tenant (550 5.7.30; off by default for existing tenants "
            "since the end of December 2026): use OAuth 2.0 (XOAUTH2) with a token for the "
            f"SMTP.Send permission, e.g. from MSAL's client-credentials flow; {advice.use_oauth}"
        )
    if code == 535 and enhanced == "5.7.139":
        return (
            "Microsoft 365 has SMTP AUTH or basic authentication disabled for this "
            "account (535 5.7.139): enable authenticated SMTP for the mailbox, or use OAuth 2.0"
        )
    if code == 535:
        provider = _provider_hint(advice)
        return f"the username or password was refused (535{status}); check both. {provider}"
    if code == 538:
        return (
            f"the server wants encryption for {mech} (538{status}), yet smtpsec only "
            "authenticates inside verified TLS: the server is misconfigured; do not "
            "retry without TLS"
        )
    return (
        f"AUTH {mech} failed ({code}{status}){said}; check the credentials and the "
        "server's AUTH settings"
    )
