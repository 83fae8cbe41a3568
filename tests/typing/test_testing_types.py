"""Static type checks of the test kit, ``smtpsec.testing`` (run by mypy --strict and pyright).

The checks live in functions nobody calls: pytest may collect this module
harmlessly, and the type checkers verify every ``assert_type`` below. They pin
down what a user's test sees: ``SMTPServer.ca`` is a ``CA`` (not ``CA | None``),
so ``Policy(cadata=srv.ca.cert_pem.decode())`` needs no ``assert ... is not
None``; the TLS mode is a ``Security`` member, never a string; and the
``smtpsec_server`` fixture is typed by ``ServerFactory``.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from typing_extensions import assert_type

import smtpsec
from smtpsec.testing import CA, Capture, LeafCert, ReceivedMessage, SMTPServer
from smtpsec.testing.plugin import ServerFactory


def _check_server_ca(tmp: Path) -> None:  # pragma: no cover - type-checked only
    with SMTPServer(tls=smtpsec.Security.STARTTLS, users={"ann": "pw"}) as srv:
        assert_type(srv, SMTPServer)
        assert_type(srv.ca, CA)  # non-optional: no narrowing needed
        assert_type(srv.ca.cert_pem, bytes)
        assert_type(srv.ca.write_cafile(tmp / "ca.pem"), Path)
        policy = smtpsec.Policy(cadata=srv.ca.cert_pem.decode())
        assert_type(policy, smtpsec.Policy)
        assert_type(srv.cert, LeafCert | None)
        assert_type(srv.port, int)
        assert_type(srv.client_context(), ssl.SSLContext)
        assert_type(srv.messages, list[ReceivedMessage])
        assert_type(srv.wait_for_connections(1), list[Capture])
    ca = CA.create()
    assert_type(SMTPServer(ca=ca).ca, CA)
    assert_type(SMTPServer(ca.issue("localhost"), ca=ca).ca, CA)


def _check_modes_are_enum_members() -> None:  # pragma: no cover - type-checked only
    SMTPServer(tls=smtpsec.Security.IMPLICIT_TLS)
    SMTPServer(tls=smtpsec.Security.PLAINTEXT)
    # A string is a type error (and a ValueError at run time); the ignore is
    # required: --strict reports an unused one.
    SMTPServer(tls="starttls")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def _check_fixture(smtpsec_server: ServerFactory, smtpsec_ca: CA) -> None:  # pragma: no cover
    srv = smtpsec_server(smtpsec.Security.STARTTLS, users={"ann": "pw"})
    assert_type(srv, SMTPServer)
    assert_type(srv.ca, CA)
    assert_type(smtpsec_server(cert=smtpsec_ca.issue("localhost")), SMTPServer)
