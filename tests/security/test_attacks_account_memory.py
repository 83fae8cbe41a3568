"""TLS memory per account: a verified session on one port protects every port of the account.

The attacker in these tests cannot touch the port the user verified TLS on, so
it steers the client to another port of the same host (or the user changed the
port, say 587 to 25, with ``Security.OPPORTUNISTIC``) and strips STARTTLS there.
RFC 8314 §5.2 sets the minimum confidentiality level per *account*, so the memory
is keyed by the user at the host and the guard refuses the weaker session on any
port (R-LIB-GUARD-1, R-8314-5.2-1). A different user or a different host is a
different account and is not affected.

Every test runs against the blocking and the asyncio client (``kit``), against
real loopback servers.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from _security_kit import Kit

import smtpsec
from smtpsec import Account, Security, TLSMemory
from smtpsec.testing import SMTPServer


def _memory(tmp_path: Path) -> TLSMemory:
    return TLSMemory(tmp_path / "tls-memory.json")


def _verified_session(kit: Kit, memory: TLSMemory, *, username: str | None) -> SMTPServer:
    """Session 1: verified STARTTLS on one port; the memory records the account."""
    good = kit.server(Security.STARTTLS)
    with kit.connect(
        good,
        Security.OPPORTUNISTIC,
        username=username,
        policy=kit.policy(memory=memory),
    ) as session:
        assert session.report.mode is Security.STARTTLS
        assert session.report.verified
    return good


def _assert_refused_before_anything_sensitive(kit: Kit, srv: SMTPServer) -> None:
    capture = kit.finished(srv)
    assert capture.pre_tls_verbs_subset_of({"EHLO", "STARTTLS", "QUIT"})
    assert capture.auth == []
    assert capture.messages == []
    kit.assert_nothing_leaked(capture)


def test_stripped_starttls_on_another_port_is_refused__R_LIB_GUARD_1(
    kit: Kit, tmp_path: Path
) -> None:
    """Verified on port A as ann; stripped on port B as ann → DowngradeError, no AUTH."""
    memory = _memory(tmp_path)
    good = _verified_session(kit, memory, username=kit.user)
    stripped = kit.server(Security.STARTTLS, strip_starttls=True)
    assert stripped.port != good.port
    with pytest.raises(smtpsec.DowngradeError, match="TLS memory records verified TLS") as info:
        kit.connect(stripped, Security.OPPORTUNISTIC, policy=kit.policy(memory=memory))
    assert "another port" in str(info.value)
    _assert_refused_before_anything_sensitive(kit, stripped)


def test_stripped_starttls_on_another_port_keeps_the_message__R_8314_5_2_4(
    kit: Kit, tmp_path: Path
) -> None:
    """Without credentials nothing else stops the message: the account's memory must.

    Before the memory was kept per account, this session went on in cleartext
    and the message was sent to whoever answered on the other port.
    """
    memory = _memory(tmp_path)
    _verified_session(kit, memory, username=None)
    stripped = kit.server(Security.STARTTLS, strip_starttls=True)
    with pytest.raises(smtpsec.DowngradeError):
        with kit.connect(
            stripped, Security.OPPORTUNISTIC, username=None, policy=kit.policy(memory=memory)
        ) as session:
            session.send(kit.message())
    _assert_refused_before_anything_sensitive(kit, stripped)


def test_plaintext_to_another_port_is_refused_before_connecting__R_LIB_GUARD_1(
    kit: Kit, tmp_path: Path
) -> None:
    """``Security.PLAINTEXT`` to any port of a remembered account opens no connection."""
    memory = _memory(tmp_path)
    _verified_session(kit, memory, username=kit.user)
    plain = kit.server(Security.PLAINTEXT)
    with pytest.raises(smtpsec.DowngradeError, match=r"refusing Security\.PLAINTEXT"):
        kit.connect(plain, Security.PLAINTEXT, policy=kit.policy(memory=memory))
    assert plain.connections == []


def test_verified_tls_on_another_port_is_accepted_and_recorded(kit: Kit, tmp_path: Path) -> None:
    """Verified TLS on any port meets the account's level: implicit TLS, then STARTTLS."""
    memory = _memory(tmp_path)
    first = kit.server(Security.IMPLICIT_TLS)
    second = kit.server(Security.STARTTLS)
    policy = kit.policy(memory=memory)
    with kit.connect(first, Security.IMPLICIT_TLS, policy=policy) as session:
        assert session.report.verified
    with kit.connect(second, Security.STARTTLS, policy=policy) as session:
        assert session.report.verified
    expectation = memory.expectation(Account(kit.user, "localhost"))
    assert expectation is not None
    assert expectation.mode is Security.IMPLICIT_TLS  # the strongest seen stays
    assert expectation.ports == tuple(sorted((first.port, second.port)))


def test_another_user_on_the_same_host_is_another_account(kit: Kit, tmp_path: Path) -> None:
    """ann's memory does not apply to a session without login (or as bob) on that host."""
    memory = _memory(tmp_path)
    _verified_session(kit, memory, username=kit.user)
    stripped = kit.server(Security.STARTTLS, strip_starttls=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", smtpsec.InsecureConfigurationWarning)
        with kit.connect(
            stripped, Security.OPPORTUNISTIC, username=None, policy=kit.policy(memory=memory)
        ) as session:
            assert session.report.mode is Security.PLAINTEXT  # what OPPORTUNISTIC allows
    # With credentials the AUTH rule refuses (not the memory: bob has none).
    with (
        pytest.warns(smtpsec.InsecureConfigurationWarning, match="offers no STARTTLS"),
        pytest.raises(smtpsec.InsecureAuthError),
    ):
        kit.connect(
            stripped,
            Security.OPPORTUNISTIC,
            username="bob",
            password=kit.password,
            policy=kit.policy(memory=memory),
        )
    assert memory.accounts() == [Account(kit.user, "localhost")]


def test_another_host_is_another_account(kit: Kit, tmp_path: Path) -> None:
    """Memory for ``localhost`` says nothing about ``127.0.0.1``, even on the same machine."""
    memory = _memory(tmp_path)
    _verified_session(kit, memory, username=None)
    stripped = kit.server(Security.STARTTLS, strip_starttls=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", smtpsec.InsecureConfigurationWarning)
        with kit.connect(
            stripped,
            Security.OPPORTUNISTIC,
            host="127.0.0.1",
            username=None,
            policy=kit.policy(memory=memory),
        ) as session:
            assert session.report.mode is Security.PLAINTEXT


def test_forgetting_the_account_frees_every_port__R_LIB_GUARD_3(kit: Kit, tmp_path: Path) -> None:
    """``forget(Account(user, host))`` is the one deliberate way back to cleartext."""
    memory = _memory(tmp_path)
    _verified_session(kit, memory, username=None)
    assert memory.forget(Account("", "localhost"))
    stripped = kit.server(Security.STARTTLS, strip_starttls=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", smtpsec.InsecureConfigurationWarning)
        with kit.connect(
            stripped, Security.OPPORTUNISTIC, username=None, policy=kit.policy(memory=memory)
        ) as session:
            assert session.report.mode is Security.PLAINTEXT
