"""Build valid, CA-signed certificates that are *not* strict DER, for the encoding tests.

Real CAs have issued certificates whose extensions spell out ``critical FALSE``
although DER forbids encoding a DEFAULT value (pyca/cryptography #7472, #12665,
#13067). OpenSSL verifies them; ``cryptography``'s strict parser refuses them.
:func:`explicit_false` makes such a certificate the honest way: it rewrites the
TBS of a normal leaf and re-signs it with the issuing CA's key, so the chain is
genuinely valid.

The DER handling here is deliberately independent of ``smtpsec._der`` (the code
under test): a bug there must not be able to hide itself in the fixture.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Final

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from smtpsec.testing import CA, LeafCert

#: OBJECT IDENTIFIER TLVs of the extensions the tests rewrite.
SAN_OID: Final = bytes.fromhex("0603551d11")  # 2.5.29.17 subjectAltName
SKI_OID: Final = bytes.fromhex("0603551d0e")  # 2.5.29.14 subjectKeyIdentifier
BASIC_CONSTRAINTS_OID: Final = bytes.fromhex("0603551d13")  # 2.5.29.19
#: ``BOOLEAN FALSE`` as a (non-DER, DEFAULT-valued) TLV.
EXPLICIT_FALSE: Final = b"\x01\x01\x00"


def tlv(tag: int, body: bytes) -> bytes:
    """Encode one DER element (definite, minimal length)."""
    size = len(body)
    if size < 0x80:
        return bytes([tag, size]) + body
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + body


def _header(data: bytes, pos: int) -> tuple[int, int]:
    """Return ``(content_start, content_end)`` of the element at ``pos`` (trusted input)."""
    first = data[pos + 1]
    if first < 0x80:
        return pos + 2, pos + 2 + first
    count = first & 0x7F
    start = pos + 2 + count
    return start, start + int.from_bytes(data[pos + 2 : start], "big")


def children(element: bytes) -> list[bytes]:
    """The encoded child elements of one constructed element."""
    start, end = _header(element, 0)
    out = []
    while start < end:
        _, child_end = _header(element, start)
        out.append(element[start:child_end])
        start = child_end
    return out


def resign(
    cert_der: bytes, ca: CA, oid: bytes, edit: Callable[[list[bytes]], list[bytes]]
) -> bytes:
    """Edit the parts of extension ``oid`` with ``edit`` and re-sign the TBS with ``ca``.

    Args:
        cert_der: a leaf issued by ``ca``.
        ca: the issuer; its key signs the new TBS.
        oid: the extension's OBJECT IDENTIFIER TLV (e.g. :data:`SAN_OID`).
        edit: gets ``[extnID, (critical,) extnValue]`` as TLVs, returns the new list.

    Returns:
        The new certificate (DER framing, possibly non-DER content), validly signed.
    """
    tbs, algorithm, _signature = children(cert_der)
    fields = children(tbs)
    assert fields[-1][0] == 0xA3, "the leaf has no extensions"
    (extensions,) = children(fields[-1])
    rebuilt = []
    found = False
    for extension in children(extensions):
        parts = children(extension)
        if parts[0] == oid:
            found = True
            parts = edit(parts)
        rebuilt.append(tlv(0x30, b"".join(parts)))
    assert found, f"no extension {oid.hex()} in the leaf"
    fields[-1] = tlv(0xA3, tlv(0x30, b"".join(rebuilt)))
    new_tbs = tlv(0x30, b"".join(fields))
    key = serialization.load_pem_private_key(ca.key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    signature = key.sign(new_tbs, ec.ECDSA(hashes.SHA256()))
    return tlv(0x30, new_tbs + algorithm + tlv(0x03, b"\x00" + signature))


def as_leaf(der: bytes, like: LeafCert) -> LeafCert:
    """Wrap a crafted certificate as a :class:`LeafCert` with ``like``'s key and issuer."""
    pem = ssl.DER_cert_to_PEM_cert(der).encode("ascii")
    return LeafCert(cert_pem=pem, key_pem=like.key_pem, issuer_pem=like.issuer_pem)


def explicit_false(
    ca: CA, leaf: LeafCert, *, oid: bytes = SAN_OID, insert: bytes = EXPLICIT_FALSE
) -> LeafCert:
    """``leaf`` re-issued by ``ca`` with ``critical BOOLEAN FALSE`` spelt out in one extension.

    Args:
        ca: the CA that issued ``leaf``.
        leaf: a normal leaf (its key is reused, so its SPKI pin stays the same).
        oid: which extension to rewrite; subjectAltName by default.
        insert: the BOOLEAN TLV to add (``01 01 00`` by default).

    Returns:
        A :class:`LeafCert` a test server can present.
    """
    der = resign(leaf_der(leaf), ca, oid, lambda parts: [parts[0], insert, *parts[1:]])
    return as_leaf(der, leaf)


def explicit_ca_false(ca: CA, leaf: LeafCert) -> LeafCert:
    """``leaf`` re-issued with ``cA BOOLEAN FALSE`` spelt out inside basicConstraints.

    The DEFAULT is inside the extension's value this time, which ``cryptography``
    parses only when the extensions are accessed.
    """
    value = tlv(0x04, tlv(0x30, EXPLICIT_FALSE))
    der = resign(leaf_der(leaf), ca, BASIC_CONSTRAINTS_OID, lambda parts: [*parts[:-1], value])
    return as_leaf(der, leaf)


def leaf_der(leaf: LeafCert) -> bytes:
    """The DER of ``leaf`` without ``cryptography`` (which refuses crafted leaves)."""
    return ssl.PEM_cert_to_DER_cert(leaf.cert_pem.decode("ascii"))
