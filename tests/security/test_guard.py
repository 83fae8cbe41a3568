"""The downgrade guard's checkpoints, one by one (pure: no sockets needed).

The attack files show the guard working inside real dialogues; these tests pin
down each checkpoint's decision table, including the TLS-memory paths
(R-LIB-GUARD-1/2) and the report's confidentiality rule (R-8314-5-4).
"""

from __future__ import annotations

import contextlib
import ssl
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

import smtpsec
from smtpsec import Security
from smtpsec.guard import Finding, Guard
from smtpsec.memory import Account, TLSMemory
from smtpsec.policy import Attempt, Policy
from smtpsec.sansio import EnhancedStatus, Extensions, Reply
from smtpsec.tls import TLSInfo

PIN = "sha256/" + "B" * 43 + "="
OTHER_PIN = "sha256/" + "C" * 43 + "="


def tls(version: str = "TLSv1.3", *, verified: bool = True, pin: str | None = PIN) -> TLSInfo:
    return TLSInfo(
        version=version,
        cipher="TLS_AES_128_GCM_SHA256",
        verified=verified,
        peer_certificate=None,
        spki_pin=pin,
    )


def guard(
    mode: Security = Security.STARTTLS, policy: Policy | None = None, *, remembered: bool = False
) -> Guard:
    return Guard(policy or Policy(), Attempt(587, mode), "smtp.example.test", remembered=remembered)


@contextlib.contextmanager
def exactly(error_type: type[Exception], match: str | None = None) -> Iterator[None]:
    """``pytest.raises`` that also rejects subclasses (a DowngradeError, not a TLS... one)."""
    with pytest.raises(error_type, match=match) as info:
        yield
    assert type(info.value) is error_type


def remembering(tmp_path: Path, mode: Security, *, user: str = "ann") -> Guard:
    """A guard given the memory snapshot a session takes before its dialogue."""
    memory = TLSMemory(tmp_path / "memory.json")
    account = Account(user, "smtp.example.test")
    memory.record(account, mode=Security.STARTTLS, tls_version="TLSv1.3")
    return guard(mode, Policy(memory=memory), remembered=memory.requires_tls(account))


def only(finding_list: list[Finding]) -> Finding:
    (finding,) = finding_list
    return finding


STARTTLS_OFFERED = Extensions({"STARTTLS": (), "AUTH": ("PLAIN",)})
NO_STARTTLS = Extensions({"AUTH": ("PLAIN",)})


# --------------------------------------------------------------------------- connect / greeting


def test_before_connect_allows_plaintext_without_memory() -> None:
    guard(Security.PLAINTEXT).before_connect()  # no error: nothing remembered


def test_before_connect_refuses_plaintext_where_tls_was_seen__R_LIB_GUARD_1(
    tmp_path: Path,
) -> None:
    with exactly(smtpsec.DowngradeError, match="remove the account from the TLS memory"):
        remembering(tmp_path, Security.PLAINTEXT).before_connect()


def test_before_connect_allows_tls_plans_with_memory(tmp_path: Path) -> None:
    remembering(tmp_path, Security.STARTTLS).before_connect()


def test_before_connect_fails_closed_on_corrupt_memory__R_LIB_GUARD_2(tmp_path: Path) -> None:
    """A corrupt store means "TLS required" for everyone: the snapshot says so."""
    store = tmp_path / "memory.json"
    store.write_text("{not json", encoding="utf-8")
    memory = TLSMemory(store)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        remembered = memory.requires_tls(Account("", "smtp.example.test"))
    g = guard(Security.PLAINTEXT, Policy(memory=memory), remembered=remembered)
    with exactly(smtpsec.DowngradeError):
        g.before_connect()


def test_after_greeting_accepts_220() -> None:
    guard().after_greeting(Reply(220, ("smtp.example.test ESMTP",)), tls=False)


@pytest.mark.parametrize("tls_active", [False, True])
def test_after_greeting_refuses_other_codes__R_LIB_GREET_1(tls_active: bool) -> None:
    reply = Reply(554, ("5.3.2 go away",), EnhancedStatus(5, 3, 2))
    with pytest.raises(smtpsec.ReplyError) as info:
        guard().after_greeting(reply, tls=tls_active)
    error = info.value
    assert error.code == 554
    assert error.enhanced_status == "5.3.2"
    assert error.text == "go away"
    assert error.server_text_authenticated is tls_active
    assert ("unverified server text" in str(error)) is not tls_active


def test_after_greeting_without_enhanced_status() -> None:
    with pytest.raises(smtpsec.ReplyError) as info:
        guard().after_greeting(Reply(421, ("busy",)), tls=False)
    assert info.value.enhanced_status is None


# --------------------------------------------------------------------------- after_ehlo


def test_after_ehlo_inside_tls_never_starttls__R_3207_4_2_3() -> None:
    assert guard(Security.IMPLICIT_TLS).after_ehlo(STARTTLS_OFFERED, tls=True) is False
    assert guard(Security.STARTTLS).after_ehlo(STARTTLS_OFFERED, tls=True) is False


def test_after_ehlo_implicit_without_tls_fails_closed__R_EAST_IMP_1() -> None:
    """An implicit-TLS attempt that reaches EHLO in cleartext never continues in cleartext."""
    with pytest.raises(smtpsec.TLSUnavailableError, match="handshake first"):
        guard(Security.IMPLICIT_TLS).after_ehlo(STARTTLS_OFFERED, tls=False)


def test_after_ehlo_starttls_required() -> None:
    assert guard(Security.STARTTLS).after_ehlo(STARTTLS_OFFERED, tls=False) is True


def test_after_ehlo_starttls_missing__R_3207_4_1() -> None:
    with pytest.raises(smtpsec.TLSUnavailableError, match="IMPLICIT_TLS"):
        guard(Security.STARTTLS).after_ehlo(NO_STARTTLS, tls=False)


def test_after_ehlo_starttls_keyword_is_case_insensitive() -> None:
    assert guard(Security.STARTTLS).after_ehlo(Extensions({"starttls": ()}), tls=False) is True


def test_after_ehlo_opportunistic_upgrades__R_8314_5_2_6() -> None:
    g = guard(Security.OPPORTUNISTIC)
    assert g.after_ehlo(STARTTLS_OFFERED, tls=False) is True
    assert g.findings == []


def test_after_ehlo_opportunistic_cleartext_is_a_finding__R_8314_5_2_3() -> None:
    """The guard warns nobody itself: the finding is the facade's to emit."""
    g = guard(Security.OPPORTUNISTIC)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert g.after_ehlo(NO_STARTTLS, tls=False) is False
    finding = only(g.take_findings())
    assert finding.category is smtpsec.InsecureConfigurationWarning
    assert "AUTH is refused" in finding.message
    assert g.findings == []


def test_after_ehlo_opportunistic_stripped_with_memory__R_LIB_GUARD_1(tmp_path: Path) -> None:
    with exactly(smtpsec.DowngradeError, match="stripping"):
        remembering(tmp_path, Security.OPPORTUNISTIC).after_ehlo(NO_STARTTLS, tls=False)


def test_after_ehlo_plaintext_signals_upgrade__R_8314_5_7() -> None:
    g = guard(Security.PLAINTEXT)
    assert g.after_ehlo(STARTTLS_OFFERED, tls=False) is False
    finding = only(g.findings)
    assert finding.category is smtpsec.UpgradeAvailableWarning
    assert "Security.STARTTLS" in finding.message


def test_after_ehlo_plaintext_without_starttls_is_quiet() -> None:
    g = guard(Security.PLAINTEXT)
    assert g.after_ehlo(NO_STARTTLS, tls=False) is False
    assert g.findings == []


def test_fixes_are_worded_for_the_callers_api() -> None:
    """One rule, three vocabularies: the drop-in's message names smtplib's API."""
    from smtpsec._advice import CLI, DROP_IN

    for advice, words in ((DROP_IN, "SMTP_SSL(host, 465"), (CLI, "--security implicit_tls")):
        g = Guard(Policy(), Attempt(587, Security.STARTTLS), "h.example.test", advice=advice)
        with pytest.raises(smtpsec.TLSUnavailableError) as info:
            g.after_ehlo(NO_STARTTLS, tls=False)
        assert words in str(info.value)
        assert "Security." not in str(info.value)


# --------------------------------------------------------------------------- STARTTLS / handshake


def test_after_starttls_reply_220_passes() -> None:
    guard().after_starttls_reply(Reply(220, ("2.0.0 go ahead",)))


@pytest.mark.parametrize("code", [250, 354, 421, 454, 501, 502, 530, 554])
def test_after_starttls_reply_refusal__R_3207_4_2__R_EAST_UE_1(code: int) -> None:
    with pytest.raises(smtpsec.TLSUnavailableError) as info:
        guard().after_starttls_reply(Reply(code, ("Visit http://evil.test",)))
    assert "[unverified server text: 'Visit http://evil.test']" in str(info.value)
    assert str(code) in str(info.value)


def test_after_handshake_without_pins() -> None:
    assert guard().after_handshake(tls("TLSv1.2")) is False


@pytest.mark.parametrize("version", ["TLSv1", "TLSv1.1", "SSLv3", "unknown", "TLSv9"])
def test_after_handshake_below_floor__R_8314_4_1_1(version: str) -> None:
    """Old and unrecognised versions are both below the floor (fail closed)."""
    with pytest.raises(smtpsec.TLSVersionError, match="TLSv1_2"):
        guard().after_handshake(tls(version))


def test_after_handshake_raised_floor__R_8314_5_8() -> None:
    g = guard(policy=Policy(min_tls_version=ssl.TLSVersion.TLSv1_3))
    with pytest.raises(smtpsec.TLSVersionError, match="TLSv1_3"):
        g.after_handshake(tls("TLSv1.2"))
    assert g.after_handshake(tls("TLSv1.3")) is False


def test_after_handshake_pin_match() -> None:
    assert guard(policy=Policy(pins=frozenset({OTHER_PIN, PIN}))).after_handshake(tls()) is True


def test_after_handshake_pin_mismatch_names_presented_pin() -> None:
    with pytest.raises(smtpsec.PinMismatchError) as info:
        guard(policy=Policy(pins=frozenset({OTHER_PIN}))).after_handshake(tls())
    assert PIN in str(info.value)


def test_after_handshake_no_certificate_with_pins() -> None:
    """A session without a peer certificate cannot match a pin."""
    with pytest.raises(smtpsec.PinMismatchError):
        guard(policy=Policy(pins=frozenset({PIN}))).after_handshake(tls(pin=None))


# --------------------------------------------------------------------------- AUTH / MAIL


def test_before_auth_verified_tls_passes() -> None:
    g = guard()
    g.before_auth(tls())
    assert g.findings == []


@pytest.mark.parametrize(
    ("info", "words"),
    [(None, "in cleartext"), (tls(verified=False), "not verified")],
    ids=["cleartext", "unverified"],
)
def test_before_auth_refuses_without_verified_tls__R_4954_9_1(
    info: TLSInfo | None, words: str
) -> None:
    with pytest.raises(smtpsec.InsecureAuthError, match=words):
        guard().before_auth(info)


def test_before_auth_refuses_pinned_only__R_8314_5_3_3() -> None:
    """Even a "verified" flag does not count when trust came from a pin only."""
    g = guard(policy=Policy(pins=frozenset({PIN}), pinned_instead_of_ca=True))
    with pytest.raises(smtpsec.InsecureAuthError):
        g.before_auth(tls(verified=True))


@pytest.mark.parametrize("info", [None, tls(verified=False)], ids=["cleartext", "unverified"])
def test_before_auth_explicit_opt_in_warns__R_8314_5_2_3(info: TLSInfo | None) -> None:
    g = guard(policy=Policy(allow_cleartext_auth=True))
    g.before_auth(info)
    finding = only(g.findings)
    assert finding.category is smtpsec.InsecureConfigurationWarning
    assert "allow_cleartext_auth" in finding.message


def test_before_mail_without_memory_allows_anything() -> None:
    guard(Security.PLAINTEXT).before_mail(None)
    guard().before_mail(tls(verified=False))


def test_before_mail_refuses_weaker_session__R_LIB_GUARD_1(tmp_path: Path) -> None:
    g = remembering(tmp_path, Security.OPPORTUNISTIC)
    with exactly(smtpsec.DowngradeError):
        g.before_mail(None)
    with exactly(smtpsec.DowngradeError):
        g.before_mail(tls(verified=False))
    g.before_mail(tls())  # verified TLS is fine


# --------------------------------------------------------------------------- confidential


@pytest.mark.parametrize(
    ("policy", "info", "expected"),
    [
        (Policy(), tls("TLSv1.3"), True),
        (Policy(), tls("TLSv1.2"), True),
        (Policy(), None, False),
        (Policy(), tls(verified=False), False),
        (Policy(), tls("unknown"), False),
        (Policy(pins=frozenset({PIN}), pinned_instead_of_ca=True), tls(), False),
    ],
    ids=["tls13", "tls12", "plaintext", "unverified", "unknown-version", "pinned-only"],
)
def test_confidential__R_8314_5_4(policy: Policy, info: TLSInfo | None, expected: bool) -> None:
    assert guard(policy=policy).confidential(info) is expected


def test_confidential_never_below_tls12__R_8314_5_4() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        policy = Policy(min_tls_version=ssl.TLSVersion.TLSv1_1, allow_legacy_tls=True)
    assert guard(policy=policy).confidential(tls("TLSv1.1")) is False


# --------------------------------------------------------------------------- helpers


def test_guard_is_frozen() -> None:
    g = guard()
    with pytest.raises(AttributeError):
        g.host = "evil.test"  # type: ignore[misc]
