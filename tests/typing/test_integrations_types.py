"""Static type checks for the integrations and the command line (run by mypy --strict).

The checks live in a function nobody calls: pytest may collect this module
harmlessly, and mypy verifies every ``assert_type`` below.
"""

from __future__ import annotations

import logging.handlers

from typing_extensions import assert_type

from smtpsec import Policy, Session
from smtpsec._cli import EXIT_FAILURE, EXIT_OK, EXIT_WARNING, main
from smtpsec.integrations.django import DEFAULT_TIMEOUT, EmailBackend
from smtpsec.integrations.logging import SMTPHandler
from smtpsec.policy import Security


def _check_types() -> None:  # pragma: no cover - never executed, type-checked only
    assert_type(main(["--version"]), int)
    assert_type(main(None), int)
    assert_type(main(("probe", "smtp.example.test", "--json")), int)
    assert_type(EXIT_OK, int)
    assert_type(EXIT_WARNING, int)
    assert_type(EXIT_FAILURE, int)

    handler = SMTPHandler(
        ("smtp.example.test", 465),
        "app@example.test",
        ["ops@example.test"],
        "Application error",
        credentials=("app", "secret"),
        secure=(),
        timeout=5.0,
        policy=Policy(cafile="/etc/ssl/private-ca.pem"),
        security=Security.AUTO,
    )
    assert isinstance(handler, logging.handlers.SMTPHandler)
    assert_type(handler.policy, Policy)
    assert_type(handler.security, Security)
    SMTPHandler("smtp.example.test", "a@example.test", "b@example.test", "s", secure=("key.pem",))
    SMTPHandler("h", "a@x.test", ["b@x.test"], "s", secure=("key.pem", "cert.pem"))

    backend = EmailBackend(
        host="smtp.example.test",
        port=465,
        username="app",
        password="secret",
        use_ssl=True,
        timeout=10,
        fail_silently=True,
        security=Security.IMPLICIT_TLS,
        policy=Policy(),
    )
    assert_type(backend.open(), bool | None)
    assert_type(backend.send_messages([]), int)
    assert_type(backend.connection, Session | None)
    assert_type(backend.security, Security)
    assert_type(backend.policy, Policy)
    assert_type(backend.timeout, float)
    assert_type(DEFAULT_TIMEOUT, float)
    assert_type(backend.alias, str | None)
    assert_type(backend.port, int)
    assert_type(backend.fail_silently, bool)
    backend.close()
    # As Django 6.1's mail.mailers builds it from MAILERS["default"]["OPTIONS"].
    EmailBackend(alias="default", host="smtp.example.test", use_tls=True, policy=Policy())
