"""Static type checks for discovery, autoconfig, presets, identity, TLS memory and pins
(mypy --strict).

The checks live in a function nobody calls: pytest may collect this module
harmlessly, and mypy verifies every ``assert_type`` below.
"""

from __future__ import annotations

import datetime
import ipaddress
import random
import socket
from collections.abc import Mapping
from pathlib import Path

import dns.resolver
from typing_extensions import assert_type

import smtpsec
from smtpsec import Policy, Provenance, Security, providers
from smtpsec.autoconfig import (
    SocketOpener,
    autoconfig_urls,
    fetch_autoconfig,
    parse_autoconfig,
)
from smtpsec.discovery import Endpoint, SRVService, discover, merge_endpoints
from smtpsec.identity import ReferenceIdentity, check_certificate_identity, normalize_dns_name
from smtpsec.memory import Account, Expectation, TLSMemory
from smtpsec.testing import CA, LeafCert
from smtpsec.tls import ChainKey, TLSInfo, describe_chain, pin_candidates


def _check_types() -> None:  # pragma: no cover - never executed, type-checked only
    endpoints = discover(
        "example.test", resolver=dns.resolver.Resolver(configure=False), rng=random.Random(1)
    )
    assert_type(endpoints, list[Endpoint])
    endpoint = endpoints[0]
    assert_type(endpoint.host, str)
    assert_type(endpoint.port, int)
    assert_type(endpoint.security, Security)
    assert endpoint.security == smtpsec.Security.IMPLICIT_TLS  # accepted: same type
    assert_type(endpoint.service, SRVService | None)
    assert_type(endpoint.provenance, Provenance)
    assert_type(endpoint.provenance.rank, int)
    assert_type(endpoint.autoconfig_url, str | None)
    assert_type(endpoint.sasl_mechanisms, tuple[str, ...])
    assert_type(endpoint.source, str)
    assert_type(endpoint.dnssec_validated, bool)
    assert_type(endpoint.needs_confirmation(), bool)
    assert_type(endpoint.target_in_domain, bool)
    assert_type(endpoint.reference_identity(confirmed_target=True), ReferenceIdentity)

    merged = discover(
        "example.test",
        autoconfig=True,
        address="ann@example.test",
        policy=Policy(cafile="ca.pem"),
        timeout=5.0,
        opener=_opener,
    )
    assert_type(merged, list[Endpoint])
    assert_type(merge_endpoints(endpoints, merged), list[Endpoint])
    assert_type(autoconfig_urls("example.test"), tuple[str, ...])
    assert_type(
        fetch_autoconfig("example.test", policy=Policy(), timeout=1.0, opener=_opener),
        list[Endpoint],
    )
    assert_type(
        parse_autoconfig(b"", domain="example.test", url="https://example.test/x"),
        list[Endpoint],
    )
    opener: SocketOpener = _opener
    assert_type(opener("h", 443, 1.0), socket.socket)

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
    account = Account(user="ann", host="smtp.example.test")
    assert_type(account.user, str)
    assert_type(account.host, str)
    assert_type(memory.expectation(account), Expectation | None)
    assert_type(memory.requires_tls(account), bool)
    assert_type(memory.record(account, mode=Security.STARTTLS, tls_version="TLSv1.3"), None)
    assert_type(
        memory.record(account, mode=Security.STARTTLS, tls_version="TLSv1.3", port=587), None
    )
    assert_type(memory.forget(account), bool)
    assert_type(memory.accounts(), list[Account])
    assert_type(memory.corrupt, str | None)
    assert_type(memory.path, Path)
    expectation = memory.expectation(account)
    if expectation is not None:
        assert_type(expectation.mode, Security)
        assert_type(expectation.tls_version, str)
        assert_type(expectation.first_seen, str)
        assert_type(expectation.ports, tuple[int, ...])
        assert_type(expectation.merged(expectation), Expectation)
    try:
        memory.accounts()
    except smtpsec.TLSMemoryError as exc:
        assert_type(exc.path, str)
        policy_error: smtpsec.PolicyError = exc  # still what callers catch
        del policy_error


def _check_pin_types(
    report: smtpsec.SecurityReport, info: TLSInfo
) -> None:  # pragma: no cover - never executed, type-checked only
    assert_type(report.chain_pins, tuple[str, ...])
    assert_type(info.verified_chain, tuple[bytes, ...])
    assert_type(pin_candidates(info), tuple[str, ...])
    keys = describe_chain(info)
    assert_type(keys, tuple[ChainKey, ...])
    assert_type(keys[0].role, str)
    assert_type(keys[0].pin, str | None)
    assert_type(keys[0].subject, str | None)
    Policy(pins={*report.chain_pins[1:]})  # CA keys as backup pins
    try:
        smtpsec.connect("smtp.example.test", policy=Policy(pins={"sha256/..."}))
    except smtpsec.PinMismatchError as exc:
        assert_type(exc.expected, tuple[str, ...])
        assert_type(exc.presented, tuple[str, ...])

    root = CA.create()
    issuing = root.issue_intermediate("issuing CA")
    assert_type(issuing, CA)
    assert_type(issuing.is_root, bool)
    assert_type(issuing.root_pem, bytes)
    assert_type(issuing.spki_sha256_pin, str)
    leaf = issuing.issue("localhost")
    assert_type(leaf, LeafCert)
    assert_type(leaf.intermediates_pem, bytes)
    assert_type(leaf.root_pem, bytes)
    assert_type(leaf.presented_pem, bytes)


def _opener(host: str, port: int, timeout: float) -> socket.socket:  # pragma: no cover
    return socket.create_connection((host, port), timeout=timeout)


def _check_provider_types() -> None:  # pragma: no cover - never executed, type-checked only
    preset = providers.MICROSOFT_365
    pool = preset.pool_kwargs()
    assert_type(pool, providers.PoolLimits)
    assert_type(pool.get("size"), int | None)
    assert_type(pool.get("messages_per_minute"), int | None)
    assert_type(preset, providers.Preset)
    assert_type(preset.host, str)
    assert_type(preset.port, int)
    assert_type(preset.security, Security)
    assert_type(preset.auth, tuple[providers.AuthMethod, ...])
    assert_type(preset.credentials, tuple[providers.Credential, ...])
    assert_type(preset.sasl_mechanisms, tuple[str, ...])
    assert_type(preset.limits, providers.Limits)
    assert_type(preset.limits.max_connections, int | None)
    assert_type(preset.limits.messages_per_minute, int | None)
    assert_type(preset.sources, tuple[str, ...])
    assert_type(preset.fixed_username, str | None)
    assert_type(preset.accepts(providers.Credential.OAUTH2), bool)
    assert_type(preset.auth[0].disabled_from, datetime.date | None)
    assert_type(preset.auth[0].refusal, str | None)
    assert_type(preset.auth[0].available(datetime.date(2027, 1, 1)), bool)
    kwargs = preset.connect_kwargs()
    assert_type(kwargs, providers.ConnectTarget)
    assert_type(kwargs["security"], Security)
    # The documented way to use a preset: unpacking is checked against connect().
    session = smtpsec.connect(**kwargs, username="ann@example.com", token="...")
    assert_type(session, smtpsec.Session)
    assert_type(providers.amazon_ses("eu-west-1"), providers.Preset)
    assert_type(providers.mailgun("eu"), providers.Preset)
    assert_type(providers.get("gmail"), providers.Preset)
    assert_type(providers.PRESETS, Mapping[str, providers.Preset])
    assert_type(providers.ALL, tuple[providers.Preset, ...])
