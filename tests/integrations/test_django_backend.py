"""The Django email backend, driven through Django's real mail API against loopback servers.

These tests configure it with the ``EMAIL_*`` settings: the only way on Django 4.2
and 5.2, and still supported (deprecated) on 6.1 when ``MAILERS`` is not set. The
``MAILERS`` configuration is tested in ``test_django_mailers.py``.

Requirement IDs: R-8314-5.2-1 (TLS required by default), R-PY-6 (no "STARTTLS if
offered"), R-8314-5.1-7 (no credentials before TLS), R-8314-5.5 (client certificates).
"""

from __future__ import annotations

import socket
import warnings
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import django
import pytest
from django.core import mail
from django.core.exceptions import ImproperlyConfigured
from django.test.utils import override_settings
from django_kit import finished, legacy_settings_allowed

from smtpsec import (
    ConnectError,
    InvalidArgumentError,
    Policy,
    RecipientsRefused,
    Security,
    SMTPSecError,
    TLSUnavailableError,
)
from smtpsec.integrations.django import DEFAULT_TIMEOUT, EmailBackend, _envelope_address
from smtpsec.testing import CA, LeafCert, SMTPServer

pytestmark = [
    # A deprecation warning whose origin is smtpsec fails the test.
    pytest.mark.filterwarnings(r"error::DeprecationWarning:smtpsec(\.|$)"),
    pytest.mark.filterwarnings(r"error::PendingDeprecationWarning:smtpsec(\.|$)"),
    # This module tests the EMAIL_* configuration (Django 4.2 and 5.2), which
    # Django 6.1 deprecates; what the tests themselves set or call on purpose
    # is not smtpsec's warning.
    pytest.mark.filterwarnings(r"ignore:The EMAIL_\w+ setting is deprecated"),
    pytest.mark.filterwarnings(r"ignore:get_connection\(\) is deprecated"),
    pytest.mark.filterwarnings(r"ignore:The 'fail_silently' argument is deprecated"),
]

USER = "ann"
PASSWORD = "canary-django-7f3a9"  # a canary: it must never appear before TLS
BACKEND = "smtpsec.integrations.django.EmailBackend"


@pytest.fixture
def settings_for(trusting_policy: Policy) -> Iterator[Any]:
    """Return a function that applies EMAIL_* settings pointing at a server."""
    active: list[override_settings] = []

    def apply(server: SMTPServer, **extra: Any) -> None:
        values: dict[str, Any] = {
            "EMAIL_HOST": "localhost",
            "EMAIL_PORT": server.port,
            "EMAIL_HOST_USER": USER,
            "EMAIL_HOST_PASSWORD": PASSWORD,
            "EMAIL_USE_TLS": False,
            "EMAIL_USE_SSL": False,
            "EMAIL_TIMEOUT": None,
            "EMAIL_SSL_CERTFILE": None,
            "EMAIL_SSL_KEYFILE": None,
            "SMTPSEC_POLICY": trusting_policy,
            "SMTPSEC_SECURITY": None,
        }
        values.update(extra)
        override = override_settings(**values)
        with legacy_settings_allowed():
            override.enable()
        active.append(override)

    yield apply
    with legacy_settings_allowed():
        for override in reversed(active):
            override.disable()


def _server(factory: Any, tls: Security = Security.STARTTLS, **options: Any) -> SMTPServer:
    options.setdefault("users", {USER: PASSWORD})
    server: SMTPServer = factory(tls, **options)
    return server


def _messages(count: int, **kwargs: Any) -> list[mail.EmailMessage]:
    return [
        mail.EmailMessage(
            f"batch {i}", f"body {i}", "ann@example.test", [f"r{i}@example.test"], **kwargs
        )
        for i in range(count)
    ]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- delivery


def test_send_mail_over_implicit_tls_with_email_use_ssl(
    smtpsec_server: Any, settings_for: Any
) -> None:
    """EMAIL_USE_SSL → Security.IMPLICIT_TLS; the password travels only inside TLS."""
    srv = _server(smtpsec_server, Security.IMPLICIT_TLS, require_auth=True)
    settings_for(srv, EMAIL_USE_SSL=True)
    sent = mail.send_mail("Hi", "Body text", "ann@example.test", ["bob@example.test"])
    assert sent == 1
    (capture,) = finished(srv, 1)
    assert capture.tls
    assert capture.auth[0].success and capture.auth[0].username == USER
    (msg,) = srv.messages
    assert msg.sender == "ann@example.test"
    assert msg.recipients == ("bob@example.test",)
    assert msg.tls
    assert b"Subject: Hi" in msg.data


def test_email_use_tls_is_required_starttls_and_bcc_goes_only_in_the_envelope(
    smtpsec_server: Any, settings_for: Any
) -> None:
    """EMAIL_USE_TLS → required STARTTLS; Bcc recipients are in RCPT, never in headers."""
    srv = _server(smtpsec_server, Security.STARTTLS)
    settings_for(srv, EMAIL_USE_TLS=True)
    message = mail.EmailMessage(
        "Hidden",
        "Body",
        "ann@example.test",
        ["to@example.test"],
        bcc=["hidden@example.test"],
        cc=["cc@example.test"],
    )
    assert message.send() == 1
    (capture,) = finished(srv, 1)
    assert capture.pre_tls_verbs_subset_of({"EHLO", "STARTTLS", "QUIT"})
    assert capture.secrets_leaked(PASSWORD) == []
    (msg,) = srv.messages
    assert msg.recipients == ("to@example.test", "cc@example.test", "hidden@example.test")
    assert b"hidden@example.test" not in msg.data
    assert b"Bcc" not in msg.data


def test_neither_flag_still_requires_tls(smtpsec_server: Any, settings_for: Any) -> None:
    """No EMAIL_USE_* flag → Security.AUTO: STARTTLS, required (R-8314-5.2-1)."""
    srv = _server(smtpsec_server, Security.STARTTLS)
    settings_for(srv)
    backend = mail.get_connection()
    assert isinstance(backend, EmailBackend)
    assert backend.security is Security.AUTO
    assert mail.send_mail("s", "b", "ann@example.test", ["bob@example.test"]) == 1
    assert srv.connections[0].commands_pre_tls == ["EHLO", "STARTTLS"]


def test_without_password_no_auth_is_attempted(smtpsec_server: Any, settings_for: Any) -> None:
    """Like Django: a user name without a password does not log in."""
    srv = _server(smtpsec_server)
    settings_for(srv, EMAIL_HOST_PASSWORD="")
    assert mail.send_mail("s", "b", "ann@example.test", ["bob@example.test"]) == 1
    assert "AUTH" not in finished(srv, 1)[0].commands


# --------------------------------------------------------------------------- batches


def test_batches_reuse_one_connection_per_open(smtpsec_server: Any, settings_for: Any) -> None:
    """One TCP connection serves every batch between open() and close()."""
    srv = _server(smtpsec_server)
    settings_for(srv)
    connection = mail.get_connection()
    assert connection.open() is True
    assert connection.open() is False  # already open: reused
    assert connection.send_messages(_messages(3)) == 3
    assert connection.send_messages(_messages(2)) == 2
    connection.close()
    assert len(finished(srv, 1)) == 1
    assert len(srv.messages) == 5
    # Pipelined: a single AUTH, then five transactions on the same connection.
    assert srv.connections[0].commands_post_tls.count("AUTH") == 1
    assert srv.connections[0].commands_post_tls.count("MAIL") == 5


def test_consecutive_requests_reuse_one_authenticated_session(
    smtpsec_server: Any, settings_for: Any
) -> None:
    """Each send_mail() is a new backend (as in a web request); the session is pooled."""
    srv = _server(smtpsec_server)
    settings_for(srv)
    connection = mail.get_connection()
    assert connection.send_messages(_messages(2)) == 2
    assert connection.connection is None  # nothing left open on the backend itself
    for n in range(3):
        assert mail.send_mail(f"request {n}", "b", "ann@example.test", ["bob@example.test"]) == 1
    (capture,) = finished(srv, 1)
    assert len(capture.messages) == 5
    assert len(capture.auth) == 1  # one login for all of them
    assert len(srv.connections) == 1


def test_context_manager_opens_and_closes(smtpsec_server: Any, settings_for: Any) -> None:
    srv = _server(smtpsec_server)
    settings_for(srv)
    with mail.get_connection() as connection:
        assert connection.send_messages(_messages(1)) == 1
        assert connection.send_messages(_messages(1)) == 1
    assert connection.connection is None
    assert len(finished(srv, 1)) == 1


def test_empty_batch_opens_nothing(smtpsec_server: Any, settings_for: Any) -> None:
    srv = _server(smtpsec_server)
    settings_for(srv)
    assert mail.get_connection().send_messages([]) == 0
    assert srv.connections == []


def test_message_without_recipients_is_skipped(smtpsec_server: Any, settings_for: Any) -> None:
    srv = _server(smtpsec_server)
    settings_for(srv)
    nobody = mail.EmailMessage("s", "b", "ann@example.test", [])
    assert mail.get_connection().send_messages([nobody, *_messages(1)]) == 1
    assert len(srv.messages) == 1


def test_reopens_after_the_session_was_closed(smtpsec_server: Any, settings_for: Any) -> None:
    srv = _server(smtpsec_server)
    settings_for(srv)
    connection = mail.get_connection()
    connection.open()
    assert connection.connection is not None
    connection.connection.close()  # e.g. the server dropped it
    assert connection.open() is True
    connection.close()
    connection.close()  # closing twice is harmless
    assert len(finished(srv, 2)) == 2


def test_envelope_sender_differs_from_from_header(smtpsec_server: Any, settings_for: Any) -> None:
    """from_email is the envelope sender even when a From header overrides the display.

    Such messages cannot join the pipelined batch (smtpsec would derive the
    envelope from the headers) and are sent with an explicit envelope, in order.
    """
    srv = _server(smtpsec_server)
    settings_for(srv)
    odd = mail.EmailMessage(
        "news",
        "b",
        "bounces@example.test",
        ["reader@example.test"],
        headers={"From": "News <news@example.test>"},
    )
    first, last = _messages(2)
    assert mail.get_connection().send_messages([first, odd, last]) == 3
    senders = [m.sender for m in srv.messages]
    assert senders == ["ann@example.test", "bounces@example.test", "ann@example.test"]
    assert b"From: News <news@example.test>" in srv.messages[1].data
    assert len(finished(srv, 1)) == 1


class _TwoResentBlocks(mail.EmailMessage):
    """A message whose headers smtpsec cannot turn into an envelope by itself."""

    def message(self, *args: Any, **kwargs: Any) -> Message:
        msg: Message = super().message(*args, **kwargs)
        msg["Resent-Date"] = "Mon, 1 Jan 2024 00:00:00 +0000"
        msg["Resent-Date"] = "Tue, 2 Jan 2024 00:00:00 +0000"
        return msg


def test_headers_without_a_derivable_envelope_use_the_explicit_one(
    smtpsec_server: Any, settings_for: Any
) -> None:
    """Never batched; either sent with Django's envelope or refused before any byte of it."""
    srv = _server(smtpsec_server)
    settings_for(srv)
    message = _TwoResentBlocks("s", "b", "ann@example.test", ["bob@example.test"])
    try:
        sent = mail.get_connection().send_messages([message])
    except InvalidArgumentError:  # smtpsec refuses ambiguous Resent- blocks (fails closed)
        assert srv.messages == []
    else:
        assert sent == 1
        assert srv.messages[0].recipients == ("bob@example.test",)


# --------------------------------------------------------------------------- failures


def test_stripped_starttls_fail_silently_sends_nothing(
    smtpsec_server: Any, settings_for: Any
) -> None:
    """R-PY-6: a stripped server gets no AUTH and no mail; fail_silently returns 0."""
    srv = _server(
        smtpsec_server, strip_starttls=True, require_tls=False, pre_tls_auth=("PLAIN", "LOGIN")
    )
    settings_for(srv, EMAIL_USE_TLS=True)
    sent = mail.send_mail("s", "b", "ann@example.test", ["bob@example.test"], fail_silently=True)
    assert sent == 0
    (capture,) = finished(srv, 1)
    assert srv.messages == []
    assert capture.auth == []
    assert capture.secrets_leaked(PASSWORD) == []


def test_stripped_starttls_error_propagates(smtpsec_server: Any, settings_for: Any) -> None:
    srv = _server(smtpsec_server, strip_starttls=True, require_tls=False, pre_tls_auth=("PLAIN",))
    settings_for(srv)
    with pytest.raises(TLSUnavailableError):
        mail.send_mail("s", "b", "ann@example.test", ["bob@example.test"])
    assert srv.messages == []
    assert finished(srv, 1)[0].secrets_leaked(PASSWORD) == []


def test_unreachable_server(settings_for: Any, smtpsec_server: Any) -> None:
    srv = _server(smtpsec_server)
    settings_for(srv, EMAIL_PORT=_closed_port())
    with pytest.raises(ConnectError):
        mail.send_mail("s", "b", "ann@example.test", ["bob@example.test"])
    backend = mail.get_connection(fail_silently=True)
    assert backend.open() is None
    assert backend.connection is None


def test_unreadable_ca_file_fails_like_django(
    smtpsec_server: Any, settings_for: Any, tmp_path: Path
) -> None:
    """An OSError from open() propagates, or is swallowed with fail_silently (Django's rule)."""
    srv = _server(smtpsec_server)
    settings_for(srv, SMTPSEC_POLICY=Policy(cafile=str(tmp_path / "missing.pem")))
    with pytest.raises(OSError, match="No such file"):
        mail.send_mail("s", "b", "ann@example.test", ["bob@example.test"])
    assert mail.send_mail("s", "b", "a@example.test", ["b@example.test"], fail_silently=True) == 0
    assert srv.messages == []


def test_refused_message_raises_after_the_batch_or_is_counted_silently(
    smtpsec_server: Any, settings_for: Any
) -> None:
    """A refused message raises its error; the other messages of the batch still went out."""
    srv = _server(
        smtpsec_server, refuse_recipients={"bad@example.test": (550, "5.1.1 no such user")}
    )
    settings_for(srv)
    good1, good2 = _messages(2)
    bad = mail.EmailMessage("s", "b", "ann@example.test", ["bad@example.test"])
    with pytest.raises(RecipientsRefused) as info:
        mail.get_connection().send_messages([good1, bad, good2])
    assert "bad@example.test" in info.value.refused
    assert len(srv.messages) == 2
    assert mail.get_connection(fail_silently=True).send_messages([good1, bad, good2]) == 2


def test_refused_explicit_envelope_message_is_an_outcome(
    smtpsec_server: Any, settings_for: Any
) -> None:
    srv = _server(smtpsec_server, refuse_recipients={"bad@example.test": (550, "5.1.1 no")})
    settings_for(srv)
    bad = mail.EmailMessage(
        "s", "b", "bounce@example.test", ["bad@example.test"], headers={"From": "x@example.test"}
    )
    assert mail.get_connection(fail_silently=True).send_messages([bad, *_messages(1)]) == 1


def test_connection_lost_during_batch(smtpsec_server: Any, settings_for: Any) -> None:
    srv = _server(smtpsec_server, close_after="MAIL")
    settings_for(srv)
    with pytest.raises(SMTPSecError):
        mail.get_connection().send_messages(_messages(1))
    assert mail.get_connection(fail_silently=True).send_messages(_messages(2)) == 0
    assert srv.messages == []


def test_nothing_more_is_tried_on_a_dead_connection(smtpsec_server: Any, settings_for: Any) -> None:
    """After the connection dies, later messages of the batch fail as not sent."""
    srv = _server(smtpsec_server, close_after="MAIL")
    settings_for(srv)
    first, last = _messages(2)
    odd = mail.EmailMessage(
        "s", "b", "bounce@example.test", ["r@example.test"], headers={"From": "x@example.test"}
    )
    with pytest.raises(ConnectError):
        mail.get_connection().send_messages([first, odd, last])
    assert srv.messages == []
    assert len(finished(srv, 1)) == 1


# --------------------------------------------------------------------------- configuration


def test_both_flags_are_improperly_configured(settings_for: Any, smtpsec_server: Any) -> None:
    settings_for(_server(smtpsec_server), EMAIL_USE_TLS=True, EMAIL_USE_SSL=True)
    with pytest.raises(ImproperlyConfigured, match="mutually exclusive"):
        mail.get_connection()


def test_constructor_arguments_override_settings(smtpsec_server: Any, settings_for: Any) -> None:
    srv = _server(smtpsec_server, Security.IMPLICIT_TLS, require_auth=True)
    settings_for(srv, EMAIL_PORT=_closed_port(), EMAIL_HOST_USER="nobody", EMAIL_HOST_PASSWORD="x")
    backend = mail.get_connection(
        BACKEND,
        host="localhost",
        port=srv.port,
        username=USER,
        password=PASSWORD,
        use_ssl=True,
        timeout=5,
    )
    assert backend.timeout == 5.0
    assert backend.security is Security.IMPLICIT_TLS
    assert backend.send_messages(_messages(1)) == 1
    assert srv.connections[0].auth[0].username == USER


def test_timeout_defaults_to_30_seconds_not_forever(smtpsec_server: Any, settings_for: Any) -> None:
    settings_for(_server(smtpsec_server))
    assert EmailBackend().timeout == DEFAULT_TIMEOUT == 30.0
    with override_settings(EMAIL_TIMEOUT=7):
        assert EmailBackend().timeout == 7.0


def test_smtpsec_security_setting(smtpsec_server: Any, settings_for: Any) -> None:
    srv = _server(smtpsec_server, Security.IMPLICIT_TLS)
    settings_for(srv, SMTPSEC_SECURITY=Security.IMPLICIT_TLS)
    assert mail.send_mail("s", "b", "ann@example.test", ["bob@example.test"]) == 1
    assert srv.connections[0].tls
    with override_settings(SMTPSEC_SECURITY="implicit_tls"):
        assert EmailBackend().security is Security.IMPLICIT_TLS
    assert EmailBackend(security=Security.STARTTLS).security is Security.STARTTLS


@pytest.mark.parametrize(
    ("flags", "security", "message"),
    [
        ({}, "tls-please", "SMTPSEC_SECURITY must be one of"),
        ({"EMAIL_USE_SSL": True}, Security.STARTTLS, "EMAIL_USE_SSL asks for implicit TLS"),
        (
            {"EMAIL_USE_TLS": True},
            Security.IMPLICIT_TLS,
            "EMAIL_USE_TLS asks for required STARTTLS",
        ),
        (
            {"EMAIL_USE_TLS": True},
            Security.OPPORTUNISTIC,
            "EMAIL_USE_TLS asks for required STARTTLS",
        ),
    ],
)
def test_contradictory_security_settings(
    smtpsec_server: Any, settings_for: Any, flags: dict[str, bool], security: object, message: str
) -> None:
    settings_for(_server(smtpsec_server), SMTPSEC_SECURITY=security, **flags)
    with pytest.raises(ImproperlyConfigured, match=message):
        EmailBackend()


def test_smtpsec_policy_must_be_a_policy(smtpsec_server: Any, settings_for: Any) -> None:
    settings_for(_server(smtpsec_server), SMTPSEC_POLICY={"cafile": "ca.pem"})
    with pytest.raises(ImproperlyConfigured, match=r"must be a smtpsec\.Policy"):
        EmailBackend()


def test_default_policy_trusts_only_public_roots(smtpsec_server: Any, settings_for: Any) -> None:
    """Without SMTPSEC_POLICY the throwaway CA is not trusted: verification is never off."""
    srv = _server(smtpsec_server)
    settings_for(srv, SMTPSEC_POLICY=None)
    assert EmailBackend().policy == Policy()
    with pytest.raises(SMTPSecError, match="certificate verify failed"):
        mail.send_mail("s", "b", "ann@example.test", ["bob@example.test"])
    assert srv.messages == []


# --------------------------------------------------------------------------- client certificates


@pytest.fixture(scope="module")
def client_cert_files(
    smtpsec_ca: CA, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, Path]:
    """(certfile, keyfile, combined PEM) for a client certificate from the session CA."""
    leaf: LeafCert = smtpsec_ca.issue_client("ann@example.test")
    folder = tmp_path_factory.mktemp("client")
    certfile, keyfile = leaf.write(folder)
    combined = folder / "combined.pem"
    combined.write_bytes(leaf.cert_pem + leaf.key_pem)
    return certfile, keyfile, combined


def test_email_ssl_certfile_and_keyfile_present_a_client_certificate(
    smtpsec_server: Any, settings_for: Any, client_cert_files: tuple[Path, Path, Path]
) -> None:
    """R-8314-5.5: EMAIL_SSL_CERTFILE/KEYFILE become Policy(client_cert=...)."""
    certfile, keyfile, _combined = client_cert_files
    srv = _server(smtpsec_server, Security.IMPLICIT_TLS, request_client_cert=True)
    settings_for(
        srv, EMAIL_USE_SSL=True, EMAIL_SSL_CERTFILE=str(certfile), EMAIL_SSL_KEYFILE=keyfile
    )
    assert mail.send_mail("s", "b", "ann@example.test", ["bob@example.test"]) == 1
    assert finished(srv, 1)[0].client_cert_der is not None


def test_certfile_alone_holds_the_key(
    smtpsec_server: Any, settings_for: Any, client_cert_files: tuple[Path, Path, Path]
) -> None:
    _certfile, _keyfile, combined = client_cert_files
    settings_for(_server(smtpsec_server), EMAIL_SSL_CERTFILE=str(combined))
    assert EmailBackend().policy.client_cert == (str(combined), str(combined))


def test_keyfile_without_certfile_is_improperly_configured(
    smtpsec_server: Any, settings_for: Any, client_cert_files: tuple[Path, Path, Path]
) -> None:
    settings_for(_server(smtpsec_server), EMAIL_SSL_KEYFILE=str(client_cert_files[1]))
    with pytest.raises(ImproperlyConfigured, match="EMAIL_SSL_KEYFILE"):
        EmailBackend()


def test_client_cert_twice_is_improperly_configured(
    smtpsec_server: Any,
    settings_for: Any,
    client_cert_files: tuple[Path, Path, Path],
    ca_file: Path,
) -> None:
    certfile, keyfile, _combined = client_cert_files
    policy = Policy(cafile=str(ca_file), client_cert=(str(certfile), str(keyfile)))
    settings_for(_server(smtpsec_server), SMTPSEC_POLICY=policy, EMAIL_SSL_CERTFILE=str(certfile))
    with pytest.raises(ImproperlyConfigured, match="both set"):
        EmailBackend()
    assert EmailBackend(ssl_certfile="", policy=policy).policy is policy


# --------------------------------------------------------------------------- Django versions


def test_email_settings_path_raises_no_deprecation_warning(
    smtpsec_server: Any, settings_for: Any, deprecation_free: Any
) -> None:
    """No deprecation warning from building, sending or closing (Django 6.1 deprecates
    reading EMAIL_*, sanitize_address() and BaseEmailBackend's fail_silently)."""
    srv = _server(smtpsec_server)
    settings_for(srv, EMAIL_USE_TLS=True, EMAIL_TIMEOUT=10)
    messages = [
        mail.EmailMessage("s", "b", "Zoë <zoe@bücher.example>", ["bob@example.test"]),
        mail.EmailMessage("s", "b", "x@example.test", ["y@example.test"], bcc=["z@example.test"]),
    ]
    with deprecation_free():
        backend = EmailBackend(fail_silently=True)
        assert (backend.alias, backend.fail_silently, backend.timeout) == (None, True, 10.0)
        assert backend.send_messages(messages) == 2
        backend.close()
    assert len(srv.messages) == 2


def test_unknown_keyword_argument_is_a_type_error(settings_for: Any, smtpsec_server: Any) -> None:
    """A typo is not ignored (Django 4.2/5.2 would; 6.1 deprecates ignoring it)."""
    settings_for(_server(smtpsec_server))
    with pytest.raises(TypeError, match=r"unknown keyword argument.*'use_tsl'.*Check the spelling"):
        EmailBackend(use_tsl=True)
    with pytest.raises(TypeError, match="'hots'"):
        mail.get_connection(BACKEND, hots="smtp.example.test")


@pytest.mark.skipif(django.VERSION >= (6, 1), reason="Django 6.1 and later use MAILERS when set")
def test_mailers_setting_is_ignored_before_django_6_1(
    smtpsec_server: Any, settings_for: Any
) -> None:
    """Django 4.2/5.2 know no MAILERS; a project preparing for 6.1 still sends with EMAIL_*."""
    srv = _server(smtpsec_server)
    settings_for(srv, MAILERS={"default": {"BACKEND": BACKEND, "OPTIONS": {"host": "x.invalid"}}})
    assert mail.send_mail("s", "b", "ann@example.test", ["bob@example.test"]) == 1
    assert EmailBackend().host == "localhost"


# --------------------------------------------------------------------------- addresses


ADDRESSES: list[object] = [
    "a@example.com",
    "Ann <ann@example.com>",
    '"Doe, John" <jd@example.com>',
    "Zoë <zoe@bücher.example>",
    "zoe@BÜCHER.example",
    "Ñame Ñame <n@ñ.example>",
    "=?utf-8?q?Zo=C3=AB?= <zoe@example.com>",
    "webmaster",
    "jörg@example.com",
    '"john doe"@example.com',
    '"quoted\\"x"@example.com',
    "a@[127.0.0.1]",
    "<a@b.example>",
    "(comment) a@b.example",
    "a.b+tag@sub.example.com",
    ("Ann Ü", "ann@bücher.example"),
]
INVALID_ADDRESSES: list[object] = [
    "",
    "a@b.example, c@d.example",
    "a@b.example\nBcc: x@y.example",
    "Ann <ann@example.com> trailing",
    "undisclosed-recipients:;",
    "@example.com",
    "a@b@c",
    ("", "no-at-sign"),
    ("Ann", "ann@example.com\r\nBcc: x@y.example"),
]


@pytest.mark.parametrize("address", ADDRESSES + INVALID_ADDRESSES, ids=repr)
@pytest.mark.parametrize("encoding", ["utf-8", "iso-8859-1"])
def test_envelope_address_matches_djangos_sanitize_address(address: object, encoding: str) -> None:
    """Django 6.1 deprecates sanitize_address(); our replacement gives the same envelope."""
    message_module = pytest.importorskip("django.core.mail.message")
    sanitize_address = getattr(message_module, "sanitize_address", None)
    if sanitize_address is None:
        pytest.skip("this Django no longer has sanitize_address() to compare with")
    import email.utils

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            sanitized = sanitize_address(address, encoding)
        except ValueError:
            expected: str | None = None
        else:
            expected = email.utils.parseaddr(sanitized)[1] or sanitized
    if expected is None:
        with pytest.raises(ValueError, match="Invalid address"):
            _envelope_address(address, encoding)
    else:
        assert _envelope_address(address, encoding) == expected


def test_envelope_address_punycodes_domains_and_drops_display_names() -> None:
    assert _envelope_address("Zoë <zoe@bücher.example>", "utf-8") == "zoe@xn--bcher-kva.example"
    assert _envelope_address('"Doe, John" <jd@example.com>', "utf-8") == "jd@example.com"
    assert _envelope_address("webmaster", "utf-8") == "webmaster"  # Django allows it (#15042)
    with pytest.raises(ValueError, match="newlines"):
        _envelope_address(("Ann", "ann@example.com\nBcc: x@y.example"), "utf-8")


def test_idn_domain_and_non_ascii_display_name_end_to_end(
    smtpsec_server: Any, settings_for: Any
) -> None:
    """The envelope gets the punycode domain; the headers keep an encoded display name."""
    srv = _server(smtpsec_server)
    settings_for(srv)
    message = mail.EmailMessage(
        "s", "b", "Zoë Ünïcode <zoe@bücher.example>", ["Bø <bo@exämple.test>", "c@example.test"]
    )
    assert mail.get_connection().send_messages([message]) == 1
    (msg,) = srv.messages
    assert msg.sender == "zoe@xn--bcher-kva.example"
    assert msg.recipients == ("bo@xn--exmple-cua.test", "c@example.test")
    from_header = next(line for line in msg.data.split(b"\r\n") if line.startswith(b"From:"))
    assert b"=?utf-8?" in from_header.lower()  # RFC 2047 encoded-word, not raw UTF-8
    assert from_header.isascii()
