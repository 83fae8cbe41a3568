"""Catch a STARTTLS downgrade attempt: smtpsec refuses, and nothing leaks.

An attacker on the network path can delete ``STARTTLS`` from the server's
``EHLO`` reply, or answer ``STARTTLS`` with an error, hoping the client carries
on in cleartext and sends the password. smtpsec raises
``smtpsec.DowngradeError`` (here its subclass ``TLSUnavailableError``) instead,
after sending nothing but ``EHLO``, ``STARTTLS`` and ``QUIT``.

By default the script plays both attacks with smtpsec's test server and checks
the server's capture: the password never appeared. With ``SMTPSEC_HOST`` set,
it connects to that server with required STARTTLS and tells you whether the
path to it strips STARTTLS (run it from a network you do not trust)::

    SMTPSEC_HOST=smtp.example.com python examples/catch_downgrade.py

Optional: ``SMTPSEC_PORT`` (default 587), ``SMTPSEC_CAFILE`` (a private CA).
No credentials are needed or sent.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import smtpsec
from smtpsec import Security
from smtpsec.testing import SMTPServer

PASSWORD = "CANARY-PW-never-in-cleartext"


def attempt(server: SMTPServer) -> None:
    """Log in to a hostile local server and show that smtpsec refuses."""
    policy = smtpsec.Policy(cadata=server.ca.cert_pem.decode("ascii"))
    try:
        smtpsec.connect(
            "localhost",
            server.port,
            security=smtpsec.Security.STARTTLS,
            username="ann",
            password=PASSWORD,
            policy=policy,
        )
    except smtpsec.DowngradeError as exc:
        print(f"refused: {type(exc).__name__}: {exc}")
    else:
        raise AssertionError("smtpsec continued without TLS")
    (conn,) = server.wait_for_connections(1)
    print(f"  commands the server saw: {conn.commands}")
    assert conn.secrets_leaked(PASSWORD) == [], "the password leaked"
    assert conn.pre_tls_verbs_subset_of({"EHLO", "STARTTLS", "QUIT"})
    print("  password in cleartext: no")


def check_real_server(host: str, port: int, cafile: str | None) -> int:
    """Open (and close) a required-STARTTLS session; report a downgrade."""
    try:
        with smtpsec.connect(
            host, port, security=smtpsec.Security.STARTTLS, policy=smtpsec.Policy(cafile=cafile)
        ) as session:
            print(session.report)
    except smtpsec.DowngradeError as exc:
        print(f"DOWNGRADE on the path to {host}:{port}: {exc}")
        return 1
    return 0


def main() -> int:
    """Check SMTPSEC_HOST if set, else replay two attacks locally."""
    host = os.environ.get("SMTPSEC_HOST")
    if host:
        port = int(os.environ.get("SMTPSEC_PORT", "587"))
        return check_real_server(host, port, os.environ.get("SMTPSEC_CAFILE"))

    attacks: dict[str, dict[str, Any]] = {
        "STARTTLS stripped from EHLO": {"strip_starttls": True},
        "STARTTLS answered with 454": {"starttls_reply": (454, "4.7.0 TLS not available")},
    }
    for name, behaviour in attacks.items():
        print(f"attack: {name}")
        with SMTPServer(tls=Security.STARTTLS, users={"ann": PASSWORD}, **behaviour) as server:
            attempt(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
