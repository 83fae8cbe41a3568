"""Server side of the SASL mechanisms the fake server verifies.

Each mechanism is a function that drives a :class:`Conversation` (send a
``334`` challenge, get the client's decoded answer) and returns who tried to log
in and whether the credentials were right. The session turns that into ``235``
or ``535``; the functions know nothing about sockets.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Protocol

__all__ = ["Conversation", "Credentials", "SASLCancelled", "SASLMalformed", "authenticate"]

#: The JSON error a bearer-token server sends before failing (RFC 7628 §3.2.2).
_BEARER_ERROR: Final = b'{"status":"invalid_token","schemes":"bearer","scope":"mail"}'
_SCRAM_ITERATIONS: Final = 4096


class SASLCancelled(Exception):
    """The client answered a challenge with ``*`` (RFC 4954 §4)."""


class SASLMalformed(Exception):
    """The client's response was not valid base64 or not valid for the mechanism."""


class Conversation(Protocol):
    """The session's half of a SASL exchange."""

    def ask(self, challenge: bytes) -> bytes:
        """Send ``334 <base64(challenge)>`` and return the client's decoded answer.

        Raises:
            SASLCancelled: the client sent ``*``.
            SASLMalformed: the answer was not base64.
        """


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the server checks credentials against.

    Attributes:
        users: user name -> password.
        tokens: user name -> bearer token.
        client_cert: the DER certificate the client presented over TLS, if any.
        hostname: the server's name (CRAM-MD5 challenges include it).
    """

    users: Mapping[str, str]
    tokens: Mapping[str, str]
    client_cert: bytes | None
    hostname: str


Outcome = tuple[str | None, bool]
_Mechanism = Callable[[bytes | None, Conversation, Credentials], Outcome]


def authenticate(
    mechanism: str, initial: bytes | None, conversation: Conversation, creds: Credentials
) -> Outcome:
    """Run one SASL exchange.

    Args:
        mechanism: an upper-case mechanism name from ``SUPPORTED_MECHANISMS``.
        initial: the decoded initial response (``b""`` for ``=``), or ``None``.
        conversation: sends challenges and reads answers.
        creds: the accounts to check against.

    Returns:
        ``(username or None, success)``.

    Raises:
        SASLCancelled: the client cancelled.
        SASLMalformed: the client sent something undecodable.
    """
    return _MECHANISMS[mechanism](initial, conversation, creds)


def _plain(initial: bytes | None, conv: Conversation, creds: Credentials) -> Outcome:
    data = initial if initial is not None else conv.ask(b"")
    parts = data.split(b"\x00")
    if len(parts) != 3:
        raise SASLMalformed("PLAIN needs authzid NUL authcid NUL password")
    user, password = _text(parts[1]), _text(parts[2])
    return user, _check(creds.users, user, password)


def _login(initial: bytes | None, conv: Conversation, creds: Credentials) -> Outcome:
    user = _text(initial if initial is not None else conv.ask(b"Username:"))
    password = _text(conv.ask(b"Password:"))
    return user, _check(creds.users, user, password)


def _cram_md5(initial: bytes | None, conv: Conversation, creds: Credentials) -> Outcome:
    challenge = f"<{secrets.randbelow(10**12)}.smtpsec@{creds.hostname}>".encode("ascii")
    user, _, digest = _text(conv.ask(challenge)).rpartition(" ")
    password = creds.users.get(user)
    if password is None:
        return user, False
    expected = hmac.new(password.encode("utf-8"), challenge, "md5").hexdigest()
    return user, hmac.compare_digest(expected, digest)


def _xoauth2(initial: bytes | None, conv: Conversation, creds: Credentials) -> Outcome:
    data = initial if initial is not None else conv.ask(b"")
    fields = dict(_split_kv(data.split(b"\x01")))
    user, auth = fields.get("user"), fields.get("auth", "")
    ok = user is not None and auth.startswith("Bearer ") and _check(creds.tokens, user, auth[7:])
    if not ok:
        # Google's flow: an error challenge, an empty client line, then 535.
        conv.ask(_BEARER_ERROR)
    return user, ok


def _oauthbearer(initial: bytes | None, conv: Conversation, creds: Credentials) -> Outcome:
    data = initial if initial is not None else conv.ask(b"")
    header, sep, rest = data.partition(b"\x01")
    gs2 = header.split(b",")
    if not sep or len(gs2) < 3 or gs2[0] not in (b"n", b"y"):
        raise SASLMalformed("OAUTHBEARER needs a GS2 header")
    user = None
    if gs2[1].startswith(b"a="):
        user = _text(gs2[1][2:]).replace("=2C", ",").replace("=3D", "=")
    fields = dict(_split_kv(rest.split(b"\x01")))
    auth = fields.get("auth", "")
    token = auth[7:] if auth.startswith("Bearer ") else None
    if user is None and token is not None:
        user = next((name for name, tok in creds.tokens.items() if tok == token), None)
    ok = user is not None and token is not None and _check(creds.tokens, user, token)
    if not ok:
        conv.ask(_BEARER_ERROR)  # the client must answer with a lone \x01
    return user, ok


def _external(initial: bytes | None, conv: Conversation, creds: Credentials) -> Outcome:
    identity = _text(initial) if initial else None
    return identity, creds.client_cert is not None


def _scram_sha256(initial: bytes | None, conv: Conversation, creds: Credentials) -> Outcome:
    first = _text(initial if initial is not None else conv.ask(b""))
    gs2_flag, _, rest = first.partition(",")
    _authzid, _, bare = rest.partition(",")
    attrs = dict(_split_kv(bare.encode("utf-8").split(b",")))
    if gs2_flag not in ("n", "y") or "n" not in attrs or "r" not in attrs:
        raise SASLMalformed("SCRAM client-first-message is malformed")
    user = attrs["n"].replace("=2C", ",").replace("=3D", "=")
    salt = secrets.token_bytes(16)
    nonce = attrs["r"] + secrets.token_urlsafe(18)
    server_first = f"r={nonce},s={base64.b64encode(salt).decode()},i={_SCRAM_ITERATIONS}"
    final = _text(conv.ask(server_first.encode("ascii")))
    without_proof, _, proof_attr = final.rpartition(",p=")
    final_attrs = dict(_split_kv(without_proof.encode("utf-8").split(b",")))
    password = creds.users.get(user)
    if password is None or final_attrs.get("r") != nonce or not proof_attr:
        return user, False
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, _SCRAM_ITERATIONS)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    auth_message = f"{bare},{server_first},{without_proof}".encode()
    signature = hmac.digest(stored_key, auth_message, "sha256")
    try:
        proof = base64.b64decode(proof_attr, validate=True)
    except binascii.Error as exc:
        raise SASLMalformed("SCRAM proof is not base64") from exc
    recovered = bytes(a ^ b for a, b in zip(proof, signature, strict=False))
    if len(proof) != len(signature) or hashlib.sha256(recovered).digest() != stored_key:
        return user, False
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    verifier = base64.b64encode(hmac.digest(server_key, auth_message, "sha256")).decode()
    # RFC 4954 §4: success data travels in a 334; the client answers an empty line.
    conv.ask(f"v={verifier}".encode("ascii"))
    return user, True


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _check(table: Mapping[str, str], user: str, secret: str) -> bool:
    expected = table.get(user)
    return expected is not None and hmac.compare_digest(
        expected.encode("utf-8"), secret.encode("utf-8")
    )


def _split_kv(items: list[bytes]) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        key, sep, value = _text(item).partition("=")
        if sep:
            pairs.append((key, value))
    return pairs


_MECHANISMS: Final[dict[str, _Mechanism]] = {
    "PLAIN": _plain,
    "LOGIN": _login,
    "CRAM-MD5": _cram_md5,
    "XOAUTH2": _xoauth2,
    "OAUTHBEARER": _oauthbearer,
    "EXTERNAL": _external,
    "SCRAM-SHA-256": _scram_sha256,
}
