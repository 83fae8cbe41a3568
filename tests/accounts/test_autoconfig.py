"""Mozilla-style autoconfig over verified HTTPS, against a real loopback HTTPS server.

Requirement IDs: R-8314-5.1-2, R-8314-5.1-3 (never a cleartext configuration),
R-8314-5.1-5 and R-7817-3-4 (which names a certificate must carry, and when the
user must confirm a host), R-8314-4.5-1 (no MX, no third-party guesses).
"""

from __future__ import annotations

import socket
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from https_server import HTTPSServer, Route, serve
from loopback_dns import LoopbackDNS

import smtpsec
from smtpsec import Policy, Provenance, Security
from smtpsec.autoconfig import (
    MAX_BYTES,
    autoconfig_urls,
    fetch_autoconfig,
    parse_autoconfig,
)
from smtpsec.discovery import Endpoint, discover, merge_endpoints
from smtpsec.errors import (
    CapabilityError,
    CertificateError,
    DowngradeError,
    InvalidArgumentError,
    PolicyError,
    RemoteProtocolError,
    SecurityError,
    SMTPSecError,
    SMTPSecWarning,
    UntrustedDiscoveryError,
)
from smtpsec.errors import TimeoutError as DeadlineError
from smtpsec.testing import CA, SMTPServer

AUTOCONFIG_PATH = "/mail/config-v1.1.xml"
WELL_KNOWN_PATH = "/.well-known/autoconfig/mail/config-v1.1.xml"


def document(*outgoing: str, incoming: bool = True) -> bytes:
    imap = (
        '<incomingServer type="imap"><hostname>imap.example.test</hostname>'
        "<port>993</port><socketType>SSL</socketType></incomingServer>"
        if incoming
        else ""
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<clientConfig version="1.1">'
        '<emailProvider id="example.test"><domain>example.test</domain>'
        f"{imap}{''.join(outgoing)}</emailProvider></clientConfig>"
    ).encode()


def smtp(host: str, port: str, socket_type: str, *auth: str, kind: str = "smtp") -> str:
    methods = "".join(f"<authentication>{a}</authentication>" for a in auth)
    port_xml = f"<port>{port}</port>" if port else ""
    return (
        f'<outgoingServer type="{kind}"><hostname>{host}</hostname>{port_xml}'
        f"<socketType>{socket_type}</socketType>{methods}"
        "<username>%EMAILADDRESS%</username></outgoingServer>"
    )


GOOD = document(
    smtp("smtp.example.test", "465", "SSL", "password-cleartext", "OAuth2"),
    smtp("smtp.example.test", "587", "STARTTLS", "password-encrypted"),
    smtp("smtp.example.test", "25", "plain", "password-cleartext"),
)


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA.create()


@pytest.fixture(scope="module")
def policy(ca: CA) -> Policy:
    return Policy(cadata=ca.cert_pem.decode("ascii"))


@pytest.fixture
def web(ca: CA) -> Iterator[HTTPSServer]:
    yield from serve(ca.issue("autoconfig.example.test", "example.test"))


def fetch(web: HTTPSServer, policy: Policy, **kwargs: object) -> list[Endpoint]:
    return fetch_autoconfig("example.test", policy=policy, opener=web.opener, **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- happy path


def test_happy_path_reads_smtp_entries_over_verified_https(
    web: HTTPSServer, policy: Policy
) -> None:
    web.routes[AUTOCONFIG_PATH] = Route(body=GOOD, headers={"Content-Type": "text/xml"})
    found = fetch(web, policy, address="ann@example.test")
    assert [(ep.host, ep.port, ep.security) for ep in found] == [
        ("smtp.example.test", 465, Security.IMPLICIT_TLS),
        ("smtp.example.test", 587, Security.STARTTLS),
    ]  # the plain entry on 25 is dropped, the IMAP entry ignored
    first, second = found
    assert first.provenance is Provenance.AUTOCONFIG_HTTPS
    assert (first.service, first.dnssec_validated, first.priority) == (None, False, 0)
    assert second.priority == 1
    assert first.sasl_mechanisms == ("PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER")
    assert second.sasl_mechanisms == ("CRAM-MD5", "DIGEST-MD5")
    assert first.autoconfig_url == (
        "https://autoconfig.example.test/mail/config-v1.1.xml?emailaddress=ann%40example.test"
    )
    # SNI, the Host header and the certificate check used the real name, not loopback.
    assert web.sni == ["autoconfig.example.test"]
    assert web.connects == [("autoconfig.example.test", 443)]
    assert web.requests == [
        ("autoconfig.example.test", "/mail/config-v1.1.xml?emailaddress=ann%40example.test")
    ]
    # R-7817-3-4: a host inside the domain, vouched for by the domain's HTTPS server.
    assert not first.needs_confirmation()
    assert first.reference_identity().dns_ids == frozenset({"example.test", "smtp.example.test"})
    assert first.reference_identity().srv_ids == frozenset()


def test_no_address_sends_nothing_about_the_user(web: HTTPSServer, policy: Policy) -> None:
    web.routes[AUTOCONFIG_PATH] = Route(body=GOOD)
    fetch(web, policy)
    assert web.requests == [("autoconfig.example.test", "/mail/config-v1.1.xml")]


def test_well_known_url_is_tried_when_autoconfig_host_is_absent(
    web: HTTPSServer, policy: Policy
) -> None:
    def opener(host: str, port: int, timeout: float) -> socket.socket:
        if host.startswith("autoconfig."):
            raise ConnectionRefusedError("no autoconfig host")
        return web.opener(host, port, timeout)

    web.routes[WELL_KNOWN_PATH] = Route(body=GOOD)
    found = fetch_autoconfig("example.test", policy=policy, opener=opener)
    assert len(found) == 2
    assert found[0].autoconfig_url == "https://example.test" + WELL_KNOWN_PATH
    assert web.sni == ["example.test"]


def test_nothing_published_is_an_empty_list(web: HTTPSServer, policy: Policy) -> None:
    assert fetch(web, policy) == []  # both URLs answer 404
    assert [path for _, path in web.requests] == [AUTOCONFIG_PATH, WELL_KNOWN_PATH]


def test_https_redirect_is_followed_and_recorded(web: HTTPSServer, policy: Policy) -> None:
    web.routes[AUTOCONFIG_PATH] = Route(status=302, headers={"Location": "/moved.xml"})
    web.routes["/moved.xml"] = Route(body=GOOD)
    [first, _] = fetch(web, policy)
    assert first.autoconfig_url == "https://autoconfig.example.test/moved.xml"


def test_a_document_listing_only_plain_servers_gives_nothing(
    web: HTTPSServer, policy: Policy
) -> None:
    """R-8314-5.1-3: never a cleartext configuration, even when that is all there is."""
    web.routes[AUTOCONFIG_PATH] = Route(body=document(smtp("smtp.example.test", "25", "plain")))
    assert fetch(web, policy) == []


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("location", ["http://autoconfig.example.test/x.xml", "ftp://x/y.xml"])
def test_redirect_to_another_scheme_is_refused(
    web: HTTPSServer, policy: Policy, location: str
) -> None:
    web.routes[AUTOCONFIG_PATH] = Route(status=301, headers={"Location": location})
    with pytest.raises(DowngradeError, match=r"not an https:// URL"):
        fetch(web, policy)
    assert all(path != "/x.xml" for _, path in web.requests)


def test_redirect_loop_is_bounded(web: HTTPSServer, policy: Policy) -> None:
    web.routes[AUTOCONFIG_PATH] = Route(status=307, headers={"Location": AUTOCONFIG_PATH})
    with pytest.raises(RemoteProtocolError, match="redirected more than 3 times"):
        fetch(web, policy)
    assert sum(path == AUTOCONFIG_PATH for _, path in web.requests) == 4


@pytest.mark.parametrize("content_length", [True, False])
def test_oversized_body_is_refused(web: HTTPSServer, policy: Policy, content_length: bool) -> None:
    padding = b"<!-- " + b"x" * (MAX_BYTES + 1024) + b" -->"
    body = GOOD.replace(b"<clientConfig", padding + b"<clientConfig")
    web.routes[AUTOCONFIG_PATH] = Route(body=body, content_length=content_length, chunks=8)
    with pytest.raises(RemoteProtocolError, match=f"larger than {MAX_BYTES} bytes"):
        fetch(web, policy)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE clientConfig [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<clientConfig version="1.1"><emailProvider id="x"><outgoingServer type="smtp">
<hostname>&lol4;.example.test</hostname><port>465</port><socketType>SSL</socketType>
</outgoingServer></emailProvider></clientConfig>"""


def external_entity(target: Path) -> bytes:
    return f"""<?xml version="1.0"?>
<!DOCTYPE clientConfig [ <!ENTITY secret SYSTEM "file://{target}"> ]>
<clientConfig version="1.1"><emailProvider id="x"><outgoingServer type="smtp">
<hostname>&secret;</hostname><port>465</port><socketType>SSL</socketType>
</outgoingServer></emailProvider></clientConfig>""".encode()


def test_billion_laughs_is_refused(web: HTTPSServer, policy: Policy) -> None:
    web.routes[AUTOCONFIG_PATH] = Route(body=BILLION_LAUGHS)
    with pytest.raises(SecurityError, match="DTD or entity declaration") as caught:
        fetch(web, policy)
    assert type(caught.value) is SecurityError


def test_external_entity_is_refused_and_never_read(
    web: HTTPSServer, policy: Policy, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("smtp.stolen.test")
    web.routes[AUTOCONFIG_PATH] = Route(body=external_entity(secret))
    with pytest.raises(SecurityError, match="DTD or entity declaration") as caught:
        fetch(web, policy)
    assert "stolen" not in str(caught.value)


def test_plain_dtd_without_entities_is_refused_too() -> None:
    doc = b'<?xml version="1.0"?><!DOCTYPE clientConfig SYSTEM "x.dtd"><clientConfig/>'
    with pytest.raises(SecurityError, match="DTD"):
        parse_autoconfig(doc, domain="example.test", url="https://example.test/x")


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"<clientConfig><unclosed></clientConfig>", "not well-formed XML"),
        (b"\xff\xfe garbage", "not well-formed XML"),
        (b"<html><body>It works!</body></html>", "not an autoconfig file"),
    ],
)
def test_malformed_documents_are_protocol_errors(
    web: HTTPSServer, policy: Policy, body: bytes, match: str
) -> None:
    web.routes[AUTOCONFIG_PATH] = Route(body=body)
    with pytest.raises(RemoteProtocolError, match=match):
        fetch(web, policy)


def test_certificate_for_the_wrong_name_is_refused(ca: CA, policy: Policy) -> None:
    for web in serve(ca.issue("www.other.test")):
        web.routes[AUTOCONFIG_PATH] = Route(body=GOOD)
        with pytest.raises(CertificateError, match=r"autoconfig\.example\.test") as caught:
            fetch(web, policy)
        assert "Hostname mismatch" in str(caught.value) or "hostname" in str(caught.value)
        assert web.requests == []  # no HTTP request was sent to the impostor


def test_certificate_from_an_untrusted_ca_is_refused(web: HTTPSServer) -> None:
    web.routes[AUTOCONFIG_PATH] = Route(body=GOOD)
    with pytest.raises(CertificateError, match=r"Policy\(cafile=\.\.\.\)"):
        fetch_autoconfig("example.test", opener=web.opener)  # certifi roots only
    assert web.requests == []


def test_slow_server_hits_the_deadline(web: HTTPSServer, policy: Policy) -> None:
    web.routes[AUTOCONFIG_PATH] = Route(body=GOOD, delay=2.0)
    with pytest.raises(DeadlineError, match=r"within 0\.3 s"):
        fetch(web, policy, timeout=0.3)


def test_plain_http_on_the_https_port_is_a_tls_failure(policy: Policy) -> None:
    listener = socket.create_server(("127.0.0.1", 0))

    def opener(host: str, port: int, timeout: float) -> socket.socket:
        client = socket.create_connection(listener.getsockname(), timeout=timeout)
        conn, _ = listener.accept()
        conn.sendall(b"HTTP/1.0 200 OK\r\n\r\nhello")
        conn.close()
        return client

    with listener, pytest.raises(SecurityError, match="TLS handshake"):
        fetch_autoconfig("example.test", policy=policy, opener=opener)


def test_every_failure_is_a_typed_smtpsec_error(web: HTTPSServer, policy: Policy) -> None:
    web.routes[AUTOCONFIG_PATH] = Route(body=b"HTTP garbage", content_length=False)
    web.routes[WELL_KNOWN_PATH] = Route(body=BILLION_LAUGHS)
    with pytest.raises(SMTPSecError):
        fetch(web, policy)


def test_a_good_second_url_wins_over_a_bad_first(web: HTTPSServer, policy: Policy) -> None:
    web.routes[AUTOCONFIG_PATH] = Route(body=BILLION_LAUGHS)
    web.routes[WELL_KNOWN_PATH] = Route(body=GOOD)
    assert len(fetch(web, policy)) == 2


# --------------------------------------------------------------------------- arguments


def test_policy_that_does_not_verify_is_refused(web: HTTPSServer) -> None:
    pin = "sha256/" + "A" * 43 + "="
    with pytest.raises(PolicyError, match="verified HTTPS"):
        fetch_autoconfig(
            "example.test",
            policy=Policy(pins={pin}, pinned_instead_of_ca=True),
            opener=web.opener,
        )
    assert web.connects == []


def test_mail_server_pins_are_not_applied_to_the_web_server(web: HTTPSServer, ca: CA) -> None:
    web.routes[AUTOCONFIG_PATH] = Route(body=GOOD)
    pin = "sha256/" + "A" * 43 + "="
    mail_policy = Policy(cadata=ca.cert_pem.decode("ascii"), pins={pin})
    assert len(fetch(web, mail_policy)) == 2


def test_private_ca_via_cafile(web: HTTPSServer, ca: CA, tmp_path: Path) -> None:
    web.routes[AUTOCONFIG_PATH] = Route(body=GOOD)
    cafile = ca.write_cafile(tmp_path / "ca.pem")
    assert len(fetch(web, Policy(cafile=cafile))) == 2


@pytest.mark.parametrize(
    "address",
    ["ann@other.test", "ann", "@example.test", "ann bob@example.test", "a\n@example.test"],
)
def test_address_must_be_at_the_domain(address: str) -> None:
    with pytest.raises(InvalidArgumentError, match=r"not an email address at example\.test"):
        autoconfig_urls("example.test", address=address)


def test_urls_for_a_unicode_domain_use_a_labels() -> None:
    assert autoconfig_urls("Bücher.TEST") == (
        "https://autoconfig.xn--bcher-kva.test/mail/config-v1.1.xml",
        "https://xn--bcher-kva.test/.well-known/autoconfig/mail/config-v1.1.xml",
    )


def test_missing_defusedxml_is_a_capability_error(
    monkeypatch: pytest.MonkeyPatch, web: HTTPSServer, policy: Policy
) -> None:
    for name in [m for m in sys.modules if m == "defusedxml" or m.startswith("defusedxml.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "defusedxml", None)
    with pytest.raises(
        CapabilityError, match=r"pip install defusedxml \(smtpsec's 'autoconfig' extra\)"
    ):
        fetch(web, policy)
    assert web.connects == []  # refused before any network traffic


# --------------------------------------------------------------------------- parsing rules


def test_parsing_rules() -> None:
    doc = document(
        smtp("smtp.%EMAILDOMAIN%", "", "SSL"),  # placeholder filled, default port
        smtp("%EMAILLOCALPART%.example.test", "465", "SSL"),  # other placeholder: dropped
        smtp("smtp.example.test", "587", "STARTTLS", kind="exchange"),  # not smtp: dropped
        smtp("smtp.example.test", "99999", "SSL"),  # port out of range: dropped
        smtp("smtp.example.test", "abc", "SSL"),  # not a port: dropped
        smtp("192.0.2.7", "465", "SSL"),  # no certificate names an IP here: dropped
        smtp("smtp.example.test", "", "STARTTLS", "none", "client-IP-address"),
        smtp("smtp.example.test", "465", "TLS"),  # unknown socketType: dropped
        incoming=False,
    )
    found = parse_autoconfig(doc, domain="example.test", url="https://example.test/c.xml")
    assert [(ep.host, ep.port, ep.security, ep.sasl_mechanisms) for ep in found] == [
        ("smtp.example.test", 465, Security.IMPLICIT_TLS, ()),
        ("smtp.example.test", 587, Security.STARTTLS, ()),
    ]
    assert [ep.priority for ep in found] == [0, 1]


def test_parse_requires_an_https_url() -> None:
    with pytest.raises(InvalidArgumentError, match="https"):
        parse_autoconfig(GOOD, domain="example.test", url="http://example.test/c.xml")


def test_namespaced_document_is_read() -> None:
    doc = GOOD.replace(b"<clientConfig ", b'<clientConfig xmlns="urn:x" ')
    found = parse_autoconfig(doc, domain="example.test", url="https://example.test/c.xml")
    assert len(found) == 2


# --------------------------------------------------------------------------- trust and merge


def test_R_8314_5_1_5_out_of_domain_host_needs_confirmation(
    web: HTTPSServer, policy: Policy
) -> None:
    web.routes[AUTOCONFIG_PATH] = Route(body=document(smtp("smtp.provider.test", "465", "SSL")))
    [endpoint] = fetch(web, policy)
    assert endpoint.needs_confirmation()
    assert endpoint.reference_identity().dns_ids == frozenset({"example.test"})
    confirmed = endpoint.reference_identity(confirmed_target=True)
    assert confirmed.dns_ids == frozenset({"example.test", "smtp.provider.test"})
    with pytest.raises(UntrustedDiscoveryError, match="autoconfig https://autoconfig"):
        smtpsec.connect(endpoint, policy=policy, timeout=1)


@pytest.fixture
def dns_server() -> Iterator[LoopbackDNS]:
    server = LoopbackDNS()
    yield server
    server.close()


SUBS = "_submissions._tcp.example.test."
SUB = "_submission._tcp.example.test."


def test_merge_order_dnssec_srv_then_autoconfig_then_unsigned_srv(
    web: HTTPSServer, policy: Policy, dns_server: LoopbackDNS
) -> None:
    dns_server.add(SUBS, "SRV", "0 1 465 signed.example.test.")
    dns_server.signed.add(SUBS)
    dns_server.add(SUB, "SRV", "0 1 587 unsigned.example.test.", "5 1 587 smtp.example.test.")
    web.routes[AUTOCONFIG_PATH] = Route(body=GOOD)
    found = discover(
        "example.test",
        resolver=dns_server.resolver(),
        autoconfig=True,
        policy=policy,
        opener=web.opener,
    )
    assert [(ep.host, ep.port, ep.provenance) for ep in found] == [
        ("signed.example.test", 465, Provenance.SRV_DNSSEC),
        ("smtp.example.test", 465, Provenance.AUTOCONFIG_HTTPS),
        ("smtp.example.test", 587, Provenance.AUTOCONFIG_HTTPS),
        # the SRV copy of smtp.example.test:587 is dropped: autoconfig named it already
        ("unsigned.example.test", 587, Provenance.SRV_UNSIGNED),
    ]
    assert [rank.rank for rank in Provenance] == [0, 1, 2]


def test_discover_without_autoconfig_makes_no_https_request(
    web: HTTPSServer, dns_server: LoopbackDNS
) -> None:
    dns_server.add(SUBS, "SRV", "0 1 465 smtp.example.test.")
    found = discover("example.test", resolver=dns_server.resolver(), opener=web.opener)
    assert [ep.provenance for ep in found] == [Provenance.SRV_UNSIGNED]
    assert web.connects == []


def test_autoconfig_failure_with_srv_results_warns_and_keeps_srv(
    web: HTTPSServer, policy: Policy, dns_server: LoopbackDNS
) -> None:
    dns_server.add(SUBS, "SRV", "0 1 465 smtp.example.test.")
    web.routes[AUTOCONFIG_PATH] = Route(body=BILLION_LAUGHS)
    with pytest.warns(SMTPSecWarning, match="autoconfig for example.test was not used"):
        found = discover(
            "example.test",
            resolver=dns_server.resolver(),
            autoconfig=True,
            policy=policy,
            opener=web.opener,
        )
    assert [ep.provenance for ep in found] == [Provenance.SRV_UNSIGNED]


def test_autoconfig_failure_without_srv_results_raises(
    web: HTTPSServer, policy: Policy, dns_server: LoopbackDNS
) -> None:
    web.routes[AUTOCONFIG_PATH] = Route(status=302, headers={"Location": "http://x.test/"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DowngradeError):
            discover(
                "example.test",
                resolver=dns_server.resolver(),
                autoconfig=True,
                policy=policy,
                opener=web.opener,
            )


def test_bad_address_is_refused_before_any_query(dns_server: LoopbackDNS) -> None:
    with pytest.raises(InvalidArgumentError):
        discover(
            "example.test", resolver=dns_server.resolver(), autoconfig=True, address="a@b.test"
        )
    assert dns_server.queries == []


def test_merge_endpoints_is_stable_and_deduplicates() -> None:
    def ep(host: str, *, srv: bool, signed: bool = False, priority: int = 0) -> Endpoint:
        return Endpoint(
            host=host,
            port=465,
            security=Security.IMPLICIT_TLS,
            priority=priority,
            weight=0,
            service="_submissions" if srv else None,
            domain="example.test",
            dnssec_validated=signed,
            autoconfig_url=None if srv else "https://example.test/c.xml",
        )

    unsigned = [ep("a.example.test", srv=True), ep("b.example.test", srv=True, priority=1)]
    web = [ep("b.example.test", srv=False), ep("c.example.test", srv=False, priority=1)]
    signed = [ep("d.example.test", srv=True, signed=True)]
    merged = merge_endpoints(unsigned, web, signed)
    assert [(e.host, e.provenance) for e in merged] == [
        ("d.example.test", Provenance.SRV_DNSSEC),
        ("b.example.test", Provenance.AUTOCONFIG_HTTPS),
        ("c.example.test", Provenance.AUTOCONFIG_HTTPS),
        ("a.example.test", Provenance.SRV_UNSIGNED),
    ]


def test_autoconfig_endpoint_connects_with_its_mode_and_identity(
    ca: CA, policy: Policy, tmp_path: Path
) -> None:
    """The one consumer (endpoint_setup) takes the Security enum and the RFC 7817 names."""
    cafile = ca.write_cafile(tmp_path / "ca.pem")
    with SMTPServer(ca.issue("localhost", ips=("127.0.0.1",)), tls=Security.IMPLICIT_TLS) as srv:
        doc = document(smtp("localhost", str(srv.port), "SSL"), incoming=False)
        [endpoint] = parse_autoconfig(doc, domain="localhost", url="https://localhost/c.xml")
        with smtpsec.connect(endpoint, policy=Policy(cafile=cafile), timeout=5) as session:
            assert session.report.mode is Security.IMPLICIT_TLS
            assert session.report.verified
        with pytest.raises(smtpsec.PolicyError, match=r"Security\.IMPLICIT_TLS"):
            smtpsec.connect(endpoint, security=Security.STARTTLS, policy=policy)
