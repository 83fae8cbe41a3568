"""The downgrade guard: pure checks at named checkpoints that raise typed errors.

The client asks the guard at each checkpoint (after the greeting, after EHLO,
after the STARTTLS reply, after the handshake, before AUTH, before MAIL). It
never does I/O and never retries: a failed check ends the connection, and
nothing after it is sent in cleartext. The same guard serves the smtplib
adapter.
"""

from __future__ import annotations

import ssl
import warnings
from dataclasses import dataclass

from .errors import (
    DowngradeError,
    InsecureAuthError,
    InsecureConfigurationWarning,
    PinMismatchError,
    RemoteProtocolError,
    ReplyError,
    SMTPSecWarning,
    TLSUnavailableError,
    TLSVersionError,
    UpgradeAvailableWarning,
)
from .memory import Account
from .policy import Attempt, Policy
from .sansio import Extensions, Reply
from .tls import TLSInfo

__all__ = ["Guard"]


@dataclass(frozen=True, slots=True)
class Guard:
    """Checks for one connection attempt.

    Args:
        policy: trust and minimum-security settings.
        attempt: the port and TLS start chosen by :func:`~smtpsec.policy.select_plan`.
        host: the server name.
        user: the account's user name ("" without credentials) for TLS memory.
    """

    policy: Policy
    attempt: Attempt
    host: str
    user: str = ""

    @property
    def account(self) -> Account:
        """The TLS-memory key of this connection."""
        return Account(user=self.user, host=self.host, port=self.attempt.port)

    def _remembered(self) -> bool:
        memory = self.policy.memory
        return memory is not None and memory.requires_tls(self.account)

    # ------------------------------------------------------------------ checkpoints

    def before_connect(self) -> None:
        """Refuse a plaintext plan where TLS memory says TLS worked before."""
        if self.attempt.tls == "none" and self._remembered():
            raise DowngradeError(
                f"TLS memory says {self.host}:{self.attempt.port} gave verified TLS before; "
                "refusing Security.PLAINTEXT for this account. If the server really "
                "changed, forget the account in the TLS memory first"
            )

    def after_greeting(self, reply: Reply, *, tls: bool) -> None:
        """Only a 220 greeting leads anywhere."""
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
        if mode == "implicit":
            # A caller that skipped the handshake must not fall through to the
            # cleartext branches below: fail closed (R-EAST-IMP-1).
            raise TLSUnavailableError(
                f"{self.host}:{self.attempt.port} was to use implicit TLS, but the session "
                "reached EHLO without TLS; nothing else was sent. This is a bug in the "
                "caller of the guard: run the TLS handshake first"
            )
        if mode == "starttls":
            if not offered:
                raise TLSUnavailableError(
                    f"{self.host}:{self.attempt.port} does not offer STARTTLS, and this "
                    "connection requires TLS; nothing was sent. The server may be "
                    "misconfigured, or an attacker stripped STARTTLS. Try "
                    "Security.IMPLICIT_TLS on port 465"
                )
            return True
        if mode == "opportunistic":
            if offered:
                return True
            if self._remembered():
                raise DowngradeError(
                    f"{self.host}:{self.attempt.port} no longer offers STARTTLS, but TLS "
                    "memory records verified TLS for this account: refusing a cleartext "
                    "session (possible STARTTLS stripping)"
                )
            warnings.warn(
                f"{self.host}:{self.attempt.port} offers no STARTTLS: continuing in "
                "cleartext because Security.OPPORTUNISTIC was chosen; AUTH is refused",
                InsecureConfigurationWarning,
                stacklevel=4,
            )
            return False
        if offered:  # mode == "none"
            warnings.warn(
                f"{self.host}:{self.attempt.port} offers STARTTLS but Security.PLAINTEXT "
                "was chosen; use Security.STARTTLS to protect this session",
                UpgradeAvailableWarning,
                stacklevel=4,
            )
        return False

    def after_starttls_reply(self, reply: Reply) -> None:
        """Anything but 220 ends the connection; the text is unverified."""
        if reply.code != 220:
            raise TLSUnavailableError(
                f"{self.host}:{self.attempt.port} refused STARTTLS with {reply.code} "
                f"[unverified server text: {reply.text!r}]; TLS is required, so nothing "
                "else was sent. Retry later or use Security.IMPLICIT_TLS on port 465",
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
                f"{self.host}:{self.attempt.port} negotiated {info.version}, below the "
                f"policy floor {floor.name}; the server must support TLS 1.2 or newer"
            )
        if self.policy.client_cert is not None and version < ssl.TLSVersion.TLSv1_3:
            # R-8314-8-1: before TLS 1.3 the client certificate crosses the wire
            # unencrypted, which tells an observer who is logging in.
            warnings.warn(
                f"{self.host}:{self.attempt.port} negotiated {info.version}: a client "
                "certificate sent in this handshake was visible to observers (it is "
                "encrypted only with TLS 1.3); ask the provider for TLS 1.3, or set "
                "Policy(min_tls_version=ssl.TLSVersion.TLSv1_3) to require it",
                SMTPSecWarning,
                stacklevel=4,
            )
        pins = self.policy.pins
        if not pins:
            return False
        if info.spki_pin not in pins:
            raise PinMismatchError(
                f"{self.host}:{self.attempt.port} presented key {info.spki_pin}, which "
                "matches none of the configured pins; if the server legitimately "
                "changed its key, update Policy(pins=...)"
            )
        return True

    def before_auth(self, info: TLSInfo | None) -> None:
        """Credentials only travel over verified TLS (R-4954-9-1, R-8314-5.3-3)."""
        if info is not None and info.verified and not self.policy.pinned_instead_of_ca:
            return
        if self.policy.allow_cleartext_auth:
            warnings.warn(
                "sending credentials without verified TLS because "
                "Policy(allow_cleartext_auth=True) was set",
                InsecureConfigurationWarning,
                stacklevel=4,
            )
            return
        what = "in cleartext" if info is None else "over TLS whose certificate was not verified"
        raise InsecureAuthError(
            f"refusing to send credentials {what} to {self.host}:{self.attempt.port}; use "
            "Security.IMPLICIT_TLS or Security.STARTTLS with a verified certificate "
            "(Policy(allow_cleartext_auth=True) exists for loopback test servers only)"
        )

    def before_mail(self, info: TLSInfo | None) -> None:
        """No message leaves over a session weaker than TLS memory recorded."""
        if (info is None or not info.verified) and self._remembered():
            raise DowngradeError(
                f"TLS memory records verified TLS for {self.host}:{self.attempt.port}, but "
                "this session has none; refusing to send the message"
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


def unexpected(reply: Reply, doing: str, *, tls: bool) -> RemoteProtocolError:
    """A reply code that makes no sense at this point of the dialogue."""
    return RemoteProtocolError(
        f"unexpected reply {reply.code} to {doing} ({_quote(reply, tls)}); the server is "
        "broken or something in the path altered the dialogue"
    )
