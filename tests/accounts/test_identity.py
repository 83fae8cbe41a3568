"""RFC 7817 / RFC 9525 certificate identity matching (R-7817-3-1..8, R-9525-IP-1).

Certificates are generated here with ``cryptography``; the name check runs on
their DER form exactly as the TLS layer hands it over after the handshake.
"""

from __future__ import annotations

import datetime
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID, NameOID, ObjectIdentifier

from smtpsec import Security
from smtpsec.discovery import Endpoint
from smtpsec.errors import CertificateError, InvalidArgumentError
from smtpsec.identity import (
    SRV_NAME_OID,
    ReferenceIdentity,
    _decode_ia5_string,
    check_certificate_identity,
    normalize_dns_name,
)

_KEY = ec.generate_private_key(ec.SECP256R1())


def make_cert(*sans: x509.GeneralName, cn: str = "cn-only.example.test") -> bytes:
    """A self-signed certificate with the given SANs (none: no SAN extension)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(_KEY.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(_KEY, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def ia5(text: str) -> bytes:
    """DER IA5String, short or long length form."""
    body = text.encode("ascii")
    if len(body) < 0x80:
        return bytes([0x16, len(body)]) + body
    size = len(body).to_bytes((len(body).bit_length() + 7) // 8, "big")
    return bytes([0x16, 0x80 | len(size)]) + size + body


def srv_name(text: str) -> x509.OtherName:
    return x509.OtherName(ObjectIdentifier(SRV_NAME_OID), ia5(text))


def dns(name: str) -> x509.DNSName:
    return x509.DNSName(name)


def ip(address: str) -> x509.IPAddress:
    return x509.IPAddress(ipaddress.ip_address(address))


def host_ref(host: str) -> ReferenceIdentity:
    return ReferenceIdentity.for_host(host)


# --------------------------------------------------------------------------- DNS-ID


def test_R_7817_3_1_exact_dns_id_matches_and_is_returned() -> None:
    cert = make_cert(dns("other.example.test"), dns("smtp.example.test"))
    assert check_certificate_identity(cert, host_ref("smtp.example.test")) == "smtp.example.test"


def test_R_7817_3_1_other_name_is_rejected_with_a_helpful_message() -> None:
    cert = make_cert(dns("other.example.test"))
    with pytest.raises(CertificateError) as caught:
        check_certificate_identity(cert, host_ref("smtp.example.test"))
    message = str(caught.value)
    assert "DNS:other.example.test" in message  # what the certificate presents
    assert "DNS:smtp.example.test" in message  # what we expected
    assert "connect using a host name the certificate lists" in message  # the fix
    assert "confirmed_target=True" in message


@pytest.mark.parametrize(
    ("presented", "reference"),
    [
        ("SMTP.Example.TEST", "smtp.example.test"),
        ("smtp.example.test", "SMTP.EXAMPLE.test"),
        ("smtp.example.test.", "smtp.example.test"),
        ("smtp.example.test", "smtp.example.test."),
        ("*.EXAMPLE.test.", "Smtp.Example.Test."),
    ],
)
def test_R_7817_3_5_case_and_trailing_dot_are_ignored(presented: str, reference: str) -> None:
    result = check_certificate_identity(make_cert(dns(presented)), host_ref(reference))
    assert result == "smtp.example.test"


@pytest.mark.parametrize(
    ("pattern", "host", "accepted"),
    [
        ("*.example.test", "a.example.test", True),
        ("*.example.test", "example.test", False),
        ("*.example.test", "a.b.example.test", False),
        ("f*.example.test", "foo.example.test", False),
        ("f*o.example.test", "foo.example.test", False),
        ("*o.example.test", "foo.example.test", False),
        ("*.test", "example.test", False),
        ("a.*.example.test", "a.b.example.test", False),
        ("*.*.example.test", "a.b.example.test", False),
        ("*", "localhost", False),
        ("a..example.test", "a.example.test", False),
    ],
)
def test_R_7817_3_7_wildcards_only_as_whole_leftmost_label(
    pattern: str, host: str, accepted: bool
) -> None:
    cert = make_cert(dns(pattern))
    if accepted:
        assert check_certificate_identity(cert, host_ref(host)) == host
    else:
        with pytest.raises(CertificateError, match="matches none"):
            check_certificate_identity(cert, host_ref(host))


def test_R_7817_3_6_cn_only_certificate_is_rejected() -> None:
    cert = make_cert(cn="smtp.example.test")
    with pytest.raises(CertificateError) as caught:
        check_certificate_identity(cert, host_ref("smtp.example.test"))
    message = str(caught.value)
    assert "no subjectAltName" in message
    assert "smtp.example.test" in message  # the CN is shown, and said to be unused
    assert "never used" in message


def test_R_7817_3_5_uri_only_certificate_is_rejected() -> None:
    cert = make_cert(x509.UniformResourceIdentifier("smtp://smtp.example.test"))
    with pytest.raises(CertificateError) as caught:
        check_certificate_identity(cert, host_ref("smtp.example.test"))
    assert "URI:smtp://smtp.example.test (never used for server identity)" in str(caught.value)


def test_other_san_types_are_listed_but_never_matched() -> None:
    cert = make_cert(x509.RFC822Name("smtp.example.test"), dns("."), dns(""))
    with pytest.raises(CertificateError) as caught:
        check_certificate_identity(cert, host_ref("smtp.example.test"))
    assert "RFC822Name" in str(caught.value)


def test_dns_id_never_matches_an_ip_san() -> None:
    with pytest.raises(CertificateError):
        check_certificate_identity(make_cert(ip("127.0.0.1")), host_ref("localhost"))


def test_error_message_is_bounded_for_huge_san_lists() -> None:
    cert = make_cert(*(dns(f"h{i}.example.test") for i in range(30)))
    with pytest.raises(CertificateError) as caught:
        check_certificate_identity(cert, host_ref("smtp.example.test"))
    assert "and 10 more" in str(caught.value)
    assert "h25.example.test" not in str(caught.value)


def test_unparseable_certificate_is_a_certificate_error() -> None:
    with pytest.raises(CertificateError, match="could not be parsed"):
        check_certificate_identity(b"\x30\x03junk", host_ref("smtp.example.test"))


def test_malformed_san_extension_is_a_certificate_error() -> None:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(_KEY.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"garbage"),
            critical=False,
        )
        .sign(_KEY, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    with pytest.raises(CertificateError, match="extensions could not be parsed"):
        check_certificate_identity(cert, host_ref("smtp.example.test"))


# --------------------------------------------------------------------------- IP


def test_R_9525_IP_1_ip_literal_matches_ip_san() -> None:
    cert = make_cert(dns("smtp.example.test"), ip("127.0.0.1"))
    assert check_certificate_identity(cert, host_ref("127.0.0.1")) == "127.0.0.1"


def test_R_9525_IP_1_dns_san_spelling_the_address_never_matches() -> None:
    with pytest.raises(CertificateError) as caught:
        check_certificate_identity(make_cert(dns("127.0.0.1")), host_ref("127.0.0.1"))
    assert "IP:127.0.0.1" in str(caught.value)  # the reference, said to be an IP


def test_R_9525_IP_1_ipv6_literal_with_brackets_and_zone() -> None:
    assert host_ref("[::1]").ip == ipaddress.ip_address("::1")
    assert host_ref("fe80::1%eth0").ip == ipaddress.ip_address("fe80::1")
    assert host_ref("[::1]").dns_ids == frozenset()
    assert check_certificate_identity(make_cert(ip("::1")), host_ref("[::1]")) == "::1"


def test_R_9525_IP_1_ip_reference_ignores_other_addresses() -> None:
    with pytest.raises(CertificateError):
        check_certificate_identity(make_cert(ip("127.0.0.2")), host_ref("127.0.0.1"))


# --------------------------------------------------------------------------- SRV-ID


def unsigned_ref(target: str = "mx1.provider.test") -> ReferenceIdentity:
    return ReferenceIdentity.for_srv(
        domain="example.test", service="_submissions", target=target, target_trusted=False
    )


def test_R_7817_3_4_srv_id_is_accepted() -> None:
    cert = make_cert(dns("mx1.provider.test"), srv_name("_submissions.example.test"))
    assert check_certificate_identity(cert, unsigned_ref()) == "_submissions.example.test"


def test_R_7817_3_4_untrusted_srv_target_is_not_a_reference_identity() -> None:
    cert = make_cert(dns("mx1.provider.test"))
    with pytest.raises(CertificateError, match="confirm its target"):
        check_certificate_identity(cert, unsigned_ref())
    confirmed = ReferenceIdentity.for_srv(
        domain="example.test",
        service="_submissions",
        target="mx1.provider.test",
        target_trusted=True,
    )
    assert check_certificate_identity(cert, confirmed) == "mx1.provider.test"


def test_R_7817_3_4_email_domain_is_a_dns_id() -> None:
    assert check_certificate_identity(make_cert(dns("example.test")), unsigned_ref()) == (
        "example.test"
    )


def test_R_7817_3_4_from_endpoint_uses_dnssec_or_confirmation() -> None:
    endpoint = Endpoint(
        host="MX1.Provider.Test.",
        port=465,
        security=Security.IMPLICIT_TLS,
        priority=0,
        weight=0,
        service="_submissions",
        domain="Example.Test",
        dnssec_validated=False,
    )
    plain = ReferenceIdentity.from_endpoint(endpoint)
    assert plain.dns_ids == frozenset({"example.test"})
    assert plain.srv_ids == frozenset({"_submissions.example.test"})
    confirmed = ReferenceIdentity.from_endpoint(endpoint, confirmed_target=True)
    assert confirmed.dns_ids == frozenset({"example.test", "mx1.provider.test"})


def test_R_7817_3_4_srv_service_must_match() -> None:
    cert = make_cert(srv_name("_submission.example.test"))
    with pytest.raises(CertificateError) as caught:
        check_certificate_identity(cert, unsigned_ref())
    assert "SRV:_submission.example.test" in str(caught.value)
    assert "SRV:_submissions.example.test" in str(caught.value)


@pytest.mark.parametrize(
    ("presented", "domain", "accepted"),
    [
        ("_SUBMISSIONS.Example.TEST.", "example.test", True),
        ("_submissions.*.example.test", "mail.example.test", True),
        ("_submissions.*.test", "example.test", False),
        ("_submissions.*.example.test", "example.test", False),
        ("submissions.example.test", "example.test", False),
        ("_submissions", "example.test", False),
    ],
)
def test_R_7817_3_7_srv_id_case_and_wildcards(presented: str, domain: str, accepted: bool) -> None:
    ref = ReferenceIdentity(srv_ids=frozenset({f"_submissions.{domain}"}))
    cert = make_cert(srv_name(presented))
    if accepted:
        assert check_certificate_identity(cert, ref) == f"_submissions.{domain}"
    else:
        with pytest.raises(CertificateError):
            check_certificate_identity(cert, ref)


def test_srv_id_with_long_form_der_length() -> None:
    domain = ".".join(["a" * 60, "b" * 60, "example", "test"])
    ref = ReferenceIdentity(srv_ids=frozenset({f"_submissions.{domain}"}))
    cert = make_cert(srv_name(f"_submissions.{domain}"))
    assert len(ia5(f"_submissions.{domain}")) > 0x80
    assert check_certificate_identity(cert, ref) == f"_submissions.{domain}"


@pytest.mark.parametrize(
    "value",
    [
        b"\x0c\x19_submissions.example.test",  # UTF8String, not IA5String
        b"\x16\x02\xc3\xa9",  # not ASCII
        b"\x16\x00",  # empty name
    ],
)
def test_malformed_srv_name_is_listed_and_never_matches(value: bytes) -> None:
    cert = make_cert(x509.OtherName(ObjectIdentifier(SRV_NAME_OID), value))
    with pytest.raises(CertificateError, match=r"SRV:<malformed>"):
        check_certificate_identity(cert, unsigned_ref())


@pytest.mark.parametrize(
    ("der", "expected"),
    [
        (b"\x16\x03abc", "abc"),
        (b"\x16\x81\x80" + b"a" * 128, "a" * 128),
        (b"", None),
        (b"\x16", None),
        (b"\x04\x03abc", None),  # wrong tag
        (b"\x16\x80abc", None),  # indefinite length is not DER
        (b"\x16\x85\x00\x00\x00\x00\x03abc", None),  # too many length octets
        (b"\x16\x82\x01", None),  # length octets cut short
        (b"\x16\x81\x03abc", None),  # long form where short form is required
        (b"\x16\x82\x00\x80" + b"a" * 128, None),  # leading zero length octet
        (b"\x16\x05abc", None),  # length says more than there is
        (b"\x16\x02abc", None),  # trailing bytes
        (b"\x16\x02\xc3\xa9", None),  # not ASCII
    ],
)
def test_ia5_string_decoder_accepts_only_exact_der(der: bytes, expected: str | None) -> None:
    assert _decode_ia5_string(der) == expected


# --------------------------------------------------------------------------- construction


def test_reference_identity_normalizes_idna_and_case() -> None:
    ref = ReferenceIdentity.for_host("SMTP.Bücher.Example.")
    assert ref.dns_ids == frozenset({"smtp.xn--bcher-kva.example"})
    assert ref.ip is None
    assert ref.describe() == "DNS:smtp.xn--bcher-kva.example"


def test_reference_identity_needs_something_to_match() -> None:
    with pytest.raises(InvalidArgumentError, match="at least one"):
        ReferenceIdentity()


def test_dns_id_that_is_an_ip_address_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="is an IP address"):
        ReferenceIdentity(dns_ids=frozenset({"127.0.0.1"}))


@pytest.mark.parametrize("bad", ["submissions.example.test", "_submissions", "_.example.test"])
def test_malformed_srv_id_is_refused(bad: str) -> None:
    with pytest.raises(InvalidArgumentError, match=r"_service\.domain"):
        ReferenceIdentity(srv_ids=frozenset({bad}))


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ("", "not a valid DNS name"),
        ("smtp example.test", "not a valid DNS name"),
        ("*.example.test", "not a valid DNS name"),
        ("a" * 64 + ".test", "not a valid DNS name"),
        ("a..test", "not a valid DNS name"),
        ("-a.test", "not a valid DNS name"),
        ("ann@example.test", "email address"),
        ("x" * 70 + "é.test", "IDNA"),
    ],
)
def test_normalize_dns_name_rejects_bad_names(bad: str, match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        normalize_dns_name(bad)


def test_normalize_dns_name_keeps_good_names() -> None:
    assert normalize_dns_name("Mail-1.Example.TEST.") == "mail-1.example.test"
    assert normalize_dns_name("_srv._tcp.example.test") == "_srv._tcp.example.test"


def test_describe_lists_every_kind_in_a_stable_order() -> None:
    ref = ReferenceIdentity(
        dns_ids=frozenset({"b.test", "a.test"}),
        srv_ids=frozenset({"_submissions.a.test"}),
        ip=ipaddress.ip_address("192.0.2.1"),
    )
    assert ref.describe() == "IP:192.0.2.1, DNS:a.test, DNS:b.test, SRV:_submissions.a.test"


def test_ip_is_checked_first_then_dns_then_srv() -> None:
    ref = ReferenceIdentity(
        dns_ids=frozenset({"a.test"}),
        srv_ids=frozenset({"_submissions.a.test"}),
        ip=ipaddress.ip_address("192.0.2.1"),
    )
    cert = make_cert(srv_name("_submissions.a.test"), dns("a.test"), ip("192.0.2.1"))
    assert check_certificate_identity(cert, ref) == "192.0.2.1"
    cert = make_cert(srv_name("_submissions.a.test"), dns("a.test"))
    assert check_certificate_identity(cert, ref) == "a.test"
