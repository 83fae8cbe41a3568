"""Check a server certificate's names against RFC 7817 / RFC 9525 reference identities.

Python's :mod:`ssl` matches only ``dNSName`` and ``iPAddress`` subjectAltNames and
cannot see the ``SRVName`` otherName (RFC 4985) that RFC 7817 §3 asks a client to
accept for a server found through SRV records. This module does the name check
with :mod:`cryptography` on the DER certificate *after* the TLS layer has
validated the chain (R-7817-3-2): it decides names only, never trust.

Rules (R-7817-3-1..8, R-9525-IP-1):

* a DNS-ID matches ``dNSName`` SANs only; a ``*`` is honoured only as the whole
  left-most label of a name with at least three labels, and stands for exactly
  one label;
* an IP reference matches ``iPAddress`` SANs only (never a ``dNSName`` that
  spells the address);
* an SRV-ID (``_submissions.example.test``) matches an ``SRVName`` otherName,
  with the wildcard rule applied to its name part;
* ``uniformResourceIdentifier`` SANs and the subject CN are never used; a
  certificate without subjectAltName is rejected.

Comparison is case-insensitive and ignores one trailing dot.

A certificate that OpenSSL accepted but :mod:`cryptography`'s strict DER parser
refuses (an explicitly encoded ``critical FALSE``, for example) has its
subjectAltName read by smtpsec's own DER reader (``smtpsec._der``) instead; the
names found are matched by exactly the same rules.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Final, Protocol, TypeAlias

from cryptography import x509
from cryptography.x509.oid import NameOID

from . import _der
from ._der import ia5_string as _decode_ia5_string
from .errors import CertificateError, InvalidArgumentError

__all__ = [
    "SRV_NAME_OID",
    "ReferenceIdentity",
    "check_certificate_identity",
    "normalize_dns_name",
]


class _Discovered(Protocol):
    """What :meth:`ReferenceIdentity.from_endpoint` needs (structural, so no import cycle)."""

    def reference_identity(self, *, confirmed_target: bool = ...) -> ReferenceIdentity: ...


#: Either IP address family (the ``ip`` reference identity, iPAddress SAN values).
_IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
#: What an iPAddress SAN may hold; networks (name-constraint syntax) never equal an address.
_IPValue: TypeAlias = _IPAddress | ipaddress.IPv4Network | ipaddress.IPv6Network

#: RFC 4985 id-on-dnsSRV: the otherName type that carries an SRV-ID.
SRV_NAME_OID: Final = "1.3.6.1.5.5.7.8.7"

#: id-on-dnsSRV as OID content octets, as smtpsec's own DER reader
#: (``smtpsec._der``) reports otherName types.
_SRV_NAME_OID_DER: Final = bytes.fromhex("2b06010505070807")
#: GeneralName context tags (RFC 5280 §4.2.1.6) and how errors list the unused ones,
#: named as cryptography names them so both paths describe a certificate alike.
_DNS_NAME: Final = 2
_URI: Final = 6
_IP_ADDRESS: Final = 7
_OTHER_NAME: Final = 0
_UNUSED_NAMES: Final = {
    0: "OtherName",
    1: "RFC822Name",
    3: "x400Address",
    4: "DirectoryName",
    5: "EDIPartyName",
    8: "RegisteredID",
}
#: RFC 1035 limits; longer names cannot be looked up, so they cannot be references.
_MAX_NAME: Final = 253
_MAX_LABEL: Final = 63
#: Letters, digits, hyphen; underscore too, because SRV owner names and some
#: internal host names use it and it carries no matching risk.
_LABEL_RE: Final = re.compile(r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?")
#: RFC 6335 service names as they appear in an SRV-ID's first label.
_SERVICE_RE: Final = re.compile(r"_[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
#: "*.example.test" is the shortest wildcard honoured: "*.test" would cover a TLD.
_MIN_WILDCARD_LABELS: Final = 3
#: Bound on how many presented names an error message lists.
_MAX_LISTED: Final = 20


def normalize_dns_name(name: str, *, what: str = "host name") -> str:
    """Return *name* as a lower-case A-label DNS name without a trailing dot.

    Args:
        name: a DNS name, possibly with U-labels, upper case or one trailing dot.
        what: how the error message refers to the value ("email domain"...).

    Returns:
        The normalized name, e.g. ``"smtp.xn--bcher-kva.example"``.

    Raises:
        InvalidArgumentError: the name is empty, too long, cannot be IDNA-encoded,
            or has a label with characters a host name cannot contain.
    """
    text = name[:-1] if name.endswith(".") else name
    if "@" in text:
        raise InvalidArgumentError(
            f"{what} {name!r} looks like an email address; pass only the part after '@'"
        )
    if not text.isascii():
        try:
            text = text.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise InvalidArgumentError(
                f"{what} {name!r} cannot be converted to an IDNA A-label name ({exc}); "
                "check the spelling or pass the xn-- form"
            ) from exc
    text = text.lower()
    labels = text.split(".")
    valid = 0 < len(text) <= _MAX_NAME and all(
        len(label) <= _MAX_LABEL and _LABEL_RE.fullmatch(label) for label in labels
    )
    if not valid:
        raise InvalidArgumentError(
            f"{what} {name!r} is not a valid DNS name; use letters, digits and hyphens "
            "in dot-separated labels of at most 63 characters"
        )
    return text


def _normalize_srv_id(srv_id: str) -> str:
    """Normalize ``_service.name`` (service label lower-cased, name as a DNS name)."""
    service, _, rest = srv_id.partition(".")
    service = service.lower()
    if not _SERVICE_RE.fullmatch(service) or not rest:
        raise InvalidArgumentError(
            f"SRV-ID {srv_id!r} is not of the form '_service.domain' "
            "(for example '_submissions.example.com')"
        )
    return f"{service}.{normalize_dns_name(rest, what='SRV-ID domain')}"


def _normalize_dns_id(dns_id: str) -> str:
    """Normalize a DNS-ID, refusing an IP literal (that belongs in ``ip``, R-9525-IP-1)."""
    try:
        ipaddress.ip_address(dns_id)
    except ValueError:
        return normalize_dns_name(dns_id)
    raise InvalidArgumentError(
        f"DNS-ID {dns_id!r} is an IP address; use ReferenceIdentity.for_host() or the "
        "'ip' field so that only iPAddress SANs can match it"
    )


@dataclass(frozen=True, slots=True)
class ReferenceIdentity:
    """The names a server certificate may prove (RFC 9525 "reference identifiers").

    Values are normalized on construction (lower case, A-labels, no trailing dot).
    Build one with :meth:`for_host` for a configured server, or with
    :meth:`for_srv` / :meth:`from_endpoint` for a server found through SRV.

    Attributes:
        dns_ids: DNS-IDs: the configured host name and/or the user's email domain.
        srv_ids: SRV-IDs such as ``"_submissions.example.test"``.
        ip: the configured IP address, when the user connected to a literal.

    Raises:
        InvalidArgumentError: a value is malformed, a DNS-ID spells an IP address,
            or no identity at all was given (nothing could ever match).
    """

    dns_ids: frozenset[str] = field(default_factory=frozenset)
    srv_ids: frozenset[str] = field(default_factory=frozenset)
    ip: _IPAddress | None = None

    def __post_init__(self) -> None:
        # Normalizing here means every construction path compares like with like.
        object.__setattr__(self, "dns_ids", frozenset(map(_normalize_dns_id, self.dns_ids)))
        object.__setattr__(self, "srv_ids", frozenset(map(_normalize_srv_id, self.srv_ids)))
        if not (self.dns_ids or self.srv_ids or self.ip is not None):
            raise InvalidArgumentError(
                "a ReferenceIdentity needs at least one DNS-ID, SRV-ID or IP address; "
                "use ReferenceIdentity.for_host(host)"
            )

    @classmethod
    def for_host(cls, host: str) -> ReferenceIdentity:
        """Reference identity for a host the user configured by name or address.

        Args:
            host: a DNS name, an IPv4 literal, or an IPv6 literal (brackets and a
                ``%zone`` suffix are accepted and dropped).

        Returns:
            ``ip`` only for an address literal (R-9525-IP-1), else ``dns_ids={host}``.
        """
        literal = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        try:
            # A zone index names a local interface; certificates never carry it.
            address = ipaddress.ip_address(literal.partition("%")[0])
        except ValueError:
            return cls(dns_ids=frozenset({host}))
        return cls(ip=address)

    @classmethod
    def for_srv(
        cls, *, domain: str, service: str, target: str, target_trusted: bool
    ) -> ReferenceIdentity:
        """Reference identity for a server found through an SRV record.

        Args:
            domain: the user's email domain that was queried (accepted as DNS-ID).
            service: ``"_submissions"`` or ``"_submission"`` (SRV-ID service label).
            target: the SRV target host name.
            target_trusted: ``True`` when the SRV answer was DNSSEC-validated or the
                user confirmed the target; only then is *target* a DNS-ID, because
                an unsigned answer may come from an attacker.

        Returns:
            ``dns_ids={domain}`` (plus *target* if trusted) and
            ``srv_ids={service + "." + domain}``.
        """
        names = {domain, target} if target_trusted else {domain}
        return cls(dns_ids=frozenset(names), srv_ids=frozenset({f"{service}.{domain}"}))

    @classmethod
    def from_endpoint(
        cls, endpoint: _Discovered, *, confirmed_target: bool = False
    ) -> ReferenceIdentity:
        """Reference identity for a discovered :class:`~smtpsec.discovery.Endpoint`.

        Args:
            endpoint: the discovered endpoint (SRV or autoconfig).
            confirmed_target: the user confirmed the endpoint's host at setup.

        Returns:
            ``endpoint.reference_identity(confirmed_target=...)``: see
            :meth:`smtpsec.discovery.Endpoint.reference_identity` for the rules
            per provenance.
        """
        return endpoint.reference_identity(confirmed_target=confirmed_target)

    def describe(self) -> str:
        """A short, stable listing such as ``"DNS:a.test, SRV:_submissions.a.test"``."""
        parts = [f"IP:{self.ip}"] if self.ip is not None else []
        parts += [f"DNS:{name}" for name in sorted(self.dns_ids)]
        parts += [f"SRV:{name}" for name in sorted(self.srv_ids)]
        return ", ".join(parts)


# --------------------------------------------------------------------------- matching


def _presented_name(value: str) -> str | None:
    """Lower-case a SAN name and drop one trailing dot; ``None`` if it is unusable."""
    text = value[:-1] if value.endswith(".") else value
    return text.lower() if text and text.isascii() else None


def _dns_matches(pattern: str, reference: str) -> bool:
    """Match one presented DNS name (maybe ``*.x.y``) against one reference name."""
    wanted = pattern.split(".")
    have = reference.split(".")
    if "" in wanted or len(wanted) != len(have):
        return False
    if "*" not in pattern:
        return wanted == have
    # Only "*" as the entire left-most label, and never over a single remaining
    # label ("*.test" would span a whole top-level domain).
    wildcard_ok = (
        wanted[0] == "*" and "*" not in pattern[1:] and len(wanted) >= _MIN_WILDCARD_LABELS
    )
    return wildcard_ok and wanted[1:] == have[1:]


def _srv_matches(pattern: str, reference: str) -> bool:
    """Match a presented SRVName against an SRV-ID (wildcards only in the name part)."""
    service, _, name = pattern.partition(".")
    ref_service, _, ref_name = reference.partition(".")
    return service.startswith("_") and service == ref_service and _dns_matches(name, ref_name)


@dataclass(frozen=True, slots=True)
class _Presented:
    """The subjectAltName entries of one certificate, grouped by type."""

    dns: tuple[str, ...]
    ips: tuple[_IPValue, ...]
    srv: tuple[str, ...]
    ignored: tuple[str, ...]  # URI and other names: listed in errors, never matched

    def describe(self) -> str:
        parts = [f"DNS:{name}" for name in self.dns]
        parts += [f"IP:{address}" for address in self.ips]
        parts += [f"SRV:{name}" for name in self.srv]
        parts += [f"{name} (never used for server identity)" for name in self.ignored]
        listed = ", ".join(parts[:_MAX_LISTED])
        extra = len(parts) - _MAX_LISTED
        return listed + (f" and {extra} more" if extra > 0 else "")


def _presented_names(san: x509.SubjectAlternativeName) -> _Presented:
    dns: list[str] = []
    ips: list[_IPValue] = []
    srv: list[str] = []
    ignored: list[str] = []
    for general_name in san:
        if isinstance(general_name, x509.DNSName):
            dns_name = _presented_name(general_name.value)
            if dns_name is not None:
                dns.append(dns_name)
        elif isinstance(general_name, x509.IPAddress):
            ips.append(general_name.value)
        elif (
            isinstance(general_name, x509.OtherName)
            and general_name.type_id.dotted_string == SRV_NAME_OID
        ):
            _srv_entry(general_name.value, srv, ignored)
        elif isinstance(general_name, x509.UniformResourceIdentifier):
            ignored.append(f"URI:{general_name.value}")
        else:
            ignored.append(type(general_name).__name__)
    return _Presented(tuple(dns), tuple(ips), tuple(srv), tuple(ignored))


def _common_name(cert: x509.Certificate) -> str:
    attributes = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return ", ".join(str(attribute.value) for attribute in attributes) or "none"


def _srv_entry(value: bytes, srv: list[str], ignored: list[str]) -> None:
    """Add one SRVName otherName value (an encoded IA5String) to ``srv`` or ``ignored``."""
    decoded = _decode_ia5_string(value)
    srv_name = None if decoded is None else _presented_name(decoded)
    if srv_name is None:
        ignored.append("SRV:<malformed>")
    else:
        srv.append(srv_name)


def _ip_value(octets: bytes) -> _IPValue | None:
    """An iPAddress SAN: an address (4 or 16 octets) or, as cryptography reads it, a network."""
    if len(octets) in (4, 16):
        return ipaddress.ip_address(octets)
    if len(octets) in (8, 32):
        # Name-constraint syntax (address + mask): listed in errors, never equal to an address.
        half = len(octets) // 2
        prefix = bin(int.from_bytes(octets[half:], "big")).count("1")
        return ipaddress.ip_network((ipaddress.ip_address(octets[:half]), prefix), strict=False)
    return None


def _no_san(ref: ReferenceIdentity, common_name: str) -> CertificateError:
    return CertificateError(
        f"the server certificate has no subjectAltName extension; its subject CN "
        f"({common_name}) is never used for identity (RFC 9525), so it proves none of "
        f"{ref.describe()}; the server needs a certificate whose subjectAltName lists "
        "its host name"
    )


def _lenient_presented(cert_der: bytes, ref: ReferenceIdentity) -> _Presented:
    """Read the subjectAltName with smtpsec's own DER reader (what the strict parser refuses).

    Raises:
        CertificateError: the certificate is malformed beyond what ``_der``
            tolerates, or it has no subjectAltName.
    """
    value = _der.extension_value(cert_der, _der.SUBJECT_ALT_NAME)
    if value is None:
        # The CN is not read here (Names are not walked); it would not count anyway.
        raise _no_san(ref, "not shown")
    dns: list[str] = []
    ips: list[_IPValue] = []
    srv: list[str] = []
    ignored: list[str] = []
    for name in _der.general_names(value):
        text = name.value.decode("ascii") if name.value.isascii() else None
        if name.kind == _DNS_NAME:
            dns_name = None if text is None else _presented_name(text)
            if dns_name is not None:
                dns.append(dns_name)
        elif name.kind == _IP_ADDRESS:
            address = _ip_value(name.value)
            if address is None:
                ignored.append("IP:<malformed>")
            else:
                ips.append(address)
        elif name.kind == _OTHER_NAME and name.type_id == _SRV_NAME_OID_DER:
            _srv_entry(name.value, srv, ignored)
        elif name.kind == _URI:
            ignored.append(f"URI:{text}" if text is not None else "URI:<malformed>")
        else:
            ignored.append(_UNUSED_NAMES.get(name.kind, f"GeneralName[{name.kind}]"))
    return _Presented(tuple(dns), tuple(ips), tuple(srv), tuple(ignored))


def _strict_presented(cert_der: bytes, ref: ReferenceIdentity) -> _Presented | None:
    """The names as :mod:`cryptography` reads them; ``None`` when it refuses the encoding.

    Raises:
        CertificateError: the certificate has no subjectAltName.
    """
    try:
        cert = x509.load_der_x509_certificate(cert_der)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise _no_san(ref, _common_name(cert)) from None
    except Exception:
        # cryptography refuses with ValueError, DuplicateExtension, InvalidVersion,
        # UnsupportedGeneralNameType...; whichever, OpenSSL accepted the certificate
        # and the lenient reader decides (or fails closed with CertificateError).
        return None
    return _presented_names(san)


_FIX: Final = (
    "connect using a host name the certificate lists, or, for a server found through "
    "an unsigned SRV record, confirm its target at setup "
    "(Endpoint.reference_identity(confirmed_target=True))"
)


def check_certificate_identity(cert_der: bytes, ref: ReferenceIdentity) -> str:
    """Check that the certificate proves one of *ref*'s identities (RFC 7817 §3).

    Call this only after the TLS handshake validated the chain: it checks names,
    not trust (R-7817-3-2).

    Args:
        cert_der: the server's leaf certificate in DER form
            (``ssl.SSLSocket.getpeercert(binary_form=True)``).
        ref: the reference identities to accept.

    Returns:
        The reference identifier that matched: an IP address in text form, a
        DNS-ID, or an SRV-ID (checked in that order, each set sorted).

    Raises:
        CertificateError: the certificate cannot be parsed, has no subjectAltName
            (the CN is never used), or none of its names matches; the message lists
            the presented names, the reference identities and the fix.
    """
    # The chain was verified by OpenSSL already; a strict-parser refusal is about
    # encoding, not trust, so the names are read leniently and matched the same way.
    presented = _strict_presented(cert_der, ref)
    if presented is None:
        presented = _lenient_presented(cert_der, ref)
    if ref.ip is not None and ref.ip in presented.ips:
        return str(ref.ip)
    for dns_id in sorted(ref.dns_ids):
        if any(_dns_matches(pattern, dns_id) for pattern in presented.dns):
            return dns_id
    for srv_id in sorted(ref.srv_ids):
        if any(_srv_matches(pattern, srv_id) for pattern in presented.srv):
            return srv_id
    names = presented.describe() or "no names"
    raise CertificateError(
        f"the server certificate lists {names} and matches none of the expected "
        f"identities {ref.describe()}; {_FIX}"
    )
