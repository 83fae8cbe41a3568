"""Every scripted misbehaviour really happens on the wire (checklist §3 and §5).

These tests use a raw socket client so that segment boundaries, injected bytes
and shaped replies are observed exactly as a client under test would see them.
"""

from __future__ import annotations

import base64
import contextlib
import socket
import ssl

import pytest

from smtpsec import Security
from smtpsec.testing import CA, Drip, Endless, LeafCert, LongLine, ServerSession, SMTPServer

PASSWORD = "CANARY-PW-91d0"


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA.create()


@pytest.fixture(scope="module")
def leaf(ca: CA) -> LeafCert:
    return ca.issue("localhost", ips=("127.0.0.1",))


# ----------------------------------------------------------------- negotiation


def test_strip_starttls_hides_it_and_refuses_it(leaf: LeafCert, raw) -> None:
    """R-3207-4-1 / R-EAST-NS-1 (EAST O_1): EHLO lacks STARTTLS, STARTTLS gets 502."""
    with SMTPServer(
        leaf, tls=Security.STARTTLS, strip_starttls=True, pre_tls_auth=("PLAIN",)
    ) as srv:
        client = raw(srv)
        client.reply()
        code, lines = client.cmd("EHLO c")
        assert code == 250
        assert "STARTTLS" not in lines
        assert "AUTH PLAIN" in lines
        assert client.cmd("STARTTLS") == (502, ["5.5.1 Error: command not implemented"])
        assert client.cmd("QUIT")[0] == 221
        (capture,) = srv.wait_for_connections(1)
    assert capture.commands_pre_tls == ["EHLO", "STARTTLS", "QUIT"]
    assert capture.tls_version is None


@pytest.mark.parametrize(
    ("reply", "closes"),
    [
        ((454, "4.7.0 TLS not available"), False),
        ((502, "5.5.1 no"), False),
        ((354, "go ahead"), False),
        ((421, "4.3.2 shutting down"), True),
        (b"220 go\r\n250-injected\r\n", False),
    ],
)
def test_starttls_reply_override(
    leaf: LeafCert, raw, reply: tuple[int, str] | bytes, closes: bool
) -> None:
    """R-3207-4-2 / R-EAST-NS-2 (EAST O_2..O_4): any STARTTLS reply, no TLS follows."""
    with SMTPServer(leaf, tls=Security.STARTTLS, starttls_reply=reply) as srv:
        client = raw(srv)
        client.reply()
        client.cmd("EHLO c")
        client.send(b"STARTTLS\r\n")
        expected = reply if isinstance(reply, bytes) else f"{reply[0]} {reply[1]}\r\n".encode()
        received = b""
        while len(received) < len(expected):
            received += client.recv_some()
        assert received == expected
        if closes:
            assert client.read_until_eof() == b""
        else:
            assert client.cmd("NOOP")[0] == 250  # still plaintext
        (capture,) = srv.wait_for_connections(1) if closes else (srv.connections[0],)
    assert capture.tls_version is None


def test_starttls_inject_arrives_with_the_220(leaf: LeafCert, ca: CA, raw) -> None:
    """R-EAST-BR-1 (EAST B_1 step 2): the injected EHLO reply is in the 220's segment."""
    inject = b"250-evil.example\r\n250 AUTH LOGIN\r\n"
    with SMTPServer(leaf, tls=Security.STARTTLS, starttls_inject=inject) as srv:
        client = raw(srv)
        client.reply()
        client.cmd("EHLO c")
        client.send(b"STARTTLS\r\n")
        assert client.recv_some() == b"220 2.0.0 Ready to start TLS\r\n" + inject
        client.wrap(ca.client_context())  # the handshake still happens
        code, lines = client.cmd("EHLO c")
        assert code == 250
        assert "AUTH PLAIN LOGIN" in lines
        (capture,) = [srv.connections[0]]
    assert capture.tls_version


def test_bytes_after_starttls_are_recorded_not_executed(leaf: LeafCert, raw) -> None:
    """R-3207-4-3 / R-EAST-BC-1: what follows STARTTLS in one write is evidence."""
    with SMTPServer(leaf, tls=Security.STARTTLS) as srv:
        client = raw(srv)
        client.reply()
        client.cmd("EHLO c")
        client.send(b"STARTTLS\r\nMAIL FROM:<evil@example.test>\r\n")
        assert client.read_line() == b"220 2.0.0 Ready to start TLS\r\n"
        client.close()
        (capture,) = srv.wait_for_connections(1)
    assert capture.after_starttls == b"MAIL FROM:<evil@example.test>\r\n"
    assert capture.segments[-1] == (False, b"STARTTLS\r\nMAIL FROM:<evil@example.test>\r\n")
    assert "MAIL" not in capture.commands
    assert capture.handshake_error


@pytest.mark.parametrize("plaintext", [True, b"250 2.0.0 fake\r\n"])
def test_starttls_no_handshake_keeps_talking_plaintext(
    leaf: LeafCert, raw, plaintext: bool | bytes
) -> None:
    """R-3207-4.1-1: after 220 the server writes plaintext instead of a ServerHello."""
    with SMTPServer(leaf, tls=Security.STARTTLS, starttls_no_handshake=plaintext) as srv:
        client = raw(srv)
        client.reply()
        client.cmd("EHLO c")
        assert client.cmd("STARTTLS")[0] == 220
        expected = plaintext if isinstance(plaintext, bytes) else b"250 2.0.0 ok\r\n"
        assert client.read_line() == expected
        assert client.cmd("EHLO c")[0] == 250
        (capture,) = [srv.connections[0]]
    assert capture.commands_pre_tls == ["EHLO", "STARTTLS", "EHLO"]
    assert capture.commands_post_tls == []


def test_post_tls_ehlo_silent(leaf: LeafCert, ca: CA, raw) -> None:
    """R-EAST-BR-2 (EAST B_1 step 1): the post-TLS EHLO is never answered."""
    with SMTPServer(leaf, tls=Security.STARTTLS, post_tls_ehlo_silent=True) as srv:
        client = raw(srv)
        client.reply()
        assert client.cmd("EHLO c")[0] == 250  # pre-TLS EHLO still answered
        assert client.cmd("STARTTLS")[0] == 220
        client.wrap(ca.client_context())
        client.send(b"EHLO c\r\nNOOP\r\n")
        assert client.reply() == (250, ["2.0.0 Ok"])  # the first reply is NOOP's
    assert srv.connections[0].commands_post_tls == ["EHLO", "NOOP"]


def test_pre_and_post_tls_reply_tables(leaf: LeafCert, ca: CA, raw) -> None:
    """R-3207-4.2-2 / R-LIB-HELO-1: EHLO 500 (post-TLS only) and a HELO fallback bait."""
    with SMTPServer(
        leaf,
        tls=Security.STARTTLS,
        post_tls_replies={"ehlo": (500, "5.5.1 no EHLO here")},
        pre_tls_replies={"helo": (250, "sure, plaintext it is")},
        replies={"NOOP": (250, "everywhere"), "RSET": None},
    ) as srv:
        client = raw(srv)
        client.reply()
        assert client.cmd("HELO c") == (250, ["sure, plaintext it is"])
        assert client.cmd("NOOP") == (250, ["everywhere"])
        client.send(b"RSET\r\n")  # unanswered
        assert client.cmd("EHLO c")[0] == 250
        assert client.cmd("STARTTLS")[0] == 220
        client.wrap(ca.client_context())
        assert client.cmd("EHLO c") == (500, ["5.5.1 no EHLO here"])
        assert client.cmd("HELO c") == (250, ["smtp.example.test"])
        assert client.cmd("NOOP") == (250, ["everywhere"])


def test_pre_tls_auth_bait_and_canary_detection(leaf: LeafCert, raw) -> None:
    """R-EAST-NS-4: AUTH offered in cleartext; a client that bites leaks the canary."""
    with SMTPServer(
        leaf, tls=Security.STARTTLS, pre_tls_auth=("PLAIN", "LOGIN"), users={"ann": PASSWORD}
    ) as srv:
        client = raw(srv)
        client.reply()
        _, lines = client.cmd("EHLO c")
        assert lines[-2:] == ["AUTH PLAIN LOGIN", "STARTTLS"]
        blob = base64.b64encode(f"\0ann\0{PASSWORD}".encode()).decode()
        assert client.cmd(f"AUTH PLAIN {blob}")[0] == 235
        (capture,) = [srv.connections[0]]
        assert capture.secrets_leaked(PASSWORD, "CANARY-TOK-x") == [PASSWORD]
        assert PASSWORD.encode() not in capture.pre_tls  # only visible after decoding
        assert not capture.pre_tls_verbs_subset_of({"EHLO", "STARTTLS", "QUIT"})


def test_explicit_pre_tls_extensions(leaf: LeafCert, ca: CA, raw) -> None:
    """R-3207-4.2-1: different capability lists before and after TLS."""
    with SMTPServer(
        leaf,
        tls=Security.STARTTLS,
        pre_tls_extensions=("AUTH PLAIN LOGIN CRAM-MD5 XOAUTH2", "SIZE 1", "CHUNKING"),
        extensions=("SIZE 0",),
        auth_mechanisms=("SCRAM-SHA-256", "PLAIN"),
    ) as srv:
        client = raw(srv)
        client.reply()
        assert client.cmd("EHLO c")[1][1:] == [
            "AUTH PLAIN LOGIN CRAM-MD5 XOAUTH2",
            "SIZE 1",
            "CHUNKING",
            "STARTTLS",
        ]
        client.cmd("STARTTLS")
        client.wrap(ca.client_context())
        assert client.cmd("EHLO c")[1][1:] == ["SIZE 0", "AUTH SCRAM-SHA-256 PLAIN"]
        assert client.cmd("AUTH LOGIN")[0] == 504  # only the post-TLS list counts
        client.cmd("MAIL FROM:<a@example.test> SIZE=999999")  # SIZE 0: no limit
        client.cmd("RCPT TO:<b@example.test>")
        client.send(b"BDAT 1 LAST\r\nx")
        assert client.reply()[0] == 503  # CHUNKING was only offered before TLS


def test_many_mechanisms_advertised_unimplemented_ones_refused(leaf: LeafCert, ca: CA, raw) -> None:
    """EAST X_1: ~60 mechanisms advertised; using an unimplemented one gets 504."""
    mechs = (*(f"X-MECH-{i}" for i in range(58)), "GSSAPI", "PLAIN")
    with SMTPServer(leaf, auth_mechanisms=mechs) as srv:
        client = raw(srv, tls=ca.client_context())
        client.reply()
        assert client.cmd("EHLO c")[1][-1] == "AUTH " + " ".join(mechs)
        assert client.cmd("AUTH GSSAPI")[0] == 504


# ----------------------------------------------------------------- desync, closing


def test_extra_replies_after_noop_desyncs(leaf: LeafCert, ca: CA, raw) -> None:
    """R-LIB-DESYNC-1: two replies to one NOOP."""
    with SMTPServer(leaf, extra_replies_after=("noop", b"250 2.0.0 surprise\r\n")) as srv:
        client = raw(srv, tls=ca.client_context())
        client.reply()
        assert client.cmd("NOOP") == (250, ["2.0.0 Ok"])
        assert client.reply() == (250, ["2.0.0 surprise"])


def test_close_after_drops_without_reply(leaf: LeafCert, ca: CA, raw) -> None:
    """R-5321-3.8-1: an unexpected disconnect mid-transaction."""
    with SMTPServer(leaf, close_after="rcpt") as srv:
        client = raw(srv, tls=ca.client_context())
        client.reply()
        client.cmd("EHLO c")
        client.cmd("MAIL FROM:<a@example.test>")
        client.send(b"RCPT TO:<b@example.test>\r\n")
        assert client.read_until_eof() == b""
        (capture,) = srv.wait_for_connections(1)
    assert capture.commands_post_tls[-1] == "RCPT"
    assert capture.close_notify is False


def test_421_reply_closes_the_connection(leaf: LeafCert, ca: CA, raw) -> None:
    with SMTPServer(leaf, replies={"RCPT": (421, "4.3.2 going down")}) as srv:
        client = raw(srv, tls=ca.client_context())
        client.reply()
        client.cmd("EHLO c")
        client.cmd("MAIL FROM:<a@example.test>")
        assert client.cmd("RCPT TO:<b@example.test>") == (421, ["4.3.2 going down"])
        assert client.read_until_eof() == b""
    assert srv.messages == []


def test_refused_recipient_with_421_closes(leaf: LeafCert, ca: CA, raw) -> None:
    with SMTPServer(leaf, refuse_recipients={"b@example.test": (421, "4.7.0 bye")}) as srv:
        client = raw(srv, tls=ca.client_context())
        client.reply()
        client.cmd("EHLO c")
        client.cmd("MAIL FROM:<a@example.test>")
        assert client.cmd("RCPT TO:<b@example.test>")[0] == 421
        assert client.read_until_eof() == b""


def test_final_reply_override(leaf: LeafCert, ca: CA, raw) -> None:
    """The "." key sets the reply after the message; only a 2xx stores it."""
    with SMTPServer(leaf, replies={".": (451, "4.3.0 try later")}) as srv:
        client = raw(srv, tls=ca.client_context())
        client.reply()
        client.cmd("EHLO c")
        client.cmd("MAIL FROM:<a@example.test>")
        client.cmd("RCPT TO:<b@example.test>")
        client.cmd("DATA")
        client.send(b"x\r\n.\r\n")
        assert client.reply() == (451, ["4.3.0 try later"])
    assert srv.messages == []
    with SMTPServer(leaf, replies={".": (250, "2.0.0 custom id")}) as srv:
        client = raw(srv, tls=ca.client_context())
        client.reply()
        client.cmd("EHLO c")
        client.cmd("MAIL FROM:<a@example.test>")
        client.cmd("RCPT TO:<b@example.test>")
        client.send(b"BDAT 1 LAST\r\nx")
        assert client.reply() == (250, ["2.0.0 custom id"])
    assert srv.messages[0].data == b"x"


def test_bdat_override_still_consumes_the_chunk(leaf: LeafCert, ca: CA, raw) -> None:
    """R-3030-2-4: the first chunk answered 552."""
    with SMTPServer(leaf, replies={"BDAT": (552, "5.3.4 too big")}) as srv:
        client = raw(srv, tls=ca.client_context())
        client.reply()
        client.send(b"BDAT 6\r\nNOOP\r\n")
        assert client.reply()[0] == 552
        assert client.cmd("RSET")[0] == 250
    assert srv.connections[0].commands_post_tls == ["BDAT", "RSET"]


def test_on_command_hook_answers_any_line(leaf: LeafCert, ca: CA, raw) -> None:
    def hook(session: ServerSession, line: str) -> bytes | None:
        if line.upper().startswith("XCLIENT"):
            return b"220 " + str(session.tls_active).encode() + b"\r\n"
        if line.upper() == "XSWALLOW":
            return b""
        if line.upper() == "XBYE":
            session.send(b"221 hook bye\r\n")
            session.close()
            return b""
        return None

    with SMTPServer(leaf, on_command=hook) as srv:
        client = raw(srv, tls=ca.client_context())
        client.reply()
        assert client.cmd("XCLIENT ADDR=1.2.3.4") == (220, ["True"])
        client.send(b"XSWALLOW\r\n")
        assert client.cmd("NOOP")[0] == 250
        assert client.cmd("XBYE") == (221, ["hook bye"])
        assert client.read_until_eof() == b""
    assert srv.connections[0].commands_post_tls == ["XCLIENT", "XSWALLOW", "NOOP", "XBYE"]


def test_hook_exception_is_reported_not_swallowed(leaf: LeafCert, ca: CA, raw) -> None:
    def hook(session: ServerSession, line: str) -> bytes | None:
        raise RuntimeError("bug in the test's hook")

    with SMTPServer(leaf, on_command=hook) as srv:
        client = raw(srv, tls=ca.client_context())
        client.reply()
        client.send(b"NOOP\r\n")
        assert client.read_until_eof() == b""
        (capture,) = srv.wait_for_connections(1)
    assert "bug in the test's hook" in (capture.error or "")
    assert [str(e) for e in srv.errors] == ["bug in the test's hook"]


# ----------------------------------------------------------------- greetings and shaped replies


@pytest.mark.parametrize(
    ("greeting", "expected"),
    [
        ((554, "5.3.2 no service"), b"554 5.3.2 no service\r\n"),
        (b"garbage without code\r\n", b"garbage without code\r\n"),
        ((220, "first\nsecond"), b"220-first\r\n220 second\r\n"),
    ],
)
def test_greeting_variants(leaf: LeafCert, ca: CA, raw, greeting, expected: bytes) -> None:
    """R-LIB-GREET-1 / EAST others/greeting/*."""
    with SMTPServer(leaf, greeting=greeting) as srv:
        client = raw(srv, tls=ca.client_context())
        received = b""
        while len(received) < len(expected):
            received += client.recv_some()
        assert received == expected


def test_greeting_421_closes(leaf: LeafCert, ca: CA, raw) -> None:
    with SMTPServer(leaf, greeting=(421, "4.3.2 busy")) as srv:
        client = raw(srv, tls=ca.client_context())
        assert client.read_until_eof() == b"421 4.3.2 busy\r\n"


def test_silent_server_records_but_never_answers(leaf: LeafCert, raw) -> None:
    """R-5321-4.5.3.2-1: a server silent after accept."""
    with SMTPServer(tls=Security.PLAINTEXT, greeting=None) as srv:
        client = raw(srv)
        client.send(b"EHLO impatient\r\n")
        client.sock.shutdown(socket.SHUT_WR)
        assert client.read_until_eof() == b""
        (capture,) = srv.wait_for_connections(1)
    assert capture.commands_pre_tls == ["EHLO"]
    assert capture.bytes_sent == 0


def test_drip_sends_one_byte_at_a_time(raw) -> None:
    """R-5321-4.5.3.2-1: a byte-dribbling greeting needs many reads."""
    data = b"220 slow\r\n"
    with SMTPServer(tls=Security.PLAINTEXT, drip=(data, 0.02)) as srv:
        client = raw(srv)
        reads = []
        while sum(map(len, reads)) < len(data):
            reads.append(client.recv_some())
        assert b"".join(reads) == data
        assert len(reads) > 1
        assert client.cmd("NOOP")[0] == 250
    assert srv.connections[0].bytes_sent == len(data) + len(b"250 2.0.0 Ok\r\n")


def test_drip_is_interrupted_by_stop(raw) -> None:
    srv = SMTPServer(
        tls=Security.PLAINTEXT, greeting=Drip(b"220 " + b"x" * 1000 + b"\r\n", 60.0)
    ).start()
    client = raw(srv)
    assert client.recv_some() == b"2"
    srv.stop()
    assert srv.connections[0].closed
    assert srv.connections[0].bytes_sent == 1


def test_endless_greeting_stops_when_the_client_leaves(raw) -> None:
    """R-5321-4.5.3.1-2: stream 220-x lines until the client disconnects."""
    with SMTPServer(tls=Security.PLAINTEXT, endless_multiline=True) as srv:
        client = raw(srv)
        received = b""
        while len(received) < 200_000:
            received += client.recv_some()
        client.close()
        (capture,) = srv.wait_for_connections(1)
    assert received.startswith(b"220-x\r\n220-x\r\n")
    assert b"220 " not in received
    assert capture.bytes_sent < 64 * 1024 * 1024
    assert capture.error is not None  # the broken pipe that ended the stream


def test_endless_reply_respects_its_byte_cap(leaf: LeafCert, ca: CA, raw) -> None:
    with SMTPServer(leaf, replies={"EHLO": Endless(max_bytes=10_001)}) as srv:
        client = raw(srv, tls=ca.client_context())
        client.reply()
        client.send(b"EHLO c\r\n")
        received = b""
        while len(received) < 10_001:
            received += client.recv_some()
        assert received == (b"250-x\r\n" * 1430)[:10_001]
        client.buffer = b""
        client.send(b"\r\nQUIT\r\n")  # finish the dangling partial line first
        assert client.reply()[0] == 500
        assert client.reply()[0] == 221


def test_long_line_has_no_line_ending(raw) -> None:
    with SMTPServer(tls=Security.PLAINTEXT, long_line=200_000) as srv:
        client = raw(srv)
        received = b""
        while len(received) < 200_000:
            received += client.recv_some()
        assert len(received) == 200_000
        assert received.startswith(b"220 xxx")
        assert b"\n" not in received


def test_long_line_shorter_than_prefix(raw) -> None:
    with SMTPServer(tls=Security.PLAINTEXT, greeting=LongLine(2)) as srv:
        client = raw(srv)
        assert client.recv_some() == b"25"


def test_overlong_command_line_is_refused_and_closed(raw) -> None:
    with SMTPServer(tls=Security.PLAINTEXT) as srv:
        client = raw(srv)
        client.reply()
        client.send(b"NOOP " + b"a" * 70_000)
        assert client.reply() == (500, ["5.5.2 Error: line too long"])
        assert client.read_until_eof() == b""


def test_overlong_data_line_closes(raw) -> None:
    with SMTPServer(tls=Security.PLAINTEXT) as srv:
        client = raw(srv)
        client.reply()
        client.cmd("EHLO c")
        client.cmd("MAIL FROM:<a@example.test>")
        client.cmd("RCPT TO:<b@example.test>")
        client.cmd("DATA")
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            client.send(b"y" * (1024 * 1024 + 10))
        assert client.read_until_eof() == b""
        (capture,) = srv.wait_for_connections(1)
    assert "too long" in (capture.error or "")


def test_implicit_handshake_failure_is_recorded(leaf: LeafCert, raw) -> None:
    """A client that rejects the certificate: the server records the alert."""
    stranger = CA.create("other")
    with SMTPServer(leaf) as srv:
        with pytest.raises(ssl.SSLCertVerificationError):
            raw(srv, tls=stranger.client_context())
        (capture,) = srv.wait_for_connections(1)
    assert capture.handshake_error
    assert capture.bytes_sent == 0
    assert capture.commands == []


def test_oversized_messages_are_refused_within_bounded_memory(
    leaf: LeafCert, ca: CA, raw, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server keeps at most MAX_MESSAGE bytes, answers 552, and never reads a huge chunk."""
    import smtpsec.testing._session as session_module

    monkeypatch.setattr(session_module, "MAX_MESSAGE", 1000)
    with SMTPServer(leaf, extensions=("CHUNKING",)) as srv:
        client = raw(srv, tls=ca.client_context())
        client.reply()
        client.cmd("EHLO c")
        client.cmd("MAIL FROM:<a@example.test>")
        client.cmd("RCPT TO:<b@example.test>")
        client.cmd("DATA")
        client.send(b"x" * 998 + b"\r\n" + b"more\r\n.\r\n")
        assert client.reply() == (552, ["5.3.4 Message size exceeds fixed limit"])
        client.send(b"BDAT 1001\r\n")
        assert client.read_until_eof() == b""
        (capture,) = srv.wait_for_connections(1)
    assert capture.error == "BDAT chunk too large to consume"
    assert srv.messages == []


def test_large_bdat_chunk_spans_many_reads(leaf: LeafCert, ca: CA, raw) -> None:
    chunk = bytes(range(256)) * 4096  # 1 MiB: more than one recv() on any platform
    with SMTPServer(leaf) as srv:
        client = raw(srv, tls=ca.client_context())
        client.reply()
        client.cmd("EHLO c")
        client.cmd("MAIL FROM:<a@example.test>")
        client.cmd("RCPT TO:<b@example.test>")
        client.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
        assert client.reply()[0] == 250
    assert srv.messages[0].data == chunk
    assert len([s for s in srv.connections[0].segments if s[0]]) > 4


def test_data_after_quit_is_drained_with_a_bound(leaf: LeafCert, ca: CA, raw) -> None:
    with SMTPServer(leaf) as srv:
        client = raw(srv, tls=ca.client_context())
        client.reply()
        assert client.cmd("QUIT")[0] == 221
        # The server stops draining (and closes) part-way: our writes may then fail.
        with contextlib.suppress(OSError):
            client.send(b"z" * 300_000)
        (capture,) = srv.wait_for_connections(1)
    assert capture.close_notify is False
    assert len(capture.post_tls) > 64 * 1024  # drained (and recorded) up to the cap


def test_sni_callback_outside_a_session_is_harmless() -> None:
    from smtpsec.testing._protocol import record_sni

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    assert record_sni(None, "x.example.test", ctx) is None  # type: ignore[arg-type]


def test_reply_shortcuts(leaf: LeafCert, ca: CA, raw) -> None:
    """ehlo_reply / auth_reply / greeting_raw are shorthands for the reply tables."""
    with SMTPServer(
        leaf,
        greeting_raw=b"220 raw\r\n",
        ehlo_reply=(500, "5.5.1 no EHLO"),
        auth_reply=(503, "5.5.1 already authenticated"),
    ) as srv:
        client = raw(srv, tls=ca.client_context())
        assert client.reply() == (220, ["raw"])
        assert client.cmd("EHLO c") == (500, ["5.5.1 no EHLO"])
        assert client.cmd("AUTH PLAIN " + base64.b64encode(b"\0a\0b").decode())[0] == 503
    assert srv.connections[0].auth == []  # no SASL exchange happened
    relaxed = srv.script.replace(auth_reply=None, ehlo_reply=None, replies={"ehlo": None})
    assert relaxed.override("AUTH", tls_active=True) == (False, None)
    assert relaxed.override("EHLO", tls_active=False) == (True, None)  # explicit silence
    silent = relaxed.replace(post_tls_ehlo_silent=True, replies={})
    assert silent.override("EHLO", tls_active=True) == (True, None)
    assert silent.override("EHLO", tls_active=False) == (False, None)
