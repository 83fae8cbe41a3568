"""Garbage at every boundary of the dialogue, through every front end.

A hostile or broken server answers one step of a STARTTLS submission (the
greeting, EHLO before and inside TLS, STARTTLS, AUTH, MAIL, RCPT, DATA, the
final reply) with bytes that are not a usable reply. Whatever it sends, each
front end must fail with a documented exception and report nothing as sent:

- the native client and :mod:`smtpsec.aio`: an :class:`smtpsec.SMTPSecError`;
- the smtplib drop-in: an exception that is both an :class:`smtpsec.SMTPSecError`
  and what smtplib code catches (``smtplib.SMTPException`` or ``OSError``);
- the CLI (``send`` and ``probe``): an exit code, a one-line error and no
  traceback.

Any other exception escaping a public call fails the test (pytest reports
it), so this holds the "only documented exceptions escape" rule of the
one-engine issue for each boundary.
"""

from __future__ import annotations

import asyncio
import smtplib as std_smtplib
import ssl
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Final

import pytest

import smtpsec
import smtpsec.aio
from smtpsec import Security, smtplib
from smtpsec._cli import main
from smtpsec.testing import DEFAULT_EXTENSIONS
from smtpsec.testing.plugin import ServerFactory

USER: Final = "ann"
PASSWORD: Final = "garbage-Pa55word"
TIMEOUT: Final = 5.0

#: Bytes that are not a reply a client may act on (each ends in CRLF, so a
#: client that waits for more would only time out: that is not the point here).
GARBAGE: Final = {
    "binary": b"\x00\xff\xfe\x80\x1b[2J\r\n",
    "no-code": b"hello there\r\n",
    "four-digit-code": b"2500 ok\r\n",
    "codes-disagree": b"250-first\r\n354 second\r\n",
    "overlong-line": b"250 " + b"x" * 5000 + b"\r\n",
    "endless-continuation": b"250-more\r\n" * 1200 + b"250 end\r\n",
}

#: Where the garbage goes: a Script answers that one step with it (with CHUNKING
#: offered the message goes by BDAT; the DATA case takes CHUNKING away).
BOUNDARIES: Final = (
    "greeting",
    "EHLO",
    "STARTTLS",
    "EHLO-in-TLS",
    "AUTH",
    "MAIL",
    "RCPT",
    "BDAT",
    "DATA",
    ".",
)


def _script(boundary: str, garbage: bytes) -> dict[str, Any]:
    """The :class:`smtpsec.testing.Script` fields that answer ``boundary`` with ``garbage``."""
    if boundary == "greeting":
        return {"greeting_raw": garbage}
    if boundary == "EHLO":
        return {"pre_tls_replies": {"EHLO": garbage}}
    if boundary == "EHLO-in-TLS":
        return {"post_tls_replies": {"EHLO": garbage}}
    if boundary == "DATA":  # without CHUNKING, so that the message goes by DATA
        kept = tuple(e for e in DEFAULT_EXTENSIONS if e != "CHUNKING")
        return {"replies": {"DATA": garbage}, "extensions": kept}
    return {"replies": {boundary: garbage}}


def _message() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "ann@example.test"
    msg["To"] = "bob@example.test"
    msg["Subject"] = "garbage"
    msg.set_content("hello")
    return msg


cases = pytest.mark.parametrize(
    ("boundary", "garbage"),
    [(b, g) for b in BOUNDARIES for g in GARBAGE],
    ids=[f"{b}-{g}" for b in BOUNDARIES for g in GARBAGE],
)


@pytest.fixture
def server(smtpsec_server: ServerFactory) -> Any:
    def start(boundary: str, garbage: str) -> Any:
        fields = _script(boundary, GARBAGE[garbage])
        return smtpsec_server(Security.STARTTLS, users={USER: PASSWORD}, **fields)

    return start


@cases
def test_native_client(server: Any, cafile: Path, boundary: str, garbage: str) -> None:
    srv = server(boundary, garbage)
    with pytest.raises(smtpsec.SMTPSecError):
        with smtpsec.connect(
            "localhost",
            srv.port,
            security=Security.STARTTLS,
            username=USER,
            password=PASSWORD,
            policy=smtpsec.Policy(cafile=cafile),
            timeout=TIMEOUT,
        ) as session:
            session.send(_message())
    assert srv.messages == []


@cases
def test_asyncio_client(server: Any, cafile: Path, boundary: str, garbage: str) -> None:
    srv = server(boundary, garbage)

    async def run() -> None:
        async with await smtpsec.aio.connect(
            "localhost",
            srv.port,
            security=Security.STARTTLS,
            username=USER,
            password=PASSWORD,
            policy=smtpsec.Policy(cafile=cafile),
            timeout=TIMEOUT,
        ) as session:
            await session.send(_message())

    with pytest.raises(smtpsec.SMTPSecError):
        asyncio.run(run())
    assert srv.messages == []


@cases
def test_smtplib_drop_in(server: Any, cafile: Path, boundary: str, garbage: str) -> None:
    srv = server(boundary, garbage)
    context = ssl.create_default_context(cafile=str(cafile))
    with pytest.raises((std_smtplib.SMTPException, OSError)) as info:
        with smtplib.SMTP("localhost", srv.port, timeout=TIMEOUT) as client:
            _drop_in_submission(client, context)
    assert isinstance(info.value, smtpsec.SMTPSecError), repr(info.value)
    assert srv.messages == []


def _drop_in_submission(client: smtplib.SMTP, context: ssl.SSLContext) -> None:
    client.starttls(context=context)
    client.login(USER, PASSWORD)
    client.sendmail("ann@example.test", ["bob@example.test"], b"Subject: x\r\n\r\nhi\r\n")


@cases
def test_cli_send(
    server: Any,
    cafile: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    boundary: str,
    garbage: str,
) -> None:
    srv = server(boundary, garbage)
    eml = tmp_path / "message.eml"
    eml.write_bytes(_message().as_bytes())
    monkeypatch.setenv("SMTPSEC_TEST_PASSWORD", PASSWORD)
    code = main(
        [
            "send",
            "--host=localhost",
            f"--port={srv.port}",
            "--security=starttls",
            "--from=ann@example.test",
            "--to=bob@example.test",
            f"--user={USER}",
            "--password-env=SMTPSEC_TEST_PASSWORD",
            f"--cafile={cafile}",
            f"--timeout={TIMEOUT}",
            str(eml),
        ]
    )
    err = capsys.readouterr().err
    assert code in (1, 2)
    assert "Traceback" not in err
    assert err.startswith("smtpsec: error: ")
    assert srv.messages == []


@pytest.mark.parametrize("garbage", list(GARBAGE))
@pytest.mark.parametrize("boundary", ["greeting", "EHLO", "STARTTLS", "EHLO-in-TLS"])
def test_cli_probe(
    server: Any, cafile: Path, capsys: pytest.CaptureFixture[str], boundary: str, garbage: str
) -> None:
    srv = server(boundary, garbage)
    code = main(
        [
            "probe",
            "localhost",
            f"--port={srv.port}",
            "--mode=starttls",
            f"--cafile={cafile}",
            f"--timeout={TIMEOUT}",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 2, out + err  # a server that cannot be used is a failure
    assert "Traceback" not in out + err


# --------------------------------------------------------------------------- QUIT

QUIT_ANSWERS: Final = {**GARBAGE, "refused": b"500 5.5.1 not now\r\n"}


@pytest.mark.parametrize("answer", list(QUIT_ANSWERS))
def test_a_bad_answer_to_quit_does_not_undo_a_delivery(
    smtpsec_server: ServerFactory, cafile: Path, answer: str
) -> None:
    """The server accepted the message before QUIT: the native client reports it sent."""
    srv = smtpsec_server(
        Security.STARTTLS, users={USER: PASSWORD}, replies={"QUIT": QUIT_ANSWERS[answer]}
    )
    with smtpsec.connect(
        "localhost",
        srv.port,
        security=Security.STARTTLS,
        username=USER,
        password=PASSWORD,
        policy=smtpsec.Policy(cafile=cafile),
        timeout=TIMEOUT,
    ) as session:
        result = session.send(_message())
    assert result.accepted == ("bob@example.test",)
    assert len(srv.messages) == 1


@pytest.mark.parametrize("answer", list(QUIT_ANSWERS))
def test_drop_in_with_block_reports_a_bad_quit_in_a_documented_class(
    smtpsec_server: ServerFactory, cafile: Path, answer: str
) -> None:
    """smtplib's ``__exit__`` raises when QUIT is not 221; here in a hybrid class."""
    srv = smtpsec_server(
        Security.STARTTLS, users={USER: PASSWORD}, replies={"QUIT": QUIT_ANSWERS[answer]}
    )
    context = ssl.create_default_context(cafile=str(cafile))
    with pytest.raises(std_smtplib.SMTPResponseException) as info:
        with smtplib.SMTP("localhost", srv.port, timeout=TIMEOUT) as client:
            _drop_in_submission(client, context)
    assert isinstance(info.value, smtpsec.SMTPSecError), repr(info.value)
    assert client.sock is None
    assert len(srv.messages) == 1
