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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from components.node.control_plane import render_encryption_config
from components.node.pki import ENCRYPTION_CONFIG, SA_KEY, SA_PUB, Authority, CertSpec, leaf_uses
from components.workload.mysql.config import TLS_CA, TLS_CERT, TLS_KEY, TlsCertificate

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


Ca = tuple[ec.EllipticCurvePrivateKey, x509.Certificate]


def make_ca(common_name: str) -> Ca:
    """A self-signed ECDSA P-256 CA, valid for the test's few days (pulumi-tls's shape: CA, cert and CRL signing)."""
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(common_name)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + _VALID)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         key_cert_sign=True, crl_sign=True, encipher_only=False,
                                         decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def ca_pem(ca: Ca) -> str:
    return _pem_cert(ca[1])


def issue(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, subject: x509.Name,
          dns_names: Sequence[str], ip_addresses: Sequence[str], uses: Sequence[str]) -> Issued:
    """A leaf certificate from the CA with these SANs and pulumi-tls allowed_uses names."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    extended = [oid for use, oid in (("server_auth", ExtendedKeyUsageOID.SERVER_AUTH),
                                     ("client_auth", ExtendedKeyUsageOID.CLIENT_AUTH)) if use in uses]
    builder = (x509.CertificateBuilder().subject_name(subject)
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


def issue_named(ca: Ca, common_name: str, dns_names: Sequence[str], ip_addresses: Sequence[str],
                uses: Sequence[str]) -> Issued:
    return issue(ca[0], ca[1], _name(common_name), dns_names, ip_addresses, uses)


@dataclass
class IssuingPki:
    """One CA per authority, and every certificate issued from them so far."""

    cas: dict[Authority, Ca] = field(default_factory=dict)
    service_account: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    # The Secrets' encryption key at rest, as pulumi-random's RandomBytes gives it (32 bytes, base64).
    encryption_key: str = field(default_factory=lambda: base64.b64encode(os.urandom(32)).decode())

    def __post_init__(self) -> None:
        for authority in ("kubernetes", "etcd", "front-proxy"):
            self.cas[authority] = make_ca(f"test {authority} CA")

    def ca_pem(self, authority: Authority) -> str:
        return _pem_cert(self.cas[authority][1])

    def issue(self, spec: CertSpec, rename: Callable[[str], str] = lambda s: s,
              drop_sans: tuple[str, ...] = ()) -> Issued:
        """The certificate `spec` asks for, its IP and DNS SANs passed through `rename`; `drop_sans`
        leaves SANs out (a test's deliberately wrong certificate)."""
        ca_key, ca_cert = self.cas[spec.authority]
        dns = [rename(n) for n in spec.dns_names if n not in drop_sans]
        ips = [rename(ip) for ip in spec.ip_addresses if ip not in drop_sans]
        return issue(ca_key, ca_cert, _name(spec.common_name, spec.organization), dns, ips, leaf_uses(spec))

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


def write_tls_dir(directory: Path, ca: Ca, certificate: TlsCertificate, signer: Ca | None = None) -> Path:
    """The MySQL set's TLS Secret as its pods mount it (ca.crt, tls.crt, tls.key), for `certificate`
    (components/workload/mysql/config.tls_certificate). `signer` issues the leaf instead of `ca`: a
    test's certificate from another CA, next to the CA the set trusts."""
    directory.mkdir(parents=True, exist_ok=True)
    issued = issue_named(signer or ca, certificate.common_name, certificate.dns_names, certificate.ip_addresses,
                         certificate.uses)
    files = {TLS_CA: ca_pem(ca), TLS_CERT: issued.cert_pem, TLS_KEY: issued.key_pem}
    for name, pem in files.items():
        (directory / name).write_text(pem)
    (directory / TLS_KEY).chmod(0o600)
    return directory
