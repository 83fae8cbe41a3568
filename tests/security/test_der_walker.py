"""``smtpsec._der``: exact SPKI bytes, bounded parsing, and only ``CertificateError`` on garbage.

The walker reads certificates that OpenSSL accepted from a peer that may be an
attacker (pin-only mode verifies nothing before it runs), so it is fuzzed:
whatever the bytes, it returns a value or raises :class:`smtpsec.CertificateError`.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import ipaddress
from collections.abc import Callable

import pytest
from _cert_crafting import children, explicit_false, leaf_der, tlv
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smtpsec import _der, identity
from smtpsec._cli._probe_tls import certificate_facts
from smtpsec.errors import CertificateError
from smtpsec.identity import ReferenceIdentity, check_certificate_identity
from smtpsec.testing import CA
from smtpsec.tls import spki_pin

_REF = ReferenceIdentity.for_host("localhost")


def _self_signed(key: object, algorithm: hashes.HashAlgorithm | None) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pin.example.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())  # type: ignore[attr-defined]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("pin.example.test")]), False)
        .sign(key, algorithm)  # type: ignore[arg-type]
    )
    return cert.public_bytes(serialization.Encoding.DER)


KEYS: dict[str, Callable[[], bytes]] = {
    "ec-p256": lambda: _self_signed(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256()),
    "ec-p384": lambda: _self_signed(ec.generate_private_key(ec.SECP384R1()), hashes.SHA384()),
    "rsa-2048": lambda: _self_signed(
        rsa.generate_private_key(public_exponent=65537, key_size=2048), hashes.SHA256()
    ),
    "ed25519": lambda: _self_signed(ed25519.Ed25519PrivateKey.generate(), None),
}


@pytest.mark.parametrize("kind", sorted(KEYS))
def test_pin_equals_cryptographys_reencoding(kind: str) -> None:
    """For normal certificates the exact SPKI bytes are what cryptography re-encodes."""
    der = KEYS[kind]()
    reencoded = (
        x509.load_der_x509_certificate(der)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert _der.spki(der) == reencoded
    expected = "sha256/" + base64.b64encode(hashlib.sha256(reencoded).digest()).decode()
    assert spki_pin(der) == expected


def test_normal_certificate_needs_no_normalizing() -> None:
    der = KEYS["rsa-2048"]()
    result = _der.normalized(der)
    assert result.der == der
    assert result.issues == ()


def test_normalized_copy_is_readable_by_cryptography(smtpsec_ca: CA) -> None:
    leaf = smtpsec_ca.issue("localhost", ips=("127.0.0.1",))
    crafted = leaf_der(explicit_false(smtpsec_ca, leaf))
    result = _der.normalized(crafted)
    # Dropping the explicit FALSE gives back the TBS the CA first signed, byte for byte.
    assert children(result.der)[0] == children(leaf_der(leaf))[0]
    cert = x509.load_der_x509_certificate(result.der)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert not san.critical
    assert san.value.get_values_for_type(x509.DNSName) == ["localhost"]
    assert len(result.issues) == 1
    assert "subjectAltName (2.5.29.17)" in result.issues[0]
    # The TBS changed, so the copy's signature no longer matches: it is for reading only.
    assert result.der != crafted


# --------------------------------------------------------------------------- strictness and limits

_LEAF_SPKI = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200") + b"\x04" * 65


def _cert(*tbs_fields: bytes, extra: bytes = b"") -> bytes:
    tbs = tlv(0x30, b"".join(tbs_fields))
    return tlv(0x30, tbs + tlv(0x30, b"\x06\x01\x00") + tlv(0x03, b"\x00") + extra)


_NAME = tlv(0x30, b"")
_FIELDS = (b"\x02\x01\x01", tlv(0x30, b"\x06\x01\x00"), _NAME, tlv(0x30, b""), _NAME, _LEAF_SPKI)


def test_minimal_synthetic_certificate_is_walked() -> None:
    assert _der.spki(_cert(*_FIELDS)) == _LEAF_SPKI
    assert _der.spki(_cert(tlv(0xA0, b"\x02\x01\x02"), *_FIELDS)) == _LEAF_SPKI
    assert _der.extension_value(_cert(*_FIELDS), _der.SUBJECT_ALT_NAME) is None


_MALFORMED: list[tuple[bytes, str]] = [
    (b"", "truncated"),
    (b"\x30", "truncated"),
    (b"\x30\x80" + b"\x00" * 4, "indefinite"),
    (b"\x30\x85\x00\x00\x00\x00\x01\x00", "length octets"),
    (b"\x30\x81\x03\x02\x01\x00", "shortest"),
    (b"\x30\x82\x00\x83" + b"\x00" * 0x83, "shortest"),
    (b"\x3f\x01\x00", "tag number"),
    (b"\x30\x05\x02\x01\x00", "beyond"),
    (_cert(*_FIELDS) + b"\x00", "trailing"),
    (_cert(*_FIELDS, extra=b"\x05\x00"), "Certificate"),
    (_cert(*_FIELDS[:-1]), "subjectPublicKeyInfo"),
    (_cert(*_FIELDS[:-1], tlv(0x30, b"\x05\x00")), "subjectPublicKeyInfo"),
    (_cert(*_FIELDS, b"\x05\x00"), "tbsCertificate"),
    (_cert(tlv(0xA0, b"\x02\x01\x07"), *_FIELDS), "version"),
    (_cert(tlv(0x30, b""), *_FIELDS[1:]), "serialNumber"),
    (b"\x04\x00", "Certificate"),
]


@pytest.mark.parametrize(("der", "reason"), _MALFORMED, ids=[r for _, r in _MALFORMED])
def test_malformed_input_is_a_certificate_error(der: bytes, reason: str) -> None:
    with pytest.raises(CertificateError, match="could not be parsed") as info:
        _der.spki(der)
    assert reason in str(info.value)


def test_input_size_is_bounded() -> None:
    body = b"\x00" * (_der.MAX_INPUT + 1)
    with pytest.raises(CertificateError, match="bytes"):
        _der.spki(tlv(0x30, body))


def test_nesting_depth_is_bounded() -> None:
    """Descending stops at MAX_DEPTH; elements are walked by loops, never by recursion."""
    data = b"\x05\x00"
    for _ in range(5000):
        data = tlv(0x30, data)
    element = _der.parse(data)
    with pytest.raises(CertificateError, match="deep"):  # noqa: PT012 - the walk is the point
        while True:
            (element,) = element.children()
    assert element.depth == _der.MAX_DEPTH


def test_child_count_is_bounded() -> None:
    value = tlv(0x30, b"\x82\x00" * (_der.MAX_CHILDREN + 1))
    with pytest.raises(CertificateError, match="elements"):
        _der.general_names(value)


def test_duplicate_subject_alt_name_is_refused() -> None:
    """RFC 5280 §4.2: an extension appears once; two SANs could disagree, so fail closed."""
    san = tlv(0x30, b"\x06\x03\x55\x1d\x11" + tlv(0x04, tlv(0x30, b"\x82\x01a")))
    der = _cert(*_FIELDS, tlv(0xA3, tlv(0x30, san + san)))
    assert _der.spki(der) == _LEAF_SPKI  # the pin does not depend on the extensions
    with pytest.raises(CertificateError, match="more than once"):
        _der.extension_value(der, _der.SUBJECT_ALT_NAME)
    with pytest.raises(CertificateError, match="more than once"):
        check_certificate_identity(der, ReferenceIdentity.for_host("a.example.test"))


@pytest.mark.parametrize(
    ("der", "expected"),
    [
        (b"\x16\x03abc", "abc"),
        (b"\x16\x81\x80" + b"a" * 128, "a" * 128),
        (b"\x16\x00", ""),
        (b"\x36\x03abc", None),  # constructed
        (b"\x16\x81\x03abc", None),  # not the shortest length
        (b"\x16\x02\xc3\xa9", None),  # not ASCII
        (b"\x16\x03abc\x00", None),  # trailing byte
    ],
)
def test_ia5_string(der: bytes, expected: str | None) -> None:
    assert _der.ia5_string(der) == expected


def test_lenient_names_equal_strict_names_for_every_kind() -> None:
    """Networks, e-mail, directory names, registered IDs and foreign otherNames read alike."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kinds.example.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    sans: list[x509.GeneralName] = [
        x509.DNSName("kinds.example.test"),
        x509.IPAddress(ipaddress.ip_network("192.0.2.0/24")),
        x509.IPAddress(ipaddress.ip_network("2001:db8::/32")),
        x509.RFC822Name("ann@example.test"),
        x509.DirectoryName(name),
        x509.RegisteredID(x509.ObjectIdentifier("1.2.3.4")),
        x509.OtherName(x509.ObjectIdentifier("1.2.3.5"), b"\x16\x01a"),
        x509.UniformResourceIdentifier("smtp://kinds.example.test"),
    ]
    der = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    san = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    ref = ReferenceIdentity.for_host("other.example.test")
    assert identity._lenient_presented(der, ref) == identity._presented_names(san.value)


def test_lenient_names_list_what_they_cannot_use() -> None:
    """Entries no parser would produce are listed as unusable, never matched."""
    value = tlv(
        0x30,
        b"\x87\x03abc"  # iPAddress of 3 octets
        + b"\x86\x02\xc3\xa9"  # non-ASCII URI
        + b"\x82\x02\xc3\xa9"  # non-ASCII dNSName: dropped
        + b"\xa3\x00"  # x400Address
        + b"\x8f\x00",  # no such GeneralName
    )
    der = _cert(
        *_FIELDS, tlv(0xA3, tlv(0x30, tlv(0x30, b"\x06\x03\x55\x1d\x11" + tlv(0x04, value))))
    )
    ref = ReferenceIdentity.for_host("a.example.test")
    presented = identity._lenient_presented(der, ref)
    assert presented.dns == ()
    assert presented.ignored == (
        "IP:<malformed>",
        "URI:<malformed>",
        "x400Address",
        "GeneralName[15]",
    )
    with pytest.raises(CertificateError, match="GeneralName\\[15\\] \\(never used"):
        check_certificate_identity(der, ref)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (tlv(0x30, b"\x80\x00"), "primitive element"),  # otherName must be constructed
        (tlv(0x30, b"\xa0\x03\x06\x01\x00"), "otherName"),  # no [0] value
        (tlv(0x30, b"\x04\x00"), "context-tagged"),
        (b"\x04\x00", "not a SEQUENCE"),
    ],
)
def test_malformed_general_names(value: bytes, reason: str) -> None:
    with pytest.raises(CertificateError, match="extensions could not be parsed") as info:
        _der.general_names(value)
    assert reason in str(info.value)


@pytest.mark.parametrize(
    ("extensions", "reason"),
    [
        (tlv(0xA3, tlv(0x30, b"") + tlv(0x30, b"")), "one SEQUENCE"),
        (tlv(0xA3, tlv(0x30, tlv(0x30, b"\x06\x01\x00\x01\x02\x00\x00\x04\x00"))), "one octet"),
        (tlv(0xA3, tlv(0x30, tlv(0x30, b"\x06\x01\x00"))), "extnValue"),
    ],
)
def test_malformed_extensions(extensions: bytes, reason: str) -> None:
    der = _cert(*_FIELDS, extensions)
    assert _der.spki(der) == _LEAF_SPKI
    with pytest.raises(CertificateError, match="extensions could not be parsed") as info:
        _der.extension_value(der, _der.SUBJECT_ALT_NAME)
    assert reason in str(info.value)


def test_normalizing_version_boolean_and_unique_ids() -> None:
    """Explicit v1, a BER TRUE and issuer/subject unique IDs: fixed, listed, or kept."""
    extension = tlv(0x30, b"\x06\x03\x55\x1d\x0f\x01\x01\x01" + tlv(0x04, b"\x03\x01\x00"))
    unique_ids = b"\x81\x01\x00\x82\x01\x00"
    der = _cert(tlv(0xA0, b"\x02\x01\x00"), *_FIELDS, unique_ids, tlv(0xA3, tlv(0x30, extension)))
    result = _der.normalized(der)
    assert result.issues == (
        "version encodes its DEFAULT value v1 explicitly",
        "extension keyUsage (2.5.29.15) encodes critical=TRUE as 0x01; DER requires 0xff",
    )
    fixed = extension.replace(b"\x01\x01\x01", b"\x01\x01\xff")
    assert result.der == _cert(*_FIELDS, unique_ids, tlv(0xA3, tlv(0x30, fixed)))
    v3 = _cert(tlv(0xA0, b"\x02\x01\x02"), *_FIELDS, unique_ids)
    assert _der.normalized(v3) == _der.Normalized(v3, ())


# --------------------------------------------------------------------------- fuzzing


@pytest.fixture(scope="module")
def samples(smtpsec_ca: CA) -> list[bytes]:
    leaf = smtpsec_ca.issue(
        "localhost",
        ips=("127.0.0.1", "::1"),
        uri_sans=("smtp://localhost",),
        srv_names=("_submissions.localhost",),
    )
    return [leaf_der(leaf), leaf_der(explicit_false(smtpsec_ca, leaf)), KEYS["ed25519"]()]


def _only_certificate_errors(der: bytes) -> None:
    """Every lenient entry point returns a value or raises CertificateError, nothing else."""
    calls: list[Callable[[], object]] = [
        lambda: _der.spki(der),
        lambda: _der.extension_value(der, _der.SUBJECT_ALT_NAME),
        lambda: _der.general_names(der),
        lambda: _der.normalized(der),
        lambda: _der.ia5_string(der),
        lambda: spki_pin(der),
        lambda: check_certificate_identity(der, _REF),
        lambda: certificate_facts(der),
    ]
    for call in calls:
        with contextlib.suppress(CertificateError):
            call()


def test_every_truncation_is_a_certificate_error(samples: list[bytes]) -> None:
    for der in samples:
        for size in range(len(der)):
            with pytest.raises(CertificateError):
                _der.spki(der[:size])
            _only_certificate_errors(der[:size])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes(data: bytes) -> None:
    _only_certificate_errors(data)
    _only_certificate_errors(b"\x30\x82" + len(data).to_bytes(2, "big") + data)


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    which=st.integers(min_value=0, max_value=2),
    edits=st.lists(
        st.tuples(
            st.sampled_from(["flip", "set", "insert", "delete"]),
            st.integers(min_value=0),
            st.integers(min_value=0, max_value=255),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_real_certificates(
    samples: list[bytes], which: int, edits: list[tuple[str, int, int]]
) -> None:
    data = bytearray(samples[which])
    for kind, position, value in edits:
        at = position % len(data)
        if kind == "flip":
            data[at] ^= 1 << (value % 8)
        elif kind == "set":
            data[at] = value
        elif kind == "insert":
            data.insert(at, value)
        elif len(data) > 1:
            del data[at]
    _only_certificate_errors(bytes(data))


def _tlv_trees() -> st.SearchStrategy[bytes]:
    """Well-framed TLV trees with arbitrary tags and contents (reach past the framing checks)."""
    leaf = st.builds(tlv, st.integers(0, 255).map(lambda t: t & ~0x20), st.binary(max_size=20))
    return st.recursive(
        leaf,
        lambda inner: st.builds(
            lambda tag, parts: tlv(tag | 0x20, b"".join(parts)),
            st.sampled_from([0x30, 0xA0, 0xA4, 0x31, 0x80]),
            st.lists(inner, max_size=4),
        ),
        max_leaves=12,
    )


def _with_extension(oid: bytes, value: bytes, critical: bytes = b"") -> bytes:
    extension = tlv(0x30, tlv(0x06, oid) + critical + tlv(0x04, value))
    return _cert(*_FIELDS, tlv(0xA3, tlv(0x30, extension)))


@settings(max_examples=400, deadline=None)
@given(
    value=_tlv_trees(),
    oid=st.sampled_from([_der.SUBJECT_ALT_NAME, bytes.fromhex("551d13"), b"\x2a\x03"]),
    critical=st.sampled_from([b"", b"\x01\x01\x00", b"\x01\x01\x01", b"\x01\x01\xff"]),
)
def test_structured_extension_values(value: bytes, oid: bytes, critical: bytes) -> None:
    """Random but well-framed subjectAltName/basicConstraints values, in a framed certificate."""
    der = _with_extension(oid, value, critical)
    _only_certificate_errors(der)
    _only_certificate_errors(value)
