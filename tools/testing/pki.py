"""Real certificates for the program's PKI plan (components/node/pki.py), made with `cryptography`.

The preview's PEMs are placeholders (pulumi-tls does not run under mocks). For a control plane on
loopback the tests issue, for real, every certificate a node's plan asks for: the same CA per
authority, the same subject (CN and O), SANs and key usages (node.pki.leaf_uses), ECDSA P-256 as
pulumi-tls is told to use, with the addresses moved by `rename` (a node's private IP to its
loopback stand-in) so that what the daemons dial still matches what the certificates name.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from components.node.control_plane import render_encryption_config
from components.node.pki import ENCRYPTION_CONFIG, SA_KEY, SA_PUB, Authority, CertSpec, leaf_uses

_VALID = datetime.timedelta(days=2)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _pem_cert(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


@dataclass
class Issued:
    cert_pem: str
    key_pem: str


@dataclass
class IssuingPki:
    """One CA per authority, and every certificate issued from them so far."""

    cas: dict[Authority, tuple[ec.EllipticCurvePrivateKey, x509.Certificate]] = field(default_factory=dict)
    service_account: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    # The Secrets' encryption key at rest, as pulumi-random's RandomBytes gives it (32 bytes, base64).
    encryption_key: str = field(default_factory=lambda: base64.b64encode(os.urandom(32)).decode())

    def __post_init__(self) -> None:
        now = datetime.datetime.now(datetime.UTC)
        for authority in ("kubernetes", "etcd", "front-proxy"):
            key = ec.generate_private_key(ec.SECP256R1())
            subject = _name(f"test {authority} CA")
            cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                    .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                    .not_valid_after(now + _VALID)
                    .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                    .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                                 key_encipherment=False, data_encipherment=False, key_agreement=False,
                                                 key_cert_sign=True, crl_sign=True, encipher_only=False,
                                                 decipher_only=False), critical=True)
                    .sign(key, hashes.SHA256()))
            self.cas[authority] = (key, cert)

    def ca_pem(self, authority: Authority) -> str:
        return _pem_cert(self.cas[authority][1])

    def issue(self, spec: CertSpec, rename: Callable[[str], str] = lambda s: s,
              drop_sans: tuple[str, ...] = ()) -> Issued:
        """The certificate `spec` asks for, its IP and DNS SANs passed through `rename`; `drop_sans`
        leaves SANs out (a test's deliberately wrong certificate)."""
        ca_key, ca_cert = self.cas[spec.authority]
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        sans: list[x509.GeneralName] = [x509.DNSName(rename(n)) for n in spec.dns_names if n not in drop_sans]
        sans += [x509.IPAddress(ipaddress.ip_address(rename(ip))) for ip in spec.ip_addresses if ip not in drop_sans]
        uses = leaf_uses(spec)
        extended = [oid for use, oid in (("server_auth", ExtendedKeyUsageOID.SERVER_AUTH),
                                         ("client_auth", ExtendedKeyUsageOID.CLIENT_AUTH)) if use in uses]
        builder = (x509.CertificateBuilder().subject_name(_name(spec.common_name, spec.organization))
                   .issuer_name(ca_cert.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + _VALID)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature="digital_signature" in uses, content_commitment=False,
                                                key_encipherment="key_encipherment" in uses, data_encipherment=False,
                                                key_agreement=False, key_cert_sign=False, crl_sign=False,
                                                encipher_only=False, decipher_only=False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage(extended), critical=False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return Issued(_pem_cert(builder.sign(ca_key, hashes.SHA256())), _pem_key(key))

    def service_account_pems(self) -> tuple[str, str]:
        """(private key, public key) PEMs of the shared service-account signing key."""
        public = self.service_account.public_key().public_bytes(serialization.Encoding.PEM,
                                                                serialization.PublicFormat.SubjectPublicKeyInfo)
        return _pem_key(self.service_account), public.decode()


def node_files(pki: IssuingPki, certs: tuple[CertSpec, ...], ca_paths: Mapping[str, Authority], service_account: bool,
               rename: Callable[[str], str] = lambda s: s,
               drop_sans: Mapping[str, tuple[str, ...]] | None = None,
               encryption_config: bool = False) -> dict[str, str]:
    """path -> PEM of every key-material file a node's plan delivers (what atomic-fetch-pki writes)."""
    files = {path: pki.ca_pem(authority) for path, authority in ca_paths.items()}
    for spec in certs:
        issued = pki.issue(spec, rename, (drop_sans or {}).get(spec.identity, ()))
        files[spec.cert_path] = issued.cert_pem
        files[spec.key_path] = issued.key_pem
    if service_account:
        files[SA_KEY], files[SA_PUB] = pki.service_account_pems()
    if encryption_config:
        files[ENCRYPTION_CONFIG] = render_encryption_config(pki.encryption_key)
    return files
