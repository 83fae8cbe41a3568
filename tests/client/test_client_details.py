"""Details of the blocking client: unverified server text, greeting timeouts, explicit
envelopes, Outgoing items, idle drops, and the one-shot send()."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import pytest

import smtpsec
from smtpsec import Security
from smtpsec._engine import run_sync
from smtpsec._types import QUIT_WAIT
from smtpsec.testing import CA, Drip, SMTPServer
from smtpsec.transports import MemoryTransport


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA.create()


@pytest.fixture(scope="module")
def policy(ca: CA, tmp_path_factory: pytest.TempPathFactory) -> smtpsec.Policy:
    return smtpsec.Policy(cafile=ca.write_cafile(tmp_path_factory.mktemp("ca") / "ca.pem"))


def _leaf(ca: CA):  # type: ignore[no-untyped-def]
    return ca.issue("localhost", ips=("127.0.0.1",))


def test_starttls_refusal_text_is_marked_unverified_r_east_ue_1(
    ca: CA, policy: smtpsec.Policy
) -> None:
    evil = "4.7.0 Visit http://evil.test to fix your account"
    with SMTPServer(_leaf(ca), tls=Security.STARTTLS, starttls_reply=(454, evil)) as srv:
        with pytest.raises(smtpsec.TLSUnavailableError) as info:
            smtpsec.connect("localhost", srv.port, policy=policy, timeout=3)
    err = info.value
    assert err.code == 454
    assert "evil.test" in err.text
    assert err.server_text_authenticated is False
    assert "unverified server text" in str(err)


def test_greeting_that_starts_but_never_ends_says_so(ca: CA, policy: smtpsec.Policy) -> None:
    drip = Drip(b"220 " + b"x" * 200 + b"\r\n", 0.05)
    with SMTPServer(_leaf(ca), tls=Security.STARTTLS, greeting=drip) as srv:
        with pytest.raises(smtpsec.TimeoutError, match="started a reply but did not finish"):
            smtpsec.connect("localhost", srv.port, policy=policy, timeout=1)


def _resent_message() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "ann@example.test"
    msg["To"] = "bob@example.test"
    for _ in range(2):
        msg["Resent-Date"] = "Fri, 27 Nov 2026 10:00:00 +0000"
        msg["Resent-From"] = "carl@example.test"
    msg.set_content("forwarded twice\n")
    return msg


def test_explicit_envelope_skips_ambiguous_resent_headers(ca: CA, policy: smtpsec.Policy) -> None:
    with SMTPServer(_leaf(ca), tls=Security.IMPLICIT_TLS) as srv:
        with smtpsec.connect(
            "localhost", srv.port, security=Security.IMPLICIT_TLS, policy=policy, timeout=3
        ) as session:
            with pytest.raises(smtpsec.InvalidArgumentError, match="Resent-"):
                session.send(_resent_message())
            result = session.send(
                _resent_message(), sender="carl@example.test", recipients=["dan@example.test"]
            )
        assert result.accepted == ("dan@example.test",)
        assert srv.messages[-1].recipients == ("dan@example.test",)


def test_send_many_with_outgoing_envelopes_and_bytes(ca: CA, policy: smtpsec.Policy) -> None:
    raw = b"Subject: raw\r\n\r\nhello\r\n"
    with SMTPServer(_leaf(ca), tls=Security.IMPLICIT_TLS) as srv:
        with smtpsec.connect(
            "localhost", srv.port, security=Security.IMPLICIT_TLS, policy=policy, timeout=3
        ) as session:
            outcomes = session.send_many(
                [
                    smtpsec.Outgoing(raw, sender="a@example.test", recipients=["b@example.test"]),
                    raw,  # bytes without an envelope cannot be sent: reported, not raised
                    smtpsec.Outgoing(raw, sender="c@example.test", recipients=["d@example.test"]),
                ]
            )
        assert isinstance(outcomes[0], smtpsec.SendResult)
        assert isinstance(outcomes[1], smtpsec.InvalidArgumentError)
        assert isinstance(outcomes[2], smtpsec.SendResult)
        assert [m.sender for m in srv.messages] == ["a@example.test", "c@example.test"]


def test_server_dropping_an_idle_session_gives_connect_error(
    ca: CA, policy: smtpsec.Policy
) -> None:
    """An idle drop is noticed before the next command is written (R-LIB-DESYNC-1)."""
    with SMTPServer(_leaf(ca), tls=Security.IMPLICIT_TLS, close_after="NOOP") as srv:
        with smtpsec.connect(
            "localhost", srv.port, security=Security.IMPLICIT_TLS, policy=policy, timeout=3
        ) as session:
            with pytest.raises(smtpsec.ConnectError):
                session.noop()
            srv.wait_for_connections(1, timeout=5)
            with pytest.raises(smtpsec.LocalProtocolError, match="closed"):
                session.noop()
            assert session.closed


def test_one_shot_send_and_file_body(ca: CA, policy: smtpsec.Policy, tmp_path: Path) -> None:
    body = tmp_path / "message.eml"
    body.write_bytes(b"Subject: from a file\n\nline one\n.line two\n")
    with SMTPServer(_leaf(ca), tls=Security.IMPLICIT_TLS, users={"ann": "pw"}) as srv:
        with body.open("rb") as fp:
            result = smtpsec.send(
                fp,
                host="localhost",
                port=srv.port,
                security=Security.IMPLICIT_TLS,
                username="ann",
                password="pw",
                policy=policy,
                sender="ann@example.test",
                recipients=["bob@example.test"],
                timeout=3,
            )
        assert result.size == len(b"Subject: from a file\r\n\r\nline one\r\n.line two\r\n")
        assert srv.messages[0].data.endswith(b"line one\r\n.line two\r\n")


def test_auto_without_port_falls_back_only_when_unreachable(
    refused_submission_ports: tuple[int, int],
) -> None:
    """Security.AUTO with no port tries 465 then 587; both unreachable → one ConnectError."""
    implicit, starttls = refused_submission_ports
    with pytest.raises(smtpsec.ConnectError, match="any submission port") as caught:
        smtpsec.connect("127.0.0.1", timeout=2)
    assert f"127.0.0.1:{implicit}" in str(caught.value)
    assert f"127.0.0.1:{starttls}" in str(caught.value)


def test_port_25_warns_that_it_is_for_relay() -> None:
    """R-6409-3.1-1: submission belongs on 465/587; port 25 gets a warning (before any I/O)."""
    with pytest.warns(smtpsec.SMTPSecWarning, match="relay"), pytest.raises(smtpsec.TimeoutError):
        smtpsec.connect_transport(MemoryTransport(), "mail.example.test", 25, timeout=0.1)


def test_close_waits_only_briefly_for_221(ca: CA, policy: smtpsec.Policy) -> None:
    """close() bounds the wait for 221 (not the whole reply timeout): QUIT goes out,
    the server never answers, and close() still returns and closes the connection."""
    with SMTPServer(_leaf(ca), tls=Security.IMPLICIT_TLS, replies={"QUIT": None}) as srv:
        session = smtpsec.connect(
            "localhost", srv.port, security=Security.IMPLICIT_TLS, policy=policy, timeout=600
        )
        session.close()
        assert session.closed
        capture = srv.wait_for_connections(1, timeout=10)[0]
        assert capture.commands_post_tls[-1] == "QUIT"


def _one_shot(srv: SMTPServer, policy: smtpsec.Policy, **options: object) -> smtpsec.SendResult:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "ann@example.test", "bob@example.test", "one shot"
    msg.set_content("hello\n")
    return smtpsec.send(
        msg,
        host="localhost",
        port=srv.port,
        security=Security.IMPLICIT_TLS,
        policy=policy,
        **options,  # type: ignore[arg-type]
    )


def test_one_shot_send_puts_quit_in_the_last_flight_after_bdat_last(
    ca: CA, policy: smtpsec.Policy
) -> None:
    """R-2920-3.1-1 (QUIT may end a group): with PIPELINING and CHUNKING the one-shot
    send's last write is MAIL, RCPT, BDAT LAST, the body and QUIT, so the 221 comes
    back with the message's reply instead of one round trip later."""
    with SMTPServer(_leaf(ca), tls=Security.IMPLICIT_TLS) as srv:
        result = _one_shot(srv, policy)
        capture = srv.wait_for_connections(1, timeout=10)[0]
    assert result.method == "BDAT"
    last = [data for tls, data in capture.segments if tls][-1]
    assert last.startswith(b"MAIL FROM:<ann@example.test>")
    assert last.endswith(srv.messages[0].data + b"QUIT\r\n")
    assert capture.commands_post_tls[-1] == "QUIT"


@pytest.mark.parametrize(
    ("extensions", "method"),
    [(("PIPELINING", "8BITMIME"), "DATA"), (("CHUNKING", "8BITMIME"), "BDAT")],
)
def test_one_shot_send_waits_for_the_message_before_quit_otherwise(
    ca: CA, policy: smtpsec.Policy, extensions: tuple[str, ...], method: str
) -> None:
    """Behind a DATA terminator (some servers refuse any command pipelined there) or
    without PIPELINING, QUIT is written alone after the message's final reply."""
    with SMTPServer(_leaf(ca), tls=Security.IMPLICIT_TLS, extensions=extensions) as srv:
        result = _one_shot(srv, policy)
        capture = srv.wait_for_connections(1, timeout=10)[0]
    assert result.method == method
    assert [data for tls, data in capture.segments if tls][-1] == b"QUIT\r\n"


def test_one_shot_send_with_quit_pipelined_waits_only_briefly_for_221(
    ca: CA, policy: smtpsec.Policy
) -> None:
    """The message is accepted, the 221 never comes: the one-shot path returns the
    result after the bounded QUIT wait (R-8314-3.4-2), not after the 600 s reply
    timeout. Run on a session to see the wait it used."""
    with SMTPServer(_leaf(ca), tls=Security.IMPLICIT_TLS, replies={"QUIT": None}) as srv:
        result = _one_shot(srv, policy, timeout=600)
        assert len(srv.messages) == 1
        session = smtpsec.connect(
            "localhost", srv.port, security=Security.IMPLICIT_TLS, policy=policy, timeout=600
        )
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "ann@example.test", "bob@example.test", "x"
        msg.set_content("hello\n")
        again = run_sync(session._send_one_steps(msg, None, None, None, then_quit=True))
        assert session.closed
        assert session._wire.timeout == QUIT_WAIT  # the 221 was awaited this long at most
    assert result.accepted == again.accepted == ("bob@example.test",)


def test_one_shot_send_refused_with_quit_pipelined_raises_the_refusal(
    ca: CA, policy: smtpsec.Policy
) -> None:
    """A refused sender is raised as SenderRefused; the QUIT in the flight changes nothing
    and nothing was delivered."""
    replies = {"MAIL": (550, "5.7.1 sender not allowed")}
    with SMTPServer(_leaf(ca), tls=Security.IMPLICIT_TLS, replies=replies) as srv:
        with pytest.raises(smtpsec.SenderRefused, match="550"):
            _one_shot(srv, policy)
        capture = srv.wait_for_connections(1, timeout=10)[0]
        assert srv.messages == []
    assert capture.commands_post_tls[-1] == "QUIT"
