"""``smtpsec probe``: the TLS side: inspection contexts and certificate facts.

The probe's *inspection* contexts do not verify: they are used to read a
certificate that failed validation and to find which TLS versions a server
accepts, and carry nothing but ``EHLO``/``STARTTLS``/``QUIT``. The verdict
rests on the verifying handshake made with :func:`smtpsec.tls.build_context`.
"""

from __future__ import annotations

import datetime
import ssl
import warnings
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from .. import _der
from ..errors import CertificateError
from ..tls import spki_pin

__all__ = [
    "CertificateFacts",
    "certificate_facts",
    "classify_handshake_error",
    "inspection_context",
]

_LEGACY: Final = frozenset({ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1})
#: OpenSSL's reasons when *this* machine cannot offer the version at all.
_LOCAL_REFUSALS: Final = frozenset({"NO_PROTOCOLS_AVAILABLE", "NO_CIPHERS_AVAILABLE"})


@dataclass(frozen=True, slots=True)
class CertificateFacts:
    """What the server's leaf certificate says.

    Attributes:
        subject: the subject as an RFC 4514 string.
        issuer: the issuer as an RFC 4514 string.
        not_before: start of validity (ISO 8601, UTC).
        not_after: end of validity (ISO 8601, UTC).
        days_left: whole days until ``not_after`` (negative once expired).
        names: subjectAltName entries, ``DNS:...`` and ``IP:...``.
        key: the key type, e.g. ``"EC secp256r1"`` or ``"RSA"``.
        key_bits: the key size in bits, when it has one.
        spki_pin: ``sha256/<base64>`` of the public key (for ``Policy(pins=...)``).
        self_signed: issuer and subject are the same.
        encoding_issues: how the certificate departs from DER, one line each
            (empty for a DER certificate). OpenSSL accepts such a certificate,
            but strict parsers (Python's cryptography, Go, rustls) refuse it.
    """

    subject: str
    issuer: str
    not_before: str
    not_after: str
    days_left: int
    names: tuple[str, ...]
    key: str
    key_bits: int | None
    spki_pin: str
    self_signed: bool
    encoding_issues: tuple[str, ...] = ()


# --------------------------------------------------------------------------- contexts


def inspection_context(version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """A context that does *not* verify, for looking only (see the module docstring).

    Args:
        version: pin minimum and maximum to this version; ``None`` allows all.

    Raises:
        ValueError, ssl.SSLError: this machine's OpenSSL cannot offer ``version``.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    low = version or ssl.TLSVersion.TLSv1
    with warnings.catch_warnings():
        # Asking for TLS 1.0/1.1 is deprecated; here asking is the point.
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = low
        if version is not None:
            ctx.maximum_version = version
    if low in _LEGACY:
        # OpenSSL 3 does not even offer TLS 1.0/1.1 above security level 0.
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


def classify_handshake_error(exc: BaseException | None) -> str:
    """Name the outcome of a single-version handshake that failed.

    Args:
        exc: the :class:`ssl.SSLError` (or whatever ended the attempt).

    Returns:
        ``"not testable"`` when this machine's OpenSSL refused to offer the
        version, else ``"refused"``.
    """
    reason = (getattr(exc, "reason", None) or "").upper()
    return "not testable" if reason in _LOCAL_REFUSALS else "refused"


# --------------------------------------------------------------------------- certificates


def _key_facts(cert: x509.Certificate) -> tuple[str, int | None]:
    try:
        key = cert.public_key()
    except Exception:
        # UnsupportedAlgorithm or ValueError: an algorithm cryptography does not know.
        return "unknown", None
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}", key.key_size
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 456
    return type(key).__name__, None  # pragma: no cover - X25519/X448 are not signing keys


def _names(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(f"DNS:{n}" for n in san.get_values_for_type(x509.DNSName)) + tuple(
        f"IP:{ip}" for ip in san.get_values_for_type(x509.IPAddress)
    )


def _facts(
    der: bytes, pin: str, issues: tuple[str, ...], moment: datetime.datetime
) -> CertificateFacts:
    cert = x509.load_der_x509_certificate(der)
    key, bits = _key_facts(cert)
    not_after = cert.not_valid_after_utc
    return CertificateFacts(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        not_before=cert.not_valid_before_utc.isoformat(),
        not_after=not_after.isoformat(),
        days_left=(not_after - moment).days,
        names=_names(cert),
        key=key,
        key_bits=bits,
        spki_pin=pin,
        self_signed=cert.issuer == cert.subject,
        encoding_issues=issues,
    )


def certificate_facts(der: bytes, *, now: datetime.datetime | None = None) -> CertificateFacts:
    """Read the facts of a DER certificate, leniently if strict parsing refuses it.

    A certificate :mod:`cryptography` refuses (an explicitly encoded DEFAULT, for
    example) is read from a DER-normalized copy made by :mod:`smtpsec._der`, and
    what had to be normalized is listed in ``encoding_issues``. The pin always
    comes from the original bytes.

    Args:
        der: the certificate as ``getpeercert(binary_form=True)`` returns it.
        now: the reference time for ``days_left`` (default: now, UTC).

    Returns:
        The :class:`CertificateFacts`.

    Raises:
        CertificateError: the certificate cannot be read even leniently.
    """
    moment = now or datetime.datetime.now(datetime.timezone.utc)
    pin = spki_pin(der)  # from the bytes as sent; raises CertificateError on garbage
    try:
        return _facts(der, pin, (), moment)
    except Exception as exc:
        # ValueError, DuplicateExtension, InvalidVersion...: whatever cryptography
        # refused, the normalized copy may still be readable.
        refusal: Exception = exc
    copy = _der.normalized(der)
    if copy.issues:
        try:
            return _facts(copy.der, pin, copy.issues, moment)
        except Exception as exc:
            refusal = exc
    raise CertificateError(
        f"the server certificate could not be parsed ({refusal}); inspect it with a "
        "lenient tool such as `openssl x509 -text`"
    ) from refusal
