"""The certificates and keys of one local cluster.

Every cluster gets its own CA so that a credential of one cluster is refused by
the others, exactly as between real clusters. Keys are ECDSA P-256: generating
them takes microseconds, and both kube-apiserver (serving, client CA, service
account signing) and kube-controller-manager accept them.

Nothing here is meant to be secure beyond this machine: certificates are valid
for ten years and private keys sit in the git-ignored state directory (0600).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=3650)
# The first address of --service-cluster-ip-range: in-cluster clients reach the
# API server through the `kubernetes` Service on it, so the serving cert names it.
SERVICE_IP = "10.96.0.1"
SERVING_DNS_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


@dataclass(frozen=True)
class KeyPair:
    """PEM files of one certificate and its private key."""

    cert: Path
    key: Path


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        parts.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(parts)


def _builder(
    subject: x509.Name, issuer: x509.Name, public: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    # Backdated a little so that a clock step between processes never makes a
    # fresh certificate "not yet valid".
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + VALIDITY)
    )


class ClusterPKI:
    """Creates and finds the PEM files of one cluster under `folder`."""

    def __init__(self, folder: Path, cluster: str) -> None:
        self.folder = folder
        self.cluster = cluster

    @property
    def ca(self) -> KeyPair:
        return KeyPair(self.folder / "ca.crt", self.folder / "ca.key")

    @property
    def serving(self) -> KeyPair:
        return KeyPair(self.folder / "apiserver.crt", self.folder / "apiserver.key")

    @property
    def service_account_key(self) -> Path:
        return self.folder / "sa.key"

    @property
    def service_account_public_key(self) -> Path:
        return self.folder / "sa.pub"

    def client(self, user: str) -> KeyPair:
        return KeyPair(self.folder / f"{user}.crt", self.folder / f"{user}.key")

    def create(self, clients: dict[str, tuple[str, str]]) -> None:
        """Write the CA, the serving pair, the service-account pair and one client
        pair per entry of `clients` (file stem -> (common name, organization))."""
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = _name(f"{self.cluster}-ca")
        ca_cert = (
            _builder(ca_name, ca_name, ca_key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(ca_key, hashes.SHA256())
        )
        _write(self.ca.cert, ca_cert.public_bytes(serialization.Encoding.PEM))
        _write(self.ca.key, _key_pem(ca_key), private=True)

        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in SERVING_DNS_NAMES]
        sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", SERVICE_IP)]
        self._issue(
            self.serving,
            ca_key,
            ca_name,
            _name("kube-apiserver"),
            ExtendedKeyUsageOID.SERVER_AUTH,
            x509.SubjectAlternativeName(sans),
        )
        for stem, (common_name, organization) in clients.items():
            self._issue(
                self.client(stem),
                ca_key,
                ca_name,
                _name(common_name, organization),
                ExtendedKeyUsageOID.CLIENT_AUTH,
            )

        sa_key = ec.generate_private_key(ec.SECP256R1())
        _write(self.service_account_key, _key_pem(sa_key), private=True)
        _write(
            self.service_account_public_key,
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        )

    def _issue(
        self,
        pair: KeyPair,
        ca_key: ec.EllipticCurvePrivateKey,
        ca_name: x509.Name,
        subject: x509.Name,
        usage: x509.ObjectIdentifier,
        sans: x509.SubjectAlternativeName | None = None,
    ) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            _builder(subject, ca_name, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if sans is not None:
            builder = builder.add_extension(sans, critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        _write(pair.cert, cert.public_bytes(serialization.Encoding.PEM))
        _write(pair.key, _key_pem(key), private=True)
