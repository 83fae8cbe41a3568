"""Mozilla-style mail autoconfig (``config-v1.1.xml``), read only over verified HTTPS.

Many domains publish their mail settings as the XML document Thunderbird
reads (the format is being standardised as draft-ietf-mailmaint-autoconfig).
:func:`fetch_autoconfig` asks the domain itself, in this order::

    https://autoconfig.<domain>/mail/config-v1.1.xml?emailaddress=<address>
    https://<domain>/.well-known/autoconfig/mail/config-v1.1.xml

(the address is sent only if you pass one: it tells the web server who is
setting up an account). It never uses plain HTTP, follows at most three
redirects and only to ``https://`` URLs, builds its TLS context with
:func:`smtpsec.tls.build_context` (so ``Policy(cafile=...)`` trusts a private
CA), stops after a deadline and at 64 KiB, and parses with ``defusedxml``
refusing any DTD or entity declaration. Third-party databases (Thunderbird's
ISPDB) and guesses from MX records are not consulted: only the domain speaks
for the domain.

From the document it takes only ``outgoingServer`` entries of type ``smtp``:
``socketType`` ``SSL`` becomes :attr:`Security.IMPLICIT_TLS`, ``STARTTLS``
becomes :attr:`Security.STARTTLS` (required), and ``plain`` (or anything else)
is **dropped**: discovery never produces a cleartext configuration
(R-8314-5.1-2, R-8314-5.1-3). ``authentication`` values become SASL hints on
:attr:`Endpoint.sasl_mechanisms`. ``%EMAILDOMAIN%`` in a host name is replaced
by the domain; an entry with any other placeholder is dropped.

What this protects against, and what it does not: an attacker who can only
spoof DNS cannot forge the document (they would need a certificate for
``autoconfig.<domain>`` or ``<domain>``), which is why an autoconfig result
ranks above an unsigned SRV answer. But the document is only as trustworthy as
the web server that serves it: whoever controls that server (a compromised
site, a careless hosting provider) controls the answer. A host *inside* the
domain is therefore accepted as the certificate name to check; a host outside
it still needs the user's confirmation (:meth:`Endpoint.needs_confirmation`,
``connect(endpoint, confirmed_target=True)``), exactly like an unsigned SRV
target.

Needs the optional ``autoconfig`` extra (``defusedxml``), imported when used.
"""

from __future__ import annotations

import importlib
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Final
from urllib.parse import urlencode

from . import _https_fetch
from ._endpoint import Endpoint
from ._https_fetch import NotFound, fetch, open_tcp
from .errors import (
    CapabilityError,
    InvalidArgumentError,
    PolicyError,
    ProtocolError,
    RemoteProtocolError,
    SecurityError,
    SMTPSecError,
    TimeoutError,
)
from .identity import normalize_dns_name
from .policy import Policy, Security
from .tls import build_context

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_BYTES",
    "MAX_REDIRECTS",
    "SocketOpener",
    "autoconfig_urls",
    "fetch_autoconfig",
    "parse_autoconfig",
]

#: ``(host, port, timeout) -> connected socket``: opens the TCP connection to the web
#: server (tests, proxies). TLS, SNI and the certificate check still use the URL's host.
SocketOpener = _https_fetch.SocketOpener

#: Largest document read (a real one is a few KiB): more is refused, not truncated.
MAX_BYTES: Final = 64 * 1024
#: Redirects followed per URL, each to an ``https://`` URL only.
MAX_REDIRECTS: Final = 3
#: Seconds for one URL's whole exchange (connect, TLS, redirects, body).
DEFAULT_TIMEOUT: Final = 10.0

#: More outgoing servers than this in one document are ignored (bounds the work).
_MAX_SERVERS: Final = 16
_SOCKET_TYPES: Final[dict[str, Security]] = {
    "ssl": Security.IMPLICIT_TLS,
    "starttls": Security.STARTTLS,
}
_DEFAULT_PORT: Final[dict[Security, int]] = {Security.IMPLICIT_TLS: 465, Security.STARTTLS: 587}
#: Thunderbird's ``authentication`` values (config file format, draft-ietf-mailmaint-
#: autoconfig §"authentication") as the SASL mechanisms each one means.
_AUTH_HINTS: Final[dict[str, tuple[str, ...]]] = {
    "password-cleartext": ("PLAIN", "LOGIN"),
    "plain": ("PLAIN", "LOGIN"),  # the deprecated spelling of password-cleartext
    "password-encrypted": ("CRAM-MD5", "DIGEST-MD5"),
    "secure": ("CRAM-MD5", "DIGEST-MD5"),  # the deprecated spelling of password-encrypted
    "oauth2": ("XOAUTH2", "OAUTHBEARER"),
    "tls-client-cert": ("EXTERNAL",),
    "gssapi": ("GSSAPI",),
    "ntlm": ("NTLM",),
}
_DEFUSEDXML_MISSING: Final = (
    "autoconfig discovery needs defusedxml to parse XML safely: pip install defusedxml "
    "(smtpsec's 'autoconfig' extra)"
)


def autoconfig_urls(domain: str, *, address: str | None = None) -> tuple[str, ...]:
    """The two URLs :func:`fetch_autoconfig` tries, in order.

    Args:
        domain: the user's email domain.
        address: the user's email address, sent as ``?emailaddress=`` to
            ``autoconfig.<domain>`` only; ``None`` sends nothing about the user.

    Returns:
        ``(autoconfig.<domain> URL, <domain>/.well-known URL)``.

    Raises:
        InvalidArgumentError: *domain* is not a DNS name, or *address* is not an
            address at *domain*.
    """
    name = normalize_dns_name(domain, what="email domain")
    query = ""
    if address is not None:
        _check_address(address, name)
        query = "?" + urlencode({"emailaddress": address})
    return (
        f"https://autoconfig.{name}/mail/config-v1.1.xml{query}",
        f"https://{name}/.well-known/autoconfig/mail/config-v1.1.xml",
    )


def fetch_autoconfig(
    domain: str,
    *,
    address: str | None = None,
    policy: Policy | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    opener: SocketOpener | None = None,
) -> list[Endpoint]:
    """Fetch and parse the domain's autoconfig document over verified HTTPS.

    The URLs of :func:`autoconfig_urls` are tried in order; the first one that
    yields a well-formed document decides (its endpoints may be ``[]`` if it
    lists only cleartext servers). A URL with nothing there (no such host,
    connection refused, an HTTP error) is skipped silently; one that fails
    (certificate, redirect to ``http://``, oversized, hostile or malformed XML,
    timeout) is skipped too, but if no URL gives a document the first such
    failure is raised, so a broken or attacked set-up is never reported as
    "nothing published".

    Args:
        domain: the user's email domain.
        address: the user's address, for ``?emailaddress=`` (optional; see
            :func:`autoconfig_urls`).
        policy: trust settings for HTTPS. Only ``cafile``, ``cadata``,
            ``ssl_context`` and the TLS version floor are used; pins, client
            certificates and TLS memory belong to the mail server and are never
            applied to (or presented to) the web server. ``None`` trusts the
            certifi roots.
        timeout: seconds for each URL's whole exchange.
        opener: opens the TCP connection, ``(host, port, timeout) -> socket``.
            For tests and proxies: the TLS handshake, SNI and the certificate's
            name check still use the real host name from the URL. ``None``
            uses :func:`socket.create_connection`.

    Returns:
        The TLS endpoints in the document's order (``priority`` 0, 1, ...), each
        with :attr:`Endpoint.provenance` ``AUTOCONFIG_HTTPS``; ``[]`` when the
        domain publishes no autoconfig document.

    Raises:
        CapabilityError: defusedxml is not installed.
        InvalidArgumentError: *domain* or *address* is malformed.
        PolicyError: *policy* does not verify certificates.
        CertificateError: the web server's certificate failed verification.
        DowngradeError: a redirect led to a non-HTTPS URL.
        SecurityError: the TLS handshake failed, or the document carried a DTD
            or entity declaration.
        RemoteProtocolError: the response or document was malformed, oversized,
            or redirected too often.
        TimeoutError: the deadline passed.
    """
    parser = _defused_parser()  # before any network traffic
    urls = autoconfig_urls(domain, address=address)
    name = normalize_dns_name(domain, what="email domain")
    context = build_context(_trust_only(policy))
    problems: list[SMTPSecError] = []
    for url in urls:
        try:
            response = fetch(
                url,
                context=context,
                timeout=timeout,
                max_bytes=MAX_BYTES,
                max_redirects=MAX_REDIRECTS,
                opener=opener or open_tcp,
            )
            return _endpoints(parser, response.body, name, response.url)
        except NotFound:
            continue
        except (SecurityError, ProtocolError, TimeoutError) as exc:
            problems.append(exc)
    if problems:
        raise problems[0]
    return []


def parse_autoconfig(document: bytes, *, domain: str, url: str) -> list[Endpoint]:
    """Parse a ``config-v1.1.xml`` document you fetched yourself.

    Applies the same rules as :func:`fetch_autoconfig` (smtp entries only, no
    cleartext, no DTD or entities). The result claims provenance
    ``AUTOCONFIG_HTTPS``: only pass a document that you read over verified
    HTTPS from *url*.

    Args:
        document: the raw XML bytes.
        domain: the user's email domain the document was fetched for.
        url: the ``https://`` URL it was read from.

    Returns:
        The TLS endpoints, in document order.

    Raises:
        CapabilityError: defusedxml is not installed.
        InvalidArgumentError: *domain* is malformed or *url* is not https.
        SecurityError: the document carries a DTD or entity declaration.
        RemoteProtocolError: the document is malformed or not a clientConfig.
    """
    parser = _defused_parser()
    name = normalize_dns_name(domain, what="email domain")
    if not url.lower().startswith("https://"):
        raise InvalidArgumentError(
            f"url {url!r} is not https://; an autoconfig result is trusted only when it "
            "was read over verified HTTPS"
        )
    return _endpoints(parser, document, name, url)


# --------------------------------------------------------------------------- helpers

_Parser = tuple[Callable[..., ET.Element], type[Exception]]


def _defused_parser() -> _Parser:
    """``(fromstring, DefusedXmlException)`` from defusedxml, or CapabilityError."""
    try:
        tree = importlib.import_module("defusedxml.ElementTree")
        base = importlib.import_module("defusedxml")
    except ImportError as exc:
        raise CapabilityError(_DEFUSEDXML_MISSING) from exc
    fromstring: Callable[..., ET.Element] = tree.fromstring
    forbidden: type[Exception] = base.DefusedXmlException
    return fromstring, forbidden


def _trust_only(policy: Policy | None) -> Policy:
    """The trust half of *policy*: what may decide whether a web server is genuine."""
    given = policy or Policy()
    if not given.verifies:
        raise PolicyError(
            "autoconfig is read only over verified HTTPS, but this policy does not verify "
            "certificates (pinned_instead_of_ca, or an ssl_context without verification); "
            "pass Policy(cafile=...) to trust a private CA instead"
        )
    return Policy(
        cafile=given.cafile,
        cadata=given.cadata,
        ssl_context=given.ssl_context,
        min_tls_version=given.min_tls_version,
        allow_legacy_tls=given.allow_legacy_tls,
    )


def _check_address(address: str, domain: str) -> None:
    local, at, rest = address.rpartition("@")
    printable = address.isprintable() and not any(c.isspace() for c in address)
    same_domain = False
    if at and local and printable:
        try:
            same_domain = normalize_dns_name(rest, what="address domain") == domain
        except InvalidArgumentError:
            same_domain = False
    if not same_domain:
        raise InvalidArgumentError(
            f"address {address!r} is not an email address at {domain}; pass the user's "
            f"address (local-part@{domain}) or address=None"
        )


def _endpoints(parser: _Parser, document: bytes, domain: str, url: str) -> list[Endpoint]:
    root = _parse(parser, document, url)
    if root.tag != "clientConfig":
        raise RemoteProtocolError(
            f"the document at {url} is not an autoconfig file (root element <{root.tag}>, "
            "expected <clientConfig>); configure the mail server by hand"
        )
    found: list[Endpoint] = []
    for server in root.findall("./emailProvider/outgoingServer")[:_MAX_SERVERS]:
        endpoint = _outgoing(server, len(found), domain, url)
        if endpoint is not None:
            found.append(endpoint)
    return found


def _parse(parser: _Parser, document: bytes, url: str) -> ET.Element:
    fromstring, forbidden = parser
    try:
        # No DTD at all: entity expansion ("billion laughs") and external
        # entities both need one, and a config-v1.1.xml never has one.
        root = fromstring(document, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except forbidden as exc:
        raise SecurityError(
            f"the autoconfig document at {url} contains a DTD or entity declaration "
            f"({type(exc).__name__}), which smtpsec never processes (entity expansion and "
            "external entities are attacks on XML parsers); it was discarded. Configure "
            "the mail server by hand"
        ) from exc
    except (ET.ParseError, ValueError, LookupError) as exc:
        raise RemoteProtocolError(
            f"the autoconfig document at {url} is not well-formed XML ({exc}); configure "
            "the mail server by hand"
        ) from exc
    for element in root.iter():  # compare local names: a namespace changes nothing here
        if isinstance(element.tag, str):
            element.tag = element.tag.rpartition("}")[2]
    return root


def _text(element: ET.Element, tag: str) -> str:
    child = element.find(tag)
    return (child.text or "").strip() if child is not None else ""


def _outgoing(server: ET.Element, position: int, domain: str, url: str) -> Endpoint | None:
    """One ``outgoingServer`` as an Endpoint, or ``None`` when it must be dropped."""
    if (server.get("type") or "").strip().lower() != "smtp":
        return None
    security = _SOCKET_TYPES.get(_text(server, "socketType").lower())
    if security is None:
        return None  # "plain" or unknown: never a cleartext configuration
    host = _text(server, "hostname").replace("%EMAILDOMAIN%", domain)
    port_text = _text(server, "port")
    if not host or "%" in host or not (port_text.isdigit() or not port_text):
        return None
    port = int(port_text[:6]) if port_text else _DEFAULT_PORT[security]
    hints: list[str] = []
    for element in server.findall("authentication"):
        hints += _AUTH_HINTS.get((element.text or "").strip().lower(), ())
    try:
        return Endpoint(
            host=host,
            port=port,
            security=security,
            priority=position,
            weight=0,
            service=None,
            domain=domain,
            dnssec_validated=False,
            autoconfig_url=url,
            sasl_mechanisms=tuple(hints),
        )
    except InvalidArgumentError:
        return None  # a host no certificate could name, or a port out of range
