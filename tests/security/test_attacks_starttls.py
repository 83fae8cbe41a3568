"""STARTTLS negotiation attacks against the native client (checklist §3 and EAST §5).

Each test scripts one misbehaviour into the fake MSA, asserts the exact error
class, and checks the "send nothing" rule of §0.2 item 3 on the pre-TLS capture.
"""

from __future__ import annotations

import warnings

import pytest
from _security_kit import Kit

import smtpsec
from smtpsec import Security
from smtpsec.testing import AuthAttempt, ServerSession

PRE_TLS_ALLOWED = {"EHLO", "STARTTLS", "QUIT"}
EVIL_TEXT = "Visit http://evil.test to fix your account"


# --------------------------------------------------------------------------- stripping


def test_stripped_starttls_aborts__R_3207_4_1__R_EAST_NS_1(kit: Kit) -> None:
    """EHLO lists AUTH but no STARTTLS (EAST O_1): abort, only EHLO/QUIT before TLS."""
    srv = kit.server(strip_starttls=True, pre_tls_auth=("PLAIN", "LOGIN"))
    with pytest.raises(smtpsec.TLSUnavailableError) as info:
        kit.connect(srv, Security.STARTTLS)
    capture = kit.finished(srv)
    assert "STARTTLS" in str(info.value)
    assert capture.pre_tls_verbs_subset_of(PRE_TLS_ALLOWED)
    assert "STARTTLS" not in capture.commands_pre_tls  # abort, do not even try (§8 item 2)
    assert not capture.tls
    kit.assert_nothing_leaked(capture)


@pytest.mark.parametrize("code", [454, 502, 354, 221, 421, 500, 501, 530])
def test_starttls_refused__R_3207_4_2__R_EAST_NS_2__R_EAST_UE_1(kit: Kit, code: int) -> None:
    """Any reply but 220 to STARTTLS ends the connection; its text is labelled unverified."""
    srv = kit.server(starttls_reply=(code, EVIL_TEXT), pre_tls_auth=("PLAIN",))
    with pytest.raises(smtpsec.TLSUnavailableError) as info:
        kit.connect(srv, Security.STARTTLS)
    capture = kit.finished(srv)
    message = str(info.value)
    assert str(code) in message
    # R-EAST-UE-1: the attacker's words appear only inside an "unverified" label.
    label = "unverified server text: "
    assert label in message
    assert message.index(label) < message.index("evil.test")
    assert capture.pre_tls_verbs_subset_of(PRE_TLS_ALLOWED)
    assert not capture.tls
    kit.assert_nothing_leaked(capture)


def test_starttls_reply_not_smtp__R_3207_4_2(kit: Kit) -> None:
    """A malformed line in answer to STARTTLS is a protocol error, never a plaintext fallback."""
    srv = kit.server(starttls_reply=b"garbage instead of a reply\r\n")
    with pytest.raises(smtpsec.RemoteProtocolError):
        kit.connect(srv, Security.STARTTLS)
    capture = kit.finished(srv)
    assert capture.pre_tls_verbs_subset_of(PRE_TLS_ALLOWED)
    assert not capture.tls
    kit.assert_nothing_leaked(capture)


def test_auto_never_falls_back_to_cleartext__R_EAST_NS_5__R_8314_5_2_1(kit: Kit) -> None:
    """Default settings (Security.AUTO, a non-465 port) against a stripped server raise."""
    srv = kit.server(strip_starttls=True, pre_tls_auth=("PLAIN",))
    with pytest.raises(smtpsec.TLSUnavailableError):
        smtpsec.connect(
            "localhost",
            srv.port,
            username=kit.user,
            password=kit.password,
            policy=kit.policy(),
            timeout=kit.timeout,
        )
    capture = kit.finished(srv)
    assert capture.pre_tls_verbs_subset_of(PRE_TLS_ALLOWED)
    kit.assert_nothing_leaked(capture)


# --------------------------------------------------------------------------- buffering


def test_unsolicited_reply_before_starttls_220__R_EAST_BR_3(kit: Kit) -> None:
    """``250 ok`` then ``220 go`` in one write: a reply-count violation, no handshake."""
    srv = kit.server(starttls_reply=b"250 2.0.0 ok\r\n220 2.0.0 go ahead\r\n")
    with pytest.raises(smtpsec.RemoteProtocolError):
        kit.connect(srv, Security.STARTTLS)
    capture = kit.finished(srv)
    assert capture.tls_version is None
    assert capture.handshake_error is None  # no ClientHello was ever sent
    assert capture.pre_tls_verbs_subset_of(PRE_TLS_ALLOWED)
    kit.assert_nothing_leaked(capture)


def test_response_injection_complete_replies__R_EAST_BR_1(kit: Kit) -> None:
    """EAST B_1 step 2: ``220 …`` + ``250-…`` + ``250 AUTH LOGIN`` in one write → abort."""
    srv = kit.server(starttls_inject=b"250-smtp.evil.test\r\n250 AUTH LOGIN\r\n")
    with pytest.raises(smtpsec.ResponseInjectionError):
        kit.connect(srv, Security.STARTTLS)
    capture = kit.finished(srv)
    assert "AUTH" not in capture.commands
    kit.assert_nothing_leaked(capture)


def test_response_injection_partial_reply__R_EAST_BR_1(kit: Kit) -> None:
    """An unfinished injected reply after the 220 is detected before the handshake."""
    srv = kit.server(starttls_inject=b"250-smtp.evil.test\r\n250-AUTH LOGIN\r\n")
    with pytest.raises(smtpsec.ResponseInjectionError) as info:
        kit.connect(srv, Security.STARTTLS)
    capture = kit.finished(srv)
    assert "before the TLS handshake" in str(info.value)
    assert "AUTH" not in capture.commands
    assert not capture.tls
    kit.assert_nothing_leaked(capture)


def test_plaintext_instead_of_handshake__R_3207_4_1_1(kit: Kit) -> None:
    """``220`` to STARTTLS, then plaintext where the ServerHello belongs: fail, send no more."""
    client_hello: list[bytes] = []

    def no_tls(session: ServerSession, line: str) -> bytes | None:
        if line.strip().upper() != "STARTTLS":
            return None
        session.send(b"220 2.0.0 Ready to start TLS\r\n")
        # Take the ClientHello off the wire first, so the plaintext lands inside the
        # client's handshake (before it, it would be response injection instead).
        client_hello.append(session._wire.sock.recv(65536))
        session.close()
        return b"250 2.0.0 ok, carry on in plaintext\r\n"

    srv = kit.server(on_command=no_tls, pre_tls_auth=("PLAIN",))
    with pytest.raises(smtpsec.TLSUnavailableError) as info:
        kit.connect(srv, Security.STARTTLS)
    capture = kit.finished(srv)
    assert "did not start TLS" in str(info.value)
    assert client_hello[0][:1] == b"\x16"  # a TLS handshake record, not SMTP
    assert capture.commands_pre_tls == ["EHLO", "STARTTLS"]
    assert capture.pre_tls.endswith(b"STARTTLS\r\n")  # nothing after the ClientHello
    kit.assert_nothing_leaked(capture)


def test_post_tls_ehlo_unanswered_times_out__R_EAST_BR_2(kit: Kit) -> None:
    """EAST B_1 step 1: the post-TLS EHLO gets no answer → timeout, never progress."""
    srv = kit.server(post_tls_ehlo_silent=True, pre_tls_auth=("PLAIN",))
    with pytest.raises(smtpsec.TimeoutError):
        kit.connect(srv, Security.STARTTLS, timeout=1.0)
    capture = kit.finished(srv)
    assert capture.commands_post_tls[:1] == ["EHLO"]
    assert "AUTH" not in capture.commands
    kit.assert_nothing_leaked(capture)


# --------------------------------------------------------------------------- tampering


def test_pre_tls_auth_bait_is_ignored__R_EAST_NS_4__R_3207_4_2_1(kit: Kit) -> None:
    """Pre-TLS EHLO offers AUTH PLAIN LOGIN CRAM-MD5 and SIZE 1; only the post-TLS list counts."""
    srv = kit.server(
        pre_tls_extensions=("SIZE 1", "AUTH PLAIN LOGIN CRAM-MD5", "PIPELINING"),
        auth_mechanisms=("PLAIN",),
    )
    with kit.connect(srv, Security.STARTTLS) as session:
        extensions = session.extensions
        session.send(kit.message())  # far larger than the pre-TLS SIZE 1
    capture = kit.finished(srv)
    assert extensions.auth_mechanisms == frozenset({"PLAIN"})
    assert "STARTTLS" not in extensions  # the post-TLS list differs from the pre-TLS one
    assert extensions.max_size != 1
    assert "AUTH" not in capture.commands_pre_tls
    assert capture.auth == [AuthAttempt("PLAIN", kit.user, True)]
    assert kit.body.encode() in capture.messages[0].data
    kit.assert_nothing_leaked(capture)


# --------------------------------------------------------------------------- modes


def test_opportunistic_still_uses_starttls__R_8314_5_2_6(kit: Kit) -> None:
    """OPPORTUNISTIC against a server that offers STARTTLS performs it (and warns not)."""
    srv = kit.server()
    with warnings.catch_warnings():
        warnings.simplefilter("error", smtpsec.SMTPSecWarning)
        with kit.connect(srv, Security.OPPORTUNISTIC) as session:
            report = session.report
    capture = kit.finished(srv)
    assert capture.tls
    assert report.mode is Security.STARTTLS
    assert report.confidential
    assert capture.commands_pre_tls == ["EHLO", "STARTTLS"]
    assert "AUTH" in capture.commands_post_tls
    kit.assert_nothing_leaked(capture)


def test_plaintext_to_starttls_server_signals_upgrade__R_8314_5_7(kit: Kit) -> None:
    """PLAINTEXT to a server advertising STARTTLS emits UpgradeAvailableWarning."""
    srv = kit.server()
    with (
        pytest.warns(smtpsec.UpgradeAvailableWarning),
        kit.connect(srv, Security.PLAINTEXT, username=None) as session,
    ):
        report = session.report
    capture = kit.finished(srv)
    assert report.mode is Security.PLAINTEXT
    assert not report.confidential  # R-8314-5-4
    assert report.tls_version is None
    assert "STARTTLS" not in capture.commands


@pytest.mark.parametrize("security", [Security.PLAINTEXT, Security.OPPORTUNISTIC])
def test_no_auth_without_tls__R_4954_9_1__R_8314_4_1_2(kit: Kit, security: Security) -> None:
    """A cleartext server offering AUTH PLAIN LOGIN CRAM-MD5 gets no credentials."""
    srv = kit.server(Security.PLAINTEXT, auth_mechanisms=("PLAIN", "LOGIN", "CRAM-MD5"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(smtpsec.InsecureAuthError) as info:
            kit.connect(srv, security)
    capture = kit.finished(srv)
    assert "allow_cleartext_auth" in str(info.value)
    assert "AUTH" not in capture.commands
    assert capture.secrets_leaked(kit.password, kit.body) == []
    if security is Security.OPPORTUNISTIC:
        # R-8314-5.2-3: falling back to cleartext is announced.
        assert any(w.category is smtpsec.InsecureConfigurationWarning for w in caught)


def test_plaintext_to_network_host_warns__R_8314_5_2_3(kit: Kit, non_loopback_alias: str) -> None:
    """PLAINTEXT to a name that is not loopback warns, and still refuses AUTH."""
    srv = kit.server(Security.PLAINTEXT)
    with (
        pytest.warns(smtpsec.InsecureConfigurationWarning, match="cleartext"),
        pytest.raises(smtpsec.InsecureAuthError),
    ):
        kit.connect(srv, Security.PLAINTEXT, host=non_loopback_alias)
    capture = kit.finished(srv)
    assert "AUTH" not in capture.commands
    assert capture.secrets_leaked(kit.password) == []


def test_cleartext_auth_needs_explicit_flag_and_warns__R_8314_5_2_3(kit: Kit) -> None:
    """``allow_cleartext_auth=True`` is the only way to AUTH in cleartext, and it warns."""
    srv = kit.server(Security.PLAINTEXT)
    policy = smtpsec.Policy(allow_cleartext_auth=True)
    with pytest.warns(smtpsec.InsecureConfigurationWarning, match="allow_cleartext_auth"):
        session = kit.connect(srv, Security.PLAINTEXT, policy=policy)
    with session:
        assert session.report.authenticated_as == kit.user
        assert not session.report.confidential
    assert kit.finished(srv).auth == [AuthAttempt("PLAIN", kit.user, True)]


def test_starttls_mode_against_implicit_port__R_EAST_IMP_1(kit: Kit) -> None:
    """STARTTLS mode on an implicit-TLS port fails within the timeout and names the fix."""
    srv = kit.server(Security.IMPLICIT_TLS)
    with pytest.raises(smtpsec.TimeoutError) as info:
        kit.connect(srv, Security.STARTTLS, timeout=1.0)
    capture = kit.finished(srv)
    assert "IMPLICIT_TLS" in str(info.value)
    assert capture.commands == []
    assert not capture.tls


def test_implicit_mode_against_plaintext_port__R_8314_3_3_1(kit: Kit) -> None:
    """An "implicit TLS" port that greets in plaintext: TLS error naming STARTTLS, no SMTP sent."""
    srv = kit.server(Security.PLAINTEXT)
    with pytest.raises(smtpsec.TLSUnavailableError) as info:
        kit.connect(srv, Security.IMPLICIT_TLS)
    capture = kit.finished(srv)
    assert "STARTTLS" in str(info.value)
    # The server saw only the ClientHello (as junk), never an SMTP command.
    assert capture.pre_tls[:1] == b"\x16"
    assert not {"EHLO", "HELO", "AUTH", "MAIL"} & set(capture.commands)
    assert capture.secrets_leaked(kit.password, kit.body) == []


def test_implicit_tls_never_sends_starttls__R_3207_4_2_3(kit: Kit) -> None:
    """An implicit-TLS EHLO that lists STARTTLS is ignored: no second TLS layer requested."""
    srv = kit.server(Security.IMPLICIT_TLS, extensions=("PIPELINING", "STARTTLS", "SIZE 1000000"))
    with kit.connect(srv, Security.IMPLICIT_TLS) as session:
        session.send(kit.message())
    capture = kit.finished(srv)
    assert capture.commands_pre_tls == []
    assert capture.commands_post_tls[0] == "EHLO"
    assert "STARTTLS" not in capture.commands
    assert len(capture.messages) == 1


# --------------------------------------------------------------------------- TLS details


@pytest.mark.parametrize(
    ("mode", "security"),
    [(Security.IMPLICIT_TLS, Security.IMPLICIT_TLS), (Security.STARTTLS, Security.STARTTLS)],
)
def test_sni_is_the_configured_host__R_LIB_SNI_1(kit: Kit, mode: str, security: Security) -> None:
    """SNI carries the configured host name."""
    srv = kit.server(mode)  # type: ignore[arg-type]
    with kit.connect(srv, security, username=None):
        pass
    assert kit.finished(srv).sni == "localhost"


@pytest.mark.parametrize(
    ("mode", "security"),
    [(Security.IMPLICIT_TLS, Security.IMPLICIT_TLS), (Security.STARTTLS, Security.STARTTLS)],
)
def test_no_sni_for_ip_literal__R_LIB_SNI_1(kit: Kit, mode: str, security: Security) -> None:
    """An address literal is never sent as SNI (the IP SAN is still checked)."""
    srv = kit.server(mode)  # type: ignore[arg-type]
    with kit.connect(srv, security, host="127.0.0.1", username=None) as session:
        assert session.report.verified
    capture = kit.finished(srv)
    assert capture.tls
    assert capture.sni is None


@pytest.mark.parametrize(
    ("mode", "security"),
    [(Security.IMPLICIT_TLS, Security.IMPLICIT_TLS), (Security.STARTTLS, Security.STARTTLS)],
)
def test_close_sends_close_notify__R_8314_3_4_1(kit: Kit, mode: str, security: Security) -> None:
    """A normal session ends with QUIT and a TLS close_notify, not a bare FIN."""
    srv = kit.server(mode)  # type: ignore[arg-type]
    session = kit.connect(srv, security)
    session.close()
    session.close()  # idempotent
    capture = kit.finished(srv)
    assert session.closed
    assert capture.commands_post_tls[-1] == "QUIT"
    assert capture.close_notify
