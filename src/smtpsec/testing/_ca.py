"""A throwaway certificate authority and the leaf fixtures tests need.

:class:`CA` issues every certificate fixture of checklist §0.2 item 2 (valid,
wrong name, expired, not yet valid, CN-only, URI-SAN-only, IP-SAN, wildcard,
SRV-ID, self-signed, client certificates) with EC P-256 keys, which are fast to
generate. Normal leaves carry the extensions Python 3.13's
``VERIFY_X509_STRICT`` insists on (AKI, SKI, basicConstraints, keyUsage), so a
failure in a test is always the one the fixture was built for.

:meth:`CA.issue_intermediate` makes the chains public CAs use (root →
intermediate → leaf): the server presents the leaf and the intermediates, the
client trusts only the root, as in real deployments.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
import ssl
import tempfile
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

__all__ = ["CA", "SRV_NAME_OID", "LeafCert"]

#: id-on-dnsSRV (RFC 4985): the otherName type of an SRV-ID such as
#: ``_submissions.example.test`` (RFC 7817 §3).
SRV_NAME_OID: Final = ObjectIdentifier("1.3.6.1.5.5.7.8.7")

_ONE_HOUR: Final = datetime.timedelta(hours=1)
_ONE_YEAR: Final = datetime.timedelta(days=365)


@dataclass(frozen=True, slots=True)
class LeafCert:
    """A certificate with its private key, as PEM.

    Attributes:
        cert_pem: the leaf certificate.
        key_pem: its private key (PKCS#8, unencrypted).
        issuer_pem: the certificate that signed it (the leaf itself when
            self-signed; an intermediate for a leaf of
            :meth:`CA.issue_intermediate`'s CA).
        intermediates_pem: the CA certificates between the leaf and the root,
            issuer first, which a server sends after the leaf (empty when a
            root signed the leaf).
        root_pem: the root at the top of the chain: trust this to verify the
            leaf (defaults to ``issuer_pem``).
    """

    cert_pem: bytes
    key_pem: bytes
    issuer_pem: bytes
    intermediates_pem: bytes = b""
    root_pem: bytes = b""

    def __post_init__(self) -> None:
        if not self.root_pem:
            object.__setattr__(self, "root_pem", self.issuer_pem)

    @property
    def self_signed(self) -> bool:
        """Whether the leaf signed itself."""
        return self.issuer_pem == self.cert_pem

    @property
    def chain_pem(self) -> bytes:
        """The leaf, its intermediates and the root: the whole chain, leaf first."""
        if self.self_signed:
            return self.cert_pem
        return self.cert_pem + self.intermediates_pem + self.root_pem

    @property
    def presented_pem(self) -> bytes:
        """What a server sends: the leaf and its intermediates, never the root."""
        return self.cert_pem + self.intermediates_pem

    @property
    def certificate(self) -> x509.Certificate:
        """The leaf parsed by ``cryptography``."""
        return x509.load_pem_x509_certificate(self.cert_pem)

    @property
    def cert_der(self) -> bytes:
        """The leaf in DER form (what ``getpeercert(binary_form=True)`` returns)."""
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def spki_sha256_pin(self) -> str:
        """The RFC 7469-style pin ``sha256/<base64>`` of the leaf's public key."""
        return _pin(self.certificate)

    def write(
        self, directory: str | os.PathLike[str], *, stem: str = "cert", chain: bool = True
    ) -> tuple[Path, Path]:
        """Write the certificate and the key as PEM files.

        Args:
            directory: an existing directory.
            stem: file name stem; files are ``<stem>.pem`` and ``<stem>.key``.
            chain: write the whole chain, :attr:`chain_pem` (``True``), or the
                leaf alone.

        Returns:
            ``(certfile, keyfile)``.
        """
        folder = Path(directory)
        certfile, keyfile = folder / f"{stem}.pem", folder / f"{stem}.key"
        certfile.write_bytes(self.chain_pem if chain else self.cert_pem)
        keyfile.write_bytes(self.key_pem)
        keyfile.chmod(0o600)
        return certfile, keyfile

    def load_into(self, ctx: ssl.SSLContext) -> None:
        """Load this leaf, its intermediates and key into ``ctx`` (via a private
        temporary directory).

        The leaf and its intermediates are presented (:attr:`presented_pem`),
        never the root, as real servers do: a client that does not trust the
        root then fails with "unable to get local issuer certificate", the
        realistic unknown-root error.

        Args:
            ctx: a server or client context that should present this certificate.
        """
        # ssl can only load certificates from files; the directory is private
        # (mode 0700) and removed at once.
        with tempfile.TemporaryDirectory(prefix="smtpsec-cert-") as tmp:
            certfile, keyfile = self.write(tmp, chain=False)
            certfile.write_bytes(self.presented_pem)
            ctx.load_cert_chain(certfile, keyfile)

    def server_context(
        self,
        *,
        min_version: ssl.TLSVersion | None = None,
        max_version: ssl.TLSVersion | None = None,
        request_client_cert: bool = False,
        client_ca: CA | bytes | None = None,
    ) -> ssl.SSLContext:
        """Build a server context presenting this certificate.

        TLS 1.0/1.1 need ``@SECLEVEL=0`` in OpenSSL 3 even to be offered, so
        the cipher string is lowered whenever a version below 1.2 is allowed.

        Args:
            min_version: lowest TLS version to accept.
            max_version: highest TLS version to accept.
            request_client_cert: send a CertificateRequest (the client may
                still present none: ``CERT_OPTIONAL``).
            client_ca: CA (or PEM) that client certificates must chain to;
                defaults to this leaf's root.

        Returns:
            A ``PROTOCOL_TLS_SERVER`` context.
        """
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        legacy = {ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1}
        with warnings.catch_warnings():
            # Old versions are deprecated in ssl; asking for them is the point.
            warnings.simplefilter("ignore", DeprecationWarning)
            if min_version is None and max_version in legacy:
                # "Up to TLS 1.1" must not keep the default 1.2 floor, or no
                # protocol would be left at all.
                min_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            if min_version is not None:
                ctx.minimum_version = min_version
            if max_version is not None:
                ctx.maximum_version = max_version
        if min_version in legacy or max_version in legacy:
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        self.load_into(ctx)
        if request_client_cert:
            ctx.verify_mode = ssl.CERT_OPTIONAL
            cadata = client_ca.root_pem if isinstance(client_ca, CA) else client_ca
            ctx.load_verify_locations(cadata=(cadata or self.root_pem).decode("ascii"))
        return ctx


class CA:
    """A throwaway certificate authority for tests and the demo.

    A CA is a root (:meth:`create`) or an intermediate under one
    (:meth:`issue_intermediate`). Trust always starts at the root:
    :meth:`trust`, :meth:`client_context` and :meth:`write_cafile` use
    :attr:`root_pem` for an intermediate too.

    Example:
        >>> ca = CA.create()
        >>> leaf = ca.issue("localhost", ips=("127.0.0.1",))
        >>> ctx = ca.client_context()
        >>> sub = ca.issue_intermediate()
        >>> rotated = sub.issue("localhost")  # chain: leaf, sub, then the root
    """

    __slots__ = ("_cert", "_key", "_parents")

    def __init__(
        self,
        cert: x509.Certificate,
        key: ec.EllipticCurvePrivateKey,
        parents: tuple[x509.Certificate, ...] = (),
    ) -> None:
        """Wrap an existing CA certificate and key (most callers use :meth:`create`).

        Args:
            cert: the CA certificate.
            key: its private key.
            parents: for an intermediate, the certificates above it, its issuer
                first and the root last; empty for a root.
        """
        self._cert = cert
        self._key = key
        self._parents = parents

    @classmethod
    def create(cls, name: str = "smtpsec test CA") -> CA:
        """Generate a new self-signed root CA valid for ten years.

        Args:
            name: the CA's common name.

        Returns:
            The new CA.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        subject = _ca_name(name)
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = _ca_builder(subject, subject, key, ski, ten_years=True).sign(key, hashes.SHA256())
        return cls(cert, key)

    def issue_intermediate(self, name: str = "smtpsec test intermediate CA") -> CA:
        """Issue an intermediate CA under this one, valid for five years.

        Leaves it issues chain to this CA's root; servers using them present
        the leaf and the intermediates (:attr:`LeafCert.presented_pem`).

        Args:
            name: the intermediate's common name.

        Returns:
            The intermediate, itself a :class:`CA`.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        issuer_ski = self._cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        cert = _ca_builder(
            _ca_name(name), self._cert.subject, key, issuer_ski.value, ten_years=False
        ).sign(self._key, hashes.SHA256())
        return CA(cert, key, (self._cert, *self._parents))

    @property
    def is_root(self) -> bool:
        """Whether this CA is a root (self-signed) rather than an intermediate."""
        return not self._parents

    @property
    def root_pem(self) -> bytes:
        """The root certificate at the top of this CA's chain, as PEM (its own for a root)."""
        top = self._parents[-1] if self._parents else self._cert
        return top.public_bytes(serialization.Encoding.PEM)

    @property
    def spki_sha256_pin(self) -> str:
        """The ``sha256/<base64>`` pin of this CA's own public key."""
        return _pin(self._cert)

    def _intermediates_pem(self) -> bytes:
        """What a server sends above a leaf of this CA: this CA and its parents, no root."""
        if not self._parents:
            return b""
        chain = (self._cert, *self._parents[:-1])
        return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in chain)

    @property
    def certificate(self) -> x509.Certificate:
        """The CA certificate parsed by ``cryptography``."""
        return self._cert

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate as PEM."""
        return self._cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        """The CA private key as unencrypted PKCS#8 PEM."""
        return _key_pem(self._key)

    def write_cafile(self, path: str | os.PathLike[str]) -> Path:
        """Write the root certificate to ``path`` (for ``cafile=`` options).

        Args:
            path: the file to create or overwrite.

        Returns:
            The path written.
        """
        target = Path(path)
        target.write_bytes(self.root_pem)
        return target

    def trust(self, ctx: ssl.SSLContext) -> None:
        """Add this CA's root to the trust store of ``ctx``.

        Args:
            ctx: a client (or client-verifying server) context.
        """
        ctx.load_verify_locations(cadata=self.root_pem.decode("ascii"))

    def client_context(self) -> ssl.SSLContext:
        """Return a verifying client context that trusts only this CA's root.

        Returns:
            ``PROTOCOL_TLS_CLIENT`` with hostname checks and ``CERT_REQUIRED``.
        """
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.trust(ctx)
        return ctx

    def issue(
        self,
        *dns_names: str,
        ips: Iterable[str] = (),
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
        common_name: str | None = None,
        san: bool = True,
        uri_sans: Iterable[str] = (),
        srv_names: Iterable[str] = (),
        key_usage_server: bool = True,
    ) -> LeafCert:
        """Issue a server certificate (or a deliberately broken one).

        Args:
            *dns_names: dNSName SANs, wildcards allowed (``*.example.test``).
            ips: iPAddress SANs (``"127.0.0.1"``, ``"::1"``).
            not_before: start of validity (future = not yet valid).
            not_after: end of validity (past = expired).
            common_name: subject CN; defaults to the first DNS name.
            san: ``False`` omits the SAN extension entirely (CN-only fixture).
            uri_sans: uniformResourceIdentifier SANs (``smtp://host``).
            srv_names: SRV-ID otherNames (``_submissions.example.test``).
            key_usage_server: ``False`` makes the leaf a client-only
                certificate (EKU clientAuth), which servers must not use.

        Returns:
            The leaf and its key.
        """
        names = _san_entries(dns_names, ips, uri_sans, srv_names) if san else []
        cn = common_name or (dns_names[0] if dns_names else "smtpsec test leaf")
        purpose = ExtendedKeyUsageOID.SERVER_AUTH if key_usage_server else None
        return self._sign_leaf(cn, names, not_before, not_after, purpose)

    def issue_client(self, name: str) -> LeafCert:
        """Issue a client certificate (EKU clientAuth) for ``name``.

        Args:
            name: an e-mail address (rfc822Name SAN) or a DNS name.

        Returns:
            The leaf and its key.
        """
        entry: x509.GeneralName = x509.RFC822Name(name) if "@" in name else x509.DNSName(name)
        return self._sign_leaf(name, [entry], None, None, None)

    @staticmethod
    def self_signed(*dns_names: str) -> LeafCert:
        """Return a leaf for ``dns_names`` that signed itself (no CA can vouch for it).

        Args:
            *dns_names: dNSName SANs.

        Returns:
            The self-signed leaf; its ``issuer_pem`` is the leaf itself.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        cn = dns_names[0] if dns_names else "smtpsec self-signed"
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        builder = _leaf_builder(
            name, name, key, ski, None, None, _san_entries(dns_names, (), (), ())
        )
        cert = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        ).sign(key, hashes.SHA256())
        pem = cert.public_bytes(serialization.Encoding.PEM)
        return LeafCert(cert_pem=pem, key_pem=_key_pem(key), issuer_pem=pem)

    def _sign_leaf(
        self,
        common_name: str,
        names: list[x509.GeneralName],
        not_before: datetime.datetime | None,
        not_after: datetime.datetime | None,
        purpose: ObjectIdentifier | None,
    ) -> LeafCert:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        ca_ski = self._cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        builder = _leaf_builder(
            subject, self._cert.subject, key, ca_ski.value, not_before, not_after, names
        )
        usage = [purpose] if purpose is not None else [ExtendedKeyUsageOID.CLIENT_AUTH]
        cert = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False).sign(
            self._key, hashes.SHA256()
        )
        return LeafCert(
            cert_pem=cert.public_bytes(serialization.Encoding.PEM),
            key_pem=_key_pem(key),
            issuer_pem=self.cert_pem,
            intermediates_pem=self._intermediates_pem(),
            root_pem=self.root_pem,
        )


# --------------------------------------------------------------------------- helpers


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _pin(cert: x509.Certificate) -> str:
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256/" + base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


def _ca_name(name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "smtpsec.testing"),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )


def _ca_builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer_ski: x509.SubjectKeyIdentifier,
    *,
    ten_years: bool,
) -> x509.CertificateBuilder:
    """A CA certificate with the extensions VERIFY_X509_STRICT requires of one."""
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _ONE_HOUR)
        .not_valid_after(now + (10 if ten_years else 5) * _ONE_YEAR)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski),
            critical=False,
        )
    )


def _validity(
    not_before: datetime.datetime | None, not_after: datetime.datetime | None
) -> tuple[datetime.datetime, datetime.datetime]:
    """Fill in a missing bound so the window is never empty or inverted."""
    now = _now()
    if not_before is None:
        not_before = now - _ONE_HOUR
        if not_after is not None and not_after <= not_before:
            not_before = not_after - _ONE_YEAR  # expired fixture
    if not_after is None:
        not_after = max(now, not_before) + _ONE_YEAR  # not-yet-valid stays valid a year
    return not_before, not_after


def _leaf_builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer_ski: x509.SubjectKeyIdentifier,
    not_before: datetime.datetime | None,
    not_after: datetime.datetime | None,
    names: list[x509.GeneralName],
) -> x509.CertificateBuilder:
    start, end = _validity(not_before, not_after)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski), False
        )
    )
    if names:
        # RFC 5280 §4.2.1.6: the SAN must be critical when the subject is empty;
        # ours never is, so keep it non-critical like public CAs do.
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder


def _san_entries(
    dns_names: Iterable[str],
    ips: Iterable[str],
    uri_sans: Iterable[str],
    srv_names: Iterable[str],
) -> list[x509.GeneralName]:
    entries: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    entries += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    entries += [x509.UniformResourceIdentifier(uri) for uri in uri_sans]
    entries += [x509.OtherName(SRV_NAME_OID, _ia5string_der(srv)) for srv in srv_names]
    return entries


def _ia5string_der(text: str) -> bytes:
    """DER-encode ``text`` as an ASN.1 IA5String (tag 0x16), as RFC 4985 requires."""
    body = text.encode("ascii")
    return b"\x16" + _der_length(len(body)) + body


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
