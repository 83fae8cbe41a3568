"""SRV discovery (RFC 6186, RFC 8314 §5.1) against a real loopback DNS responder.

Requirement IDs: R-8314-5.1-1..6, R-6186-3-1, R-8314-4.5-1, R-8314-5-1.
"""

from __future__ import annotations

import random
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.rrset
import pytest
from loopback_dns import LoopbackDNS

import smtpsec
from smtpsec import Security, errors
from smtpsec.discovery import Endpoint, Provenance, _default_resolver, discover
from smtpsec.errors import CapabilityError, ConnectError, InvalidArgumentError


@pytest.fixture
def dns_server() -> Iterator[LoopbackDNS]:
    server = LoopbackDNS()
    yield server
    server.close()


IMPLICIT = Security.IMPLICIT_TLS
STARTTLS = Security.STARTTLS
SUBS = "_submissions._tcp.example.test."
SUB = "_submission._tcp.example.test."


def summary(endpoints: list[Endpoint]) -> list[tuple[str, int, Security]]:
    return [(ep.host, ep.port, ep.security) for ep in endpoints]


# --------------------------------------------------------------------------- queries


def test_R_8314_5_1_1_both_services_queried_and_never_mx(dns_server: LoopbackDNS) -> None:
    dns_server.add(SUBS, "SRV", "0 1 465 smtp.example.test.")
    dns_server.add("example.test.", "MX", "10 mx.example.test.")
    found = discover("example.test", resolver=dns_server.resolver())
    assert summary(found) == [("smtp.example.test", 465, IMPLICIT)]
    assert dns_server.queries == [(SUBS, "SRV"), (SUB, "SRV")]


def test_R_8314_4_5_1_mx_only_domain_yields_nothing(dns_server: LoopbackDNS) -> None:
    dns_server.add("example.test.", "MX", "10 mx.example.test.")
    assert discover("example.test", resolver=dns_server.resolver()) == []
    assert all(rdtype == "SRV" for _, rdtype in dns_server.queries)


def test_nxdomain_and_empty_answers_mean_no_records(dns_server: LoopbackDNS) -> None:
    dns_server.add(SUBS, "TXT", '"not an srv record"')  # name exists, no SRV: NoAnswer
    assert discover("example.test", resolver=dns_server.resolver()) == []
    assert len(dns_server.queries) == 2


# --------------------------------------------------------------------------- RFC 6186 vectors


def test_R_6186_3_1_a_equal_priority_prefers_implicit_tls(dns_server: LoopbackDNS) -> None:
    dns_server.add(SUB, "SRV", "0 1 587 b.example.test.")
    dns_server.add(SUBS, "SRV", "0 1 465 a.example.test.")
    found = discover("example.test", resolver=dns_server.resolver())
    assert summary(found) == [
        ("a.example.test", 465, IMPLICIT),
        ("b.example.test", 587, STARTTLS),
    ]
    assert [ep.service for ep in found] == ["_submissions", "_submission"]


def test_R_6186_3_1_b_dot_target_means_service_absent(dns_server: LoopbackDNS) -> None:
    dns_server.add(SUBS, "SRV", "0 0 0 .")
    dns_server.add(SUB, "SRV", "0 1 587 b.example.test.", "5 1 587 c.example.test.")
    found = discover("example.test", resolver=dns_server.resolver())
    assert summary(found) == [
        ("b.example.test", 587, STARTTLS),
        ("c.example.test", 587, STARTTLS),
    ]


def test_R_6186_3_1_c_priority_beats_service_preference(dns_server: LoopbackDNS) -> None:
    dns_server.add(SUB, "SRV", "0 1 587 b.example.test.")
    dns_server.add(SUBS, "SRV", "10 1 465 a.example.test.")
    found = discover("example.test", resolver=dns_server.resolver())
    # 587 first, but as STARTTLS *required*: never a plaintext configuration.
    assert summary(found) == [
        ("b.example.test", 587, STARTTLS),
        ("a.example.test", 465, IMPLICIT),
    ]
    assert [ep.priority for ep in found] == [0, 10]


def test_R_8314_5_1_2_every_endpoint_is_tls(dns_server: LoopbackDNS) -> None:
    dns_server.add(SUBS, "SRV", "3 1 465 a.example.test.", "1 1 4650 d.example.test.")
    dns_server.add(SUB, "SRV", "2 1 587 b.example.test.", "1 1 25 c.example.test.")
    found = discover("example.test", resolver=dns_server.resolver())
    assert len(found) == 4
    assert {ep.security for ep in found} <= {IMPLICIT, STARTTLS}
    assert [ep.host for ep in found] == [
        "d.example.test",
        "c.example.test",
        "b.example.test",
        "a.example.test",
    ]


def test_unusable_records_are_dropped(dns_server: LoopbackDNS) -> None:
    dns_server.add(
        SUBS,
        "SRV",
        "0 1 0 portless.example.test.",  # port 0 cannot be connected to
        "0 1 465 *.example.test.",  # no certificate could name this host
        "0 1 465 ok.example.test.",
    )
    found = discover("example.test", resolver=dns_server.resolver())
    assert summary(found) == [("ok.example.test", 465, IMPLICIT)]


# --------------------------------------------------------------------------- weights


def test_R_6186_3_1_weights_follow_rfc_2782(dns_server: LoopbackDNS) -> None:
    dns_server.add(
        SUBS,
        "SRV",
        "0 0 465 zero.example.test.",
        "0 10 465 light.example.test.",
        "0 90 465 heavy.example.test.",
        "1 50 465 backup.example.test.",
    )
    dns_server.add(SUB, "SRV", "0 100 587 starttls.example.test.")
    resolver = dns_server.resolver()
    rng = random.Random(20180131)
    runs = 300
    first: Counter[str] = Counter()
    for _ in range(runs):
        found = discover("example.test", resolver=resolver, rng=rng)
        hosts = [ep.host for ep in found]
        # Weights only shuffle inside one priority of one service.
        assert sorted(hosts[:3]) == [f"{n}.example.test" for n in ("heavy", "light", "zero")]
        assert hosts[3:] == ["starttls.example.test", "backup.example.test"]
        first[hosts[0]] += 1
    # RFC 2782: P(first) = weight / (sum + 1) with the zero-weight record at the front.
    assert 0.8 * runs < first["heavy.example.test"] < 0.97 * runs
    assert 0.03 * runs < first["light.example.test"] < 0.2 * runs
    assert first["zero.example.test"] < 0.05 * runs


def test_weighted_order_is_reproducible_with_a_seeded_rng(dns_server: LoopbackDNS) -> None:
    dns_server.add(SUBS, "SRV", *(f"0 {w} 465 h{w}.example.test." for w in (1, 5, 20, 40)))
    resolver = dns_server.resolver()
    orders = {
        tuple(ep.host for ep in discover("example.test", resolver=resolver, rng=random.Random(3)))
        for _ in range(5)
    }
    assert len(orders) == 1
    varied = {
        tuple(ep.host for ep in discover("example.test", resolver=resolver, rng=random.Random(s)))
        for s in range(40)
    }
    assert len(varied) > 1  # the seed really drives the choice


def test_all_zero_weights_keep_every_record(dns_server: LoopbackDNS) -> None:
    dns_server.add(SUBS, "SRV", "0 0 465 a.example.test.", "0 0 465 b.example.test.")
    found = discover("example.test", resolver=dns_server.resolver())
    assert sorted(ep.host for ep in found) == ["a.example.test", "b.example.test"]


# --------------------------------------------------------------------------- DNSSEC / trust


def test_R_8314_5_1_5_ad_bit_is_reported_per_answer(dns_server: LoopbackDNS) -> None:
    dns_server.add(SUBS, "SRV", "0 1 465 smtp.provider.test.")
    dns_server.add(SUB, "SRV", "0 1 587 smtp.provider.test.")
    dns_server.signed.add(SUBS)
    found = discover("example.test", resolver=dns_server.resolver())
    assert [(ep.service, ep.dnssec_validated) for ep in found] == [
        ("_submissions", True),
        ("_submission", False),
    ]
    assert [ep.needs_confirmation() for ep in found] == [False, True]


def test_R_8314_5_1_5_unsigned_foreign_target_needs_confirmation(dns_server: LoopbackDNS) -> None:
    dns_server.add(SUBS, "SRV", "0 1 465 smtp.evil.test.")
    [endpoint] = discover("example.test", resolver=dns_server.resolver())
    assert endpoint.needs_confirmation()
    ref = endpoint.reference_identity()
    assert "smtp.evil.test" not in ref.dns_ids  # R-7817-3-4
    assert ref.dns_ids == frozenset({"example.test"})
    assert ref.srv_ids == frozenset({"_submissions.example.test"})
    confirmed = endpoint.reference_identity(confirmed_target=True)
    assert confirmed.dns_ids == frozenset({"example.test", "smtp.evil.test"})


def test_R_8314_5_1_5_signed_target_is_a_reference_identity(dns_server: LoopbackDNS) -> None:
    dns_server.add(SUB, "SRV", "0 1 587 smtp.provider.test.")
    dns_server.signed.add(SUB)
    [endpoint] = discover("example.test", resolver=dns_server.resolver())
    assert not endpoint.needs_confirmation()
    assert endpoint.reference_identity().dns_ids == frozenset(
        {"example.test", "smtp.provider.test"}
    )
    assert endpoint.reference_identity().srv_ids == frozenset({"_submission.example.test"})


def make_endpoint(host: str, domain: str = "example.test", *, signed: bool = False) -> Endpoint:
    return Endpoint(
        host=host,
        port=465,
        security=IMPLICIT,
        priority=0,
        weight=0,
        service="_submissions",
        domain=domain,
        dnssec_validated=signed,
    )


@pytest.mark.parametrize(
    ("host", "signed", "needs"),
    [
        ("smtp.example.test", False, False),
        ("example.test", False, False),
        ("a.b.example.test", False, False),
        ("smtp.provider.test", False, True),
        ("smtp.provider.test", True, False),
        ("notexample.test", False, True),
        ("example.test.evil.test", False, True),
    ],
)
def test_R_8314_5_1_5_needs_confirmation(host: str, signed: bool, needs: bool) -> None:
    assert make_endpoint(host, signed=signed).needs_confirmation() is needs


def test_R_8314_5_1_6_using_an_endpoint_never_queries_dns(dns_server: LoopbackDNS) -> None:
    dns_server.add(SUBS, "SRV", "0 1 465 smtp.example.test.")
    [endpoint] = discover("example.test", resolver=dns_server.resolver())
    seen = len(dns_server.queries)
    dns_server.records.clear()  # DNS changes after setup...
    assert not endpoint.needs_confirmation()
    assert endpoint.reference_identity().dns_ids == frozenset({"example.test"})
    assert (endpoint.host, endpoint.port) == ("smtp.example.test", 465)  # ...the endpoint does not
    assert len(dns_server.queries) == seen


# --------------------------------------------------------------------------- failures


def test_servfail_is_an_error_not_an_empty_answer(dns_server: LoopbackDNS) -> None:
    dns_server.add(SUB, "SRV", "0 1 587 smtp.example.test.")
    dns_server.servfail.add(SUBS)
    with pytest.raises(ConnectError, match=r"_submissions\._tcp\.example\.test.*by hand"):
        discover("example.test", resolver=dns_server.resolver())


def test_unanswered_query_times_out(dns_server: LoopbackDNS) -> None:
    dns_server.silent.add(SUBS)
    with pytest.raises(errors.TimeoutError, match="timed out"):
        discover("example.test", resolver=dns_server.resolver(lifetime=0.3))


def test_missing_dnspython_is_a_capability_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulate an installation without the [dns] extra: None in sys.modules makes
    # every import of those modules fail, exactly like a missing package.
    for name in [m for m in sys.modules if m == "dns" or m.startswith("dns.")]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(CapabilityError, match=r"pip install dnspython \(smtpsec's 'dns' extra\)"):
        discover("example.test")


@pytest.mark.parametrize(
    ("domain", "match"),
    [("ann@example.test", "after '@'"), ("exa mple.test", "not a valid DNS name"), ("", "valid")],
)
def test_bad_domain_is_refused_before_any_query(
    dns_server: LoopbackDNS, domain: str, match: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        discover(domain, resolver=dns_server.resolver())
    assert dns_server.queries == []


def test_unicode_domain_is_queried_as_a_labels(dns_server: LoopbackDNS) -> None:
    qname = "_submissions._tcp.xn--bcher-kva.test."
    dns_server.add(qname, "SRV", "0 1 465 smtp.xn--bcher-kva.test.")
    [endpoint] = discover("Bücher.TEST.", resolver=dns_server.resolver())
    assert endpoint.domain == "xn--bcher-kva.test"
    assert not endpoint.needs_confirmation()
    assert dns_server.queries[0] == (qname, "SRV")


def test_default_resolver_asks_for_the_ad_bit(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 127.0.0.1\n")
    resolver = _default_resolver(str(conf))
    assert resolver.flags is not None
    assert resolver.flags & dns.flags.AD
    assert resolver.flags & dns.flags.RD


def test_default_resolver_without_configuration(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("# no nameservers\n")
    with pytest.raises(ConnectError, match="no DNS resolver is configured"):
        _default_resolver(str(conf))


# --------------------------------------------------------------------------- Endpoint


def test_endpoint_normalizes_names() -> None:
    endpoint = make_endpoint("SMTP.Example.TEST.", "Example.Test.")
    assert (endpoint.host, endpoint.domain) == ("smtp.example.test", "example.test")
    assert endpoint.target_in_domain


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"port": 0}, "outside 1-65535"),
        ({"port": 65536}, "outside 1-65535"),
        ({"priority": -1}, "within 0-65535"),
        ({"weight": 65536}, "within 0-65535"),
        ({"security": STARTTLS}, "cannot use security"),
        ({"security": "starttls"}, "cannot use security"),  # a stored string is converted
        ({"security": Security.PLAINTEXT}, "not a TLS mode"),
        ({"security": "plaintext"}, "not a TLS mode"),
        ({"security": Security.AUTO}, "not a TLS mode"),
        ({"host": "192.0.2.1"}, "is an IP address"),
        ({"autoconfig_url": "https://autoconfig.example.test/x"}, "not both"),
        ({"sasl_mechanisms": ("PLAIN LOGIN",)}, "not a SASL mechanism"),
        ({"sasl_mechanisms": "PLAIN"}, "must be a tuple"),
        ({"service": "_smtp"}, "cannot use security"),
        ({"host": "bad host"}, "SRV target"),
    ],
)
def test_endpoint_rejects_inconsistent_fields(changes: dict[str, object], match: str) -> None:
    fields: dict[str, object] = {
        "host": "smtp.example.test",
        "port": 465,
        "security": IMPLICIT,
        "priority": 0,
        "weight": 0,
        "service": "_submissions",
        "domain": "example.test",
        "dnssec_validated": False,
    }
    fields.update(changes)
    with pytest.raises(InvalidArgumentError, match=match):
        Endpoint(**fields)  # type: ignore[arg-type]


def test_endpoint_security_is_the_public_security_enum(dns_server: LoopbackDNS) -> None:
    """Endpoint.security compares equal to smtpsec.Security (it used to be a string)."""
    dns_server.add(SUBS, "SRV", "0 1 465 smtp.example.test.")
    dns_server.add(SUB, "SRV", "0 1 587 smtp.example.test.")
    implicit, starttls = discover("example.test", resolver=dns_server.resolver())
    assert implicit.security == smtpsec.Security.IMPLICIT_TLS
    assert starttls.security is smtpsec.Security.STARTTLS
    assert implicit.security != "implicit_tls"  # no longer a string, but a stored one loads:
    stored = Endpoint(**{**_fields(), "security": "starttls", "service": "_submission"})  # type: ignore[arg-type]
    assert stored.security is STARTTLS
    assert implicit.provenance is Provenance.SRV_UNSIGNED


def _fields() -> dict[str, object]:
    return {
        "host": "smtp.example.test",
        "port": 587,
        "security": STARTTLS,
        "priority": 0,
        "weight": 0,
        "service": "_submission",
        "domain": "example.test",
        "dnssec_validated": False,
    }
