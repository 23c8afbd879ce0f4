"""A throwaway certificate authority and a server certificate for localhost, made in the test.

`TestPki.create(directory)` writes ``ca.pem``, ``server.pem`` (the leaf, then the CA) and
``server.key`` (unencrypted PKCS#8) with the `cryptography` package; nothing is trusted by
the system, so only clients given ``ca.pem`` (or the leaf's SPKI pin) accept the server.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import ipaddress
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclasses.dataclass(frozen=True)
class TestPki:
    """Paths of the CA certificate, the server's chain and key; the leaf's SPKI pin."""

    __test__ = False  # not a pytest test class

    ca: Path
    cert: Path
    key: Path
    spki_sha256: str
    """base64 SHA-256 of the leaf's public key (Chromium's --ignore-certificate-errors-spki-list)."""

    @classmethod
    def create(cls, directory: Path, names: tuple[str, ...] = LOCAL_NAMES) -> TestPki:
        """A CA and a leaf for ``names`` (DNS names and IP addresses), valid for a day."""
        now = datetime.datetime.now(datetime.timezone.utc)
        start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(_name("metered-realtime test CA"))
            .issuer_name(_name("metered-realtime test CA"))
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
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
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        leaf_key = ec.generate_private_key(ec.SECP256R1())
        alt_names: list[x509.GeneralName] = []
        for name in names:
            try:
                alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alt_names.append(x509.DNSName(name))
        leaf = (
            x509.CertificateBuilder()
            .subject_name(_name(names[0]))
            .issuer_name(ca_cert.subject)
            .public_key(leaf_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
        pki = cls(
            ca=directory / "ca.pem",
            cert=directory / "server.pem",
            key=directory / "server.key",
            spki_sha256=base64.b64encode(
                hashlib.sha256(
                    leaf_key.public_key().public_bytes(
                        serialization.Encoding.DER,
                        serialization.PublicFormat.SubjectPublicKeyInfo,
                    )
                ).digest()
            ).decode(),
        )
        pki.ca.write_bytes(ca_pem)
        pki.cert.write_bytes(leaf.public_bytes(serialization.Encoding.PEM) + ca_pem)
        pki.key.write_bytes(_pem_key(leaf_key))
        pki.key.chmod(0o600)
        return pki

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this CA only (hostname checked)."""
        return ssl.create_default_context(cafile=str(self.ca))

    def other_key(self) -> Path:
        """A key file that does not belong to the certificate (for the mismatch error)."""
        path = self.key.with_name("other.key")
        path.write_bytes(_pem_key(ec.generate_private_key(ec.SECP256R1())))
        return path
