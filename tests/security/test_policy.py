"""Policy validation and the pure mode-selection table (select_plan, is_loopback).

RFC 8314 §3.3/§5.2, RFC 8996/8997; checklist R-LIB-PORT-1, R-EAST-NS-5, R-8314-4.1-1.
"""

from __future__ import annotations

import dataclasses
import ssl
import warnings
from pathlib import Path

import pytest

import smtpsec
from smtpsec.policy import Attempt, Plan, Policy, Security, is_loopback, select_plan

PIN = "sha256/" + "A" * 43 + "="

# --------------------------------------------------------------------------- select_plan

#: (security, port) -> expected attempts; every Security × {None, 25, 465, 587, 2525}.
PLAN_TABLE: dict[tuple[Security, int | None], tuple[Attempt, ...]] = {
    (Security.AUTO, None): (Attempt(465, Security.IMPLICIT_TLS), Attempt(587, Security.STARTTLS)),
    (Security.AUTO, 25): (Attempt(25, Security.STARTTLS),),
    (Security.AUTO, 465): (Attempt(465, Security.IMPLICIT_TLS),),
    (Security.AUTO, 587): (Attempt(587, Security.STARTTLS),),
    (Security.AUTO, 2525): (Attempt(2525, Security.STARTTLS),),
    (Security.IMPLICIT_TLS, None): (Attempt(465, Security.IMPLICIT_TLS),),
    (Security.IMPLICIT_TLS, 25): (Attempt(25, Security.IMPLICIT_TLS),),
    (Security.IMPLICIT_TLS, 465): (Attempt(465, Security.IMPLICIT_TLS),),
    (Security.IMPLICIT_TLS, 587): (Attempt(587, Security.IMPLICIT_TLS),),
    (Security.IMPLICIT_TLS, 2525): (Attempt(2525, Security.IMPLICIT_TLS),),
    (Security.STARTTLS, None): (Attempt(587, Security.STARTTLS),),
    (Security.STARTTLS, 25): (Attempt(25, Security.STARTTLS),),
    (Security.STARTTLS, 465): (Attempt(465, Security.STARTTLS),),
    (Security.STARTTLS, 587): (Attempt(587, Security.STARTTLS),),
    (Security.STARTTLS, 2525): (Attempt(2525, Security.STARTTLS),),
    (Security.OPPORTUNISTIC, None): (Attempt(587, Security.OPPORTUNISTIC),),
    (Security.OPPORTUNISTIC, 25): (Attempt(25, Security.OPPORTUNISTIC),),
    (Security.OPPORTUNISTIC, 465): (Attempt(465, Security.OPPORTUNISTIC),),
    (Security.OPPORTUNISTIC, 587): (Attempt(587, Security.OPPORTUNISTIC),),
    (Security.OPPORTUNISTIC, 2525): (Attempt(2525, Security.OPPORTUNISTIC),),
    (Security.PLAINTEXT, None): (Attempt(25, Security.PLAINTEXT),),
    (Security.PLAINTEXT, 25): (Attempt(25, Security.PLAINTEXT),),
    (Security.PLAINTEXT, 465): (Attempt(465, Security.PLAINTEXT),),
    (Security.PLAINTEXT, 587): (Attempt(587, Security.PLAINTEXT),),
    (Security.PLAINTEXT, 2525): (Attempt(2525, Security.PLAINTEXT),),
}


def test_plan_table_covers_every_mode_and_port() -> None:
    """The table below is complete: every Security member × every interesting port."""
    assert {sec for sec, _ in PLAN_TABLE} == set(Security)
    assert len(PLAN_TABLE) == len(Security) * 5


@pytest.mark.parametrize(("key", "attempts"), PLAN_TABLE.items(), ids=lambda v: str(v))
def test_select_plan_table__R_LIB_PORT_1(
    key: tuple[Security, int | None], attempts: tuple[Attempt, ...]
) -> None:
    """select_plan picks exactly these ports and TLS starts, and explains itself."""
    security, port = key
    plan = select_plan("smtp.example.test", port, security)
    assert plan == Plan(security, attempts, plan.reason)
    assert plan.reason


@pytest.mark.parametrize("port", [None, 25, 465, 587, 2525])
def test_auto_never_plans_cleartext__R_EAST_NS_5(port: int | None) -> None:
    """AUTO never yields an opportunistic or plaintext attempt."""
    plan = select_plan("smtp.example.test", port, Security.AUTO)
    assert all(a.tls in (Security.IMPLICIT_TLS, Security.STARTTLS) for a in plan.attempts)


def test_auto_prefers_implicit_tls__R_8314_A_1() -> None:
    """With no port, implicit TLS on 465 comes first (RFC 8314 §3.3, App. A)."""
    plan = select_plan("smtp.example.test", None, Security.AUTO)
    assert plan.attempts[0] == Attempt(465, Security.IMPLICIT_TLS)
    assert "465" in plan.reason and "587" in plan.reason


def test_port_25_reason_says_relay() -> None:
    """Port 25 works, but the reason tells the user submission belongs on 465/587."""
    assert "relay" in select_plan("mx.example.test", 25, Security.AUTO).reason
    assert "relay" not in select_plan("mx.example.test", 2525, Security.AUTO).reason


def test_plaintext_reason_names_loopback_or_network() -> None:
    """The plaintext reason says whether the host is loopback."""
    assert "loopback" in select_plan("localhost", 25, Security.PLAINTEXT).reason
    assert "network host" in select_plan("mail.example.test", 25, Security.PLAINTEXT).reason


@pytest.mark.parametrize("port", [0, -1, 65536, 100000])
def test_select_plan_rejects_bad_ports(port: int) -> None:
    """An out-of-range port is a PolicyError that names the usual ports."""
    with pytest.raises(smtpsec.PolicyError, match="465 or 587"):
        select_plan("smtp.example.test", port, Security.AUTO)


def test_plan_values_are_frozen() -> None:
    """Plans and attempts are immutable values."""
    plan = select_plan("h", 465, Security.AUTO)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.reason = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.attempts[0].port = 1  # type: ignore[misc]


# --------------------------------------------------------------------------- is_loopback


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("localhost", True),
        ("LOCALHOST", True),
        ("mail.localhost", False),  # may go to DNS: not trusted as loopback
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("smtp.example.test", False),
        ("localhost.example.test", False),
        ("10.0.0.1", False),
        ("::2", False),
        ("", False),
    ],
)
def test_is_loopback(host: str, expected: bool) -> None:
    """Loopback by the name ``localhost`` or by address literal; never ``*.localhost``."""
    assert is_loopback(host) is expected


# --------------------------------------------------------------------------- Policy


def test_default_policy_is_strict__R_8314_5_2_1() -> None:
    """Defaults: TLS ≥ 1.2, certificates verified, no cleartext AUTH, no pins."""
    policy = Policy()
    assert policy.min_tls_version is ssl.TLSVersion.TLSv1_2
    assert policy.verifies
    assert not policy.allow_cleartext_auth
    assert not policy.allow_legacy_tls
    assert not policy.allow_unverified_context
    assert policy.pins == frozenset()
    assert policy.cafile is None and policy.cadata is None and policy.ssl_context is None


def test_policy_is_frozen() -> None:
    """Policy is a frozen value: settings cannot drift after validation."""
    policy = Policy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.allow_cleartext_auth = True  # type: ignore[misc]


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_legacy_floor_needs_opt_in__R_8314_4_1_1(version: ssl.TLSVersion) -> None:
    """A floor below TLS 1.2 is refused unless ``allow_legacy_tls`` names the risk."""
    with pytest.raises(smtpsec.PolicyError, match="allow_legacy_tls"):
        Policy(min_tls_version=version)
    assert Policy(min_tls_version=version, allow_legacy_tls=True).min_tls_version is version


def test_raising_the_floor_is_allowed__R_8314_5_8() -> None:
    """TLS 1.3 as a floor needs no opt-in."""
    assert Policy(min_tls_version=ssl.TLSVersion.TLSv1_3).min_tls_version is ssl.TLSVersion.TLSv1_3


def _unverifying(*, check_hostname: bool, mode: ssl.VerifyMode) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = check_hostname
    ctx.verify_mode = mode
    return ctx


@pytest.mark.parametrize(
    ("check_hostname", "mode"),
    [(False, ssl.CERT_NONE), (False, ssl.CERT_REQUIRED), (False, ssl.CERT_OPTIONAL)],
)
def test_unverifying_context_refused__R_PY_1(check_hostname: bool, mode: ssl.VerifyMode) -> None:
    """A context that skips chain or name checks needs ``allow_unverified_context``."""
    ctx = _unverifying(check_hostname=check_hostname, mode=mode)
    with pytest.raises(smtpsec.PolicyError, match="allow_unverified_context"):
        Policy(ssl_context=ctx)
    policy = Policy(ssl_context=ctx, allow_unverified_context=True)
    assert not policy.verifies


def test_stdlib_default_unverified_context_refused__R_PY_1() -> None:
    """The stdlib's own unverified context (what smtplib uses) is refused."""
    ctx = ssl._create_unverified_context()  # noqa: S323 - refusing it is the point
    with pytest.raises(smtpsec.PolicyError):
        Policy(ssl_context=ctx)


def test_verifying_context_accepted() -> None:
    """A verifying context is used as given and counts as verifying."""
    ctx = ssl.create_default_context()
    policy = Policy(ssl_context=ctx)
    assert policy.verifies
    assert policy.ssl_context is ctx


def test_context_and_cafile_are_exclusive(tmp_path: Path) -> None:
    """ssl_context plus cafile/cadata is ambiguous: refused with the fix."""
    ctx = ssl.create_default_context()
    with pytest.raises(smtpsec.PolicyError, match="load_verify_locations"):
        Policy(ssl_context=ctx, cafile=tmp_path / "ca.pem")
    with pytest.raises(smtpsec.PolicyError):
        Policy(ssl_context=ctx, cadata="-----BEGIN CERTIFICATE-----")


@pytest.mark.parametrize(
    "pin",
    [
        "sha256/short=",
        "sha1/" + "A" * 27 + "=",
        "A" * 43 + "=",
        "sha256/" + "A" * 44,
        "sha256/" + "!" * 43 + "=",
        " sha256/" + "A" * 43 + "=",
        "sha256/" + "A" * 43 + "=\n",
    ],
)
def test_malformed_pins_refused(pin: str) -> None:
    """Only ``sha256/<44 base64 chars>`` pins are accepted."""
    with pytest.raises(smtpsec.PolicyError, match="sha256/<base64>"):
        Policy(pins=frozenset({pin}))


def test_pins_given_as_one_string_refused() -> None:
    """``pins="sha256/..."`` (a string, not a set) is refused with a clear message."""
    with pytest.raises(smtpsec.PolicyError, match="set of"):
        Policy(pins=PIN)  # type: ignore[arg-type]


def test_pins_accept_any_iterable_and_store_frozen() -> None:
    """A list or set of pins is stored as a frozenset."""
    policy = Policy(pins=[PIN, PIN])  # type: ignore[arg-type]
    assert policy.pins == frozenset({PIN})
    assert isinstance(policy.pins, frozenset)
    assert policy.verifies  # pins add to chain validation


def test_pinned_instead_of_ca_needs_pins__R_8314_5_4() -> None:
    """Pin-only trust without a pin would trust anything: refused."""
    with pytest.raises(smtpsec.PolicyError, match="pins="):
        Policy(pinned_instead_of_ca=True)
    policy = Policy(pins=frozenset({PIN}), pinned_instead_of_ca=True)
    assert not policy.verifies  # pinned-only is never "verified" (R-8314-5.3-3)


@pytest.mark.parametrize("cert", [("only-one",), ("a", "b", "c", "d")])
def test_client_cert_shape(cert: tuple[str, ...]) -> None:
    """client_cert is (certfile, keyfile[, password])."""
    with pytest.raises(smtpsec.PolicyError, match="certfile, keyfile"):
        Policy(client_cert=cert)  # type: ignore[arg-type]


def test_policy_error_is_a_value_error() -> None:
    """PolicyError is also a ValueError (bad configuration values)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError):
            Policy(pinned_instead_of_ca=True)


def test_non_string_pin_refused() -> None:
    """A bytes pin is refused with PolicyError, not a TypeError from the regex."""
    with pytest.raises(smtpsec.PolicyError):
        Policy(pins=frozenset({PIN.encode()}))  # type: ignore[arg-type]
