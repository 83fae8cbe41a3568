"""``smtpsec demo``: show secure submission and two refused attacks, with no network.

Everything runs on loopback against :mod:`smtpsec.testing` servers and a CA
created for this run only; the client is the ordinary :func:`smtpsec.connect`
with ``Policy(cafile=...)``, exactly what a user would write.
"""

from __future__ import annotations

import secrets
import tempfile
import textwrap
import time
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Final, TextIO

from ..client import connect
from ..errors import CertificateError, SMTPSecError, TLSUnavailableError
from ..policy import Policy, Security
from ..testing import CA, LeafCert, SMTPServer

__all__ = ["run_demo"]

_HOST: Final = "localhost"
_USER: Final = "demo"
_WIDTH: Final = 100
_INDENT: Final = "      "


@dataclass(frozen=True, slots=True)
class _Setup:
    """What every step shares."""

    ca: CA
    leaf: LeafCert
    policy: Policy
    password: str
    out: TextIO


def _say(setup: _Setup, text: str = "", *, indent: str = _INDENT) -> None:
    if not text:
        print(file=setup.out)
        return
    for paragraph in text.splitlines():
        print(
            textwrap.fill(
                paragraph,
                _WIDTH,
                initial_indent=indent,
                subsequent_indent=indent + "  ",
                break_on_hyphens=False,
                break_long_words=False,
            ),
            file=setup.out,
        )


def _message(step: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Ann <ann@example.test>"
    msg["To"] = "Bob <bob@example.test>"
    msg["Subject"] = f"smtpsec demo: {step}"
    msg.set_content("Sent by `smtpsec demo` over verified TLS.\n")
    return msg


def _deliver(setup: _Setup, number: int, title: str, tls: Security, security: Security) -> bool:
    _say(setup, f"[{number}/4] {title}", indent="")
    with SMTPServer(setup.leaf, tls=tls, users={_USER: setup.password}, require_auth=True) as srv:
        _say(
            setup,
            f'smtpsec.connect("{_HOST}", {srv.port}, security=Security.{security.name}, '
            f'username="{_USER}", password=..., policy=Policy(cafile="ca.pem"))',
        )
        with connect(
            _HOST,
            srv.port,
            security=security,
            username=_USER,
            password=setup.password,
            policy=setup.policy,
            timeout=10.0,
        ) as session:
            result = session.send(_message(title))
            _say(setup, str(session.report))
        delivered = srv.messages
    _say(
        setup,
        f"result           {result.code} {result.text} (to {', '.join(result.accepted)}, "
        f"{result.size} octets by {result.method})",
    )
    good = (
        len(delivered) == 1
        and delivered[0].tls
        and session.report.verified
        and session.report.confidential
    )
    _verdict(setup, good, "delivered inside TLS with a verified certificate")
    return good


def _strip_attack(setup: _Setup) -> bool:
    _say(setup, "[3/4] attack: STARTTLS stripping", indent="")
    _say(
        setup,
        "The server (think: an attacker in the path) hides STARTTLS and offers AUTH PLAIN "
        "in cleartext, hoping the client logs in anyway.",
    )
    with SMTPServer(
        setup.leaf,
        tls=Security.STARTTLS,
        strip_starttls=True,
        require_tls=False,
        pre_tls_auth=("PLAIN", "LOGIN"),
        users={_USER: setup.password},
    ) as srv:
        error = _expect_refusal(setup, srv, Security.STARTTLS, TLSUnavailableError)
        capture = srv.wait_for_connections(1)[0]
    verbs = ", ".join(capture.commands) or "nothing"
    leaked = capture.secrets_leaked(setup.password)
    _say(
        setup,
        f"the server saw: {verbs}; AUTH attempts: {len(capture.auth)}; "
        f"password on the wire: {'YES' if leaked else 'no'}",
    )
    good = error and not capture.auth and not leaked and "AUTH" not in capture.commands
    _verdict(setup, good, "refused before any credential or message was sent")
    return good


def _wrong_name_attack(setup: _Setup) -> bool:
    _say(setup, "[4/4] attack: a certificate for another name", indent="")
    impostor = setup.ca.issue("mail.attacker.test")
    _say(
        setup,
        "The server presents a certificate signed by the trusted CA, but issued for "
        "mail.attacker.test, not localhost.",
    )
    with SMTPServer(impostor, tls=Security.IMPLICIT_TLS, users={_USER: setup.password}) as srv:
        error = _expect_refusal(setup, srv, Security.IMPLICIT_TLS, CertificateError)
        capture = srv.wait_for_connections(1)[0]
    _say(
        setup,
        f"the server saw: {', '.join(capture.commands) or 'no SMTP command at all'} "
        "(the TLS handshake was aborted by the client)",
    )
    good = error and not capture.commands and not capture.secrets_leaked(setup.password)
    _verdict(setup, good, "refused during the handshake; nothing was sent")
    return good


def _expect_refusal(
    setup: _Setup, srv: SMTPServer, security: Security, expected: type[SMTPSecError]
) -> bool:
    try:
        session = connect(
            _HOST,
            srv.port,
            security=security,
            username=_USER,
            password=setup.password,
            policy=setup.policy,
            timeout=10.0,
        )
    except SMTPSecError as exc:
        _say(setup, f"refused: {type(exc).__name__}: {exc}")
        return isinstance(exc, expected)
    session.close()
    _say(setup, "NOT refused: the client connected; this is a bug, please report it")
    return False


def _verdict(setup: _Setup, good: bool, text: str) -> None:
    _say(setup, f"ok: {text}" if good else f"UNEXPECTED: not {text}")
    _say(setup)


def run_demo(out: TextIO) -> int:
    """Run the demo, writing to ``out``.

    Args:
        out: where the readable output goes.

    Returns:
        0 when every step behaved as expected, 2 otherwise.
    """
    started = time.monotonic()
    ca = CA.create("smtpsec demo CA")
    leaf = ca.issue(_HOST, ips=("127.0.0.1", "::1"))
    with tempfile.TemporaryDirectory(prefix="smtpsec-demo-") as tmp:
        cafile = ca.write_cafile(Path(tmp) / "ca.pem")
        setup = _Setup(
            ca=ca,
            leaf=leaf,
            policy=Policy(cafile=str(cafile)),
            password="demo-" + secrets.token_urlsafe(12),
            out=out,
        )
        _say(setup, "smtpsec demo: secure SMTP submission, and two attacks it refuses", indent="")
        _say(
            setup,
            "No network: each step starts a loopback server; a CA made for this run is "
            "trusted with Policy(cafile=...), and certificates are verified as always.",
            indent="",
        )
        _say(setup)
        results = [
            _deliver(
                setup,
                1,
                "implicit TLS (the port 465 way)",
                Security.IMPLICIT_TLS,
                Security.IMPLICIT_TLS,
            ),
            _deliver(
                setup,
                2,
                "required STARTTLS (the port 587 way)",
                Security.STARTTLS,
                Security.STARTTLS,
            ),
            _strip_attack(setup),
            _wrong_name_attack(setup),
        ]
    elapsed = time.monotonic() - started
    if all(results):
        _say(
            setup,
            f"all 4 checks passed in {elapsed:.1f} s: mail went out only over verified TLS, "
            "and both attacks were refused before any secret left this machine.",
            indent="",
        )
        return 0
    _say(setup, f"{results.count(False)} of 4 checks did NOT behave as expected.", indent="")
    return 2
