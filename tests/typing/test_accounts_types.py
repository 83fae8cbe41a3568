"""Static type checks for discovery, identity and TLS memory (run by mypy --strict).

The checks live in a function nobody calls: pytest may collect this module
harmlessly, and mypy verifies every ``assert_type`` below.
"""

from __future__ import annotations

import ipaddress
import random
from pathlib import Path

import dns.resolver
from typing_extensions import assert_type

from smtpsec import Security
from smtpsec.discovery import Endpoint, EndpointSecurity, SRVService, discover
from smtpsec.identity import ReferenceIdentity, check_certificate_identity, normalize_dns_name
from smtpsec.memory import Account, Expectation, TLSMemory


def _check_types() -> None:  # pragma: no cover - never executed, type-checked only
    endpoints = discover(
        "example.test", resolver=dns.resolver.Resolver(configure=False), rng=random.Random(1)
    )
    assert_type(endpoints, list[Endpoint])
    endpoint = endpoints[0]
    assert_type(endpoint.host, str)
    assert_type(endpoint.port, int)
    assert_type(endpoint.security, EndpointSecurity)
    assert_type(endpoint.service, SRVService)
    assert_type(endpoint.dnssec_validated, bool)
    assert_type(endpoint.needs_confirmation(), bool)
    assert_type(endpoint.target_in_domain, bool)
    assert_type(endpoint.reference_identity(confirmed_target=True), ReferenceIdentity)

    ref = ReferenceIdentity.for_host("smtp.example.test")
    assert_type(ref, ReferenceIdentity)
    assert_type(ref.dns_ids, frozenset[str])
    assert_type(ref.srv_ids, frozenset[str])
    assert_type(ref.ip, ipaddress.IPv4Address | ipaddress.IPv6Address | None)
    assert_type(ReferenceIdentity.from_endpoint(endpoint), ReferenceIdentity)
    assert_type(
        ReferenceIdentity.for_srv(
            domain="example.test", service="_submissions", target="a.test", target_trusted=False
        ),
        ReferenceIdentity,
    )
    assert_type(check_certificate_identity(b"", ref), str)
    assert_type(normalize_dns_name("Example.TEST."), str)

    memory = TLSMemory(Path("tls.json"))
    memory = TLSMemory("tls.json", lock_timeout=1.0)
    account = Account(user="ann", host="smtp.example.test", port=465)
    assert_type(memory.expectation(account), Expectation | None)
    assert_type(memory.requires_tls(account), bool)
    assert_type(memory.record(account, mode=Security.STARTTLS, tls_version="TLSv1.3"), None)
    assert_type(memory.forget(account), bool)
    assert_type(memory.accounts(), list[Account])
    assert_type(memory.corrupt, str | None)
    assert_type(memory.path, Path)
    expectation = memory.expectation(account)
    if expectation is not None:
        assert_type(expectation.mode, Security)
        assert_type(expectation.tls_version, str)
        assert_type(expectation.first_seen, str)
