"""The one TLS chokepoint: context builder, TLS session facts, SPKI pins, error mapping.

Every TLS connection smtpsec makes uses :func:`build_context`; every strict
default carries a comment saying why.
"""

from __future__ import annotations

import base64
import hashlib
import ssl
from dataclasses import dataclass
from typing import Final

import certifi

from . import _der
from .errors import CertificateError, SecurityError, TLSUnavailableError, TLSVersionError
from .policy import Policy

__all__ = ["TLSInfo", "build_context", "spki_pin", "tls_info", "translate_ssl_error"]

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


def build_context(policy: Policy) -> ssl.SSLContext:
    """Build the client :class:`ssl.SSLContext` for ``policy``.

    A caller's ``ssl_context`` is returned as given (the policy refused an
    unverifying one unless explicitly allowed).
    """
    if policy.ssl_context is not None:
        return policy.ssl_context
    # PROTOCOL_TLS_CLIENT: CERT_REQUIRED and check_hostname on by default.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if policy.pinned_instead_of_ca:
        # RFC 8314 §5.4 setup-time pinning: the pin check after the handshake is
        # the only authentication, and the session is reported non-confidential.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif policy.cafile is not None or policy.cadata is not None:
        # A private CA replaces the public roots: trust exactly what was named.
        ctx.load_verify_locations(cafile=policy.cafile, cadata=policy.cadata)
    else:
        # certifi: the same Mozilla roots on every OS, independent of system config.
        ctx.load_verify_locations(cafile=certifi.where())
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


def spki_pin(cert_der: bytes) -> str:
    """The ``sha256/<base64>`` SPKI pin of a DER certificate (RFC 7469 format).

    The hash covers the SubjectPublicKeyInfo exactly as encoded in the
    certificate (RFC 7469 §2.4), read by :mod:`smtpsec._der`: no re-encoding, and
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
            :mod:`smtpsec._der` tolerates (OpenSSL parses more loosely still).
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
    exc: ssl.SSLError, *, host: str, port: int, implicit: bool
) -> SecurityError:
    """Turn an :class:`ssl.SSLError` from a handshake into a typed, actionable error."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or str(exc)
        lowered = detail.lower()
        if "expired" in lowered:
            fix = "the server must renew its certificate; check the clock of this machine too"
        elif "not yet valid" in lowered:
            fix = "check the clocks of this machine and of the server; the certificate starts later"
        elif "self-signed" in lowered or "self signed" in lowered:
            fix = (
                "if you run this server, trust its CA with Policy(cafile=...), or pin its "
                "key at setup with Policy(pins=..., pinned_instead_of_ca=True)"
            )
        elif "local issuer" in lowered or "unknown ca" in lowered:
            fix = "for a private CA, pass Policy(cafile='/path/to/ca.pem')"
        elif "hostname" in lowered or "ip address mismatch" in lowered:
            fix = "connect using a name listed on the certificate"
        else:
            fix = "fix the server certificate or trust its CA with Policy(cafile=...)"
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
            f"{host}:{port} offers no TLS version this policy accepts ({reason}); the "
            "server must support TLS 1.2 or newer (RFC 8997) and at least the "
            "Policy(min_tls_version=...) floor"
        )
    if reason in {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"}:
        if implicit:
            return TLSUnavailableError(
                f"port {port} on {host} answered in plaintext, not TLS ({reason}): it "
                "probably speaks STARTTLS; use Security.STARTTLS, or Security.AUTO with "
                "port 587"
            )
        return TLSUnavailableError(
            f"{host}:{port} did not start TLS after accepting STARTTLS ({reason}); the "
            "server is broken or an attacker is in the path. Nothing was sent in cleartext"
        )
    return TLSUnavailableError(
        f"TLS handshake with {host}:{port} failed: {exc}; nothing was sent in cleartext"
    )
