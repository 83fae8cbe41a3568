"""Submission settings of well-known mail providers, every value with its source.

A :class:`Preset` says where a provider's submission server is (host, port,
:class:`~smtpsec.Security` mode), which credentials it accepts and whether a
kind of login is being switched off, and the sending limits the provider
documents, as typed fields a connection pool can read (:meth:`Preset.pool_kwargs`
gives them as pool keyword arguments). Use it with
:func:`smtpsec.connect` through :meth:`Preset.connect_kwargs`::

    from smtpsec import providers
    preset = providers.FASTMAIL
    session = smtpsec.connect(**preset.connect_kwargs(), username=..., password=...)

Why a module named ``providers``: the table describes *mail providers* (the
companies), and that is the word people look for; the values are presets for
:func:`smtpsec.connect`, which is what :class:`Preset` is called.

Rules for the table: a value is here only when the provider's own
documentation states it; the page is listed in :attr:`Preset.sources` (and in
``docs/accounts.md``). A limit the provider does not document is ``None``,
never a guess, and SASL mechanisms are listed only where the provider names
them (an empty tuple means the server's post-TLS EHLO decides). Values were
read from those pages in 2026; providers change them without notice, so treat
limits as planning figures and the server's replies as the truth. Where a
provider offers both, the preset uses port 465 with implicit TLS (RFC 8314
§3.3); Microsoft, Apple and Postmark document only STARTTLS on 587.

The table is data, not discovery: nothing here is looked up at run time.
"""

from __future__ import annotations

import datetime
import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal, TypedDict

from .errors import InvalidArgumentError
from .identity import normalize_dns_name
from .policy import Security
from .sansio import is_mechanism_name

__all__ = [
    "ALL",
    "AMAZON_SES_SOURCES",
    "FASTMAIL",
    "GMAIL",
    "GOOGLE_WORKSPACE",
    "ICLOUD",
    "MAILGUN",
    "MAILGUN_EU",
    "MICROSOFT_365",
    "OUTLOOK_COM",
    "POSTMARK",
    "PRESETS",
    "SENDGRID",
    "YAHOO",
    "ZOHO",
    "ZOHO_ORGANIZATION",
    "AuthMethod",
    "ConnectTarget",
    "Credential",
    "Limits",
    "PoolLimits",
    "Preset",
    "amazon_ses",
    "get",
    "mailgun",
]

_TLS_MODES: Final = (Security.IMPLICIT_TLS, Security.STARTTLS)
#: AWS region names: "us-east-1", "eu-central-2", "us-gov-west-1", "ap-southeast-5".
_AWS_REGION_RE: Final = re.compile(r"[a-z]{2}(?:-[a-z]+){1,2}-\d{1,2}")


class Credential(enum.Enum):
    """What the caller passes to log in.

    Attributes:
        OAUTH2: an OAuth 2 access token (``connect(..., token=...)``; SASL
            XOAUTH2 or OAUTHBEARER).
        APP_PASSWORD: a password the provider generates for one app (usually
            needs two-step verification on the account).
        ACCOUNT_PASSWORD: the account's own password ("basic auth").
        API_KEY: a service API key or token used as the SMTP password.
        SMTP_CREDENTIALS: an SMTP user name and password generated in the
            provider's console (not the console login).
    """

    OAUTH2 = "oauth2"
    APP_PASSWORD = "app_password"  # noqa: S105 - a kind of credential, not a secret
    ACCOUNT_PASSWORD = "account_password"  # noqa: S105 - a kind of credential, not a secret
    API_KEY = "api_key"
    SMTP_CREDENTIALS = "smtp_credentials"


@dataclass(frozen=True, slots=True)
class AuthMethod:
    """One way of logging in that a provider documents.

    Attributes:
        credential: what the caller passes.
        mechanisms: SASL mechanisms the provider names for it, preferred first;
            ``()`` when it names none (the server's post-TLS EHLO decides).
        disabled_from: the day the provider switches this method off (or off by
            default); ``None`` when no date is announced.
        refusal: the reply the provider documents once it is off, e.g.
            ``"550 5.7.30"``; ``None`` when not documented.
        note: anything else a user must know (two-step verification needed...).
    """

    credential: Credential
    mechanisms: tuple[str, ...] = ()
    disabled_from: datetime.date | None = None
    refusal: str | None = None
    note: str = ""

    def __post_init__(self) -> None:
        for name in self.mechanisms:
            if not is_mechanism_name(name):
                raise InvalidArgumentError(
                    f"{name!r} is not an upper-case SASL mechanism name such as 'XOAUTH2'"
                )

    def available(self, on: datetime.date | None = None) -> bool:
        """Whether the method still works on *on* (default: today).

        Args:
            on: the day to ask about.

        Returns:
            ``False`` from :attr:`disabled_from` on.
        """
        day = on or datetime.date.today()
        return self.disabled_from is None or day < self.disabled_from


@dataclass(frozen=True, slots=True)
class Limits:
    """Sending limits a provider documents; ``None`` where it documents none.

    Attributes:
        max_connections: concurrent SMTP connections per account or mailbox.
        messages_per_minute: messages accepted per minute.
        messages_per_day: messages per (rolling) day.
        recipients_per_message: To + Cc + Bcc addresses in one message.
        recipients_per_day: recipients per (rolling) day.
    """

    max_connections: int | None = None
    messages_per_minute: int | None = None
    messages_per_day: int | None = None
    recipients_per_message: int | None = None
    recipients_per_day: int | None = None

    def __post_init__(self) -> None:
        for name in self.__slots__:
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise InvalidArgumentError(f"{name}={value!r}: a limit is a positive int or None")


class ConnectTarget(TypedDict):
    """The keyword arguments of :func:`smtpsec.connect` that a preset fixes."""

    host: str
    port: int
    security: Security


class PoolLimits(TypedDict, total=False):
    """The documented limits a connection pool should respect, as pool keyword arguments.

    Only limits the provider documents are present; for the rest the pool keeps
    its own defaults. The keys are the pool's arguments, not the table's names.

    Attributes:
        size: the most connections open at once (:attr:`Limits.max_connections`).
        messages_per_minute: the most messages started per minute
            (:attr:`Limits.messages_per_minute`).
    """

    size: int
    messages_per_minute: int


@dataclass(frozen=True, slots=True)
class Preset:
    """One provider's submission settings, with the pages they come from.

    Attributes:
        key: a stable identifier (``"gmail"``), the key in :data:`PRESETS`.
        name: the provider's product name.
        host: the submission host name.
        port: the port (465 implicit TLS where offered, else 587 STARTTLS).
        security: :attr:`Security.IMPLICIT_TLS` or :attr:`Security.STARTTLS`.
        auth: the documented login methods, preferred first.
        username: what goes in ``username=`` (prose: "the full email address").
        fixed_username: the literal user name when the provider prescribes one
            (SendGrid: ``"apikey"``), else ``None``.
        limits: the documented sending limits.
        sources: the provider documentation each value was taken from.
        notes: further facts from those pages (other ports, regions...).

    Raises:
        InvalidArgumentError: a malformed host, port, mode or source.
    """

    key: str
    name: str
    host: str
    port: int
    security: Security
    auth: tuple[AuthMethod, ...]
    username: str
    limits: Limits
    sources: tuple[str, ...]
    fixed_username: str | None = None
    notes: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "host", normalize_dns_name(self.host, what="preset host"))
        if self.security not in _TLS_MODES:
            raise InvalidArgumentError(
                f"preset {self.key!r}: security must be Security.IMPLICIT_TLS or "
                "Security.STARTTLS; presets never describe cleartext"
            )
        if not 0 < self.port < 65536:
            raise InvalidArgumentError(f"preset {self.key!r}: port {self.port} is out of range")
        if not self.auth:
            raise InvalidArgumentError(f"preset {self.key!r}: document at least one AuthMethod")
        if not self.sources or not all(url.startswith("https://") for url in self.sources):
            raise InvalidArgumentError(
                f"preset {self.key!r}: every value needs an https:// source URL"
            )

    def connect_kwargs(self) -> ConnectTarget:
        """``host``, ``port`` and ``security`` for :func:`smtpsec.connect`.

        Returns:
            A dict to unpack: ``smtpsec.connect(**preset.connect_kwargs(),
            username=..., password=...)``.
        """
        return ConnectTarget(host=self.host, port=self.port, security=self.security)

    def pool_kwargs(self) -> PoolLimits:
        """The documented limits a pool of sessions to this provider should keep to.

        Returns:
            :class:`PoolLimits` with ``size`` and ``messages_per_minute`` where
            the provider documents them (Microsoft 365: ``{"size": 3,
            "messages_per_minute": 30}``), empty where it documents neither.
            Planning figures: the server's ``421``/``4xx`` replies remain the
            truth.
        """
        limits = PoolLimits()
        if self.limits.max_connections is not None:
            limits["size"] = self.limits.max_connections
        if self.limits.messages_per_minute is not None:
            limits["messages_per_minute"] = self.limits.messages_per_minute
        return limits

    @property
    def credentials(self) -> tuple[Credential, ...]:
        """The credential kinds the provider accepts, preferred first."""
        return tuple(method.credential for method in self.auth)

    @property
    def sasl_mechanisms(self) -> tuple[str, ...]:
        """Every SASL mechanism the provider names, in preference order."""
        names: list[str] = []
        for method in self.auth:
            names += [name for name in method.mechanisms if name not in names]
        return tuple(names)

    def accepts(self, credential: Credential, *, on: datetime.date | None = None) -> bool:
        """Whether *credential* still logs in on *on* (default: today).

        Args:
            credential: the kind of credential the caller has.
            on: the day to ask about (a date a switch-off is announced for).

        Returns:
            ``True`` when a documented method takes it and is not switched off.
        """
        return any(m.credential is credential and m.available(on) for m in self.auth)


# --------------------------------------------------------------------------- sources

_GOOGLE_SMTP: Final = "https://developers.google.com/workspace/gmail/imap/imap-smtp"
_GOOGLE_XOAUTH2: Final = "https://developers.google.com/workspace/gmail/imap/xoauth2-protocol"
_GOOGLE_APP_PASSWORDS: Final = "https://support.google.com/accounts/answer/185833"
_GOOGLE_WORKSPACE_LIMITS: Final = "https://support.google.com/a/answer/166852"
_M365_LIMITS: Final = (
    "https://learn.microsoft.com/en-us/exchange/troubleshoot/send-emails/"
    "smtp-submission-improvements"
)
_M365_BASIC_AUTH_TIMELINE: Final = (
    "https://techcommunity.microsoft.com/blog/exchange/"
    "updated-exchange-online-smtp-auth-basic-authentication-deprecation-timeline/4489835"
)
_M365_BASIC_AUTH_RETIREMENT: Final = (
    "https://techcommunity.microsoft.com/t5/exchange-team-blog/"
    "exchange-online-to-retire-basic-auth-for-client-submission-smtp/ba-p/4114750"
)
_MS_OAUTH: Final = (
    "https://learn.microsoft.com/en-us/exchange/client-developer/legacy-protocols/"
    "how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth"
)
_OUTLOOK_COM_SETTINGS: Final = (
    "https://support.microsoft.com/en-us/office/"
    "pop-imap-and-smtp-settings-8361e398-8af4-4e97-b147-6c6c4ac95353"
)
_ICLOUD_SETTINGS: Final = "https://support.apple.com/en-us/102525"
_ICLOUD_LIMITS: Final = "https://support.apple.com/en-us/102198"
_ICLOUD_APP_PASSWORDS: Final = "https://support.apple.com/en-us/102654"
# Yahoo and Zoho: these official pages could not be re-read when the table was made;
# the values agree across many references. Re-check them when updating the table.
_YAHOO_SETTINGS: Final = "https://help.yahoo.com/kb/SLN4075.html"
_YAHOO_APP_PASSWORDS: Final = "https://help.yahoo.com/kb/SLN15241.html"
_FASTMAIL_SETTINGS: Final = "https://www.fastmail.com/help/technical/servernamesandports.html"
_ZOHO_SETTINGS: Final = "https://www.zoho.com/mail/help/zoho-smtp.html"
_SES_SMTP: Final = "https://docs.aws.amazon.com/ses/latest/dg/smtp-connect.html"
_SES_QUOTAS: Final = "https://docs.aws.amazon.com/ses/latest/dg/quotas.html"
_SENDGRID_SMTP: Final = (
    "https://www.twilio.com/docs/sendgrid/for-developers/sending-email/"
    "integrating-with-the-smtp-api"
)
_MAILGUN_SMTP: Final = (
    "https://documentation.mailgun.com/docs/mailgun/user-manual/sending-messages/send-smtp/"
)
_MAILGUN_EU: Final = "https://cloud.google.com/compute/docs/tutorials/sending-mail/using-mailgun"
_POSTMARK_SMTP: Final = "https://postmarkapp.com/support/article/811-what-are-the-smtp-details-api-tokens-i-should-be-using"
_POSTMARK_LIMITS: Final = "https://postmarkapp.com/developer"

#: The pages :func:`amazon_ses` presets cite.
AMAZON_SES_SOURCES: Final = (_SES_SMTP, _SES_QUOTAS)

_EMAIL_ADDRESS: Final = "the full email address"
_GOOGLE_OAUTH: Final = AuthMethod(Credential.OAUTH2, ("XOAUTH2",))
_GOOGLE_APP_PASSWORD: Final = AuthMethod(
    Credential.APP_PASSWORD, note="needs 2-Step Verification on the Google Account"
)

# --------------------------------------------------------------------------- the table

GMAIL: Final = Preset(
    key="gmail",
    name="Gmail (personal Google Account)",
    host="smtp.gmail.com",
    port=465,
    security=Security.IMPLICIT_TLS,
    auth=(_GOOGLE_OAUTH, _GOOGLE_APP_PASSWORD),
    username=_EMAIL_ADDRESS,
    limits=Limits(),
    sources=(_GOOGLE_SMTP, _GOOGLE_XOAUTH2, _GOOGLE_APP_PASSWORDS),
    notes="STARTTLS on 587 too. Google publishes no SMTP limits for personal accounts "
    "on these pages.",
)

GOOGLE_WORKSPACE: Final = Preset(
    key="google_workspace",
    name="Google Workspace",
    host="smtp.gmail.com",
    port=465,
    security=Security.IMPLICIT_TLS,
    auth=(_GOOGLE_OAUTH, _GOOGLE_APP_PASSWORD),
    username=_EMAIL_ADDRESS,
    limits=Limits(messages_per_day=2000, recipients_per_message=100, recipients_per_day=10_000),
    sources=(_GOOGLE_SMTP, _GOOGLE_XOAUTH2, _GOOGLE_APP_PASSWORDS, _GOOGLE_WORKSPACE_LIMITS),
    notes="STARTTLS on 587 too. 100 recipients per message applies to mail sent through "
    "smtp.gmail.com; trial accounts have lower limits (500 messages a day).",
)

MICROSOFT_365: Final = Preset(
    key="microsoft_365",
    name="Microsoft 365 / Exchange Online",
    host="smtp.office365.com",
    port=587,
    security=Security.STARTTLS,
    auth=(
        AuthMethod(
            Credential.OAUTH2, ("XOAUTH2",), note="scope https://outlook.office.com/SMTP.Send"
        ),
        AuthMethod(
            Credential.ACCOUNT_PASSWORD,
            # "End of December 2026", encoded as the month's last day.
            disabled_from=datetime.date(2026, 12, 31),
            refusal="550 5.7.30",
            note="Basic auth for SMTP AUTH is disabled by default for existing tenants at "
            "the end of December 2026 (admins can re-enable it until a final removal date "
            "Microsoft will announce in the second half of 2027); new tenants created after "
            "December 2026 do not have it",
        ),
    ),
    username="the mailbox's address (user principal name)",
    limits=Limits(max_connections=3, messages_per_minute=30, recipients_per_day=10_000),
    sources=(_M365_LIMITS, _M365_BASIC_AUTH_TIMELINE, _M365_BASIC_AUTH_RETIREMENT, _MS_OAUTH),
    notes="A fourth concurrent connection gets '432 4.3.2 Concurrent connections limit "
    "exceeded'; submissions beyond 30 a minute are delayed.",
)

OUTLOOK_COM: Final = Preset(
    key="outlook_com",
    name="Outlook.com (Hotmail, Live, MSN)",
    host="smtp-mail.outlook.com",
    port=587,
    security=Security.STARTTLS,
    auth=(AuthMethod(Credential.OAUTH2, ("XOAUTH2",), note="Microsoft requires OAuth2"),),
    username=_EMAIL_ADDRESS,
    limits=Limits(),
    sources=(_OUTLOOK_COM_SETTINGS, _MS_OAUTH),
    notes="Microsoft says Outlook.com requires Modern Auth / OAuth2 and that basic auth is "
    "being deprecated (no date given); no SMTP limits are published there.",
)

ICLOUD: Final = Preset(
    key="icloud",
    name="iCloud Mail",
    host="smtp.mail.me.com",
    port=587,
    security=Security.STARTTLS,
    auth=(
        AuthMethod(Credential.APP_PASSWORD, note="an app-specific password for the Apple Account"),
    ),
    username="the iCloud email address",
    limits=Limits(messages_per_day=1000, recipients_per_message=500, recipients_per_day=1000),
    sources=(_ICLOUD_SETTINGS, _ICLOUD_APP_PASSWORDS, _ICLOUD_LIMITS),
    notes="Apple documents only port 587 with TLS/STARTTLS.",
)

YAHOO: Final = Preset(
    key="yahoo",
    name="Yahoo Mail",
    host="smtp.mail.yahoo.com",
    port=465,
    security=Security.IMPLICIT_TLS,
    auth=(AuthMethod(Credential.APP_PASSWORD, note="generated in Yahoo Account Security"),),
    username=_EMAIL_ADDRESS,
    limits=Limits(),
    sources=(_YAHOO_SETTINGS, _YAHOO_APP_PASSWORDS),
    notes="STARTTLS on 587 too. Yahoo publishes no SMTP limits on these pages.",
)

FASTMAIL: Final = Preset(
    key="fastmail",
    name="Fastmail",
    host="smtp.fastmail.com",
    port=465,
    security=Security.IMPLICIT_TLS,
    auth=(
        AuthMethod(
            Credential.APP_PASSWORD,
            ("PLAIN",),
            note="the regular Fastmail password is not accepted",
        ),
    ),
    username="the Fastmail address, including the domain",
    limits=Limits(),
    sources=(_FASTMAIL_SETTINGS,),
    notes="Fastmail requires SSL/TLS on every protocol.",
)

_ZOHO_AUTH: Final = (
    AuthMethod(Credential.ACCOUNT_PASSWORD),
    AuthMethod(Credential.APP_PASSWORD, note="needed once two-factor authentication is on"),
)

ZOHO: Final = Preset(
    key="zoho",
    name="Zoho Mail (personal and free organization accounts)",
    host="smtp.zoho.com",
    port=465,
    security=Security.IMPLICIT_TLS,
    auth=_ZOHO_AUTH,
    username=_EMAIL_ADDRESS,
    limits=Limits(),
    sources=(_ZOHO_SETTINGS,),
    notes="STARTTLS on 587 too. Accounts in other Zoho data centres use that region's "
    "domain (for example smtp.zoho.eu): dataclasses.replace(ZOHO, host=...).",
)

ZOHO_ORGANIZATION: Final = Preset(
    key="zoho_organization",
    name="Zoho Mail (paid organization accounts)",
    host="smtppro.zoho.com",
    port=465,
    security=Security.IMPLICIT_TLS,
    auth=_ZOHO_AUTH,
    username="the domain-based email address",
    limits=Limits(),
    sources=(_ZOHO_SETTINGS,),
    notes="STARTTLS on 587 too; other data centres use their own domain (smtppro.zoho.eu...).",
)

SENDGRID: Final = Preset(
    key="sendgrid",
    name="Twilio SendGrid",
    host="smtp.sendgrid.net",
    port=465,
    security=Security.IMPLICIT_TLS,
    auth=(AuthMethod(Credential.API_KEY, note="an API key with at least 'Mail' permission"),),
    username="the literal string 'apikey'",
    fixed_username="apikey",
    limits=Limits(),
    sources=(_SENDGRID_SMTP,),
    notes="STARTTLS on 25, 587 and 2525 too. Sending limits depend on the plan.",
)


def mailgun(region: Literal["us", "eu"] = "us") -> Preset:
    """The Mailgun preset for the region the sending domain was created in.

    Args:
        region: ``"us"`` (``smtp.mailgun.org``) or ``"eu"``
            (``smtp.eu.mailgun.org``); the regions are separate systems.

    Returns:
        The preset.

    Raises:
        InvalidArgumentError: an unknown region.
    """
    if region not in ("us", "eu"):
        raise InvalidArgumentError(f"Mailgun region {region!r} is unknown; use 'us' or 'eu'")
    eu = region == "eu"
    return Preset(
        key="mailgun_eu" if eu else "mailgun",
        name="Mailgun (EU region)" if eu else "Mailgun",
        host="smtp.eu.mailgun.org" if eu else "smtp.mailgun.org",
        port=465,
        security=Security.IMPLICIT_TLS,
        auth=(AuthMethod(Credential.SMTP_CREDENTIALS, note="set per sending domain"),),
        username="the SMTP login of the sending domain, a full address at that domain",
        limits=Limits(),
        sources=(_MAILGUN_SMTP, _MAILGUN_EU) if eu else (_MAILGUN_SMTP,),
        notes="STARTTLS on 25, 587 and 2525 too.",
    )


MAILGUN: Final = mailgun("us")
MAILGUN_EU: Final = mailgun("eu")

POSTMARK: Final = Preset(
    key="postmark",
    name="Postmark",
    host="smtp.postmarkapp.com",
    port=587,
    security=Security.STARTTLS,
    auth=(
        AuthMethod(
            Credential.API_KEY,
            note="the Server API Token, as user name and as password",
        ),
    ),
    username="the Server API Token (also the password)",
    limits=Limits(recipients_per_message=50),
    sources=(_POSTMARK_SMTP, _POSTMARK_LIMITS),
    notes="Ports 25, 2525 and 587, all STARTTLS; Postmark offers no implicit-TLS port. "
    "Broadcast streams use smtp-broadcasts.postmarkapp.com.",
)


def amazon_ses(region: str) -> Preset:
    """The Amazon SES SMTP preset for one AWS region.

    Args:
        region: the AWS region of the SES identity, e.g. ``"eu-west-1"``. SMTP
            credentials are per region.

    Returns:
        ``email-smtp.<region>.amazonaws.com`` on 465 with implicit TLS (the
        "TLS Wrapper"; STARTTLS is on 25, 587 and 2587).

    Raises:
        InvalidArgumentError: *region* does not look like an AWS region name.
    """
    if not _AWS_REGION_RE.fullmatch(region):
        raise InvalidArgumentError(
            f"{region!r} is not an AWS region name; pass one such as 'us-east-1' or "
            "'eu-west-1' (the region of your SES identity)"
        )
    return Preset(
        key=f"amazon_ses_{region.replace('-', '_')}",
        name=f"Amazon SES ({region})",
        host=f"email-smtp.{region}.amazonaws.com",
        port=465,
        security=Security.IMPLICIT_TLS,
        auth=(
            AuthMethod(
                Credential.SMTP_CREDENTIALS,
                note="SES SMTP credentials of this region, not the AWS access keys",
            ),
        ),
        username="the SES SMTP user name",
        limits=Limits(recipients_per_message=50),
        sources=AMAZON_SES_SOURCES,
        notes="Sending quotas are per account and region: in the sandbox 200 messages per "
        "24 hours and 1 per second; outside it they depend on the account.",
    )


#: Every fixed preset (regional Amazon SES comes from :func:`amazon_ses`).
ALL: Final[tuple[Preset, ...]] = (
    GMAIL,
    GOOGLE_WORKSPACE,
    MICROSOFT_365,
    OUTLOOK_COM,
    ICLOUD,
    YAHOO,
    FASTMAIL,
    ZOHO,
    ZOHO_ORGANIZATION,
    SENDGRID,
    MAILGUN,
    MAILGUN_EU,
    POSTMARK,
)

#: :data:`ALL` by :attr:`Preset.key` (read-only).
PRESETS: Final[Mapping[str, Preset]] = MappingProxyType({p.key: p for p in ALL})


def get(key: str) -> Preset:
    """The preset with this :attr:`Preset.key`.

    Args:
        key: e.g. ``"fastmail"``; for Amazon SES use :func:`amazon_ses`.

    Returns:
        The preset.

    Raises:
        InvalidArgumentError: no such preset; the message lists the keys.
    """
    try:
        return PRESETS[key]
    except KeyError:
        hint = " (Amazon SES is regional: use amazon_ses(region))" if "ses" in key else ""
        raise InvalidArgumentError(
            f"no provider preset {key!r}{hint}; known presets: {', '.join(PRESETS)}"
        ) from None
