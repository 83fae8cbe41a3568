"""The provider preset table is well-formed, cited, and usable with smtpsec.connect()."""

from __future__ import annotations

import dataclasses
import datetime
from urllib.parse import urlsplit

import pytest

import smtpsec
from smtpsec import Security, providers
from smtpsec.errors import InvalidArgumentError
from smtpsec.identity import normalize_dns_name
from smtpsec.providers import AuthMethod, Credential, Limits, Preset
from smtpsec.testing import CA, SMTPServer

TABLE = [*providers.ALL, providers.amazon_ses("us-east-1"), providers.amazon_ses("eu-west-1")]
EXPECTED_PROVIDERS = {
    "gmail",
    "google_workspace",
    "microsoft_365",
    "outlook_com",
    "icloud",
    "yahoo",
    "fastmail",
    "zoho",
    "sendgrid",
    "mailgun",
    "postmark",
}


def test_the_brief_s_providers_are_all_there() -> None:
    assert set(providers.PRESETS) >= EXPECTED_PROVIDERS
    assert providers.amazon_ses("ap-southeast-2").host == "email-smtp.ap-southeast-2.amazonaws.com"


@pytest.mark.parametrize("preset", TABLE, ids=lambda p: p.key)
def test_row_is_well_formed(preset: Preset) -> None:
    assert normalize_dns_name(preset.host) == preset.host
    assert preset.port in (465, 587)
    # RFC 8314 §3.3: 465 is implicit TLS, 587 is STARTTLS; presets never use cleartext.
    expected = {465: Security.IMPLICIT_TLS, 587: Security.STARTTLS}[preset.port]
    assert preset.security is expected
    assert preset.sources, "every row cites its source"
    for url in preset.sources:
        parts = urlsplit(url)
        assert parts.scheme == "https"
        assert parts.hostname
    assert preset.auth
    assert preset.name and preset.username
    for value in dataclasses.astuple(preset.limits):
        assert value is None or (isinstance(value, int) and value > 0)


def test_keys_are_unique_and_match_the_mapping() -> None:
    keys = [p.key for p in providers.ALL]
    assert len(keys) == len(set(keys))
    assert all(providers.PRESETS[p.key] is p for p in providers.ALL)
    with pytest.raises(TypeError):
        providers.PRESETS["x"] = providers.GMAIL  # type: ignore[index]


def test_microsoft_365_limits_and_basic_auth_retirement() -> None:
    m365 = providers.MICROSOFT_365
    assert m365.limits == Limits(
        max_connections=3, messages_per_minute=30, recipients_per_day=10_000
    )
    assert m365.credentials[0] is Credential.OAUTH2
    assert m365.sasl_mechanisms == ("XOAUTH2",)
    [basic] = [m for m in m365.auth if m.credential is Credential.ACCOUNT_PASSWORD]
    assert basic.refusal == "550 5.7.30"
    assert m365.accepts(Credential.ACCOUNT_PASSWORD, on=datetime.date(2026, 6, 1))
    assert not m365.accepts(Credential.ACCOUNT_PASSWORD, on=datetime.date(2027, 1, 1))
    assert m365.accepts(Credential.OAUTH2, on=datetime.date(2030, 1, 1))
    assert not m365.accepts(Credential.API_KEY)


def test_password_login_is_gone_where_providers_say_so() -> None:
    for preset in (providers.GMAIL, providers.GOOGLE_WORKSPACE, providers.OUTLOOK_COM):
        assert not preset.accepts(Credential.ACCOUNT_PASSWORD)
        assert preset.accepts(Credential.OAUTH2)
    assert providers.OUTLOOK_COM.credentials == (Credential.OAUTH2,)
    assert providers.SENDGRID.fixed_username == "apikey"
    assert providers.POSTMARK.limits.recipients_per_message == 50


def test_undocumented_limits_are_none_not_guesses() -> None:
    assert providers.YAHOO.limits == Limits()
    assert providers.SENDGRID.limits == Limits()


def test_connect_kwargs_feed_connect(ca: CA) -> None:
    with SMTPServer(ca.issue("localhost"), tls=Security.IMPLICIT_TLS) as srv:
        local = dataclasses.replace(providers.FASTMAIL, host="localhost", port=srv.port)
        kwargs = local.connect_kwargs()
        assert kwargs == {"host": "localhost", "port": srv.port, "security": Security.IMPLICIT_TLS}
        policy = smtpsec.Policy(cadata=ca.cert_pem.decode("ascii"))
        with smtpsec.connect(**kwargs, policy=policy, timeout=5) as session:
            assert session.report.mode is Security.IMPLICIT_TLS


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA.create()


@pytest.mark.parametrize("region", ["", "us_east_1", "US-EAST-1", "us-east-1.evil.test", "x"])
def test_amazon_ses_region_is_validated(region: str) -> None:
    with pytest.raises(InvalidArgumentError, match="not an AWS region name"):
        providers.amazon_ses(region)


def test_mailgun_regions() -> None:
    assert providers.mailgun("eu").host == "smtp.eu.mailgun.org"
    assert providers.mailgun() == providers.MAILGUN
    with pytest.raises(InvalidArgumentError, match="'us' or 'eu'"):
        providers.mailgun("asia")  # type: ignore[arg-type]


def test_get() -> None:
    assert providers.get("icloud") is providers.ICLOUD
    with pytest.raises(InvalidArgumentError, match="amazon_ses"):
        providers.get("amazon_ses")
    with pytest.raises(InvalidArgumentError, match="known presets: gmail"):
        providers.get("hotmail")


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"security": Security.PLAINTEXT}, "never describe cleartext"),
        ({"port": 0}, "out of range"),
        ({"auth": ()}, "at least one AuthMethod"),
        ({"sources": ()}, "https:// source"),
        ({"sources": ("http://example.test/",)}, "https:// source"),
        ({"host": "not a host"}, "not a valid DNS name"),
    ],
)
def test_preset_validation(changes: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        dataclasses.replace(providers.ICLOUD, **changes)  # type: ignore[arg-type]


def test_auth_method_and_limits_validation() -> None:
    with pytest.raises(InvalidArgumentError, match="SASL mechanism"):
        AuthMethod(Credential.OAUTH2, ("xoauth2",))
    with pytest.raises(InvalidArgumentError, match="positive int"):
        Limits(messages_per_day=0)
    assert AuthMethod(Credential.API_KEY).available()


def test_pool_kwargs_carry_only_documented_limits() -> None:
    """Pool sizes and rates come from the table, never a guess (issue 16: Pool defaults)."""
    assert providers.MICROSOFT_365.pool_kwargs() == {"size": 3, "messages_per_minute": 30}
    assert providers.GMAIL.pool_kwargs() == {}
    only_rate = dataclasses.replace(
        providers.FASTMAIL, limits=Limits(messages_per_minute=10, messages_per_day=500)
    )
    assert only_rate.pool_kwargs() == {"messages_per_minute": 10}
    for preset in TABLE:
        kwargs = preset.pool_kwargs()
        assert kwargs.get("size") == preset.limits.max_connections
        assert kwargs.get("messages_per_minute") == preset.limits.messages_per_minute
        assert preset.pool_kwargs() is not kwargs  # a fresh dict each time: safe to change
