"""SCRAM-SHA-256 and SCRAM-SHA-1 (RFC 5802, RFC 7677) client mechanisms.

SCRAM is the only mechanism here that authenticates the *server*: after our
proof, the server must return a signature only a holder of the password's
derived keys can compute. :meth:`verify_success` refuses to let AUTH count as a
success without it. Channel binding (``-PLUS``) is not offered: the GS2 header
says ``n`` ("client does not support it"), which is honest, so a server that
supports binding will not suspect a downgrade.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from typing import ClassVar, Final

from .._advice import NATIVE, Advice
from ..errors import AuthenticationError, InvalidArgumentError, RemoteProtocolError, SecurityError
from ..policy import DEFAULT_SCRAM_MAX_ITERATIONS, SCRAM_MIN_ITERATIONS
from ._mechanisms import (
    B64_RE,
    Credentials,
    MechanismBase,
    extra_challenge,
    password_pair,
    reject_controls,
    saslname,
)

__all__ = ["ScramSHA1", "ScramSHA256"]

_NONCE_RE: Final = re.compile(r"[\x21-\x2b\x2d-\x7e]+")  # printable ASCII minus ","
_ITER_RE: Final = re.compile(r"[1-9][0-9]{0,9}")
_IMPOSTOR: Final = (
    "the server could not prove it knows your password ({why}): it may be an impostor. "
    "Treat the connection as unsafe; check the host name and its certificate before retrying"
)


class _Scram(MechanismBase):
    """RFC 5802 SCRAM without channel binding; the server must prove itself."""

    __slots__ = (
        "_advice",
        "_bare",
        "_gs2",
        "_max_iterations",
        "_nonce",
        "_password",
        "_round",
        "_signature",
        "_verified",
    )
    _hash: ClassVar[str]

    def __init__(
        self,
        credentials: Credentials,
        *,
        max_iterations: int = DEFAULT_SCRAM_MAX_ITERATIONS,
        advice: Advice = NATIVE,
        _client_nonce: str | None = None,
    ) -> None:
        """Validate the credentials and draw a random client nonce.

        Args:
            credentials: user name and password.
            max_iterations: the most PBKDF2 iterations the server may ask for
                (``Policy.scram_max_iterations``); each costs client CPU.
            advice: how the error for a larger count words the fix.
            _client_nonce: a fixed nonce, for test vectors only.

        Raises:
            InvalidArgumentError: like :class:`Plain`, or a control character in
                the authzid.
        """
        super().__init__()
        user, self._password = password_pair(credentials, self.name)
        reject_controls(credentials.authzid, "authzid", self.name)
        nonce = secrets.token_urlsafe(24) if _client_nonce is None else _client_nonce
        if not _NONCE_RE.fullmatch(nonce):
            raise InvalidArgumentError("a SCRAM nonce must be printable ASCII without ','")
        authzid = f"a={saslname(credentials.authzid)}" if credentials.authzid else ""
        self._gs2 = f"n,{authzid},"  # "n": no channel binding, and we say so honestly
        self._nonce = nonce
        self._bare = f"n={saslname(user.decode())},r={nonce}"
        self._signature: bytes | None = None
        self._verified = False
        self._round = 0
        self._max_iterations = max_iterations
        self._advice = advice

    def _initial(self) -> bytes | None:
        return (self._gs2 + self._bare).encode()

    def _step(self, challenge: bytes) -> bytes:
        self._round += 1
        if self._round == 1:
            return self._client_final(challenge)
        if self._round == 2:
            self._check_server_final(challenge)
            return b""
        raise extra_challenge(self.name)

    def _client_final(self, challenge: bytes) -> bytes:
        try:
            server_first = challenge.decode("ascii")
        except UnicodeDecodeError:
            server_first = ""
        attrs = server_first.split(",")
        if len(attrs) < 3 or [a[:2] for a in attrs[:3]] != ["r=", "s=", "i="]:
            raise RemoteProtocolError(
                f"the server's first SCRAM message is malformed or demands an unknown "
                f"mandatory extension (RFC 5802 §5.1); AUTH {self.name} cannot continue"
            )
        nonce, salt_text, count_text = (a[2:] for a in attrs[:3])
        if not nonce.startswith(self._nonce) or nonce == self._nonce:
            raise SecurityError(
                _IMPOSTOR.format(why="its SCRAM nonce does not extend ours, a replay sign")
            )
        if not _NONCE_RE.fullmatch(nonce) or not salt_text or not B64_RE.fullmatch(salt_text):
            raise RemoteProtocolError(f"bad nonce or salt in the server's {self.name} message")
        if not _ITER_RE.fullmatch(count_text):
            raise RemoteProtocolError(f"bad iteration count in the server's {self.name} message")
        count = int(count_text)
        if count < SCRAM_MIN_ITERATIONS:
            raise SecurityError(
                f"the server asked for only {count} SCRAM iterations; RFC 7677 §4 requires "
                f"at least {SCRAM_MIN_ITERATIONS}: fewer make a captured exchange cheap to "
                "crack (a downgrade). Ask the server operator to fix the iteration count"
            )
        if count > self._max_iterations:
            # Checked before any PBKDF2 work: the CPU a hostile server can make
            # us burn is bounded by the policy.
            raise AuthenticationError(
                f"the server asked for {count:,} SCRAM iterations, more than the "
                f"{self._max_iterations:,} this client allows (each costs CPU before the "
                "password is even checked); the exchange was cancelled. If the server is "
                f"genuine, {self._advice.scram_cap}",
                code=334,
                text=server_first[:200],
                hint=f"if the server is genuine, {self._advice.scram_cap}",
            )
        salted = hashlib.pbkdf2_hmac(self._hash, self._password, base64.b64decode(salt_text), count)
        channel = base64.b64encode(self._gs2.encode()).decode("ascii")
        without_proof = f"c={channel},r={nonce}"
        message = f"{self._bare},{server_first},{without_proof}".encode()
        client_key = self._hmac(salted, b"Client Key")
        stored_key = hashlib.new(self._hash, client_key).digest()
        signature = self._hmac(stored_key, message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        self._signature = self._hmac(self._hmac(salted, b"Server Key"), message)
        return f"{without_proof},p={base64.b64encode(proof).decode('ascii')}".encode()

    def _hmac(self, key: bytes, data: bytes) -> bytes:
        return hmac.new(key, data, self._hash).digest()

    def _check_server_final(self, data: bytes) -> None:
        text = data.decode("ascii", "replace")
        if self._signature is None:
            why = "it claimed success before receiving our proof"
        elif text.startswith("e="):
            reason = re.sub(r"[^a-z0-9-]", "?", text[2:].split(",")[0][:40])
            why = f"it answered with SCRAM error '{reason}'; 'invalid-proof' means a wrong password"
        elif not text.startswith("v="):
            why = "its final SCRAM message has no server signature"
        else:
            value = text[2:].split(",")[0]
            given = base64.b64decode(value) if B64_RE.fullmatch(value) else b""
            if hmac.compare_digest(given, self._signature):
                self._verified = True
                return
            why = "its SCRAM server signature is wrong"
        raise SecurityError(_IMPOSTOR.format(why=why))

    def verify_success(self, data: bytes | None) -> None:
        """Require the server's proof, from the last ``334`` or from this ``235``.

        Raises:
            SecurityError: no signature, a wrong one, or an ``e=`` error.
        """
        if not self._verified:
            self._check_server_final(data or b"")


class ScramSHA256(_Scram):
    """RFC 7677 SCRAM-SHA-256 (preferred: proves both sides, no password sent)."""

    __slots__ = ()
    name = "SCRAM-SHA-256"
    _hash = "sha256"


class ScramSHA1(_Scram):
    """RFC 5802 SCRAM-SHA-1 (same guarantees as SHA-256 with an older hash)."""

    __slots__ = ()
    name = "SCRAM-SHA-1"
    _hash = "sha1"
