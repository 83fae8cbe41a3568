"""The fake server's SASL mechanisms accept right credentials and refuse wrong ones.

Each mechanism is driven by hand over implicit TLS so the exact challenge and
response lines (RFC 4954, 4616, 7628, 5802/7677, Google XOAUTH2) are checked.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import smtplib

import pytest

from smtpsec.testing import CA, LeafCert, SMTPServer

USERS = {"ann": "CANARY-PW-ann", "b,o=b": "pw-bob"}
TOKENS = {"ann": "CANARY-TOK-ann"}
ALL = ("PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2", "OAUTHBEARER", "EXTERNAL", "SCRAM-SHA-256")


def b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA.create()


@pytest.fixture(scope="module")
def leaf(ca: CA) -> LeafCert:
    return ca.issue("localhost")


@pytest.fixture
def server(leaf: LeafCert):
    with SMTPServer(leaf, users=USERS, tokens=TOKENS, auth_mechanisms=ALL) as srv:
        yield srv


@pytest.fixture
def client(server: SMTPServer, ca: CA, raw):
    conn = raw(server, tls=ca.client_context())
    assert conn.reply()[0] == 220
    assert conn.cmd("EHLO c")[0] == 250
    return conn


def attempts(server: SMTPServer) -> list[tuple[str, str | None, bool]]:
    return [tuple(a) for a in server.connections[0].auth]  # type: ignore[misc]


# ----------------------------------------------------------------- PLAIN / LOGIN


def test_plain_with_initial_response(server: SMTPServer, client) -> None:
    assert client.cmd("AUTH PLAIN " + b64("\0ann\0CANARY-PW-ann"))[0] == 235
    assert client.cmd("AUTH PLAIN " + b64("\0ann\0CANARY-PW-ann"))[0] == 503  # once only
    assert attempts(server) == [("PLAIN", "ann", True)]


def test_plain_after_empty_challenge(server: SMTPServer, client) -> None:
    assert client.cmd("AUTH PLAIN") == (334, [""])
    assert client.cmd(b64("admin\0ann\0wrong")) == (535, ["5.7.8 Error: authentication failed"])
    assert attempts(server) == [("PLAIN", "ann", False)]


def test_plain_malformed_and_empty_initial_response(server: SMTPServer, client) -> None:
    assert client.cmd("AUTH PLAIN " + b64("no-nul-bytes"))[0] == 501
    assert client.cmd("AUTH PLAIN =")[0] == 501  # empty IR is not a PLAIN message
    assert client.cmd("AUTH PLAIN !!!notbase64")[0] == 501
    assert attempts(server) == [("PLAIN", None, False)] * 3


def test_login_without_initial_response(server: SMTPServer, client) -> None:
    assert client.cmd("AUTH LOGIN") == (334, [b64("Username:")])
    assert client.cmd(b64("ann")) == (334, [b64("Password:")])
    assert client.cmd(b64("CANARY-PW-ann"))[0] == 235
    assert server.connections[0].lines_post_tls[1:4] == [
        "AUTH LOGIN",
        b64("ann"),
        b64("CANARY-PW-ann"),
    ]


def test_cancel_with_star(server: SMTPServer, client) -> None:
    assert client.cmd("AUTH LOGIN")[0] == 334
    assert client.cmd("*") == (501, ["5.7.0 Authentication cancelled"])
    assert attempts(server) == [("LOGIN", None, False)]


def test_auth_syntax_and_unknown_mechanisms(server: SMTPServer, client) -> None:
    assert client.cmd("AUTH")[0] == 501
    assert client.cmd("AUTH PLAIN a b")[0] == 501
    assert client.cmd("AUTH DIGEST-MD5")[0] == 504  # not advertised
    client.cmd("MAIL FROM:<a@example.test>")
    assert client.cmd("AUTH PLAIN")[0] == 503  # not during a transaction
    assert attempts(server) == []


# ----------------------------------------------------------------- CRAM-MD5


def test_cram_md5_with_smtplib(server: SMTPServer, ca: CA) -> None:
    with smtplib.SMTP_SSL("localhost", server.port, context=ca.client_context()) as smtp:
        smtp.ehlo()
        smtp.user, smtp.password = "ann", USERS["ann"]
        assert smtp.auth("CRAM-MD5", smtp.auth_cram_md5)[0] == 235
    (capture,) = server.wait_for_connections(1)
    assert capture.auth == [("CRAM-MD5", "ann", True)]


def test_cram_md5_wrong_digest_and_unknown_user(server: SMTPServer, client) -> None:
    code, (challenge,) = client.cmd("AUTH CRAM-MD5")
    assert code == 334
    assert unb64(challenge).endswith(b"@smtp.example.test>")
    assert client.cmd(b64("ann " + "0" * 32))[0] == 535
    client.cmd("AUTH CRAM-MD5")
    assert client.cmd(b64("nobody " + "0" * 32))[0] == 535
    assert attempts(server) == [("CRAM-MD5", "ann", False), ("CRAM-MD5", "nobody", False)]


# ----------------------------------------------------------------- bearer tokens


def test_xoauth2_success(server: SMTPServer, client) -> None:
    ir = b64("user=ann\x01auth=Bearer CANARY-TOK-ann\x01\x01")
    assert client.cmd("AUTH XOAUTH2 " + ir)[0] == 235
    assert attempts(server) == [("XOAUTH2", "ann", True)]


def test_xoauth2_failure_sends_error_challenge_first(server: SMTPServer, client) -> None:
    """R-XOAUTH2-1: 334 <base64 JSON>, empty client line, then 535."""
    assert client.cmd("AUTH XOAUTH2") == (334, [""])
    code, (challenge,) = client.cmd(b64("user=ann\x01auth=Bearer stale\x01\x01"))
    assert code == 334
    assert json.loads(unb64(challenge))["status"] == "invalid_token"
    assert client.cmd("")[0] == 535
    assert attempts(server) == [("XOAUTH2", "ann", False)]


@pytest.mark.parametrize(
    ("gs2", "user"),
    [("n,a=ann,", "ann"), ("n,,", "ann")],  # without authzid the token names the user
)
def test_oauthbearer_success(server: SMTPServer, client, gs2: str, user: str) -> None:
    ir = b64(gs2 + "\x01host=localhost\x01port=465\x01auth=Bearer CANARY-TOK-ann\x01\x01")
    assert client.cmd("AUTH OAUTHBEARER " + ir)[0] == 235
    assert attempts(server) == [("OAUTHBEARER", user, True)]


def test_oauthbearer_failure_and_escaped_authzid(server: SMTPServer, client) -> None:
    """R-7628-3.2.3-1: error challenge, client answers \\x01 (AQ==), then 535."""
    ir = b64("n,a=b=2Co=3Db,\x01auth=Bearer wrong\x01\x01")
    code, (challenge,) = client.cmd("AUTH OAUTHBEARER " + ir)
    assert code == 334
    assert json.loads(unb64(challenge))["schemes"] == "bearer"
    assert client.cmd("AQ==")[0] == 535
    assert client.cmd("AUTH OAUTHBEARER")[0] == 334
    assert client.cmd(b64("n,,\x01auth=Basic x\x01\x01"))[0] == 334  # no bearer: error flow
    assert client.cmd("AQ==")[0] == 535
    assert client.cmd("AUTH OAUTHBEARER " + b64("no gs2 header"))[0] == 501
    assert attempts(server) == [
        ("OAUTHBEARER", "b,o=b", False),
        ("OAUTHBEARER", None, False),
        ("OAUTHBEARER", None, False),
    ]


# ----------------------------------------------------------------- EXTERNAL


def test_external_needs_a_client_certificate(leaf: LeafCert, ca: CA, raw) -> None:
    """R-8314-5.5-3: AUTH EXTERNAL = succeeds only with a verified client cert."""
    ann = ca.issue_client("ann@example.test")
    with SMTPServer(leaf, request_client_cert=True, auth_mechanisms=("EXTERNAL",)) as srv:
        ctx = ca.client_context()
        ann.load_into(ctx)
        with_cert = raw(srv, tls=ctx)
        with_cert.reply()
        assert with_cert.cmd("AUTH EXTERNAL =")[0] == 235
        without = raw(srv, tls=ca.client_context())
        without.reply()
        assert without.cmd("AUTH EXTERNAL " + b64("ann@example.test"))[0] == 535
        first, second = srv.connections
    assert first.auth == [("EXTERNAL", None, True)]
    assert second.auth == [("EXTERNAL", "ann@example.test", False)]


# ----------------------------------------------------------------- SCRAM-SHA-256


def scram(client, user: str, password: str, *, tamper: str = "") -> int:
    """Run RFC 5802/7677 SCRAM-SHA-256 from the client side; return the final code."""
    bare = f"n={user.replace('=', '=3D').replace(',', '=2C')},r=clientnonce"
    code, (first,) = client.cmd("AUTH SCRAM-SHA-256 " + b64("n,," + bare))
    assert code == 334
    server_first = unb64(first).decode()
    attrs = dict(item.split("=", 1) for item in server_first.split(","))
    assert attrs["r"].startswith("clientnonce")
    nonce = attrs["r"] + ("x" if tamper == "nonce" else "")
    salted = hashlib.pbkdf2_hmac(
        "sha256", password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"])
    )
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored = hashlib.sha256(client_key).digest()
    without_proof = f"c=biws,r={nonce}"
    auth_message = f"{bare},{server_first},{without_proof}".encode()
    signature = hmac.digest(stored, auth_message, "sha256")
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature, strict=True)))
    if tamper == "short":
        proof = base64.b64encode(b"short")
    proof_text = "!!!" if tamper == "notb64" else proof.decode()
    code, (final,) = client.cmd(b64(f"{without_proof},p={proof_text}"))
    if code != 334:
        return code
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    expected = base64.b64encode(hmac.digest(server_key, auth_message, "sha256")).decode()
    assert unb64(final).decode() == f"v={expected}"  # the server proves it knows the key
    return client.cmd("")[0]


def test_scram_success(server: SMTPServer, client) -> None:
    assert scram(client, "b,o=b", "pw-bob") == 235
    assert attempts(server) == [("SCRAM-SHA-256", "b,o=b", True)]


@pytest.mark.parametrize(
    ("user", "password", "tamper", "code"),
    [
        ("ann", "wrong", "", 535),
        ("nobody", "x", "", 535),
        ("ann", USERS["ann"], "nonce", 535),
        ("ann", USERS["ann"], "short", 535),
        ("ann", USERS["ann"], "notb64", 501),
    ],
)
def test_scram_failures(client, user: str, password: str, tamper: str, code: int) -> None:
    assert scram(client, user, password, tamper=tamper) == code


def test_scram_malformed_first_message(client) -> None:
    assert client.cmd("AUTH SCRAM-SHA-256 " + b64("p=tls-unique,,n=ann,r=x"))[0] == 501
    assert client.cmd("AUTH SCRAM-SHA-256 " + b64("n,,n=ann"))[0] == 501
