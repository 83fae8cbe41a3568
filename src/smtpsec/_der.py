"""A small, bounded DER reader for the few certificate fields smtpsec needs itself.

Why it exists: :mod:`cryptography` parses strict DER only, and refuses valid,
CA-signed certificates that OpenSSL accepts and verifies, such as those whose
extensions spell out ``critical BOOLEAN FALSE`` (DER forbids encoding a DEFAULT
value; real CAs have issued them, see pyca/cryptography #7472, #12665, #13067).
After OpenSSL has accepted a certificate, smtpsec reads from it only:

* the SubjectPublicKeyInfo, *exactly as encoded* (SPKI pins hash these bytes,
  so a pin never depends on how a library would re-encode the key);
* the subjectAltName GeneralNames, when the strict parse fails (RFC 7817 check);
* a DER-normalized copy, for the probe's inspection only (its signature no
  longer matches; nothing ever verifies it).

This module is the one place for the rule of what is tolerated. Tolerated,
because deployed certificates do it and OpenSSL accepts it: an explicitly
encoded DEFAULT (``Extension.critical`` FALSE, ``version`` v1, basicConstraints
``cA`` FALSE) and a BOOLEAN TRUE other than ``0xFF``. Refused, because it is
not needed to read real certificates and only widens what an attacker can
feed us: indefinite lengths, non-minimal lengths, high tag numbers, lengths
past their container, trailing bytes, a duplicated extension (two SANs could
disagree).

Hard limits: :data:`MAX_INPUT` bytes, :data:`MAX_DEPTH` levels of nesting and
:data:`MAX_CHILDREN` elements per container. Elements are read by loops over
offsets into immutable buffers; nothing recurses. Every failure raises
:class:`~smtpsec.errors.CertificateError`; no other exception leaves here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

from .errors import CertificateError

__all__ = [
    "MAX_CHILDREN",
    "MAX_DEPTH",
    "MAX_INPUT",
    "SUBJECT_ALT_NAME",
    "Element",
    "GeneralName",
    "Normalized",
    "extension_value",
    "general_names",
    "ia5_string",
    "normalized",
    "parse",
    "spki",
]

#: OpenSSL refuses a certificate list over 100 KiB by default (max_cert_list),
#: so a genuine leaf is smaller; the margin costs nothing.
MAX_INPUT: Final = 128 * 1024
#: Our navigation goes at most ~8 levels deep (Certificate → tbs → [3] → SEQ →
#: Extension → GeneralNames → otherName → [0] → value); twice that is generous.
MAX_DEPTH: Final = 16
#: Real certificates list at most a few thousand names.
MAX_CHILDREN: Final = 10_000
#: Length octets beyond 4 would describe more than 4 GiB: never genuine.
_MAX_LENGTH_OCTETS: Final = 4

#: OBJECT IDENTIFIER contents (the octets after tag and length).
SUBJECT_ALT_NAME: Final = bytes.fromhex("551d11")  # 2.5.29.17
_BASIC_CONSTRAINTS: Final = bytes.fromhex("551d13")  # 2.5.29.19
_KNOWN_EXTENSIONS: Final = {
    SUBJECT_ALT_NAME: "subjectAltName (2.5.29.17)",
    _BASIC_CONSTRAINTS: "basicConstraints (2.5.29.19)",
    bytes.fromhex("551d0e"): "subjectKeyIdentifier (2.5.29.14)",
    bytes.fromhex("551d23"): "authorityKeyIdentifier (2.5.29.35)",
    bytes.fromhex("551d0f"): "keyUsage (2.5.29.15)",
    bytes.fromhex("551d25"): "extKeyUsage (2.5.29.37)",
}

# Universal and context tags used below.
_BOOLEAN: Final = 0x01
_INTEGER: Final = 0x02
_BIT_STRING: Final = 0x03
_OCTET_STRING: Final = 0x04
_OID: Final = 0x06
_IA5_STRING: Final = 0x16
_SEQUENCE: Final = 0x30
_VERSION: Final = 0xA0  # [0] EXPLICIT Version
_EXTENSIONS: Final = 0xA3  # [3] EXPLICIT Extensions
_OPTIONAL_AFTER_SPKI: Final = (0x81, 0x82, _EXTENSIONS)  # issuerUID, subjectUID, extensions
_CONSTRUCTED: Final = 0x20

_FIX: Final = "the server must present a well-formed X.509 certificate"
_IN_EXTENSIONS: Final = "certificate's extensions"


def _fail(detail: str, *, what: str = "certificate") -> CertificateError:
    return CertificateError(f"the server {what} could not be parsed ({detail}); {_FIX}")


@dataclass(frozen=True, slots=True)
class Element:
    """One TLV inside an immutable buffer (offsets, not copies, until asked).

    Attributes:
        tag: the identifier octet.
        buffer: the whole input the element lives in.
        header: offset of the identifier octet.
        start: offset of the first content octet.
        end: offset just past the last content octet.
        depth: nesting level (0 for the outermost element).
        what: what error messages call the structure ("certificate", ...).
    """

    tag: int
    buffer: bytes
    header: int
    start: int
    end: int
    depth: int
    what: str = "certificate"

    @property
    def content(self) -> bytes:
        """The content octets."""
        return self.buffer[self.start : self.end]

    @property
    def encoded(self) -> bytes:
        """The whole TLV, exactly as it appears in the input."""
        return self.buffer[self.header : self.end]

    def children(self) -> list[Element]:
        """The elements inside this constructed one, in order.

        Raises:
            CertificateError: primitive element, nesting beyond :data:`MAX_DEPTH`,
                more than :data:`MAX_CHILDREN` elements, or a malformed child.
        """
        what = self.what
        if not self.tag & _CONSTRUCTED:
            detail = f"primitive element 0x{self.tag:02x} at offset {self.header} has no parts"
            raise _fail(detail, what=what)
        if self.depth >= MAX_DEPTH:
            raise _fail(f"elements nested more than {MAX_DEPTH} deep", what=what)
        out: list[Element] = []
        position = self.start
        while position < self.end:
            if len(out) >= MAX_CHILDREN:
                raise _fail(f"more than {MAX_CHILDREN} elements in one container", what=what)
            child = _read(self.buffer, position, self.end, self.depth + 1, what)
            out.append(child)
            position = child.end
        return out


def _read(buffer: bytes, position: int, limit: int, depth: int, what: str) -> Element:
    """Read the TLV at ``position``; it must end at or before ``limit``."""
    if position + 2 > limit:
        raise _fail(f"truncated element at offset {position}", what=what)
    tag = buffer[position]
    if tag & 0x1F == 0x1F:
        raise _fail(f"high tag number form at offset {position}", what=what)
    first = buffer[position + 1]
    start = position + 2
    if first == 0x80:
        raise _fail(f"indefinite length at offset {position} is not DER", what=what)
    if first & 0x80:
        count = first & 0x7F
        if count > _MAX_LENGTH_OCTETS:
            raise _fail(f"{count} length octets at offset {position}", what=what)
        if start + count > limit:
            raise _fail(f"truncated length at offset {position}", what=what)
        length = int.from_bytes(buffer[start : start + count], "big")
        # Non-minimal lengths give two spellings of one value; nothing real needs them.
        if length < 0x80 or buffer[start] == 0:
            raise _fail(f"length at offset {position} is not in the shortest form", what=what)
        start += count
    else:
        length = first
    if start + length > limit:
        raise _fail(
            f"element at offset {position} extends beyond its container (truncated)", what=what
        )
    return Element(tag, buffer, position, start, start + length, depth, what)


def parse(data: bytes, *, depth: int = 0, what: str = "certificate") -> Element:
    """Read exactly one TLV spanning all of ``data``.

    Args:
        data: the encoding.
        depth: the nesting level ``data`` sits at (values inside OCTET STRINGs
            continue their container's depth, so the limit holds overall).
        what: what error messages call the structure.

    Raises:
        CertificateError: too long, malformed, or bytes after the element.
    """
    if len(data) > MAX_INPUT:
        raise _fail(
            f"{len(data)} bytes, more than the {MAX_INPUT} a certificate may have", what=what
        )
    element = _read(data, 0, len(data), depth, what)
    if element.end != len(data):
        raise _fail(f"{len(data) - element.end} trailing bytes after the element", what=what)
    return element


def _expect(element: Element, tag: int, name: str) -> Element:
    if element.tag != tag:
        detail = f"{name} has tag 0x{element.tag:02x}, expected 0x{tag:02x}"
        raise _fail(detail, what=element.what)
    return element


@dataclass(frozen=True, slots=True)
class _Parts:
    """The top level of a certificate, located but not interpreted."""

    algorithm: Element
    signature: Element
    version: Element | None
    fields: list[Element]  # serial, signature, issuer, validity, subject, spki
    optional: list[Element]  # issuerUID, subjectUID, extensions (those present)


def _certificate(der: bytes) -> _Parts:
    """Certificate → tbsCertificate → the fields, checked for shape and order."""
    cert = _expect(parse(der), _SEQUENCE, "Certificate")
    top = cert.children()
    if [c.tag for c in top] != [_SEQUENCE, _SEQUENCE, _BIT_STRING]:
        raise _fail("Certificate is not SEQUENCE { tbsCertificate, signatureAlgorithm, signature }")
    tbs, algorithm, signature = top
    items = tbs.children()
    version = items.pop(0) if items and items[0].tag == _VERSION else None
    if version is not None:
        _version_number(version)
    names = ("serialNumber", "signature", "issuer", "validity", "subject", "subjectPublicKeyInfo")
    tags = (_INTEGER, _SEQUENCE, _SEQUENCE, _SEQUENCE, _SEQUENCE, _SEQUENCE)
    if len(items) < len(names):
        raise _fail(f"tbsCertificate ends before its {names[len(items)]}")
    fields = [
        _expect(item, tag, name)
        for item, tag, name in zip(items[: len(names)], tags, names, strict=True)
    ]
    optional = items[len(names) :]
    # Each of issuerUID [1], subjectUID [2], extensions [3] at most once, in that order.
    order = [_OPTIONAL_AFTER_SPKI.index(o.tag) for o in optional if o.tag in _OPTIONAL_AFTER_SPKI]
    if len(order) != len(optional) or order != sorted(set(order)):
        raise _fail("tbsCertificate has unexpected fields after subjectPublicKeyInfo")
    return _Parts(algorithm, signature, version, fields, optional)


def _version_number(version: Element) -> int:
    inner = version.children()
    if len(inner) != 1 or inner[0].tag != _INTEGER or inner[0].content not in (b"\0", b"\1", b"\2"):
        raise _fail("version is not v1, v2 or v3")
    return inner[0].content[0]


def spki(cert_der: bytes) -> bytes:
    """The SubjectPublicKeyInfo of a DER certificate, exactly as encoded in it.

    Only the certificate's frame and the SPKI's own shape are checked, so the
    pin of a certificate never depends on how well its extensions are encoded.

    Raises:
        CertificateError: the certificate is malformed.
    """
    key_info = _certificate(cert_der).fields[5]
    inner = key_info.children()
    algorithm = inner[0].children() if inner and inner[0].tag == _SEQUENCE else []
    if (
        [c.tag for c in inner] != [_SEQUENCE, _BIT_STRING]
        or not algorithm
        or algorithm[0].tag != _OID
    ):
        raise _fail("subjectPublicKeyInfo is not SEQUENCE { algorithm, subjectPublicKey }")
    return key_info.encoded


@dataclass(frozen=True, slots=True)
class _Extension:
    oid: bytes  # OID content octets
    critical: Element | None  # the BOOLEAN, when encoded at all
    value: Element  # the OCTET STRING


def _extensions(parts: _Parts) -> list[_Extension]:
    wrapper = next((o for o in parts.optional if o.tag == _EXTENSIONS), None)
    if wrapper is None:
        return []
    inner = replace(wrapper, what=_IN_EXTENSIONS).children()
    if len(inner) != 1 or inner[0].tag != _SEQUENCE:
        raise _fail("extensions are not one SEQUENCE", what=_IN_EXTENSIONS)
    out = []
    for item in inner[0].children():
        pieces = _expect(item, _SEQUENCE, "Extension").children()
        tags = [p.tag for p in pieces]
        if tags not in ([_OID, _OCTET_STRING], [_OID, _BOOLEAN, _OCTET_STRING]):
            raise _fail(
                "an extension is not { extnID, critical, extnValue }",
                what=_IN_EXTENSIONS,
            )
        critical = pieces[1] if len(pieces) == 3 else None
        if critical is not None and len(critical.content) != 1:
            raise _fail("a BOOLEAN is not one octet", what=_IN_EXTENSIONS)
        out.append(_Extension(pieces[0].content, critical, pieces[-1]))
    return out


def extension_value(cert_der: bytes, oid: bytes) -> bytes | None:
    """The extnValue contents of extension ``oid`` (e.g. :data:`SUBJECT_ALT_NAME`).

    Returns:
        The octets inside the OCTET STRING, or ``None`` when the extension is absent.

    Raises:
        CertificateError: malformed certificate, or the extension appears twice.
    """
    found = [e for e in _extensions(_certificate(cert_der)) if e.oid == oid]
    if len(found) > 1:
        raise _fail(
            f"extension {_extension_name(oid)} appears more than once (RFC 5280 §4.2)",
            what=_IN_EXTENSIONS,
        )
    return found[0].value.content if found else None


def _extension_name(oid: bytes) -> str:
    return _KNOWN_EXTENSIONS.get(oid, f"with OID octets {oid.hex()}")


# --------------------------------------------------------------------------- GeneralNames


@dataclass(frozen=True, slots=True)
class GeneralName:
    """One subjectAltName entry, undecoded.

    Attributes:
        kind: the context tag number (2 dNSName, 7 iPAddress, 0 otherName, 6 URI, ...).
        value: the content octets; for otherName, the encoded value inside ``[0]``.
        type_id: for otherName, the content octets of its type OID.
    """

    kind: int
    value: bytes
    type_id: bytes | None = None


def general_names(value: bytes, *, depth: int = 6) -> tuple[GeneralName, ...]:
    """Split a subjectAltName extnValue (``GeneralNames``) into its entries.

    Args:
        value: the contents of the extension's OCTET STRING.
        depth: the nesting level ``value`` sits at (inside Certificate, tbs,
            ``[3]``, Extensions, Extension and the OCTET STRING).

    Raises:
        CertificateError: not a SEQUENCE of context-tagged names, or a malformed otherName.
    """
    what = _IN_EXTENSIONS
    sequence = parse(value, depth=depth, what=what)
    if sequence.tag != _SEQUENCE:
        raise _fail("subjectAltName is not a SEQUENCE", what=what)
    out = []
    for item in sequence.children():
        if item.tag & 0xC0 != 0x80:  # every GeneralName is context-specific
            raise _fail("subjectAltName holds a name that is not context-tagged", what=what)
        kind = item.tag & 0x1F
        if kind != 0:
            out.append(GeneralName(kind, item.content))
            continue
        # otherName ::= SEQUENCE { type-id OID, value [0] EXPLICIT ANY } (IMPLICIT [0] tag)
        pieces = item.children()
        if [p.tag for p in pieces] != [_OID, _VERSION] or len(pieces[1].children()) != 1:
            raise _fail("malformed otherName in subjectAltName", what=what)
        out.append(GeneralName(0, pieces[1].children()[0].encoded, pieces[0].content))
    return tuple(out)


def ia5_string(encoded: bytes) -> str | None:
    """Decode one DER IA5String TLV; ``None`` when it is not exactly that (any flaw)."""
    try:
        element = parse(encoded)
    except CertificateError:
        return None
    body = element.content
    if element.tag != _IA5_STRING or not body.isascii():
        return None
    return body.decode("ascii")


# --------------------------------------------------------------------------- normalizing


@dataclass(frozen=True, slots=True)
class Normalized:
    """A DER-normalized copy of a certificate and what had to change.

    Attributes:
        der: the copy (equal to the input when ``issues`` is empty). Its
            signature covers the *original* TBS, so it is for reading only.
        issues: one line per non-DER encoding found, e.g. an explicit DEFAULT.
    """

    der: bytes
    issues: tuple[str, ...]


def _tlv(tag: int, body: bytes) -> bytes:
    size = len(body)
    if size < 0x80:
        return bytes([tag, size]) + body
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + body


def _boolean(element: Element, owner: str, field: str, issues: list[str]) -> bytes:
    """DER form of a ``BOOLEAN DEFAULT FALSE``: omitted when FALSE, ``01 01 FF`` when TRUE."""
    octet = element.content[0]
    if octet == 0:
        issues.append(f"{owner} encodes {field}=FALSE explicitly; DER omits DEFAULT values")
        return b""
    if octet != 0xFF:
        issues.append(f"{owner} encodes {field}=TRUE as 0x{octet:02x}; DER requires 0xff")
    return b"\x01\x01\xff"


def _basic_constraints(value: Element, issues: list[str]) -> bytes:
    """basicConstraints ::= SEQUENCE { cA BOOLEAN DEFAULT FALSE, pathLen INTEGER OPTIONAL }."""
    inner = parse(value.content, depth=value.depth + 1, what=_IN_EXTENSIONS)
    sequence = _expect(inner, _SEQUENCE, "basicConstraints")
    body = b""
    for part in sequence.children():
        if part.tag == _BOOLEAN and len(part.content) == 1:
            body += _boolean(part, "extension basicConstraints (2.5.29.19)", "cA", issues)
        else:
            body += part.encoded
    return _tlv(_OCTET_STRING, _tlv(_SEQUENCE, body))


def normalized(cert_der: bytes) -> Normalized:
    """Re-encode the tolerated non-DER spellings (see the module docstring) as DER.

    Only the structure this module walks is rebuilt; everything else is copied
    byte for byte. Used by the probe, which reports ``issues`` as an audit finding.

    Raises:
        CertificateError: the certificate is malformed beyond what is tolerated.
    """
    parts = _certificate(cert_der)
    issues: list[str] = []
    head = b""
    if parts.version is not None:
        if _version_number(parts.version) == 0:
            issues.append("version encodes its DEFAULT value v1 explicitly")
        else:
            head = parts.version.encoded
    tail = b""
    for item in parts.optional:
        if item.tag != _EXTENSIONS:
            tail += item.encoded
            continue
        rebuilt = b""
        for ext in _extensions(parts):
            flag = b""
            if ext.critical is not None:
                owner = f"extension {_extension_name(ext.oid)}"
                flag = _boolean(ext.critical, owner, "critical", issues)
            value = ext.value.encoded
            if ext.oid == _BASIC_CONSTRAINTS:
                value = _basic_constraints(ext.value, issues)
            rebuilt += _tlv(_SEQUENCE, _tlv(_OID, ext.oid) + flag + value)
        tail += _tlv(_EXTENSIONS, _tlv(_SEQUENCE, rebuilt))
    if not issues:
        return Normalized(cert_der, ())
    body = head + b"".join(f.encoded for f in parts.fields) + tail
    tbs = _tlv(_SEQUENCE, body)
    der = _tlv(_SEQUENCE, tbs + parts.algorithm.encoded + parts.signature.encoded)
    return Normalized(der, tuple(issues))
