"""Connect to a server with a private CA or a self-signed certificate, safely.

The usual advice for "certificate verify failed" is to turn verification off,
which accepts any attacker's certificate too. smtpsec has no such switch. This
script shows the three proper answers instead:

1. trust the private CA: ``Policy(cafile="ca.pem")`` (fully verified);
2. additionally pin the server's key: ``Policy(cafile=..., pins={...})``;
3. for a self-signed server you set up yourself, pin its key *instead of* a CA:
   ``Policy(pins={...}, pinned_instead_of_ca=True)``. Such a session is
   authenticated but, per RFC 8314 §5.3, not reported as confidential, and
   smtpsec will not send a password over it.

By default it builds a private CA and a self-signed certificate and runs test
servers on loopback. For a real server behind a private CA::

    SMTPSEC_HOST=mail.internal.example SMTPSEC_CAFILE=/etc/ssl/internal-ca.pem \\
    python examples/private_ca.py

Optional: ``SMTPSEC_PORT`` (default 465; others use required STARTTLS) and
``SMTPSEC_PIN`` (``sha256/<base64>``, checked in addition to the CA).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import smtpsec
from smtpsec import Security
from smtpsec.testing import CA, SMTPServer


def show(
    label: str, host: str, port: int, policy: smtpsec.Policy, security: smtpsec.Security
) -> None:
    """Open and close a session; print the outcome in one line."""
    try:
        with smtpsec.connect(host, port, security=security, policy=policy) as session:
            r = session.report
            print(f"{label}: verified={r.verified} pinned={r.pinned} confidential={r.confidential}")
    except smtpsec.SecurityError as exc:
        print(f"{label}: refused, {type(exc).__name__}: {exc}")


def main() -> int:
    """Check SMTPSEC_HOST if set, else demonstrate all three answers locally."""
    host = os.environ.get("SMTPSEC_HOST")
    if host:
        port = int(os.environ.get("SMTPSEC_PORT", "465"))
        pin = os.environ.get("SMTPSEC_PIN")
        policy = smtpsec.Policy(
            cafile=os.environ["SMTPSEC_CAFILE"], pins=frozenset({pin} if pin else ())
        )
        security = smtpsec.Security.IMPLICIT_TLS if port == 465 else smtpsec.Security.STARTTLS
        show(host, host, port, policy, security)
        return 0

    implicit = smtpsec.Security.IMPLICIT_TLS
    ca = CA.create("Example Corp internal CA")
    leaf = ca.issue("localhost", ips=("127.0.0.1",))
    with (
        tempfile.TemporaryDirectory() as tmp,
        SMTPServer(leaf, tls=Security.IMPLICIT_TLS) as server,
    ):
        cafile = str(ca.write_cafile(Path(tmp) / "internal-ca.pem"))
        show("public roots only", "localhost", server.port, smtpsec.Policy(), implicit)
        show("private CA", "localhost", server.port, smtpsec.Policy(cafile=cafile), implicit)
        pinned = smtpsec.Policy(cafile=cafile, pins=frozenset({leaf.spki_sha256_pin}))
        show("private CA + pin", "localhost", server.port, pinned, implicit)
        wrong = smtpsec.Policy(cafile=cafile, pins=frozenset({CA.self_signed("x").spki_sha256_pin}))
        show("private CA + wrong pin", "localhost", server.port, wrong, implicit)

    self_signed = CA.self_signed("localhost")
    with SMTPServer(self_signed, tls=Security.IMPLICIT_TLS) as server:
        show("self-signed", "localhost", server.port, smtpsec.Policy(), implicit)
        # The pin comes from the certificate you installed on the server, not
        # from whatever the network presents when you first connect.
        pin_only = smtpsec.Policy(
            pins=frozenset({self_signed.spki_sha256_pin}), pinned_instead_of_ca=True
        )
        show("self-signed + pin", "localhost", server.port, pin_only, implicit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
