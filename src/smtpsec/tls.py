"""The one TLS chokepoint: context builder, the "verified" verdict, session facts,
SPKI pins, error mapping.

Every TLS connection smtpsec makes uses :func:`build_context`; every strict
default carries a comment saying why. Every handshake, on every transport,
ends in :func:`session_info`, the one place that decides whether a session
counts as verified.
"""

from __future__ import annotations

import base64
import hashlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import certifi

from . import _der
from ._advice import NATIVE, Advice
from .errors import CertificateError, SecurityError, TLSUnavailableError, TLSVersionError
from .policy import Policy

__all__ = [
    "TLSInfo",
    "build_context",
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
    """

    version: str
    cipher: str
    verified: bool
    peer_certificate: bytes | None
    spki_pin: str | None

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
    cached = policy._contexts.get(check_hostname)
    if cached is None:
        cached = policy._contexts.setdefault(check_hostname, _new_context(policy, check_hostname))
    return cached


def _new_context(policy: Policy, check_hostname: bool) -> ssl.SSLContext:
    # PROTOCOL_TLS_CLIENT: CERT_REQUIRED and check_hostname on by default.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
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
    # No compression (CRIME) and no renegotiation: off by default, stated anyway.
    ctx.options |= ssl.OP_NO_COMPRESSION
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
    )


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
