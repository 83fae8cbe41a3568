"""The downgrade guard: pure checks at named checkpoints that raise typed errors.

The engine asks the guard at each checkpoint (before connecting, after the
greeting, after EHLO, after the STARTTLS reply, after the handshake, before
AUTH, before MAIL). The guard decides from data alone: the policy, the
attempt, and a snapshot of the TLS memory taken before the dialogue. It does
no I/O and emits no warnings: what the caller should be warned about is kept
in :attr:`Guard.findings`, and each front end turns those into warnings that
point at the caller's own line. A failed check ends the connection, and
nothing after it is sent in cleartext. Every front end (native, asyncio, the
smtplib drop-in, the CLI) uses this one guard; :class:`Advice`
words its fixes for the API at hand.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

from typing_extensions import assert_never

from ._advice import NATIVE, Advice
from .errors import (
    DowngradeError,
    InsecureAuthError,
    InsecureConfigurationWarning,
    PinMismatchError,
    ReplyError,
    SMTPSecWarning,
    TLSUnavailableError,
    TLSVersionError,
    UpgradeAvailableWarning,
)
from .policy import Attempt, Policy, Security
from .sansio import Extensions, Reply
from .tls import TLSInfo, describe_chain, pin_candidates

__all__ = ["Advice", "Finding", "Guard"]


@dataclass(frozen=True, slots=True)
class Finding:
    """Something the caller should be warned about (the guard never warns itself).

    Attributes:
        category: the warning class.
        message: the warning text.
    """

    category: type[Warning]
    message: str


@dataclass(frozen=True, slots=True)
class Guard:
    """Checks for one connection attempt.

    Args:
        policy: trust and minimum-security settings.
        attempt: the port and TLS start chosen by :func:`~smtpsec.policy.select_plan`.
        host: the server name.
        remembered: the TLS memory, read before the dialogue, says this
            account (the user at ``host``) had verified TLS before, on this or
            any other port (RFC 8314 §5.2).
        advice: how fixes are worded for the caller's API.

    Attributes:
        findings: warnings for the caller, in the order they arose.
    """

    policy: Policy
    attempt: Attempt
    host: str
    remembered: bool = False
    advice: Advice = NATIVE
    findings: list[Finding] = field(default_factory=list, compare=False)

    @property
    def peer(self) -> str:
        """``host:port`` for messages."""
        return f"{self.host}:{self.attempt.port}"

    def _note(self, category: type[Warning], message: str) -> None:
        self.findings.append(Finding(category, message))

    def take_findings(self) -> list[Finding]:
        """The findings so far, removed from the guard (each is reported once)."""
        found = list(self.findings)
        self.findings.clear()
        return found

    # ------------------------------------------------------------------ checkpoints

    def before_connect(self) -> None:
        """Refuse a plaintext plan where TLS memory says TLS worked before."""
        if self.attempt.tls is Security.PLAINTEXT and self.remembered:
            raise DowngradeError(
                f"TLS memory records verified TLS for this account on {self.host} (on "
                f"this or another port); refusing {self.advice.plaintext} to {self.peer}. "
                "If the server really changed, remove the account from the TLS memory "
                f"first ({self.advice.forget_account})"
            )

    def after_greeting(self, reply: Reply, *, tls: bool) -> None:
        """Only a 220 greeting leads anywhere (R-LIB-GREET-1)."""
        if reply.code != 220:
            raise ReplyError(
                f"the server greeted with {reply.code} instead of 220 "
                f"({_quote(reply, tls)}); it does not accept mail from this client now",
                code=reply.code,
                enhanced_status=_enhanced(reply),
                text=reply.text,
                server_text_authenticated=tls,
            )

    def after_ehlo(self, extensions: Extensions, *, tls: bool) -> bool:
        """Decide whether to send STARTTLS now; raise if TLS is required but absent.

        Returns:
            True when the client must send STARTTLS next.
        """
        if tls:
            return False  # never STARTTLS inside TLS (R-3207-4.2-3)
        offered = "STARTTLS" in extensions
        mode = self.attempt.tls
        match mode:
            case Security.IMPLICIT_TLS:
                # A caller that skipped the handshake must not fall through to
                # the cleartext branches below: fail closed (R-EAST-IMP-1).
                raise TLSUnavailableError(
                    f"{self.peer} was to use implicit TLS, but the session reached EHLO "
                    "without TLS; nothing else was sent. This is a bug in the caller of "
                    "the guard: run the TLS handshake first"
                )
            case Security.STARTTLS:
                if not offered:
                    raise TLSUnavailableError(
                        f"{self.peer} does not offer STARTTLS, and this connection requires "
                        "TLS; nothing was sent. The server may be misconfigured, or an "
                        f"attacker stripped STARTTLS. Try implicit TLS: {self.advice.implicit_tls}"
                    )
                return True
            case Security.OPPORTUNISTIC:
                if offered:
                    return True
                if self.remembered:
                    raise DowngradeError(
                        f"{self.peer} does not offer STARTTLS, but TLS memory records "
                        f"verified TLS for this account on {self.host} (on this or another "
                        "port): refusing a cleartext session (possible STARTTLS "
                        "stripping); nothing else was sent. If the server really changed, "
                        f"remove the account from the TLS memory ({self.advice.forget_account})"
                    )
                self._note(
                    InsecureConfigurationWarning,
                    f"{self.peer} offers no STARTTLS: continuing in cleartext because "
                    f"{self.advice.opportunistic} was chosen; AUTH is refused",
                )
                return False
            case Security.PLAINTEXT:
                if offered:
                    self._note(
                        UpgradeAvailableWarning,
                        f"{self.peer} offers STARTTLS but {self.advice.plaintext} was "
                        f"chosen; to protect this session, {self.advice.starttls}",
                    )
                return False
            case Security.AUTO:  # pragma: no cover - Attempt refuses AUTO
                raise AssertionError("an attempt is never AUTO")
            case _:
                assert_never(mode)

    def after_starttls_reply(self, reply: Reply) -> None:
        """Anything but 220 ends the connection (R-3207-4-2); the text is unverified."""
        if reply.code != 220:
            raise TLSUnavailableError(
                f"{self.peer} refused STARTTLS with {reply.code} "
                f"[unverified server text: {reply.text!r}]; TLS is required, so nothing "
                f"else was sent. Retry later, or {self.advice.implicit_tls}",
                code=reply.code,
                text=reply.text,
            )

    def after_handshake(self, info: TLSInfo) -> bool:
        """Check the negotiated session against the policy.

        Returns:
            True when the server key matched a configured pin.
        """
        version = info.tls_version
        floor = self.policy.min_tls_version
        if version is None or version < floor:
            raise TLSVersionError(
                f"{self.peer} negotiated {info.version}, below {self.advice.tls_floor} "
                f"({floor.name}); the server must support TLS 1.2 or newer"
            )
        if self.policy.client_cert is not None and version < ssl.TLSVersion.TLSv1_3:
            # R-8314-8-1: before TLS 1.3 the client certificate crosses the wire
            # unencrypted, which tells an observer who is logging in.
            self._note(
                SMTPSecWarning,
                f"{self.peer} negotiated {info.version}: a client certificate sent in this "
                "handshake was visible to observers (it is encrypted only with TLS 1.3); "
                f"ask the provider for TLS 1.3, or {self.advice.require_tls13} to require it",
            )
        return self._check_pins(info)

    def _check_pins(self, info: TLSInfo) -> bool:
        """Any configured pin may match any key :func:`pin_candidates` allows (RFC 8314 §5.4).

        The leaf always counts; the keys above it count only when the chain
        was verified (R-8314-5.4-2: never a certificate the server merely sent).
        """
        pins = self.policy.pins
        if not pins:
            return False
        candidates = pin_candidates(info)
        if pins.isdisjoint(candidates):
            raise PinMismatchError(
                self._pin_mismatch_text(info),
                expected=tuple(sorted(pins)),
                presented=candidates,
            )
        if len(pins) == 1 and info.spki_pin in pins and not self.policy.pinned_instead_of_ca:
            # A lone pin on the server's own key breaks at its next key change,
            # and certificate lifetimes are falling to 47 days: say so once the
            # session can name the CA keys that would survive a renewal.
            above = [str(key) for key in describe_chain(info)[1:]]
            backup = f": a key from its chain ({'; '.join(above)})" if above else ""
            self._note(
                SMTPSecWarning,
                f"{self.peer} matched the only configured pin, which is the server's own key: "
                "the connection will fail as soon as a certificate renewal changes that key. "
                f"Add a backup pin{backup}, or the server's next key; {self.advice.update_pins}",
            )
        return True

    def _pin_mismatch_text(self, info: TLSInfo) -> str:
        presented = "; ".join(str(key) for key in describe_chain(info)) or "no certificate"
        if self.policy.pinned_instead_of_ca:
            scope = (
                " With pin-only trust no chain is verified, so only the server's own key counts."
            )
        elif not info.verified:
            scope = " The chain was not verified, so only the server's own key counts."
        elif not info.verified_chain:
            scope = (
                " This Python did not show the verified chain, so only the server's own "
                "key could be compared."
            )
        else:
            scope = ""
        return (
            f"no key {self.peer} presented matches a configured pin. Expected one of: "
            f"{', '.join(sorted(self.policy.pins))}. Presented: {presented}.{scope} This "
            "may be an attack, so do not simply pin what was presented: if the server's "
            f"operator confirms the change, {self.advice.update_pins} (with a backup pin; "
            "a CA key in the chain survives certificate renewals)"
        )

    def before_auth(self, info: TLSInfo | None) -> None:
        """Credentials only travel over verified TLS (R-4954-9-1, R-8314-5.3-3)."""
        if info is not None and info.verified and not self.policy.pinned_instead_of_ca:
            return
        if self.policy.allow_cleartext_auth:
            self._note(
                InsecureConfigurationWarning,
                f"sending credentials without verified TLS because "
                f"{self.advice.cleartext_auth} was set",
            )
            return
        what = "in cleartext" if info is None else "over TLS whose certificate was not verified"
        raise InsecureAuthError(
            f"refusing to send credentials {what} to {self.peer}; {self.advice.verified_tls} "
            f"({self.advice.cleartext_auth} exists for loopback test servers only)"
        )

    def before_mail(self, info: TLSInfo | None) -> None:
        """No message leaves over a session weaker than TLS memory recorded."""
        if (info is None or not info.verified) and self.remembered:
            raise DowngradeError(
                f"TLS memory records verified TLS for this account on {self.host}, but "
                f"this session to {self.peer} has none; refusing to send the message"
            )

    def confidential(self, info: TLSInfo | None) -> bool:
        """RFC 8314 §5.2 minimum confidentiality: verified TLS ≥ 1.2, not pin-only."""
        if info is None or not info.verified or self.policy.pinned_instead_of_ca:
            return False
        version = info.tls_version
        return version is not None and version >= ssl.TLSVersion.TLSv1_2


def _enhanced(reply: Reply) -> str | None:
    return str(reply.enhanced_status) if reply.enhanced_status else None


def _quote(reply: Reply, tls: bool) -> str:
    label = "" if tls else "unverified server text: "
    return f"{label}{reply.text!r}"
