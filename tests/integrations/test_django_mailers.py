"""The Django backend configured through Django 6.1's ``MAILERS`` setting, end to end.

Under ``MAILERS`` Django builds the backend as ``Backend(alias=..., **OPTIONS)``.
The options are those of Django's SMTP backend plus ``policy`` and ``security``;
the security rules are the same as with the ``EMAIL_*`` settings (R-8314-5.2-1,
R-PY-6, R-8314-5.1-7, R-8314-5.5), no ``EMAIL_*`` setting is read, and a typo is
Django's ``InvalidMailer``. Every test here needs Django 6.1 or later.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import django
import pytest
from django.core import mail
from django.core.exceptions import ImproperlyConfigured
from django.test.utils import override_settings
from django_kit import finished, legacy_settings_allowed

from smtpsec import Policy, Security, TLSUnavailableError
from smtpsec.integrations.django import DEFAULT_TIMEOUT, EmailBackend
from smtpsec.testing import CA, SMTPServer

pytestmark = [
    pytest.mark.skipif(
        django.VERSION < (6, 1),
        reason="MAILERS is new in Django 6.1; Django 4.2 and 5.2 use the EMAIL_* settings "
        "(tested in test_django_backend.py)",
    ),
    # A deprecation warning whose origin is smtpsec fails the test.
    pytest.mark.filterwarnings(r"error::DeprecationWarning:smtpsec(\.|$)"),
    pytest.mark.filterwarnings(r"error::PendingDeprecationWarning:smtpsec(\.|$)"),
]

USER = "ann"
PASSWORD = "canary-mailers-2c61d"  # a canary: it must never appear before TLS
BACKEND = "smtpsec.integrations.django.EmailBackend"


def _invalid_mailer() -> type[ImproperlyConfigured]:
    from django.core.mail import InvalidMailer  # Django 6.1+

    cls: type[ImproperlyConfigured] = InvalidMailer
    return cls


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server(factory: Any, tls: Security = Security.STARTTLS, **options: Any) -> SMTPServer:
    options.setdefault("users", {USER: PASSWORD})
    server: SMTPServer = factory(tls, **options)
    return server


@pytest.fixture
def mailers(trusting_policy: Policy) -> Iterator[Any]:
    """Return ``apply(default_options, *, settings=None, **more_mailers)`` for MAILERS."""
    active: list[override_settings] = []

    def apply(
        options: dict[str, Any], *, settings: dict[str, Any] | None = None, **more: dict[str, Any]
    ) -> None:
        config = {"default": {"BACKEND": BACKEND, "OPTIONS": options}}
        config.update({alias: {"BACKEND": BACKEND, "OPTIONS": o} for alias, o in more.items()})
        override = override_settings(MAILERS=config, **(settings or {}))
        with legacy_settings_allowed():
            override.enable()
        active.append(override)

    yield apply
    with legacy_settings_allowed():
        for override in reversed(active):
            override.disable()


@pytest.fixture
def options_for(trusting_policy: Policy) -> Any:
    """Return ``options(server, **changes)``: OPTIONS that reach ``server`` and log in."""

    def options(server: SMTPServer, **changes: Any) -> dict[str, Any]:
        values: dict[str, Any] = {
            "host": "localhost",
            "port": server.port,
            "username": USER,
            "password": PASSWORD,
            "policy": trusting_policy,
        }
        values.update(changes)
        return values

    return options


# --------------------------------------------------------------------------- delivery


def test_send_mail_through_the_default_mailer_over_implicit_tls(
    smtpsec_server: Any, mailers: Any, options_for: Any
) -> None:
    """use_ssl → Security.IMPLICIT_TLS; send_mail() uses mail.mailers.default."""
    srv = _server(smtpsec_server, Security.IMPLICIT_TLS, require_auth=True)
    mailers(options_for(srv, use_ssl=True))
    backend = mail.mailers.default
    assert isinstance(backend, EmailBackend)
    assert backend.alias == "default"
    assert backend.security is Security.IMPLICIT_TLS
    assert mail.send_mail("Hi", "Body text", "ann@example.test", ["bob@example.test"]) == 1
    (capture,) = finished(srv, 1)
    assert capture.tls
    assert capture.auth[0].success and capture.auth[0].username == USER
    (msg,) = srv.messages
    assert (msg.sender, msg.recipients, msg.tls) == (
        "ann@example.test",
        ("bob@example.test",),
        True,
    )
    assert b"Subject: Hi" in msg.data


def test_use_tls_is_required_starttls_on_a_named_mailer(
    smtpsec_server: Any, mailers: Any, options_for: Any
) -> None:
    """use_tls → required STARTTLS; using= picks the mailer; Bcc only in the envelope."""
    srv = _server(smtpsec_server)
    elsewhere = _server(smtpsec_server)
    mailers(options_for(elsewhere), transactional=options_for(srv, use_tls=True))
    assert mail.mailers["transactional"].security is Security.STARTTLS
    message = mail.EmailMessage(
        "Hidden", "Body", "ann@example.test", ["to@example.test"], bcc=["hidden@example.test"]
    )
    assert message.send(using="transactional") == 1
    assert elsewhere.connections == []
    (capture,) = finished(srv, 1)
    assert capture.pre_tls_verbs_subset_of({"EHLO", "STARTTLS", "QUIT"})
    assert capture.secrets_leaked(PASSWORD) == []
    (msg,) = srv.messages
    assert msg.recipients == ("to@example.test", "hidden@example.test")
    assert b"hidden@example.test" not in msg.data


def test_neither_flag_still_requires_tls(
    smtpsec_server: Any, mailers: Any, options_for: Any
) -> None:
    """No use_* option → Security.AUTO: STARTTLS, required (R-8314-5.2-1)."""
    srv = _server(smtpsec_server)
    mailers(options_for(srv))
    assert mail.mailers.default.security is Security.AUTO
    assert mail.send_mail("s", "b", "ann@example.test", ["bob@example.test"], using="default") == 1
    assert srv.connections[0].commands_pre_tls == ["EHLO", "STARTTLS"]


def test_stripped_starttls_gets_no_password_and_no_mail(
    smtpsec_server: Any, mailers: Any, options_for: Any
) -> None:
    """R-PY-6: use_tls against a server whose STARTTLS was stripped fails closed."""
    srv = _server(
        smtpsec_server, strip_starttls=True, require_tls=False, pre_tls_auth=("PLAIN", "LOGIN")
    )
    mailers(options_for(srv, use_tls=True))
    with pytest.raises(TLSUnavailableError):
        mail.send_mail("s", "b", "ann@example.test", ["bob@example.test"])
    (capture,) = finished(srv, 1)
    assert srv.messages == []
    assert capture.auth == []
    assert capture.secrets_leaked(PASSWORD) == []


def test_one_connection_per_open_with_mailers(
    smtpsec_server: Any, mailers: Any, options_for: Any
) -> None:
    srv = _server(smtpsec_server)
    mailers(options_for(srv))
    messages = [
        mail.EmailMessage(f"m{i}", "b", "ann@example.test", [f"r{i}@example.test"])
        for i in range(3)
    ]
    with mail.mailers.default as connection:
        assert connection.send_messages(messages[:2]) == 2
        assert connection.send_messages(messages[2:]) == 1
    assert len(finished(srv, 1)) == 1
    assert len(srv.messages) == 3


def test_client_certificate_options(
    smtpsec_server: Any, mailers: Any, options_for: Any, smtpsec_ca: CA, tmp_path: Path
) -> None:
    """R-8314-5.5: ssl_certfile/ssl_keyfile become Policy(client_cert=...)."""
    certfile, keyfile = smtpsec_ca.issue_client("ann@example.test").write(tmp_path)
    srv = _server(smtpsec_server, Security.IMPLICIT_TLS, request_client_cert=True)
    mailers(options_for(srv, use_ssl=True, ssl_certfile=str(certfile), ssl_keyfile=str(keyfile)))
    assert mail.mailers.default.policy.client_cert == (str(certfile), str(keyfile))
    assert mail.send_mail("s", "b", "ann@example.test", ["bob@example.test"]) == 1
    assert finished(srv, 1)[0].client_cert_der is not None


# --------------------------------------------------------------------------- settings


def test_email_settings_are_not_read(smtpsec_server: Any, mailers: Any, options_for: Any) -> None:
    """Under MAILERS only OPTIONS count: EMAIL_* values that would break sending are unused."""
    srv = _server(smtpsec_server, require_auth=True)
    poisoned = {
        "EMAIL_HOST": "mail.invalid",
        "EMAIL_PORT": _closed_port(),
        "EMAIL_HOST_USER": "nobody",
        "EMAIL_HOST_PASSWORD": "wrong",
        "EMAIL_USE_SSL": True,
        "EMAIL_TIMEOUT": 1,
        "EMAIL_SSL_KEYFILE": "/nonexistent/key.pem",
    }
    mailers(options_for(srv), settings=poisoned)
    backend = mail.mailers.default
    assert (backend.host, backend.port, backend.username) == ("localhost", srv.port, USER)
    assert (backend.use_ssl, backend.timeout, backend.ssl_keyfile) == (False, DEFAULT_TIMEOUT, None)
    assert backend.send_messages([mail.EmailMessage("s", "b", "a@example.test", ["b@x.test"])])
    assert srv.connections[0].auth[0].username == USER


@pytest.mark.parametrize(
    ("setting", "option"), [("SMTPSEC_POLICY", "policy"), ("SMTPSEC_SECURITY", "security")]
)
def test_smtpsec_settings_are_refused_not_ignored(
    smtpsec_server: Any,
    mailers: Any,
    options_for: Any,
    trusting_policy: Policy,
    setting: str,
    option: str,
) -> None:
    """Silently ignoring SMTPSEC_POLICY could drop pins or a private CA: it is an error."""
    value = trusting_policy if setting == "SMTPSEC_POLICY" else Security.STARTTLS
    mailers(options_for(_server(smtpsec_server)), settings={setting: value})
    with pytest.raises(
        _invalid_mailer(),
        match=rf"MAILERS\['default'\]: the {setting} setting.*OPTIONS\['{option}'\]",
    ):
        mail.mailers.default  # noqa: B018  # building the backend is what raises


def test_timeout_and_port_defaults(mailers: Any) -> None:
    """Django's MAILERS defaults: port by mode (465/587/25); timeout None → 30 s, not forever."""
    mailers(
        {"host": "smtp.example.test"},
        ssl={"host": "smtp.example.test", "use_ssl": True, "timeout": 7},
        tls={"host": "smtp.example.test", "use_tls": True},
        implicit={"host": "smtp.example.test", "security": "implicit_tls"},
    )
    default = mail.mailers.default
    assert (default.port, default.timeout, default.security) == (25, DEFAULT_TIMEOUT, Security.AUTO)
    assert (mail.mailers["ssl"].port, mail.mailers["ssl"].timeout) == (465, 7.0)
    assert mail.mailers["tls"].port == 587
    assert (mail.mailers["implicit"].port, mail.mailers["implicit"].security) == (
        465,
        Security.IMPLICIT_TLS,
    )
    assert default.policy == Policy()
    assert default.fail_silently is False


# --------------------------------------------------------------------------- errors


def test_unknown_option_is_invalid_mailer_naming_it(mailers: Any) -> None:
    mailers({"host": "smtp.example.test", "use_tsl": True})
    with pytest.raises(_invalid_mailer(), match=r"MAILERS\['default'\]: Unknown options 'use_tsl'"):
        mail.mailers.default  # noqa: B018


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"port": 465}, r"OPTIONS must define 'host'"),
        (
            {"host": "h.example.test", "use_ssl": True, "use_tls": True},
            r"'use_ssl' and 'use_tls' OPTIONS are incompatible",
        ),
        (
            {"host": "h.example.test", "security": "tls-please"},
            r"OPTIONS\['security'\] must be one of",
        ),
        (
            {"host": "h.example.test", "use_ssl": True, "security": Security.STARTTLS},
            r"OPTIONS\['use_ssl'\] asks for implicit TLS but OPTIONS\['security'\]",
        ),
        (
            {"host": "h.example.test", "use_tls": True, "security": Security.OPPORTUNISTIC},
            r"OPTIONS\['use_tls'\] asks for required STARTTLS",
        ),
        (
            {"host": "h.example.test", "policy": {"cafile": "ca.pem"}},
            r"OPTIONS\['policy'\] must be a smtpsec\.Policy",
        ),
        (
            {"host": "h.example.test", "ssl_keyfile": "key.pem"},
            r"OPTIONS\['ssl_keyfile'\] is set but",
        ),
        (
            {
                "host": "h.example.test",
                "ssl_certfile": "c.pem",
                "policy": Policy(client_cert=("c.pem", "k.pem")),
            },
            r"OPTIONS\['ssl_certfile'\] and OPTIONS\['policy'\]\.client_cert are both set",
        ),
    ],
)
def test_bad_options_are_invalid_mailer(
    mailers: Any, options: dict[str, Any], message: str
) -> None:
    mailers(options)
    with pytest.raises(_invalid_mailer(), match=r"^MAILERS\['default'\]: .*" + message):
        mail.mailers.default  # noqa: B018


# --------------------------------------------------------------------------- fail_silently


def test_fail_silently_option(smtpsec_server: Any, mailers: Any, options_for: Any) -> None:
    """OPTIONS fail_silently (as Django's SMTP backend allows): 0 sent, nothing leaked."""
    srv = _server(smtpsec_server, strip_starttls=True, require_tls=False, pre_tls_auth=("PLAIN",))
    mailers(options_for(srv, fail_silently=True))
    assert mail.mailers.default.fail_silently is True
    assert mail.send_mail("s", "b", "ann@example.test", ["bob@example.test"]) == 0
    assert srv.messages == []
    assert finished(srv, 1)[0].secrets_leaked(PASSWORD) == []


def test_deprecated_fail_silently_argument_still_reaches_the_backend(
    smtpsec_server: Any, mailers: Any, options_for: Any
) -> None:
    """send_mail(fail_silently=True) is deprecated in 6.1 but works: Django passes it through."""
    srv = _server(smtpsec_server, strip_starttls=True, require_tls=False, pre_tls_auth=("PLAIN",))
    mailers(options_for(srv))
    with pytest.warns(PendingDeprecationWarning, match="'fail_silently' argument is deprecated"):
        sent = mail.send_mail("s", "b", "a@example.test", ["b@example.test"], fail_silently=True)
    assert sent == 0
    assert srv.messages == []


# --------------------------------------------------------------------------- no deprecations


def test_mailers_path_raises_no_deprecation_warning(
    smtpsec_server: Any, mailers: Any, options_for: Any, deprecation_free: Any
) -> None:
    """Building, sending and closing through mail.mailers warns about nothing."""
    srv = _server(smtpsec_server)
    mailers(options_for(srv, use_tls=True, fail_silently=False, timeout=10))
    messages = [
        mail.EmailMessage("s", "b", "Zoë <zoe@bücher.example>", ["bob@example.test"]),
        mail.EmailMessage("s", "b", "x@example.test", ["y@example.test"], bcc=["z@example.test"]),
    ]
    with deprecation_free():
        backend = mail.mailers.default
        assert backend.send_messages(messages) == 2
        assert mail.send_mail("s", "b", "a@example.test", ["b@example.test"], using="default") == 1
        backend.close()
    assert len(srv.messages) == 3


# --------------------------------------------------------------------------- by hand


def test_built_by_hand_while_mailers_is_set_reads_no_email_setting(
    smtpsec_server: Any, mailers: Any, options_for: Any, trusting_policy: Policy
) -> None:
    """EmailBackend(...) without alias under MAILERS: its arguments are the configuration."""
    srv = _server(smtpsec_server, Security.IMPLICIT_TLS)
    mailers(options_for(srv), settings={"EMAIL_HOST_USER": "nobody", "EMAIL_TIMEOUT": 1})
    backend = EmailBackend(port=srv.port, host="localhost", use_ssl=True, policy=trusting_policy)
    assert (backend.alias, backend.username, backend.timeout) == (None, "", DEFAULT_TIMEOUT)
    assert backend.send_messages([mail.EmailMessage("s", "b", "a@example.test", ["b@x.test"])])
    with pytest.raises(_invalid_mailer(), match="OPTIONS must define 'host'"):
        EmailBackend()


def test_deprecated_get_connection_builds_the_default_mailer(
    smtpsec_server: Any, mailers: Any, options_for: Any
) -> None:
    """get_connection(**overrides) under MAILERS (deprecated) merges into OPTIONS."""
    srv = _server(smtpsec_server)
    mailers(options_for(srv, username="nobody"))
    with pytest.warns(PendingDeprecationWarning, match=r"get_connection\(\) is deprecated"):
        backend = mail.get_connection(username=USER, fail_silently=True)
    assert (backend.alias, backend.username, backend.fail_silently) == ("default", USER, True)
    assert backend.send_messages([mail.EmailMessage("s", "b", "a@example.test", ["b@x.test"])])
    assert srv.connections[0].auth[0].username == USER
