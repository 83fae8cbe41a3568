"""The one TLS chokepoint: context builder, the "verified" verdict, session facts,
SPKI pins, error mapping.

Every TLS connection smtpsec makes uses :func:`build_context`; every strict
default carries a comment saying why. Every handshake, on every transport,
ends in :func:`session_info`, the one place that decides whether a session
counts as verified, and so whether the certificate chain it reports can be
used for pins.

Chain pins. A pin may name the key of any certificate in the chain OpenSSL
*verified* (leaf, intermediates, trust anchor), never of a certificate the
server merely sent: an attacker with any trusted certificate can append a
copy of the pinned CA's certificate to its own chain. The verified chain is
``SSLSocket.get_verified_chain()`` on Python 3.13+ and the same OpenSSL call
(``SSL_get0_verified_chain``) through the private ``_sslobj`` on 3.10-3.12.
Without verification OpenSSL hands back the chain as sent, so it is read only
for a verified session; when no chain can be read, only the leaf key counts
(fail closed). :func:`pin_candidates` is the one rule for which keys a pin
may match.
"""

from __future__ import annotations

import _ssl
import base64
import contextlib
import contextvars
import hashlib
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import certifi
from cryptography import x509

from . import _der
from ._advice import NATIVE, Advice
from .errors import CertificateError, SecurityError, TLSUnavailableError, TLSVersionError
from .policy import Policy

__all__ = [
    "ChainKey",
    "TLSInfo",
    "TLSSessionCache",
    "build_context",
    "describe_chain",
    "pin_candidates",
    "session_info",
    "spki_pin",
    "tls_info",
    "translate_ssl_error",
    "verified_verdict",
]

_VERSION_ORDER: Final = {
    "SSLv3": ssl.TLSVersion.SSLv3,
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}


@dataclass(frozen=True, slots=True)
class TLSInfo:
    """Facts about an established TLS session.

    Attributes:
        version: negotiated protocol, e.g. ``"TLSv1.3"``.
        cipher: negotiated cipher suite name.
        verified: chain and host name were validated.
        peer_certificate: the server's leaf certificate (DER), if any.
        spki_pin: ``"sha256/<base64>"`` of the leaf's SubjectPublicKeyInfo.
        resumed: the handshake resumed an earlier session (see :class:`TLSSessionCache`).
        verified_chain: the chain OpenSSL verified, as DER, leaf first and the
            trust anchor (usually a root from the trust store) last. Empty
            unless ``verified``, and when this Python cannot show it.
    """

    version: str
    cipher: str
    verified: bool
    peer_certificate: bytes | None
    spki_pin: str | None
    resumed: bool = False
    verified_chain: tuple[bytes, ...] = ()

    @property
    def tls_version(self) -> ssl.TLSVersion | None:
        """The version as :class:`ssl.TLSVersion` (``None`` if unknown)."""
        return _VERSION_ORDER.get(self.version)


def build_context(policy: Policy, *, check_hostname: bool = True) -> ssl.SSLContext:
    """The client :class:`ssl.SSLContext` for ``policy``, built once and shared.

    A frozen policy always builds the same context, and loading the default
    trust store costs tens of milliseconds and hundreds of KiB, so the
    context is built on first use and then shared by every connection made
    with that policy (contexts are safe to share between threads). Never
    modify the returned context.

    Args:
        policy: the trust and minimum-security settings.
        check_hostname: ``False`` only when smtpsec checks the RFC 7817
            reference identities itself after the handshake (discovered
            endpoints); the chain is validated either way.

    Returns:
        A caller's ``ssl_context`` as given (the policy refused an unverifying
        one unless explicitly allowed), else smtpsec's context.
    """
    if policy.ssl_context is not None:
        return policy.ssl_context
    # With the default trust store the key includes certifi's file, so a
    # different store (a new certifi, or a test's stand-in) gets its own context.
    default_roots = policy.cafile is None and policy.cadata is None
    key = (check_hostname, certifi.where() if default_roots else None)
    cached = policy._contexts.get(key)
    if cached is None:
        cached = policy._contexts.setdefault(key, _new_context(policy, check_hostname))
    return cached


#: The session an asyncio handshake should resume: ``loop.start_tls`` takes no
#: ``session=``, so :func:`resuming` sets it around the call and smtpsec's own
#: contexts read it when asyncio creates the connection's ``SSLObject``.
_RESUME: Final[contextvars.ContextVar[ssl.SSLSession | None]] = contextvars.ContextVar(
    "smtpsec_tls_resume", default=None
)


class _Context(ssl.SSLContext):
    """smtpsec's contexts: an ordinary :class:`ssl.SSLContext` that can also
    resume a session under asyncio (see :func:`resuming`)."""

    def wrap_bio(  # the stdlib's parameters, plus the session asyncio cannot pass
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        if session is None and not server_side:
            session = _RESUME.get()
        return super().wrap_bio(
            incoming,
            outgoing,
            server_side=server_side,
            server_hostname=server_hostname,
            session=session,
        )


@contextlib.contextmanager
def resuming(session: ssl.SSLSession | None) -> Iterator[None]:
    """Inside this block, an asyncio handshake on smtpsec's contexts resumes ``session``."""
    token = _RESUME.set(session)
    try:
        yield
    finally:
        _RESUME.reset(token)


def can_resume_async(context: ssl.SSLContext) -> bool:
    """Whether an asyncio handshake on ``context`` can resume a session (only smtpsec's own)."""
    return isinstance(context, _Context)


class TLSSessionCache:
    """TLS sessions kept for resumption when reconnecting to the same server.

    A reconnect that resumes skips the certificate exchange and its checks'
    CPU work (the server decides; it may always refuse). A session is only
    ever offered again to the *same* host name and port with the *same*
    :class:`ssl.SSLContext`, so it never crosses servers, names or policies
    (a policy builds its own contexts). Each session is handed out once
    (RFC 8446 §C.4: a TLS 1.3 ticket should not be reused); the connection
    that used it stores the one it was given. Safe to share between threads
    and event loops. A policy with ``pins`` never resumes (a resumed
    handshake verifies no chain to match CA pins against).

    Every pool keeps one on its own; pass ``tls_sessions=TLSSessionCache()``
    to :func:`smtpsec.connect` calls to share one between them, or
    ``tls_sessions=None`` never to resume.

    Args:
        maxsize: most sessions kept (the oldest go first).
    """

    def __init__(self, maxsize: int = 64) -> None:
        self._maxsize = maxsize
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[int, str, int], tuple[ssl.SSLContext, ssl.SSLSession]] = (
            OrderedDict()
        )

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __repr__(self) -> str:
        return f"TLSSessionCache({len(self)} of {self._maxsize})"

    @staticmethod
    def _key(context: ssl.SSLContext, host: str, port: int) -> tuple[int, str, int]:
        return (id(context), host.lower().rstrip("."), port)

    def take(self, context: ssl.SSLContext, host: str, port: int) -> ssl.SSLSession | None:
        """The session to resume for ``host:port`` with ``context`` (removed), if any."""
        with self._lock:
            entry = self._entries.pop(self._key(context, host, port), None)
        if entry is None or entry[0] is not context:  # an id reused by a new context
            return None
        session = entry[1]
        if session.time + session.timeout <= time.time():
            return None
        return session

    def put(
        self, context: ssl.SSLContext, host: str, port: int, session: ssl.SSLSession | None
    ) -> None:
        """Keep ``session`` (from a connection to ``host:port`` made with ``context``)."""
        if session is None or not (session.has_ticket or session.id):
            return
        key = self._key(context, host, port)
        with self._lock:
            self._entries[key] = (context, session)
            self._entries.move_to_end(key)
            while len(self._entries) > self._maxsize:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every session."""
        with self._lock:
            self._entries.clear()


def tls_session(tls: Any) -> ssl.SSLSession | None:
    """The session of a TLS socket or object (``None`` for anything else)."""
    if isinstance(tls, (ssl.SSLSocket, ssl.SSLObject)):
        return tls.session
    return None


def _new_context(policy: Policy, check_hostname: bool) -> ssl.SSLContext:
    # PROTOCOL_TLS_CLIENT: CERT_REQUIRED and check_hostname on by default.
    # _Context: an ordinary SSLContext that asyncio handshakes can resume on.
    ctx = _Context(ssl.PROTOCOL_TLS_CLIENT)
    if policy.pinned_instead_of_ca:
        # RFC 8314 §5.4 setup-time pinning: the pin check after the handshake is
        # the only authentication, and the session is reported non-confidential.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        if policy.cafile is not None or policy.cadata is not None:
            # A private CA replaces the public roots: trust exactly what was named.
            ctx.load_verify_locations(cafile=policy.cafile, cadata=policy.cadata)
        else:
            # certifi: the same Mozilla roots on every OS, independent of system config.
            ctx.load_verify_locations(cafile=certifi.where())
        # The RFC 7817 check after the handshake replaces the context's name check.
        ctx.check_hostname = check_hostname
    # RFC 8996/8997: nothing below TLS 1.2 (unless the policy opted in explicitly).
    ctx.minimum_version = policy.min_tls_version
    if policy.min_tls_version < ssl.TLSVersion.TLSv1_2:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # pragma: no cover - legacy opt-in only
    # RFC 9525: never match the subject CN, only subjectAltName (R-7817-3-6).
    ctx.hostname_checks_common_name = False
    # Python 3.13's strict X.509 checks, applied on every version we support.
    ctx.verify_flags |= getattr(ssl, "VERIFY_X509_STRICT", 0)
    # No compression (CRIME) and no TLS 1.2 renegotiation a server asks for.
    ctx.options |= ssl.OP_NO_COMPRESSION | getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    if policy.client_cert is not None:
        certfile, keyfile, *rest = policy.client_cert
        ctx.load_cert_chain(certfile, keyfile, rest[0] if rest else None)
    return ctx


def verified_verdict(context: ssl.SSLContext, *, identity_checked: bool) -> bool:
    """The one "verified" verdict for a completed handshake.

    Verified means the chain was validated (``CERT_REQUIRED``) *and* the
    server's name was checked, by the context (``check_hostname``) or by
    smtpsec's RFC 7817 identity check (``identity_checked``).
    """
    return context.verify_mode == ssl.CERT_REQUIRED and (context.check_hostname or identity_checked)


def session_info(
    tls: ssl.SSLSocket | ssl.SSLObject,
    context: ssl.SSLContext,
    verify_identity: Callable[[bytes], object] | None,
) -> TLSInfo:
    """Finish a handshake: run the identity check (if any), decide, describe.

    Every transport calls this right after its handshake.

    Args:
        tls: the TLS socket or object that completed the handshake.
        context: the context it used.
        verify_identity: smtpsec's RFC 7817 check, called with the server's DER
            certificate; it raises when the certificate does not match.

    Raises:
        CertificateError: the identity check failed, or the certificate is
            malformed beyond what smtpsec's own DER reader tolerates.
    """
    checked = False
    if verify_identity is not None:
        verify_identity(tls.getpeercert(binary_form=True) or b"")
        checked = True
    return tls_info(tls, verified=verified_verdict(context, identity_checked=checked))


def spki_pin(cert_der: bytes) -> str:
    """The ``sha256/<base64>`` SPKI pin of a DER certificate (RFC 7469 format).

    The hash covers the SubjectPublicKeyInfo exactly as encoded in the
    certificate (RFC 7469 §2.4), read by smtpsec's own DER reader: no re-encoding, and
    no dependence on a strict parser that refuses certificates OpenSSL verified.

    Raises:
        CertificateError: the certificate is malformed.
    """
    spki = _der.spki(cert_der)
    return "sha256/" + base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


def tls_info(sock: ssl.SSLSocket | ssl.SSLObject, *, verified: bool) -> TLSInfo:
    """Collect :class:`TLSInfo` from a socket or object after the handshake.

    Args:
        sock: the TLS socket or object that completed the handshake.
        verified: the verdict of :func:`verified_verdict`; the verified chain
            is read only when it is ``True``.

    Raises:
        CertificateError: the peer's certificate is malformed beyond what
            smtpsec's own DER reader tolerates (OpenSSL parses more loosely still).
    """
    der = sock.getpeercert(binary_form=True)
    cipher = sock.cipher()
    return TLSInfo(
        version=sock.version() or "unknown",
        cipher=cipher[0] if cipher else "unknown",
        verified=verified,
        peer_certificate=der,
        spki_pin=spki_pin(der) if der else None,
        resumed=bool(getattr(sock, "session_reused", False)),
        verified_chain=_verified_chain(sock) if verified else (),
    )


def _verified_chain(sock: ssl.SSLSocket | ssl.SSLObject) -> tuple[bytes, ...]:
    """The chain OpenSSL built and verified in the handshake, as DER (leaf first).

    Only meaningful after a handshake whose context verified the chain: without
    verification OpenSSL returns the chain as the peer sent it. Any failure to
    read it gives ``()``, so only the leaf can satisfy a pin (fail closed).
    """
    try:
        public = getattr(sock, "get_verified_chain", None)  # Python 3.13+
        if public is not None:
            return tuple(bytes(der) for der in public())
        # 3.10-3.12: the same OpenSSL call, on the private object, returning
        # _ssl.Certificate objects (3.13's public method wraps exactly this).
        private = getattr(getattr(sock, "_sslobj", None), "get_verified_chain", None)
        if private is None:
            return ()
        return tuple(bytes(cert.public_bytes(_ssl.ENCODING_DER)) for cert in private() or ())
    except (ssl.SSLError, ValueError, TypeError, AttributeError):
        return ()


@dataclass(frozen=True, slots=True)
class ChainKey:
    """One key of a server's certificate chain, with its pin and place.

    Attributes:
        role: ``"leaf"``, ``"intermediate"``, ``"root"`` (the self-signed trust
            anchor at the top of a verified chain) or ``"trust anchor"`` (a
            trusted CA at the top that is not self-signed).
        pin: ``"sha256/<base64>"`` of its SubjectPublicKeyInfo, or ``None`` when
            the certificate is too malformed to read (it can match no pin).
        subject: the certificate's subject (RFC 4514), or ``None`` if unreadable.
    """

    role: str
    pin: str | None
    subject: str | None

    def __str__(self) -> str:
        named = f" ({self.subject})" if self.subject else ""
        return f"{self.role} {self.pin or '(unreadable key)'}{named}"


def _above_leaf(info: TLSInfo) -> tuple[bytes, ...]:
    """The certificates above the leaf whose keys may satisfy a pin: only those of a
    chain OpenSSL verified, and only for a verified session (pin-only trust verifies
    nothing, so only its leaf counts)."""
    return info.verified_chain[1:] if info.verified else ()


def _safe_pin(der: bytes) -> str | None:
    try:
        return spki_pin(der)
    except CertificateError:
        return None


def pin_candidates(info: TLSInfo) -> tuple[str, ...]:
    """The pins this session can be matched by: the leaf's, then, when the chain
    was verified, those of each certificate above it up to the trust anchor.

    This is the one rule for what a ``Policy(pins=...)`` entry may match.
    """
    pins = [info.spki_pin, *(_safe_pin(der) for der in _above_leaf(info))]
    return tuple(pin for pin in pins if pin is not None)


def describe_chain(info: TLSInfo) -> tuple[ChainKey, ...]:
    """:func:`pin_candidates` with each key's place and subject, for messages and the probe."""
    keys: list[ChainKey] = []
    if info.spki_pin is not None:
        subject = _names(info.peer_certificate)[0] if info.peer_certificate else None
        keys.append(ChainKey("leaf", info.spki_pin, subject))
    above = _above_leaf(info)
    for index, der in enumerate(above, 1):
        subject, self_issued = _names(der)
        anchor = "root" if self_issued else "trust anchor"
        role = "intermediate" if index < len(above) else anchor
        keys.append(ChainKey(role, _safe_pin(der), subject))
    return tuple(keys)


def _names(der: bytes) -> tuple[str | None, bool]:
    """The subject, and whether the certificate names itself as its issuer (best effort)."""
    try:
        cert = x509.load_der_x509_certificate(der)
        return cert.subject.rfc4514_string(), cert.subject == cert.issuer
    except Exception:
        # Only for display: a certificate cryptography's strict parser refuses
        # still has its pin (read by the lenient walker), just no name.
        return None, False


def translate_ssl_error(
    exc: ssl.SSLError, *, host: str, port: int, implicit: bool, advice: Advice = NATIVE
) -> SecurityError:
    """Turn an :class:`ssl.SSLError` from a handshake into a typed, actionable error.

    ``advice`` words the fix for the caller's API.
    """
    if isinstance(exc, ssl.SSLCertVerificationError):
        # OpenSSL's text may end with a full stop; the fix follows after "; ".
        detail = (exc.verify_message or str(exc)).rstrip(" .")
        lowered = detail.lower()
        if "expired" in lowered:
            fix = "the server must renew its certificate; check the clock of this machine too"
        elif "not yet valid" in lowered:
            fix = "check the clocks of this machine and of the server; the certificate starts later"
        elif "self-signed" in lowered or "self signed" in lowered:
            pin = f", {advice.pin_self_signed}" if advice.pin_self_signed else ""
            fix = f"if you run this server, {advice.private_ca}{pin}"
        elif "local issuer" in lowered or "unknown ca" in lowered:
            fix = f"for a private CA, {advice.private_ca}"
        elif "hostname" in lowered or "ip address mismatch" in lowered:
            fix = "connect using a name listed on the certificate"
        else:
            fix = f"fix the server certificate, or {advice.private_ca}"
        return CertificateError(
            f"certificate verify failed for {host}:{port}: {detail}; {fix}. "
            "smtpsec never disables verification"
        )
    reason = (getattr(exc, "reason", None) or "").upper()
    if reason in {
        "UNSUPPORTED_PROTOCOL",
        "TLSV1_ALERT_PROTOCOL_VERSION",
        "NO_PROTOCOLS_AVAILABLE",
        "WRONG_SSL_VERSION",
    }:
        return TLSVersionError(
            f"{host}:{port} offers no TLS version this client accepts ({reason}); the "
            f"server must support TLS 1.2 or newer (RFC 8997) and at least {advice.tls_floor}"
        )
    if reason in {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"}:
        if implicit:
            return TLSUnavailableError(
                f"port {port} on {host} answered in plaintext, not TLS ({reason}): it "
                f"probably speaks STARTTLS; {advice.starttls}"
            )
        return TLSUnavailableError(
            f"{host}:{port} did not start TLS after accepting STARTTLS ({reason}); the "
            "server is broken or an attacker is in the path. Nothing was sent in cleartext"
        )
    return TLSUnavailableError(
        f"TLS handshake with {host}:{port} failed: {exc}; nothing was sent in cleartext"
    )
