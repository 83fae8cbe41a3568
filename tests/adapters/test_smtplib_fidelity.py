"""The drop-in, faithful: real-server quirks, smtplib's sequence, native input rules.

Each test drives ``from smtpsec import smtplib`` exactly as smtplib code does,
against a real loopback server (the project's scripted server, or aiosmtpd
for LMTP), and checks both halves of the promise: what works with the stdlib
still works, and what the native API refuses is refused here too.
"""

from __future__ import annotations

import email
import email.policy
import smtplib as std_smtplib
import threading
from email.message import EmailMessage
from typing import Any

import pytest

import smtpsec
from netutil import start_aiosmtpd
from smtpsec import Security, smtplib
from smtpsec.testing import DEFAULT_EXTENSIONS, HookSession

USER, PASSWORD = "ann", "fidelity-Pa55word"
WITHOUT_8BITMIME = tuple(e for e in DEFAULT_EXTENSIONS if e not in ("8BITMIME", "SMTPUTF8"))


class _OneEhloPerPhase:
    """OpenSMTPD's rule: a second EHLO in the same TLS phase gets ``503 5.5.1``."""

    def __init__(self) -> None:
        self.seen: set[bool] = set()

    def __call__(self, session: HookSession, line: str) -> bytes | None:
        if line.split(" ", 1)[0].upper() != "EHLO":
            return None
        if session.tls_active in self.seen:
            return b"503 5.5.1 Invalid command: Already identified\r\n"
        self.seen.add(session.tls_active)
        return None


def test_textbook_starttls_sequence_on_a_server_that_refuses_a_second_ehlo(
    smtpsec_server: Any, smtpsec_client_context: Any
) -> None:
    """``ehlo(); starttls(); ehlo(); login()`` sends exactly one EHLO per phase."""
    srv = smtpsec_server(Security.STARTTLS, users={USER: PASSWORD}, on_command=_OneEhloPerPhase())
    client = smtplib.SMTP("localhost", srv.port)
    assert client.ehlo()[0] == 250
    assert client.starttls(context=smtpsec_client_context)[0] == 220
    assert client.ehlo()[0] == 250
    assert client.has_extn("auth")
    assert client.login(USER, PASSWORD)[0] == 235
    assert (
        client.sendmail("ann@example.com", ["bob@example.com"], b"Subject: x\r\n\r\nhi\r\n") == {}
    )
    client.quit()
    capture = srv.wait_for_connections(1)[0]
    assert capture.commands_pre_tls.count("EHLO") == 1
    assert capture.commands_post_tls.count("EHLO") == 1
    assert len(srv.messages) == 1


def test_starttls_then_login_without_ehlo_sends_the_one_ehlo_itself(
    smtpsec_server: Any, smtpsec_client_context: Any
) -> None:
    srv = smtpsec_server(Security.STARTTLS, users={USER: PASSWORD}, on_command=_OneEhloPerPhase())
    with smtplib.SMTP("localhost", srv.port) as client:
        client.starttls(context=smtpsec_client_context)
        client.login(USER, PASSWORD)
        client.mail("ann@example.com")  # no second EHLO before it
        assert client.rcpt("bob@example.com")[0] == 250
        client.rset()
    capture = srv.wait_for_connections(1)[0]
    assert capture.commands_post_tls.count("EHLO") == 1


class _Recorder:
    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 2.0.0 delivered"


def test_lmtp_accepts_host_colon_port() -> None:
    from aiosmtpd.controller import Controller
    from aiosmtpd.lmtp import LMTP

    class _LMTPController(Controller):
        def factory(self) -> Any:
            return LMTP(self.handler)

    handler = _Recorder()
    controller = start_aiosmtpd(handler, controller=_LMTPController)
    try:
        client = smtplib.LMTP(f"127.0.0.1:{controller.port}")
        try:
            assert (
                client.sendmail("ann@example.com", ["bob@example.com"], b"Subject: x\r\n\r\n.")
                == {}
            )
        finally:
            client.quit()
    finally:
        controller.stop()
    (envelope,) = handler.envelopes
    assert envelope.rcpt_tos == ["bob@example.com"]


def test_plaintext_to_the_implicit_tls_port_says_so_quickly(
    smtpsec_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server waits for a ClientHello and never greets; the drop-in says why."""
    from smtpsec.smtplib import _session

    srv = smtpsec_server(Security.IMPLICIT_TLS)
    # The test server cannot own port 465; make its port the implicit-TLS one.
    monkeypatch.setattr(_session, "_IMPLICIT_TLS_PORT", srv.port)
    monkeypatch.setattr(_session, "_IMPLICIT_PORT_GREETING_WAIT", 0.5)
    with pytest.raises(std_smtplib.SMTPServerDisconnected) as info:
        smtplib.SMTP("localhost", srv.port, timeout=60)
    assert isinstance(info.value, smtpsec.TimeoutError)
    assert "implicit TLS" in str(info.value)
    assert "SMTP_SSL(host, 465, context=...)" in str(info.value)


# --------------------------------------------------------------------------- input rules


def test_8bit_sendmail_without_8bitmime_is_refused_before_anything(
    smtpsec_server: Any, smtpsec_client_context: Any
) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS, extensions=WITHOUT_8BITMIME)
    with smtplib.SMTP_SSL("localhost", srv.port, context=smtpsec_client_context) as client:
        with pytest.raises(std_smtplib.SMTPNotSupportedError) as info:
            client.sendmail("ann@example.com", ["bob@example.com"], "Subject: x\n\ncafé\n".encode())
        assert isinstance(info.value, smtpsec.CapabilityError)
        assert client.noop()[0] == 250  # the session is still usable
    assert "MAIL" not in srv.wait_for_connections(1)[0].commands
    assert srv.messages == []


def test_8bit_send_message_without_8bitmime_goes_as_7bit(
    smtpsec_server: Any, smtpsec_client_context: Any
) -> None:
    srv = smtpsec_server(Security.IMPLICIT_TLS, extensions=WITHOUT_8BITMIME)
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "ann@example.com", "bob@example.com", "café"
    msg.set_content("Grüße aus Köln\n", cte="8bit")
    with smtplib.SMTP_SSL("localhost", srv.port, context=smtpsec_client_context) as client:
        assert client.send_message(msg) == {}
    (received,) = srv.messages
    assert received.data.isascii()
    parsed = email.message_from_bytes(received.data, policy=email.policy.default)
    assert "Grüße aus Köln" in parsed.get_body().get_content()


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.rcpt("a" * 10_000 + "@example.com"),
        lambda c: c.sendmail("ann@example.com", ["a" * 65 + "@example.com"], b"x"),
        lambda c: c.mail("ann\u0085@example.com"),
        lambda c: c.rcpt("bob@example.com\u2028RCPT TO:<eve@example.com>"),
        lambda c: c.putcmd("NOOP", "a\tb"),
        lambda c: c.putcmd("NOOP", "a\u2029b"),
    ],
    ids=["rcpt-10000-octets", "local-part-65", "nel", "u2028", "tab", "u2029"],
)
def test_native_input_rules_apply(smtpsec_server: Any, call: Any) -> None:
    srv = smtpsec_server(Security.PLAINTEXT)
    with smtplib.SMTP("127.0.0.1", srv.port) as client:
        client.ehlo()
        if "rcpt" in repr(call):
            client.mail("ann@example.com")
        with pytest.raises(ValueError) as info:
            call(client)
        assert isinstance(info.value, smtpsec.InvalidArgumentError)
    capture = srv.wait_for_connections(1)[0]
    assert "RCPT" not in capture.commands
    assert srv.messages == []


def test_addresses_are_read_as_quoteaddr_reads_them(smtpsec_server: Any) -> None:
    srv = smtpsec_server(Security.PLAINTEXT)
    with smtplib.SMTP("127.0.0.1", srv.port) as client:
        refused = client.sendmail(
            "Ann Example <ann@example.com>", ["<bob@example.com>", "root"], b"Subject: x\r\n\r\n."
        )
        assert refused == {}
        client.sendmail("<>", ["bob@example.com"], b"Subject: bounce\r\n\r\n.")
    first, bounce = srv.messages
    assert first.sender == "ann@example.com"
    assert first.recipients == ("bob@example.com", "root")
    assert bounce.sender == ""


def test_a_control_character_is_refused_before_parsing(smtpsec_server: Any) -> None:
    """``parseaddr`` would drop what follows a CR; the raw argument is checked first."""
    srv = smtpsec_server(Security.PLAINTEXT)
    with smtplib.SMTP("127.0.0.1", srv.port) as client:
        with pytest.raises(smtpsec.InvalidArgumentError, match="control character"):
            client.sendmail("Ann <ann@example.com>\r\nRCPT TO:<eve@x>", ["b@example.com"], b"x")
    assert srv.messages == []


# --------------------------------------------------------------------------- exceptions


def test_connection_dropped_during_data_raises_a_hybrid(smtpsec_server: Any) -> None:
    srv = smtpsec_server(
        Security.PLAINTEXT,
        extensions=tuple(e for e in DEFAULT_EXTENSIONS if e != "CHUNKING"),
        close_after="DATA",
    )
    with smtplib.SMTP("127.0.0.1", srv.port) as client:
        with pytest.raises(std_smtplib.SMTPServerDisconnected) as info:
            client.sendmail("ann@example.com", ["bob@example.com"], b"Subject: x\r\n\r\nhi")
        assert isinstance(info.value, smtpsec.SMTPSecError)
        assert type(info.value).__module__ == "smtpsec.smtplib"
        assert client.sock is None


def test_421_to_rcpt_reports_the_refusals_so_far(smtpsec_server: Any) -> None:
    srv = smtpsec_server(
        Security.PLAINTEXT, refuse_recipients={"frank@example.com": (421, "4.3.2 closing")}
    )
    client = smtplib.SMTP("127.0.0.1", srv.port)
    with pytest.raises(std_smtplib.SMTPRecipientsRefused) as info:
        client.sendmail(
            "ann@example.com",
            ["Sally <sally@example.com>", "frank@example.com", "george@example.com"],
            b"Subject: x\r\n\r\nhi",
        )
    assert isinstance(info.value, smtpsec.RecipientsRefused)
    assert info.value.recipients == {"frank@example.com": (421, b"4.3.2 closing")}
    assert client.sock is None
    assert srv.messages == []


def test_every_public_drop_in_class_is_a_stdlib_class_and_an_smtpsec_error() -> None:
    for name in smtplib.__all__:
        value = getattr(smtplib, name)
        if not (isinstance(value, type) and issubclass(value, BaseException)):
            continue
        if value.__module__ != "smtpsec.smtplib":
            assert value.__module__ == "smtplib", name  # the stdlib's own classes
            continue
        assert issubclass(value, smtpsec.SMTPSecError), name
        assert issubclass(value, (std_smtplib.SMTPException, OSError)), name
        assert value.__doc__, name


# --------------------------------------------------------------------------- vocabulary

_NATIVE_WORDS = ("Policy(", "Security.", "auth=", "token=")


def _drop_in_failures(srv_factory: Any, ca: Any) -> list[str]:
    """Messages of the drop-in's common failures, each caught as smtplib code would."""
    messages: list[str] = []

    def caught(action: Any) -> None:
        try:
            action()
        except (std_smtplib.SMTPException, OSError) as exc:
            messages.append(str(exc))
        else:  # pragma: no cover - each action must fail
            raise AssertionError("expected a failure")

    untrusted = srv_factory(Security.IMPLICIT_TLS)
    caught(lambda: smtplib.SMTP_SSL("localhost", untrusted.port))
    stripped = srv_factory(Security.STARTTLS, strip_starttls=True)
    caught(lambda: smtplib.SMTP("localhost", stripped.port).starttls())
    token_only = srv_factory(Security.IMPLICIT_TLS, auth_mechanisms=("XOAUTH2",))
    context = ca.client_context()

    def login_token_only() -> None:
        with smtplib.SMTP_SSL("localhost", token_only.port, context=context) as client:
            client.login(USER, PASSWORD)

    caught(login_token_only)
    unimplemented = srv_factory(
        Security.IMPLICIT_TLS, users={USER: PASSWORD}, auth_reply=(504, "5.5.4 not here")
    )

    def login_504() -> None:
        with smtplib.SMTP_SSL("localhost", unimplemented.port, context=context) as client:
            client.login(USER, PASSWORD)

    caught(login_504)
    return messages


def test_drop_in_messages_name_drop_in_fixes(smtpsec_server: Any, smtpsec_ca: Any) -> None:
    messages = _drop_in_failures(smtpsec_server, smtpsec_ca)
    assert len(messages) == 4
    for text in messages:
        for word in _NATIVE_WORDS:
            assert word not in text, text
    certificate, stripped, token_only, unimplemented = messages
    assert "starttls(context=" in certificate
    assert "SMTP_SSL(host, 465" in stripped
    assert "auth('XOAUTH2', authobject)" in token_only
    assert "auth(" in unimplemented


def test_scram_cap_advice_in_drop_in_words(smtpsec_server: Any, smtpsec_ca: Any) -> None:
    """A server asking more SCRAM iterations than allowed: the fix is another mechanism."""
    sent = threading.Event()

    def hook(session: HookSession, line: str) -> bytes | None:
        if line.upper().startswith("AUTH SCRAM-SHA-256"):
            import base64

            first = base64.b64decode(line.split(" ")[2]).decode()
            nonce = first.split("r=", 1)[1]
            challenge = f"r={nonce}srv,s={base64.b64encode(b'salt').decode()},i=50000000"
            sent.set()
            return b"334 " + base64.b64encode(challenge.encode()) + b"\r\n"
        return None

    srv = smtpsec_server(
        Security.IMPLICIT_TLS,
        users={USER: PASSWORD},
        auth_mechanisms=("SCRAM-SHA-256",),
        on_command=hook,
    )
    with smtplib.SMTP_SSL("localhost", srv.port, context=smtpsec_ca.client_context()) as client:
        with pytest.raises(std_smtplib.SMTPAuthenticationError) as info:
            client.login(USER, PASSWORD)
    assert sent.is_set()
    text = str(info.value)
    assert "50,000,000" in text
    assert "auth('PLAIN'" in text
    for word in _NATIVE_WORDS[:2]:
        assert word not in text
