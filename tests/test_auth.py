"""Tests for smtpsec.auth: SASL mechanisms as pure encoders.

Requirement IDs from the RFC checklist appear in test names and docstrings.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import hmac
import pathlib
import secrets

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import smtpsec
from smtpsec import auth
from smtpsec.auth import (
    DEFAULT_PREFERENCE,
    CramMD5,
    Credentials,
    External,
    Login,
    OAuthBearer,
    OAuthErrorInfo,
    Plain,
    ScramSHA1,
    ScramSHA256,
    XOAuth2,
    auth_command,
    auth_failure_hint,
    choose_mechanism,
    decode_challenge,
    decode_success_data,
    encode_response,
)
from smtpsec.auth._saslprep import saslprep
from smtpsec.errors import (
    AuthenticationError,
    CapabilityError,
    InvalidArgumentError,
    LocalProtocolError,
    PolicyError,
    RemoteProtocolError,
    SecurityError,
)
from smtpsec.sansio import Command, encode_command

PW = Credentials("ann@example.test", "secret")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --------------------------------------------------------------------------- purity


def test_auth_modules_do_no_io() -> None:
    """The auth package imports no socket, ssl, logging or time (pure encoders)."""
    src = pathlib.Path(smtpsec.__file__).parent
    for name in ("auth/__init__.py", "auth/_mechanisms.py", "auth/_scram.py", "auth/_saslprep.py"):
        tree = ast.parse((src / name).read_text(encoding="utf-8"))
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
        assert not imported & {"socket", "ssl", "logging", "time", "asyncio", "urllib"}, name


# --------------------------------------------------------------------------- base64 lines


@pytest.mark.parametrize("text", ["", " ", "  \t"])
def test_empty_challenge_bare_or_spaced_r_4954_4_4(text: str) -> None:
    """R-4954-4-4: ``334`` and ``334 `` both mean an empty challenge."""
    assert decode_challenge(text) == b""


@pytest.mark.parametrize(
    "text",
    ["!!notbase64", "QQ=A", "QQ==QQ==", "QQ", "QUJD=", "QU JD", "QUJD\r\n", "Q===", "ÄÄÄÄ"],
)
def test_invalid_base64_challenge_refused_r_4954_4_2(text: str) -> None:
    """R-4954-4-2: outside the alphabet, '=' not at the end, bad length -> error."""
    with pytest.raises(RemoteProtocolError, match=r"not valid base64.*'\*'"):
        decode_challenge(text)


def test_valid_challenges_decode() -> None:
    assert decode_challenge("QQ==") == b"A"
    assert decode_challenge("QUI=") == b"AB"
    assert decode_challenge("QUJD") == b"ABC"
    assert decode_challenge(" VXNlcm5hbWU6 ") == b"Username:"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", None),
        ("  ", None),
        ("Authentication successful", None),
        ("2.7.0 OK", None),
        ("dj1hYmM=", b"v=abc"),
    ],
)
def test_decode_success_data(text: str, expected: bytes | None) -> None:
    assert decode_success_data(text) == expected


def test_encode_response_empty_and_initial_r_4954_4_3() -> None:
    """R-4954-4-3: an empty continuation is an empty line, an empty IR is '='."""
    assert encode_response(b"") == ""
    assert encode_response(b"", initial=True) == "="
    assert encode_response(b"\x01") == "AQ=="
    assert encode_response(b"abc", initial=True) == "YWJj"


@given(st.binary(max_size=300))
def test_encode_decode_round_trip(data: bytes) -> None:
    assert decode_challenge(encode_response(data)) == data


@given(st.text(max_size=40))
def test_decode_challenge_only_raises_protocol_error(text: str) -> None:
    try:
        decoded = decode_challenge(text)
    except RemoteProtocolError:
        return
    assert encode_response(decoded) == text.strip(" \t")


# --------------------------------------------------------------------------- PLAIN


def test_plain_layout_r_4616_1() -> None:
    mech = Plain(PW)
    assert mech.name == "PLAIN"
    assert auth_command(mech) == "AUTH PLAIN " + b64(b"\x00ann@example.test\x00secret")


def test_plain_with_authzid() -> None:
    mech = Plain(Credentials("ann", "pw", authzid="boss"))
    assert mech.initial_response() == b"boss\x00ann\x00pw"


@pytest.mark.parametrize(
    ("username", "password", "authzid", "field"),
    [
        ("a\x00b", "pw", "", "username"),
        ("ann", "a\x00b", "", "password"),
        ("ann", "pw", "x\x00", "authzid"),
    ],
)
def test_plain_refuses_nul_r_4616_1(username: str, password: str, authzid: str, field: str) -> None:
    """R-4616-1: a NUL anywhere is refused before anything is produced."""
    with pytest.raises(InvalidArgumentError, match=f"the {field} contains a NUL"):
        Plain(Credentials(username, password, authzid))


@pytest.mark.parametrize(
    "creds", [Credentials("ann"), Credentials("ann", ""), Credentials("", "x")]
)
def test_password_mechanisms_need_username_and_password(creds: Credentials) -> None:
    for cls in (Plain, Login, CramMD5, ScramSHA256, ScramSHA1):
        with pytest.raises(InvalidArgumentError, match="needs a"):
            cls(creds)


def test_plain_rejects_extra_challenge() -> None:
    mech = Plain(PW)
    mech.initial_response()
    with pytest.raises(RemoteProtocolError, match="unexpected extra AUTH PLAIN challenge"):
        mech.respond(b"")


def test_plain_without_initial_response_answers_empty_334() -> None:
    """A client that sent a bare ``AUTH PLAIN`` answers the empty 334 (R-4954-4-4)."""
    mech = Plain(PW)
    assert mech.respond(decode_challenge("")) == b"\x00ann@example.test\x00secret"
    with pytest.raises(RemoteProtocolError):
        mech.respond(b"")


def test_withheld_initial_response_refuses_nonempty_first_challenge() -> None:
    mech = Plain(PW)
    with pytest.raises(RemoteProtocolError):
        mech.respond(b"surprise")


def test_initial_response_only_once() -> None:
    mech = Plain(PW)
    mech.initial_response()
    with pytest.raises(LocalProtocolError, match="new mechanism per AUTH attempt"):
        mech.initial_response()


def test_verify_success_is_a_no_op_without_server_proof() -> None:
    mech = Plain(PW)
    mech.initial_response()
    mech.verify_success(None)
    mech.verify_success(b"whatever")
    assert mech.server_error is None


# --------------------------------------------------------------------------- SASLprep


@pytest.mark.parametrize(
    ("raw", "prepared"),
    [
        ("I\u00adX", "IX"),  # RFC 4013 §3 examples
        ("user", "user"),
        ("USER", "USER"),
        ("\u00aa", "a"),
        ("\u2168", "IX"),
        ("a\u00a0b", "a b"),  # non-ASCII space -> SPACE
        ("a\u1680b", "a b"),
        ("a\u200bb", "ab"),  # zero-width space: mapped to nothing
        ("\u05d0\u05d1", "\u05d0\u05d1"),  # all right-to-left is fine
        ("caf\u00e9", "caf\u00e9"),
        ("", ""),
    ],
)
def test_saslprep_maps_r_4954_4_8(raw: str, prepared: str) -> None:
    assert saslprep(raw, what="username") == prepared


@pytest.mark.parametrize(
    ("raw", "label"),
    [
        ("\u0007", "control character"),
        ("a\u0085", "control character"),
        ("a\ue000", "private-use character"),
        ("a\ufdd0", "non-character"),
        ("a\ufffd", "inappropriate for plain text"),
        ("a\u2ff0", "canonical representation"),
        ("a\u200e", "display-changing"),
        ("a\U000e0001", "tagging character"),
        ("\u0627\u0031", "right-to-left"),  # RFC 4013 §3 example 7
        ("\u05d0a\u05d1", "right-to-left"),
    ],
)
def test_saslprep_prohibits(raw: str, label: str) -> None:
    with pytest.raises(InvalidArgumentError, match=label) as info:
        saslprep(raw, what="password")
    assert raw not in str(info.value)


def test_plain_applies_saslprep_to_username_r_4954_4_8() -> None:
    """R-4954-4-8: a soft hyphen in the username is removed."""
    mech = Plain(Credentials("an\u00adn", "p\u00a0w"))
    assert mech.initial_response() == b"\x00ann\x00p w"


# --------------------------------------------------------------------------- LOGIN / CRAM-MD5


def test_login_counts_rounds_not_prompts() -> None:
    mech = Login(PW)
    assert auth_command(mech) == "AUTH LOGIN"
    assert mech.respond(b"Password:") == b"ann@example.test"  # prompt text ignored
    assert mech.respond(b"") == b"secret"
    with pytest.raises(RemoteProtocolError, match="extra AUTH LOGIN"):
        mech.respond(b"Username:")


def test_cram_md5_rfc_2195_vector() -> None:
    mech = CramMD5(Credentials("tim", "tanstaaftanstaaf"))
    assert mech.initial_response() is None
    challenge = b"<1896.697170952@postoffice.reston.mci.net>"
    assert mech.respond(challenge) == b"tim b913a602c7eda7a495b4e6e7334d3890"
    with pytest.raises(RemoteProtocolError):
        mech.respond(challenge)


def test_cram_md5_refuses_empty_challenge() -> None:
    with pytest.raises(RemoteProtocolError):
        CramMD5(PW).respond(b"")


# --------------------------------------------------------------------------- SCRAM

RFC7677_SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
RFC7677_CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
RFC7677_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
RFC5802_SERVER_FIRST = b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"


def scram256() -> ScramSHA256:
    return ScramSHA256(Credentials("user", "pencil"), _client_nonce="rOprNGfwEbeRWgbNEkqO")


def scram256_after_first() -> ScramSHA256:
    mech = scram256()
    mech.initial_response()
    mech.respond(RFC7677_SERVER_FIRST)
    return mech


def test_scram_sha256_rfc_7677_vector_server_final_in_334() -> None:
    mech = scram256()
    assert mech.name == "SCRAM-SHA-256"
    assert mech.initial_response() == b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    assert mech.respond(RFC7677_SERVER_FIRST) == RFC7677_CLIENT_FINAL
    assert mech.respond(RFC7677_SERVER_FINAL) == b""
    mech.verify_success(None)
    mech.verify_success(b"2.7.0 ignored once the proof is in")


def test_scram_sha256_server_final_in_235() -> None:
    mech = scram256_after_first()
    mech.verify_success(decode_success_data(b64(RFC7677_SERVER_FINAL)))


def test_scram_235_with_plain_text_and_no_proof_is_refused() -> None:
    mech = scram256_after_first()
    with pytest.raises(SecurityError, match="no server signature"):
        mech.verify_success(decode_success_data("2.7.0 Authentication successful"))


def test_scram_sha1_rfc_5802_vector() -> None:
    mech = ScramSHA1(Credentials("user", "pencil"), _client_nonce="fyko+d2lbbFgONRv9qkxdawL")
    assert auth_command(mech) == "AUTH SCRAM-SHA-1 " + b64(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL")
    assert mech.respond(RFC5802_SERVER_FIRST) == (
        b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
    )
    assert mech.respond(b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=") == b""
    mech.verify_success(None)
    with pytest.raises(RemoteProtocolError, match="extra AUTH SCRAM-SHA-1"):
        mech.respond(b"")


@pytest.mark.parametrize(
    ("final", "why"),
    [
        (b"v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", "signature is wrong"),
        (b"v=" + base64.b64encode(b"\x00" * 32), "signature is wrong"),
        (b"v=!!!", "signature is wrong"),
        (b"e=invalid-proof", "error 'invalid-proof'"),
        (b"e=<script>", "error '\\?script\\?'"),
        (b"", "no server signature"),
        (b"x=1", "no server signature"),
    ],
)
def test_scram_bad_server_final_is_impostor(final: bytes, why: str) -> None:
    """A wrong/missing verifier or an e= error: the server did not prove itself."""
    mech = scram256_after_first()
    with pytest.raises(SecurityError, match=f"could not prove.*{why}.*impostor"):
        mech.respond(final)
    mech2 = scram256_after_first()
    with pytest.raises(SecurityError, match=why):
        mech2.verify_success(final or None)


def test_scram_success_before_proof_is_refused() -> None:
    mech = scram256()
    mech.initial_response()
    with pytest.raises(SecurityError, match="before receiving our proof"):
        mech.verify_success(RFC7677_SERVER_FINAL)


def test_scram_low_iteration_count_is_a_downgrade() -> None:
    mech = scram256()
    mech.initial_response()
    with pytest.raises(SecurityError, match=r"4095 SCRAM iterations.*downgrade"):
        mech.respond(RFC7677_SERVER_FIRST.replace(b"i=4096", b"i=4095"))


def test_scram_iteration_count_above_the_policy_cap_is_refused_before_pbkdf2() -> None:
    """The cap bounds the CPU a hostile server can make us burn (Policy.scram_max_iterations)."""
    mech = scram256()
    mech.initial_response()
    cap = smtpsec.Policy().scram_max_iterations
    with pytest.raises(AuthenticationError, match="scram_max_iterations") as info:
        mech.respond(RFC7677_SERVER_FIRST.replace(b"i=4096", f"i={cap + 1}".encode()))
    assert info.value.code == 334


def test_scram_iteration_cap_is_per_mechanism() -> None:
    mech = ScramSHA256(
        Credentials("user", "pencil"), max_iterations=5000, _client_nonce="rOprNGfwEbeRWgbNEkqO"
    )
    mech.initial_response()
    with pytest.raises(AuthenticationError, match="5,000"):
        mech.respond(RFC7677_SERVER_FIRST.replace(b"i=4096", b"i=5001"))


@pytest.mark.parametrize(
    "first",
    [
        b"r=someoneElsesNonce123,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        b"r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",  # no server part
    ],
)
def test_scram_nonce_must_extend_ours(first: bytes) -> None:
    mech = scram256()
    mech.initial_response()
    with pytest.raises(SecurityError, match="nonce does not extend ours"):
        mech.respond(first)


@pytest.mark.parametrize(
    ("first", "match"),
    [
        (b"m=ext,r=rOprNGfwEbeRWgbNEkqOx,s=QQ==,i=4096", "mandatory extension"),
        (b"r=rOprNGfwEbeRWgbNEkqOx,i=4096", "malformed"),
        (b"r=rOprNGfwEbeRWgbNEkqO\xff,s=QQ==,i=4096", "malformed"),
        (b"r=rOprNGfwEbeRWgbNEkqOx\x7f,s=QQ==,i=4096", "bad nonce or salt"),
        (b"r=rOprNGfwEbeRWgbNEkqOx,s=,i=4096", "bad nonce or salt"),
        (b"r=rOprNGfwEbeRWgbNEkqOx,s=Q!==,i=4096", "bad nonce or salt"),
        (b"r=rOprNGfwEbeRWgbNEkqOx,s=QQ==,i=04096", "bad iteration count"),
        (b"r=rOprNGfwEbeRWgbNEkqOx,s=QQ==,i=4096x", "bad iteration count"),
    ],
)
def test_scram_malformed_server_first(first: bytes, match: str) -> None:
    mech = scram256()
    mech.initial_response()
    with pytest.raises(RemoteProtocolError, match=match):
        mech.respond(first)


def test_scram_ignores_server_first_extensions() -> None:
    mech = scram256()
    mech.initial_response()
    assert mech.respond(RFC7677_SERVER_FIRST + b",x=future").startswith(b"c=biws,")


def test_scram_escapes_username_and_authzid() -> None:
    mech = ScramSHA256(Credentials("a,b=c", "pw", authzid="x=y"), _client_nonce="N")
    assert mech.initial_response() == b"n,a=x=3Dy,n=a=2Cb=3Dc,r=N"


def test_scram_channel_binding_field_carries_gs2_header() -> None:
    mech = ScramSHA256(Credentials("u", "p", authzid="boss"), _client_nonce="N")
    mech.initial_response()
    final = mech.respond(b"r=NX,s=QQ==,i=4096")
    assert final.startswith(b"c=" + base64.b64encode(b"n,a=boss,") + b",r=NX,p=")


@pytest.mark.parametrize("nonce", ["a,b", "", "sp ace", "\u00e9"])
def test_scram_injected_nonce_validated(nonce: str) -> None:
    with pytest.raises(InvalidArgumentError, match="nonce"):
        ScramSHA256(PW, _client_nonce=nonce)


def test_scram_rejects_controls_in_authzid() -> None:
    with pytest.raises(InvalidArgumentError, match="authzid"):
        ScramSHA256(Credentials("u", "p", authzid="a\r\nb"))


def test_scram_random_nonces_differ() -> None:
    first = ScramSHA256(PW).initial_response()
    second = ScramSHA256(PW).initial_response()
    assert first is not None
    assert second is not None
    assert first != second
    assert len(first.split(b",r=")[1]) >= 24


def test_scram_without_initial_response_sends_client_first_on_empty_334() -> None:
    mech = scram256()
    assert auth_command(mech, line_limit=20) == "AUTH SCRAM-SHA-256"
    assert mech.respond(b"") == b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    assert mech.respond(RFC7677_SERVER_FIRST) == RFC7677_CLIENT_FINAL


# A tiny SCRAM server, written from RFC 5802 §3, to check the client against.


def _unescape(name: str) -> str:
    return name.replace("=2C", ",").replace("=3D", "=")


class TinyScramServer:
    def __init__(self, hash_name: str, username: str, password: str) -> None:
        self.hash = hash_name
        self.username = username
        self.salt = secrets.token_bytes(16)
        self.iterations = 4096
        salted = hashlib.pbkdf2_hmac(hash_name, password.encode(), self.salt, self.iterations)
        client_key = self._hmac(salted, b"Client Key")
        self.stored_key = hashlib.new(hash_name, client_key).digest()
        self.server_key = self._hmac(salted, b"Server Key")

    def _hmac(self, key: bytes, data: bytes) -> bytes:
        return hmac.new(key, data, self.hash).digest()

    def first(self, client_first: bytes) -> bytes:
        text = client_first.decode()
        assert text.startswith("n,,")
        self.bare = text[3:]
        user_attr, nonce_attr = self.bare.split(",")
        assert _unescape(user_attr[2:]) == self.username
        self.nonce = nonce_attr[2:] + secrets.token_urlsafe(12)
        salt = base64.b64encode(self.salt).decode()
        self.server_first = f"r={self.nonce},s={salt},i={self.iterations}"
        return self.server_first.encode()

    def final(self, client_final: bytes) -> bytes:
        text = client_final.decode()
        without_proof, proof_attr = text.rsplit(",p=", 1)
        assert without_proof == f"c=biws,r={self.nonce}"
        message = f"{self.bare},{self.server_first},{without_proof}".encode()
        signature = self._hmac(self.stored_key, message)
        proof = base64.b64decode(proof_attr)
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        if hashlib.new(self.hash, client_key).digest() != self.stored_key:
            return b"e=invalid-proof"
        return b"v=" + base64.b64encode(self._hmac(self.server_key, message))


# Characters SASLprep leaves alone, so the server may use the raw password.
NAMES = st.text(
    alphabet=st.sampled_from([chr(c) for c in range(0x21, 0x7F)] + list("éüß日本ж")),
    min_size=1,
    max_size=24,
)


@settings(max_examples=40, deadline=None)
@given(username=NAMES, password=NAMES, sha1=st.booleans())
def test_scram_client_and_tiny_server_agree(username: str, password: str, sha1: bool) -> None:
    cls, hash_name = (ScramSHA1, "sha1") if sha1 else (ScramSHA256, "sha256")
    server = TinyScramServer(hash_name, username, password)
    mech = cls(Credentials(username, password))
    client_first = mech.initial_response()
    assert client_first is not None
    final = server.final(mech.respond(server.first(client_first)))
    assert final.startswith(b"v=")
    assert mech.respond(final) == b""
    mech.verify_success(None)


@settings(max_examples=15, deadline=None)
@given(password=NAMES)
def test_scram_wrong_password_is_caught_by_both_sides(password: str) -> None:
    server = TinyScramServer("sha256", "user", password + "!")
    mech = ScramSHA256(Credentials("user", password))
    client_first = mech.initial_response()
    assert client_first is not None
    final = server.final(mech.respond(server.first(client_first)))
    assert final == b"e=invalid-proof"
    with pytest.raises(SecurityError, match="invalid-proof"):
        mech.verify_success(final)


# --------------------------------------------------------------------------- XOAUTH2


def test_xoauth2_layout_r_xoauth2_1() -> None:
    mech = XOAuth2("ann@example.test", "ya29.tok")
    expected = b"user=ann@example.test\x01auth=Bearer ya29.tok\x01\x01"
    assert auth_command(mech) == "AUTH XOAUTH2 " + b64(expected)


def test_xoauth2_error_challenge_gets_empty_line_r_xoauth2_1() -> None:
    mech = XOAuth2("ann@example.test", "ya29.tok")
    mech.initial_response()
    error = b'{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}'
    assert encode_response(mech.respond(error)) == ""
    assert mech.server_error == OAuthErrorInfo("400", "Bearer", "https://mail.google.com/")
    with pytest.raises(RemoteProtocolError, match="extra AUTH XOAUTH2"):
        mech.respond(error)


def test_long_token_goes_on_its_own_line_r_4954_4_3() -> None:
    """R-4954-4-3: an IR that would overflow 512 octets waits for the empty 334."""
    calls: list[int] = []

    def provider() -> str:
        calls.append(1)
        return "T" * 1000

    mech = XOAuth2("ann@example.test", provider)
    assert calls == []  # a provider is called lazily...
    assert auth_command(mech) == "AUTH XOAUTH2"
    assert mech.respond(decode_challenge("")) == (
        b"user=ann@example.test\x01auth=Bearer " + b"T" * 1000 + b"\x01\x01"
    )
    assert calls == [1]  # ...and once per attempt


def test_auth_line_exactly_at_limit_keeps_initial_response() -> None:
    mech = External(authzid="x" * 3)
    line = auth_command(mech, line_limit=len("AUTH EXTERNAL eHh4\r\n"))
    assert line == "AUTH EXTERNAL eHh4"
    mech2 = External(authzid="x" * 3)
    assert auth_command(mech2, line_limit=len("AUTH EXTERNAL eHh4\r\n") - 1) == "AUTH EXTERNAL"


@pytest.mark.parametrize("token", ["a\x01b", "a\r\nb", "", "two words", "tök", "a\x00"])
def test_bad_literal_token_refused_r_7628_3_1_1(token: str) -> None:
    with pytest.raises(InvalidArgumentError, match="OAuth token"):
        XOAuth2("ann", token)
    with pytest.raises(InvalidArgumentError, match="OAuth token"):
        OAuthBearer(token)


def test_bad_provided_token_refused_before_sending() -> None:
    mech = OAuthBearer(lambda: "bad\ntoken")
    with pytest.raises(InvalidArgumentError, match="OAuth token"):
        auth_command(mech)
    mech2 = XOAuth2("ann", lambda: 42)  # type: ignore[arg-type,return-value]
    with pytest.raises(InvalidArgumentError, match="not a str"):
        mech2.initial_response()


@pytest.mark.parametrize("user", ["a\x01b", "a\nb", ""])
def test_xoauth2_bad_username(user: str) -> None:
    with pytest.raises(InvalidArgumentError, match="username"):
        XOAuth2(user, "tok")


@pytest.mark.parametrize(
    ("challenge", "expected"),
    [
        (b"not json", OAuthErrorInfo()),
        (b"\xff\xfe", OAuthErrorInfo()),
        (b"[1, 2]", OAuthErrorInfo()),
        (b'{"status": 401, "schemes": true, "scope": ["x"]}', OAuthErrorInfo(status="401")),
        (b'{"status": "40\\u00e91\\n"}', OAuthErrorInfo(status="40?1?")),
        (b'{"scope": "' + b"s" * 500 + b'"}', OAuthErrorInfo(scope="s" * 200)),
    ],
)
def test_oauth_error_json_is_sanitised_r_7628_3_2_2_1(
    challenge: bytes, expected: OAuthErrorInfo
) -> None:
    """R-7628-3.2.2-1: the error JSON is untrusted text; odd input never breaks us."""
    mech = XOAuth2("ann", "tok")
    mech.initial_response()
    assert mech.respond(challenge) == b""
    assert mech.server_error == expected


def test_oauth_error_echoing_the_token_is_redacted() -> None:
    token = "CANARY-TOK-echo"
    mech = OAuthBearer(token)
    mech.initial_response()
    echoed = f'{{"status":"401","scope":"{token} {b64(token.encode())}"}}'.encode()
    mech.respond(echoed)
    assert mech.server_error is not None
    assert mech.server_error.scope == "<redacted> <redacted>"


def test_oauth_error_info_describe() -> None:
    assert OAuthErrorInfo().describe() == "no details"
    info = OAuthErrorInfo("401", "bearer", None, "https://evil.test/.well-known")
    assert info.describe() == (
        "status=401, schemes=bearer, openid-configuration=https://evil.test/.well-known"
    )


# --------------------------------------------------------------------------- OAUTHBEARER


def test_oauthbearer_layout_with_escaped_authzid_r_7628_3_1_1() -> None:
    """R-7628-3.1-1: ``a,b=c@x.test`` is sent as ``a=2Cb=3Dc@x.test``."""
    mech = OAuthBearer("vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==", authzid="a,b=c@x.test")
    assert mech.initial_response() == (
        b"n,a=a=2Cb=3Dc@x.test,\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
    )


def test_oauthbearer_layout_with_host_and_port() -> None:
    mech = OAuthBearer("tok", authzid="user@example.com", host="server.example.com", port=587)
    assert mech.initial_response() == (
        b"n,a=user@example.com,\x01host=server.example.com\x01port=587\x01auth=Bearer tok\x01\x01"
    )


def test_oauthbearer_without_authzid() -> None:
    assert OAuthBearer("tok").initial_response() == b"n,,\x01auth=Bearer tok\x01\x01"


def test_oauthbearer_error_gets_single_ctrl_a_r_7628_3_2_3_1() -> None:
    """R-7628-3.2.3-1: the error challenge is answered with ``AQ==``, never a token."""
    mech = OAuthBearer("tok", authzid="ann")
    mech.initial_response()
    challenge = decode_challenge("eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIn0=")
    assert encode_response(mech.respond(challenge)) == "AQ=="
    assert mech.server_error == OAuthErrorInfo(status="401", schemes="bearer")
    with pytest.raises(RemoteProtocolError):
        mech.respond(challenge)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"authzid": "a\x01b"}, "authzid"),
        ({"authzid": "a\rb"}, "authzid"),
        ({"host": "h\nx"}, "host"),
        ({"port": 0}, "port 0"),
        ({"port": 65536}, "port 65536"),
    ],
)
def test_oauthbearer_bad_fields(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        OAuthBearer("tok", **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- EXTERNAL


def test_external_empty_initial_response_is_equals_r_8314_5_5_3() -> None:
    """R-8314-5.5-3: ``AUTH EXTERNAL =`` and no password anywhere."""
    mech = External()
    assert auth_command(mech) == "AUTH EXTERNAL ="
    with pytest.raises(RemoteProtocolError):
        mech.respond(b"")


def test_external_with_authzid_and_withheld() -> None:
    assert auth_command(External(authzid="ann")) == "AUTH EXTERNAL " + b64(b"ann")
    mech = External()
    assert auth_command(mech, line_limit=10) == "AUTH EXTERNAL"
    assert encode_response(mech.respond(b"")) == ""


def test_external_refuses_controls() -> None:
    with pytest.raises(InvalidArgumentError, match="authzid"):
        External(authzid="a\r\nMAIL FROM:<x>")


# One control-character rule for SMTP lines and SASL fields: the C1 control NEL
# and U+2028 are refused in SASL fields as in commands (some parsers treat them
# as line ends), not only C0 controls.
SASL_FIELD_BUILDERS = {
    "xoauth2-user": lambda bad: XOAuth2(f"ann{bad}@example.test", "tok"),
    "oauthbearer-authzid": lambda bad: OAuthBearer("tok", authzid=f"ann{bad}"),
    "oauthbearer-host": lambda bad: OAuthBearer("tok", host=f"smtp{bad}.example.test"),
    "external-authzid": lambda bad: External(authzid=f"ann{bad}"),
    "scram-authzid": lambda bad: ScramSHA256(Credentials("u", "p", authzid=f"a{bad}")),
}


@pytest.mark.parametrize("bad", ["\x01", "\r", "\x7f", "\x85", "\u2028", "\u2029"])
@pytest.mark.parametrize("field", list(SASL_FIELD_BUILDERS))
def test_sasl_fields_follow_the_one_control_character_rule(field: str, bad: str) -> None:
    with pytest.raises(InvalidArgumentError, match="control character"):
        SASL_FIELD_BUILDERS[field](bad)
    with pytest.raises(InvalidArgumentError, match="control character"):
        encode_command(Command("NOOP", f"x{bad}"))


# --------------------------------------------------------------------------- choice


@pytest.mark.parametrize(
    ("offered", "expected"),
    [
        (["PLAIN", "LOGIN", "SCRAM-SHA-256"], ScramSHA256),
        (["plain", "login", "scram-sha-1"], ScramSHA1),
        (["LOGIN", "PLAIN"], Plain),
        (["LOGIN", "CRAM-MD5"], Login),
        (["SCRAM-SHA-256-PLUS", "PLAIN", "GSSAPI", "NTLM", "DIGEST-MD5"], Plain),
        (["XOAUTH2", "OAUTHBEARER", "PLAIN"], Plain),
    ],
)
def test_choose_by_preference_r_lib_mech_1(offered: list[str], expected: type) -> None:
    assert isinstance(choose_mechanism(offered, credentials=PW), expected)


def test_choose_prefers_scram_over_token_over_plain() -> None:
    both = Credentials("ann", "pw")
    offered = ["PLAIN", "XOAUTH2", "OAUTHBEARER", "SCRAM-SHA-256"]
    assert isinstance(choose_mechanism(offered, credentials=both, token="t"), ScramSHA256)
    offered = ["PLAIN", "XOAUTH2", "OAUTHBEARER"]
    mech = choose_mechanism(offered, credentials=both, token="t")
    assert isinstance(mech, OAuthBearer)
    assert mech.initial_response() == b"n,a=ann,\x01auth=Bearer t\x01\x01"
    mech2 = choose_mechanism(["PLAIN", "XOAUTH2"], credentials=Credentials("ann"), token="t")
    assert isinstance(mech2, XOAuth2)


def test_choose_oauthbearer_uses_authzid_when_given() -> None:
    creds = Credentials("ann", authzid="shared@example.test")
    mech = choose_mechanism(["OAUTHBEARER"], credentials=creds, token="t")
    assert mech.initial_response() == b"n,a=shared@example.test,\x01auth=Bearer t\x01\x01"
    assert choose_mechanism(["OAUTHBEARER"], token="t").initial_response() == (
        b"n,,\x01auth=Bearer t\x01\x01"
    )


def test_choose_external_only_with_client_cert_r_8314_5_5_3() -> None:
    offered = ["EXTERNAL", "PLAIN"]
    assert isinstance(choose_mechanism(offered, credentials=PW), Plain)
    mech = choose_mechanism(offered, credentials=PW, client_cert=True)
    assert isinstance(mech, External)
    assert auth_command(mech) == "AUTH EXTERNAL ="
    mech2 = choose_mechanism(
        ["EXTERNAL"], client_cert=True, credentials=Credentials("a", None, "z")
    )
    assert mech2.initial_response() == b"z"


def test_cram_md5_only_server_needs_opt_in_r_lib_mech_1() -> None:
    """R-LIB-MECH-1: a CRAM-MD5-only server -> CapabilityError unless enabled."""
    with pytest.raises(CapabilityError, match=r"offers CRAM-MD5.*pass auth='CRAM-MD5'"):
        choose_mechanism(["CRAM-MD5"], credentials=PW)
    assert isinstance(choose_mechanism(["CRAM-MD5"], credentials=PW, explicit="cram-md5"), CramMD5)
    prefs = (*DEFAULT_PREFERENCE, "CRAM-MD5")
    assert isinstance(choose_mechanism(["CRAM-MD5"], credentials=PW, preference=prefs), CramMD5)
    assert isinstance(
        choose_mechanism(["CRAM-MD5", "LOGIN"], credentials=PW, preference=prefs), Login
    )


def test_preference_is_an_allow_list_r_4954_4_1() -> None:
    mech = choose_mechanism(["SCRAM-SHA-256", "PLAIN"], credentials=PW, preference=["PLAIN"])
    assert isinstance(mech, Plain)
    with pytest.raises(CapabilityError, match="pass auth='LOGIN' to allow LOGIN"):
        choose_mechanism(["LOGIN"], credentials=PW, preference=["PLAIN"])


def test_explicit_not_offered_names_what_is() -> None:
    with pytest.raises(CapabilityError, match=r"does not offer AUTH PLAIN.*offers LOGIN, SCRAM"):
        choose_mechanism(["SCRAM-SHA-256", "LOGIN"], credentials=PW, explicit="plain")
    with pytest.raises(CapabilityError, match="offers no mechanism"):
        choose_mechanism([], credentials=PW, explicit="PLAIN")


def test_explicit_needs_matching_secret() -> None:
    with pytest.raises(PolicyError, match="AUTH XOAUTH2 needs a username and an OAuth token"):
        choose_mechanism(["XOAUTH2"], credentials=PW, explicit="XOAUTH2")
    assert isinstance(choose_mechanism(["LOGIN"], credentials=PW, explicit="LOGIN"), Login)


@pytest.mark.parametrize(
    "kwargs",
    [{"explicit": "NTLM"}, {"preference": ["PLAIN", "DIGEST-MD5"]}, {"explicit": "GSSAPI"}],
)
def test_unimplemented_names_are_policy_errors_r_4954_4_7(kwargs: dict[str, object]) -> None:
    with pytest.raises(PolicyError, match="does not implement"):
        choose_mechanism(["PLAIN"], credentials=PW, **kwargs)  # type: ignore[arg-type]


def test_no_secrets_at_all() -> None:
    with pytest.raises(PolicyError, match="nothing to authenticate with"):
        choose_mechanism(["PLAIN"])
    with pytest.raises(PolicyError):
        choose_mechanism(["PLAIN"], credentials=Credentials("ann"))


@pytest.mark.parametrize(
    ("offered", "kwargs", "hint"),
    [
        ([], {"credentials": PW}, "offers no mechanism after TLS; it accepts no login here"),
        (["XOAUTH2", "OAUTHBEARER"], {"credentials": PW}, "pass token="),
        (["PLAIN", "LOGIN"], {"token": "t"}, "pass username and password"),
        (["XOAUTH2"], {"token": "t"}, "XOAUTH2 needs the username"),
        (["EXTERNAL"], {"credentials": PW}, "configure a TLS client certificate"),
        (["GSSAPI", "NTLM", "bad name!", "x" * 30], {"credentials": PW}, "smtpsec implements"),
    ],
)
def test_nothing_usable_hints(offered: list[str], kwargs: dict[str, object], hint: str) -> None:
    with pytest.raises(CapabilityError, match="no usable AUTH mechanism") as info:
        choose_mechanism(offered, **kwargs)  # type: ignore[arg-type]
    assert hint in str(info.value)
    assert "bad name!" not in str(info.value)


# --------------------------------------------------------------------------- hints


@pytest.mark.parametrize(
    ("code", "enhanced", "mech", "fragment"),
    [
        (535, "5.7.8", "PLAIN", "535 5.7.8); check both. Gmail and Outlook"),
        (535, None, "LOGIN", "app password"),
        (535, "5.7.139", "PLAIN", "SMTP AUTH or basic authentication disabled"),
        (535, "5.7.8", "XOAUTH2", "OAuth token was refused (535 5.7.8)"),
        (534, "5.7.9", "PLAIN", "too weak, or wants a web sign-in first (534 5.7.9)"),
        (530, "5.7.0", "PLAIN", "requires authentication (530 5.7.0)"),
        (454, "4.7.0", "PLAIN", "retry later; the credentials were not judged"),
        (432, "4.7.12", "PLAIN", "password change"),
        (421, None, "PLAIN", "temporary failure (421)"),
        (538, "5.7.11", "PLAIN", "wants encryption"),
        (500, "5.5.6", "XOAUTH2", "initial response omitted"),
        (500, None, "PLAIN", "AUTH PLAIN failed (500)"),
        (504, "5.5.4", "scram-sha-1", "does not implement AUTH SCRAM-SHA-1"),
        (554, "5.7.1\r\nInjected", "PLAIN", "AUTH PLAIN failed (554);"),
    ],
)
def test_auth_failure_hint_r_4954_6_1(
    code: int, enhanced: str | None, mech: str, fragment: str
) -> None:
    assert fragment in auth_failure_hint(code, enhanced, mech)


def test_auth_failure_hint_carries_oauth_details() -> None:
    info = OAuthErrorInfo(status="401", scope="https://mail.google.com/")
    hint = auth_failure_hint(535, "5.7.8", "OAUTHBEARER", server_error=info)
    assert "server said: status=401, scope=https://mail.google.com/" in hint
    assert "server said" in auth_failure_hint(550, None, "XOAUTH2", server_error=info)


# --------------------------------------------------------------------------- secrets


def test_no_secret_in_any_repr_or_error_r_lib_secrets_1() -> None:
    """R-LIB-SECRETS-1: canaries (raw or base64) never reach repr() or str(error)."""
    pw = "CANARY-PW-9f2c"
    tok = "CANARY-TOK-77aa"
    creds = Credentials("ann", pw)
    texts: list[str] = [repr(creds), str(creds)]
    payloads: list[bytes] = []

    def attempt(fn: object, *args: object, **kwargs: object) -> object:
        try:
            result = fn(*args, **kwargs)  # type: ignore[operator]
        except Exception as exc:  # collecting every error's text
            texts.append(str(exc))
            texts.append(repr(exc))
            return None
        if isinstance(result, bytes):  # wire payloads: secret by design, kept aside
            payloads.append(result)
        return result

    mechs = [
        Plain(creds),
        Login(creds),
        CramMD5(creds),
        ScramSHA256(creds),
        ScramSHA1(creds),
        XOAuth2("ann", tok),
        OAuthBearer(lambda: tok, authzid="ann"),
        External(),
    ]
    commands: list[str] = []
    for mech in mechs:
        commands.append(auth_command(mech))
        attempt(mech.respond, b"first")
        attempt(mech.respond, b'{"status":"401","scope":"' + tok.encode() + b'"}')
        attempt(mech.respond, b"v=AAAA")
        attempt(mech.respond, b"")
        attempt(mech.verify_success, b"e=invalid-proof")
        attempt(mech.verify_success, None)
        attempt(mech.initial_response)
        texts.append(repr(mech))
        if mech.server_error is not None:
            texts.append(mech.server_error.describe())
            texts.append(repr(mech.server_error))
            texts.append(auth_failure_hint(535, "5.7.8", mech.name, server_error=mech.server_error))
    scram = ScramSHA256(creds, _client_nonce="N")
    scram.initial_response()
    attempt(scram.respond, b"r=NX,s=QQ==,i=4095")
    for bad in (f"{pw}\x00", f"{pw}\u0007", f"\u0627{pw}"):
        attempt(Plain, Credentials("ann", bad))
    attempt(Plain, Credentials(f"{pw}\x00", "x"))
    for bad_token in (f"{tok}\x01", f"{tok}\r\n", f"{tok} x"):
        attempt(XOAuth2, "ann", bad_token)
        attempt(OAuthBearer, bad_token)
    attempt(choose_mechanism, ["CRAM-MD5"], credentials=creds, token=tok)
    attempt(choose_mechanism, ["PLAIN"], credentials=creds, explicit="LOGIN")
    attempt(choose_mechanism, ["XOAUTH2"], credentials=creds, explicit="XOAUTH2")
    attempt(choose_mechanism, ["PLAIN"], credentials=creds, token=tok)

    forbidden = {pw, tok, b64(pw.encode()), b64(tok.encode())}
    for payload in payloads:
        if pw.encode() in payload or tok.encode() in payload:
            forbidden.add(encode_response(payload))
    initial = [line.split(" ") for line in commands]
    forbidden |= {parts[2] for parts in initial if len(parts) == 3 and len(parts[2]) > 8}
    blob = "\n".join(texts)
    for secret in forbidden:
        assert secret not in blob
    assert len(texts) > 40


def test_package_exports() -> None:
    assert set(auth.__all__) >= {"choose_mechanism", "Mechanism", "Credentials"}
    for name in auth.__all__:
        assert hasattr(auth, name), name
