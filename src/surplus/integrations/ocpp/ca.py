"""surplus's own certificate authority for OCPP: it issues the client certificates of security
profile 3 (CN = the charge point's id) and the central system's server certificate.

The CA's private key lives in the vault (entry ``ocpp.ca.key``), never in a plain file; its
certificate is ``ocpp-ca.pem`` in the data directory, to be installed on chargers as the
trusted root. Keys are RSA 2048, which every charger handles (OCPP-J 1.6 caps the server
certificate there).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from surplus.security.vault import Secret, Vault

__all__ = ["CA_CERT_FILE", "CA_KEY_ENTRY", "CertificateAuthority", "IssuedCertificate"]

CA_CERT_FILE = "ocpp-ca.pem"
CA_KEY_ENTRY = "ocpp.ca.key"
ORGANIZATION = "surplus"  # the whitepaper's CpoName, in the O of every certificate issued


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """A certificate (PEM) and its private key (PEM, kept secret)."""

    cert_pem: bytes
    key_pem: Secret = field(repr=False)


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _key_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
        ]
    )


class CertificateAuthority:
    """An open CA: its certificate and, in memory only, its key."""

    def __init__(self, cert: x509.Certificate, key: rsa.RSAPrivateKey) -> None:
        """Use ``create``, ``load`` or ``ephemeral``."""
        self._cert = cert
        self._key = key

    @classmethod
    def ephemeral(cls, name: str = "surplus OCPP CA", days: int = 3650) -> CertificateAuthority:
        """A new CA kept nowhere: for tests and throwaway setups."""
        key = _new_key()
        now = dt.datetime.now(dt.UTC)
        public = key.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
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
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def create(cls, data_dir: Path, vault: Vault) -> CertificateAuthority:
        """A new CA for ``data_dir``; FileExistsError if it has one (its clients would lose
        their trust)."""
        path = data_dir / CA_CERT_FILE
        if path.exists() or CA_KEY_ENTRY in vault.names():
            raise FileExistsError(f"{path}: an OCPP CA exists already; it is left as it is")
        ca = cls.ephemeral()
        vault.set(CA_KEY_ENTRY, _key_pem(ca._key))
        try:
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            path.write_bytes(ca.cert_pem)
        except OSError:
            vault.delete(CA_KEY_ENTRY)  # a key without its certificate would block a retry
            raise
        return ca

    @classmethod
    def load(cls, data_dir: Path, vault: Vault) -> CertificateAuthority:
        """The CA of ``data_dir``; FileNotFoundError if there is none."""
        path = data_dir / CA_CERT_FILE
        if not path.exists():
            raise FileNotFoundError(f"{path}: no OCPP CA yet; create it with: surplus ca init")
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        key = serialization.load_pem_private_key(
            vault.get(CA_KEY_ENTRY).reveal().encode("ascii"), password=None
        )
        if not isinstance(key, rsa.RSAPrivateKey) or key.public_key() != cert.public_key():
            raise ValueError(f"{path}: the vault's CA key does not belong to this certificate")
        return cls(cert, key)

    @property
    def cert_pem(self) -> bytes:
        return self._cert.public_bytes(serialization.Encoding.PEM)

    @property
    def cert_der(self) -> bytes:
        return self._cert.public_bytes(serialization.Encoding.DER)

    def issue_client(self, charger_id: str, days: int = 1825) -> IssuedCertificate:
        """A client certificate for security profile 3: CN = ``charger_id``."""
        return self._issue(charger_id, days, ExtendedKeyUsageOID.CLIENT_AUTH, alt_names=None)

    def issue_server(self, hosts: Sequence[str], days: int = 825) -> IssuedCertificate:
        """A server certificate valid for ``hosts`` (names or IP addresses)."""
        alt: list[x509.GeneralName] = []
        for host in hosts:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                alt.append(x509.DNSName(host))
        return self._issue(hosts[0], days, ExtendedKeyUsageOID.SERVER_AUTH, alt_names=alt)

    def _issue(
        self,
        common_name: str,
        days: int,
        usage: x509.ObjectIdentifier,
        alt_names: list[x509.GeneralName] | None,
    ) -> IssuedCertificate:
        key = _new_key()
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        if alt_names:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        return IssuedCertificate(
            cert.public_bytes(serialization.Encoding.PEM), Secret(_key_pem(key))
        )

    def __repr__(self) -> str:
        return f"CertificateAuthority({self._cert.subject.rfc4514_string()!r})"
