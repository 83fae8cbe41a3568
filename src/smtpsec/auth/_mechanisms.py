"""The SASL mechanism classes behind :mod:`smtpsec.auth` (except SCRAM).

Each class is a small state machine over bytes: no I/O, no logging. Secrets live
only in private slots and never reach ``repr()`` or an exception message
(R-LIB-SECRETS-1). Import the public names from :mod:`smtpsec.auth`.
"""

from __future__ import annotations

import base64
import hmac
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Final, Protocol, TypeAlias, runtime_checkable

from ..errors import InvalidArgumentError, LocalProtocolError, RemoteProtocolError
from ..sansio import first_control_character
from ._saslprep import saslprep

#: A callable returning an OAuth 2.0 access token; called once per attempt.
TokenProvider: TypeAlias = Callable[[], str]


@runtime_checkable
class RefreshingTokenProvider(Protocol):
    """A token provider that can replace a token the server refused.

    Calling it returns the current access token (a cached one is fine);
    :meth:`refresh` returns a new one. When the server refuses an OAuth token
    (``535``, or an error challenge saying it is invalid or expired), smtpsec
    calls :meth:`refresh` once and retries AUTH once with the new token: tokens
    expire (an hour for Google and Microsoft), and a cached one may have just
    run out. A plain callable gets no retry: it may well return the same token.
    """

    def __call__(self) -> str:
        """The access token to use now."""
        ...

    def refresh(self) -> str:
        """A fresh access token (the last one was refused)."""
        ...


#: An access token, or a provider of one.
Token: TypeAlias = str | TokenProvider | RefreshingTokenProvider

#: Strict base64 (RFC 4648 §4): alphabet only, padding only at the end.
B64_RE: Final = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_TOKEN_RE: Final = re.compile(r"[\x21-\x7e]+")  # RFC 6750 b64token is a subset


@dataclass(frozen=True, slots=True, repr=False)
class Credentials:
    """Who to authenticate as.

    Attributes:
        username: the authentication identity (authcid).
        password: the password, or ``None`` for token or certificate login. Never
            shown by ``repr()``.
        authzid: optional authorization identity ("act as"); usually empty.
    """

    username: str
    password: str | None = None
    authzid: str = ""

    def __repr__(self) -> str:
        shown = "None" if self.password is None else "<redacted>"
        return (
            f"Credentials(username={self.username!r}, password={shown}, authzid={self.authzid!r})"
        )


@dataclass(frozen=True, slots=True)
class OAuthErrorInfo:
    """The JSON error a server sent in a ``334`` after an OAuth token was refused.

    Every field is an untrusted, sanitised hint (R-7628-3.2.2-1): smtpsec never
    fetches ``openid_configuration`` or sends the token anywhere because of it.

    Attributes:
        status: HTTP-like status such as ``"401"`` or ``"invalid_token"``.
        schemes: accepted token schemes, e.g. ``"bearer"``.
        scope: the scope the token needs, e.g. ``"https://mail.google.com/"``.
        openid_configuration: where the server says its OAuth metadata lives.
    """

    status: str | None = None
    schemes: str | None = None
    scope: str | None = None
    openid_configuration: str | None = None

    def describe(self) -> str:
        """One line for an error message, e.g. ``status=401, scope=...``."""
        parts = [
            f"{label}={value}"
            for label, value in (
                ("status", self.status),
                ("schemes", self.schemes),
                ("scope", self.scope),
                ("openid-configuration", self.openid_configuration),
            )
            if value is not None
        ]
        return ", ".join(parts) if parts else "no details"


_NOT_STARTED, _DEFERRED, _SENT = 0, 1, 2


def extra_challenge(name: str) -> RemoteProtocolError:
    """The error for a challenge the mechanism has no answer for."""
    return RemoteProtocolError(
        f"the server sent an unexpected extra AUTH {name} challenge; the exchange "
        "must be cancelled with '*'. The server is broken or not what it claims to be"
    )


class MechanismBase:
    """Shared initial-response bookkeeping; subclasses set ``name`` and hooks."""

    __slots__ = ("_ir_state",)
    name: ClassVar[str]

    def __init__(self) -> None:
        self._ir_state = _NOT_STARTED

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    def _initial(self) -> bytes | None:
        return None

    def _step(self, challenge: bytes) -> bytes:
        raise extra_challenge(self.name)

    @property
    def server_error(self) -> OAuthErrorInfo | None:
        """The OAuth error JSON the server sent, if any (OAuth mechanisms only)."""
        return None

    def initial_response(self, *, max_encoded: int | None = None) -> bytes | None:
        """See :meth:`Mechanism.initial_response`."""
        if self._ir_state != _NOT_STARTED:
            raise LocalProtocolError(
                f"AUTH {self.name} already started; make a new mechanism per AUTH attempt"
            )
        ir = self._initial()
        encoded = 4 * ((len(ir) + 2) // 3) if ir else 1
        if ir is not None and max_encoded is not None and encoded > max_encoded:
            self._ir_state = _DEFERRED
            return None
        self._ir_state = _SENT
        return ir

    def respond(self, challenge: bytes) -> bytes:
        """See :meth:`Mechanism.respond`."""
        if self._ir_state != _SENT:
            self._ir_state = _SENT
            ir = self._initial()
            if ir is not None:
                # The initial response was withheld: SASL (RFC 4422 §5) has the
                # server ask for it with an empty challenge, never with data.
                if challenge:
                    raise extra_challenge(self.name)
                return ir
        return self._step(challenge)

    def verify_success(self, data: bytes | None) -> None:
        """See :meth:`Mechanism.verify_success`; only SCRAM has something to check."""
        del data


def reject_controls(value: str, what: str, name: str) -> None:
    """Refuse a SASL field with a control character (the sansio rule, one for all fields)."""
    if first_control_character(value) is not None:
        raise InvalidArgumentError(
            f"the {what} for AUTH {name} contains a control character (CR, LF, NUL, "
            "\\x01...), which could inject protocol fields; remove it"
        )


def password_pair(credentials: Credentials, name: str) -> tuple[bytes, bytes]:
    """Check and SASLprep (RFC 4013, R-4954-4-8) a username and password."""
    if credentials.password is None:
        raise InvalidArgumentError(f"AUTH {name} needs a password; pass password=...")
    for what, value in (
        ("authzid", credentials.authzid),
        ("username", credentials.username),
        ("password", credentials.password),
    ):
        # Checked before anything is built: a NUL would shift PLAIN's fields
        # (R-4616-1), e.g. turn part of the password into an authzid.
        if "\x00" in value:
            raise InvalidArgumentError(f"the {what} contains a NUL character; remove it")
    user = saslprep(credentials.username, what="username")
    password = saslprep(credentials.password, what="password")
    if not user or not password:
        raise InvalidArgumentError(f"AUTH {name} needs a non-empty username and password")
    return user.encode(), password.encode()


class Plain(MechanismBase):
    """RFC 4616 PLAIN: ``authzid NUL username NUL password`` in one message."""

    __slots__ = ("_message",)
    name = "PLAIN"

    def __init__(self, credentials: Credentials) -> None:
        """Validate now, so a bad argument fails before any byte is sent.

        Raises:
            InvalidArgumentError: NUL anywhere (R-4616-1), SASLprep refusal,
                missing or empty password.
        """
        super().__init__()
        user, password = password_pair(credentials, self.name)
        self._message = b"\x00".join((credentials.authzid.encode(), user, password))

    def _initial(self) -> bytes | None:
        return self._message


class Login(MechanismBase):
    """Legacy LOGIN: username, then password, one per ``334`` (prompt text ignored)."""

    __slots__ = ("_answers",)
    name = "LOGIN"

    def __init__(self, credentials: Credentials) -> None:
        """Raises InvalidArgumentError like :class:`Plain`."""
        super().__init__()
        # Counting rounds, not reading "Username:" prompts, which servers word freely.
        self._answers = list(password_pair(credentials, self.name))

    def _step(self, challenge: bytes) -> bytes:
        if not self._answers:
            raise extra_challenge(self.name)
        return self._answers.pop(0)


class CramMD5(MechanismBase):
    """RFC 2195 CRAM-MD5; opt-in only: no server authentication."""

    __slots__ = ("_done", "_password", "_user")
    name = "CRAM-MD5"

    def __init__(self, credentials: Credentials) -> None:
        """Raises InvalidArgumentError like :class:`Plain`."""
        super().__init__()
        self._user, self._password = password_pair(credentials, self.name)
        self._done = False

    def _step(self, challenge: bytes) -> bytes:
        if self._done or not challenge:
            raise extra_challenge(self.name)
        self._done = True
        digest = hmac.new(self._password, challenge, "md5").hexdigest()
        return self._user + b" " + digest.encode()


#: An OAuth error challenge is a small JSON object (RFC 7628 §3.2.2); more is hostile.
_MAX_JSON_OCTETS: Final = 8192
_MAX_JSON_DEPTH: Final = 8


def bounded_json(data: bytes) -> object:
    """Parse a small JSON document from the server; ``None`` when it is not one.

    The size and the nesting depth are checked before parsing, so a hostile
    challenge (a 1,500-deep array fits in one reply line) cannot make the JSON
    parser recurse, and no exception but the documented ones can escape.
    """
    if len(data) > _MAX_JSON_OCTETS:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    depth = deepest = 0
    quoted = escaped = False
    for char in text:
        if quoted:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
        elif char == '"':
            quoted = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    if deepest > _MAX_JSON_DEPTH:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def saslname(value: str) -> str:
    """RFC 5802 §5.1 / RFC 5801: escape ``=`` and ``,`` in a name."""
    return value.replace("=", "=3D").replace(",", "=2C")


def _sanitise(value: object, secrets_: tuple[str, ...]) -> str | None:
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        return None
    text = str(value)
    for secret in secrets_:
        text = text.replace(secret, "<redacted>")
    return re.sub(r"[^\x20-\x7e]", "?", text)[:200]


class _OAuth(MechanismBase):
    """Token fetch, validation and error-JSON capture shared by the OAuth mechanisms."""

    __slots__ = ("_error", "_source", "_token")

    def __init__(self, token: Token) -> None:
        super().__init__()
        self._source = token
        self._token: str | None = None
        self._error: OAuthErrorInfo | None = None
        if isinstance(token, str):
            self._get_token()  # a literal token is checked at once

    def _get_token(self) -> str:
        if self._token is None:
            token = self._source() if callable(self._source) else self._source
            if not isinstance(token, str) or not _TOKEN_RE.fullmatch(token):
                raise InvalidArgumentError(
                    f"the OAuth token for AUTH {self.name} is empty, not a str, or holds "
                    "spaces, control characters (\\x01, CR, LF...) or non-ASCII; pass "
                    "the bare access token"
                )
            self._token = token
        return self._token

    @property
    def server_error(self) -> OAuthErrorInfo | None:
        """The sanitised OAuth error JSON from the server's ``334``, if one came."""
        return self._error

    def _remember_error(self, challenge: bytes) -> None:
        if self._error is not None:
            raise extra_challenge(self.name)
        token = self._get_token()
        hide = (token, base64.b64encode(token.encode()).decode("ascii"))
        parsed = bounded_json(challenge)
        fields = parsed if isinstance(parsed, dict) else {}
        self._error = OAuthErrorInfo(
            *(
                _sanitise(fields.get(key), hide)
                for key in ("status", "schemes", "scope", "openid-configuration")
            )
        )


class XOAuth2(_OAuth):
    """Google/Microsoft XOAUTH2: ``user=U^Aauth=Bearer T^A^A``."""

    __slots__ = ("_user",)
    name = "XOAUTH2"

    def __init__(self, username: str, token: Token) -> None:
        """Raises InvalidArgumentError for controls in the username or a bad token."""
        reject_controls(username, "username", self.name)
        if not username:
            raise InvalidArgumentError("AUTH XOAUTH2 needs the mailbox's username")
        self._user = username
        super().__init__(token)

    def _initial(self) -> bytes | None:
        return f"user={self._user}\x01auth=Bearer {self._get_token()}\x01\x01".encode()

    def _step(self, challenge: bytes) -> bytes:
        # The 334 carries error JSON; an empty reply lets the server send its 535.
        self._remember_error(challenge)
        return b""


class OAuthBearer(_OAuth):
    """RFC 7628 OAUTHBEARER: GS2 header, then ``^A``-separated pairs."""

    __slots__ = ("_header",)
    name = "OAUTHBEARER"

    def __init__(
        self, token: Token, *, authzid: str = "", host: str | None = None, port: int | None = None
    ) -> None:
        """Build the fixed part now.

        Args:
            token: the access token or a provider of one.
            authzid: usually the mailbox address; escaped per RFC 5801.
            host: optional ``host=`` pair (the name connected to).
            port: optional ``port=`` pair.

        Raises:
            InvalidArgumentError: controls in authzid/host, a port outside
                1..65535, or a bad literal token.
        """
        reject_controls(authzid, "authzid", self.name)
        reject_controls(host or "", "host", self.name)
        if port is not None and not 0 < port < 65536:
            raise InvalidArgumentError(f"port {port} for AUTH OAUTHBEARER is not 1..65535")
        pairs = "".join(
            f"{key}={value}\x01"
            for key, value in (("host", host), ("port", port))
            if value is not None
        )
        authz = f"a={saslname(authzid)}" if authzid else ""
        self._header = f"n,{authz},\x01{pairs}"
        super().__init__(token)

    def _initial(self) -> bytes | None:
        return f"{self._header}auth=Bearer {self._get_token()}\x01\x01".encode()

    def _step(self, challenge: bytes) -> bytes:
        # RFC 7628 §3.2.3: acknowledge the error with a lone ^A, never a new token.
        self._remember_error(challenge)
        return b"\x01"


class External(MechanismBase):
    """RFC 4422 EXTERNAL over a verified client certificate."""

    __slots__ = ("_authzid",)
    name = "EXTERNAL"

    def __init__(self, *, authzid: str = "") -> None:
        """An empty authzid (the default) is sent as ``AUTH EXTERNAL =``."""
        super().__init__()
        reject_controls(authzid, "authzid", self.name)
        self._authzid = authzid.encode()

    def _initial(self) -> bytes | None:
        return self._authzid
