"""``smtpsec send``: message from a file or stdin, password never as an argument value.

Exit codes: 0 sent, 1 refused by the server, 2 security/connection/usage failure.
R-8314-5.1-7 and R-LIB-SECRETS-1: the password never travels before TLS and never
appears in output, not even with --debug.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import pytest

from smtpsec import Security
from smtpsec._cli import _parser, main

USER = "ann"
PASSWORD = "canary-cli-send-9d2e"
MESSAGE = (
    b"From: Ann <ann@example.test>\r\n"
    b"To: Bob <bob@example.test>\r\n"
    b"Subject: from the command line\r\n"
    b"\r\n"
    b"Hello.\r\n"
)


@pytest.fixture
def eml(tmp_path: Path) -> str:
    path = tmp_path / "message.eml"
    path.write_bytes(MESSAGE)
    return str(path)


def _stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


def _base(server: Any, cafile: str, *extra: str) -> list[str]:
    return [
        "send",
        "--host",
        "localhost",
        "--port",
        str(server.port),
        "--from",
        "ann@example.test",
        "--to",
        "bob@example.test",
        "--cafile",
        cafile,
        *extra,
    ]


def test_send_file_with_password_from_environment(
    smtpsec_server: Any,
    cafile: str,
    eml: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
    srv = smtpsec_server(Security.STARTTLS, users={USER: PASSWORD}, require_auth=True)
    code = main(
        _base(
            srv,
            cafile,
            "--to",
            "carol@example.test",
            "--user",
            USER,
            "--password-env",
            "SMTP_PASSWORD",
            eml,
        )
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "mode             starttls" in out
    assert "confidential     yes" in out
    assert f"authenticated    {USER} via PLAIN" in out
    assert "accepted         bob@example.test, carol@example.test" in out
    assert PASSWORD not in out + err
    (msg,) = srv.messages
    assert msg.recipients == ("bob@example.test", "carol@example.test")
    assert msg.data == MESSAGE
    assert srv.connections[0].secrets_leaked(PASSWORD) == []


def test_password_from_stdin_and_implicit_tls(
    smtpsec_server: Any,
    cafile: str,
    eml: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _stdin(monkeypatch, f"{PASSWORD}\n".encode())
    srv = smtpsec_server(Security.IMPLICIT_TLS, users={USER: PASSWORD}, require_auth=True)
    code = main(
        _base(srv, cafile, "--security", "implicit_tls", "--user", USER, "--password-stdin", eml)
    )
    out, _err = capsys.readouterr()
    assert code == 0
    assert "mode             implicit_tls" in out
    assert srv.connections[0].auth[0].success


def test_message_from_stdin(
    smtpsec_server: Any,
    cafile: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _stdin(monkeypatch, MESSAGE)
    srv = smtpsec_server(Security.STARTTLS)
    assert main(_base(srv, cafile, "-")) == 0
    assert srv.messages[0].data == MESSAGE
    assert "sent             " in capsys.readouterr().out


def test_there_is_no_password_option(capsys: pytest.CaptureFixture[str], eml: str) -> None:
    """A password in argv ends up in shell history and ps output: not accepted."""
    code = main(
        [
            "send",
            "--host",
            "h",
            "--from",
            "a@x.test",
            "--to",
            "b@x.test",
            "--user",
            "u",
            "--password",
            "pw",
            eml,
        ]
    )
    assert code == 2
    assert "unrecognized arguments" in capsys.readouterr().err
    options = {o for action in _parser()._actions for o in action.option_strings}
    assert "--password" not in options


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--user", USER, "EML"], "--user needs --password-env"),
        (["--password-env", "SMTP_PASSWORD", "EML"], "--user needs --password-env"),
        (
            ["--user", USER, "--password-env", "SMTPSEC_TEST_UNSET_VAR", "EML"],
            "SMTPSEC_TEST_UNSET_VAR is not set",
        ),
        (["--user", USER, "--password-stdin", "-"], "both want stdin"),
        (["/nonexistent/message.eml"], "cannot read /nonexistent/message.eml"),
        (["--cafile", "/nonexistent/ca.pem", "EML"], "cannot load --cafile /nonexistent/ca.pem"),
    ],
)
def test_usage_errors_are_one_line(
    smtpsec_server: Any,
    cafile: str,
    eml: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    extra: list[str],
    message: str,
) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
    monkeypatch.delenv("SMTPSEC_TEST_UNSET_VAR", raising=False)
    srv = smtpsec_server(Security.STARTTLS)
    code = main(_base(srv, cafile, *(eml if arg == "EML" else arg for arg in extra)))
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.count("\n") == 1
    assert srv.connections == []


def test_stripped_server_is_one_error_line_exit_2(
    smtpsec_server: Any,
    cafile: str,
    eml: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
    srv = smtpsec_server(
        Security.STARTTLS, strip_starttls=True, require_tls=False, pre_tls_auth=("PLAIN",)
    )
    code = main(_base(srv, cafile, "--user", USER, "--password-env", "SMTP_PASSWORD", eml))
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err.startswith("smtpsec: error: ")
    assert "does not offer STARTTLS" in err
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert srv.messages == []
    assert srv.connections[0].secrets_leaked(PASSWORD) == []


def test_debug_shows_traceback_and_redacted_transcript(
    smtpsec_server: Any,
    cafile: str,
    eml: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
    srv = smtpsec_server(Security.STARTTLS, users={USER: "another-password"})
    code = main(
        ["--debug", *_base(srv, cafile, "--user", USER, "--password-env", "SMTP_PASSWORD", eml)]
    )
    _out, err = capsys.readouterr()
    assert code == 2  # authentication failed: not a refusal of the message
    assert "Traceback" in err
    assert "AuthenticationError" in err
    assert "smtpsec.transcript: C: EHLO" in err
    assert "AUTH PLAIN <redacted>" in err
    assert PASSWORD not in err
    import base64

    assert base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode() not in err


def test_partly_refused_recipients_exit_1(
    smtpsec_server: Any, cafile: str, eml: str, capsys: pytest.CaptureFixture[str]
) -> None:
    srv = smtpsec_server(
        Security.STARTTLS, refuse_recipients={"gone@example.test": (550, "5.1.1 no such user")}
    )
    code = main(_base(srv, cafile, "--to", "gone@example.test", eml))
    out = capsys.readouterr().out
    assert code == 1
    assert "refused          gone@example.test: 550" in out
    assert srv.messages[0].recipients == ("bob@example.test",)


def test_all_recipients_refused_exit_1(
    smtpsec_server: Any, cafile: str, eml: str, capsys: pytest.CaptureFixture[str]
) -> None:
    srv = smtpsec_server(
        Security.STARTTLS, refuse_recipients={"bob@example.test": (550, "5.1.1 no such user")}
    )
    code = main(_base(srv, cafile, eml))
    out, err = capsys.readouterr()
    assert code == 1
    assert "refused          bob@example.test: 550" in out
    assert err.startswith("smtpsec: error: the server refused every recipient")
    assert srv.messages == []


def test_message_refused_exit_1(
    smtpsec_server: Any, cafile: str, eml: str, capsys: pytest.CaptureFixture[str]
) -> None:
    srv = smtpsec_server(Security.STARTTLS, replies={".": (554, "5.7.1 spam")})
    assert main(_base(srv, cafile, eml)) == 1
    assert "554" in capsys.readouterr().err


def test_interrupt_exits_130(
    smtpsec_server: Any,
    cafile: str,
    eml: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Interrupting(io.StringIO):
        def readline(self, size: int | None = -1) -> str:
            raise KeyboardInterrupt

    monkeypatch.setattr(sys, "stdin", Interrupting())
    srv = smtpsec_server(Security.STARTTLS)
    assert main(_base(srv, cafile, "--user", USER, "--password-stdin", eml)) == 130
    assert "interrupted" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [
        ["probe", "h", "--timeout", "0"],
        ["probe", "h", "--timeout", "soon"],
        ["probe", "h", "--port", "70000"],
        ["probe", "h", "--port", "smtp"],
        [
            "send",
            "--host",
            "h",
            "--from",
            "a@x.test",
            "--to",
            "b@x.test",
            "--security",
            "maybe",
            "-",
        ],
    ],
)
def test_bad_option_values(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 2
    assert "error:" in capsys.readouterr().err


# --------------------------------------------------------------------------- the envelope
# Without --from/--to the envelope comes from the headers, by the library's rule
# (Sender or From; To, Cc and Bcc), and the Bcc header is not transmitted.

HEADERS_ONLY = (
    b"From: Ann <ann@example.test>\r\n"
    b"To: Bob <bob@example.test>\r\n"
    b"Cc: carol@example.test\r\n"
    b"Bcc: dave@example.test\r\n"
    b"Subject: envelope from the headers\r\n"
    b"\r\n"
    b"Hello.\r\n"
)


def _send_args(server: Any, cafile: str, *extra: str) -> list[str]:
    return ["send", "--host", "localhost", "--port", str(server.port), "--cafile", cafile, *extra]


def test_envelope_from_the_headers(
    smtpsec_server: Any, cafile: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    eml = tmp_path / "headers.eml"
    eml.write_bytes(HEADERS_ONLY)
    srv = smtpsec_server(Security.STARTTLS)
    code = main(_send_args(srv, cafile, str(eml)))
    out, err = capsys.readouterr()
    assert code == 0, err
    (msg,) = srv.messages
    assert msg.sender == "ann@example.test"
    assert msg.recipients == ("bob@example.test", "carol@example.test", "dave@example.test")
    assert b"dave@example.test" not in msg.data  # Bcc: envelope only, never a header
    assert b"Subject: envelope from the headers" in msg.data
    assert "accepted         bob@example.test, carol@example.test, dave@example.test" in out


def test_only_the_missing_half_comes_from_the_headers(
    smtpsec_server: Any, cafile: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    eml = tmp_path / "headers.eml"
    eml.write_bytes(HEADERS_ONLY)
    srv = smtpsec_server(Security.STARTTLS)
    assert main(_send_args(srv, cafile, "--to", "erin@example.test", str(eml))) == 0
    assert main(_send_args(srv, cafile, "--from", "bounce@example.test", str(eml))) == 0
    first, second = srv.messages
    assert (first.sender, first.recipients) == ("ann@example.test", ("erin@example.test",))
    assert second.sender == "bounce@example.test"
    assert second.recipients == ("bob@example.test", "carol@example.test", "dave@example.test")
    capsys.readouterr()


def test_with_both_the_file_goes_as_it_is(smtpsec_server: Any, cafile: str, eml: str) -> None:
    srv = smtpsec_server(Security.STARTTLS)
    assert main(_base(srv, cafile, eml)) == 0
    assert srv.messages[0].data == MESSAGE  # byte for byte: nothing parsed or added


@pytest.mark.parametrize(
    ("message", "extra", "words"),
    [
        (b"To: b@example.test\r\n\r\nx\r\n", [], "has no Sender or From header; pass --from"),
        (b"From: a@example.test\r\n\r\nx\r\n", [], "has no To, Cc or Bcc header; pass --to"),
        (b"To: b@example.test\r\n\r\nx\r\n", ["--to", "c@example.test"], "pass --from"),
        (
            b"Resent-Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
            b"Resent-Date: Tue, 2 Jan 2024 00:00:00 +0000\r\nFrom: a@example.test\r\n\r\nx\r\n",
            [],
            "several Resent- header blocks; pass --from and --to",
        ),
    ],
)
def test_missing_headers_are_usage_errors_before_connecting(
    smtpsec_server: Any,
    cafile: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    message: bytes,
    extra: list[str],
    words: str,
) -> None:
    eml = tmp_path / "bare.eml"
    eml.write_bytes(message)
    srv = smtpsec_server(Security.STARTTLS)
    assert main(_send_args(srv, cafile, *extra, str(eml))) == 2
    err = capsys.readouterr().err
    assert words in err
    assert "sender=" not in err  # the CLI's words, not the library's
    assert err.count("\n") == 1
    assert srv.connections == []


def test_help_says_where_the_envelope_comes_from(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["send", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "default: FILE's Sender or From header" in text
    assert "default: FILE's To, Cc and Bcc headers" in text
    assert "With --from and --to, FILE is sent exactly as it is" in text


# --------------------------------------------------------------------------- host:port


def test_host_with_a_port(
    smtpsec_server: Any, cafile: str, eml: str, capsys: pytest.CaptureFixture[str]
) -> None:
    srv = smtpsec_server(Security.STARTTLS)
    args = ["send", "--host", f"localhost:{srv.port}", "--cafile", cafile, eml]
    assert main(args) == 0
    assert f"submission hop   localhost:{srv.port}" in capsys.readouterr().out
    assert len(srv.messages) == 1


@pytest.mark.parametrize(
    ("host", "port", "words"),
    [
        ("localhost:PORT", "587", "--host 'localhost:PORT' names port PORT, but --port 587"),
        ("localhost:smtp", None, "--host 'localhost:smtp' does not end in a port number"),
        ("localhost:99999", None, "port 99999 is out of range"),
    ],
)
def test_host_with_a_port_refused_before_connecting(
    smtpsec_server: Any,
    cafile: str,
    eml: str,
    capsys: pytest.CaptureFixture[str],
    host: str,
    port: str | None,
    words: str,
) -> None:
    srv = smtpsec_server(Security.STARTTLS)
    host = host.replace("PORT", str(srv.port))
    args = ["send", "--host", host, *(["--port", port] if port else []), "--cafile", cafile, eml]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert words.replace("PORT", str(srv.port)) in err
    assert "port=" not in err  # CLI words only
    assert err.count("\n") == 1
    assert srv.connections == []
