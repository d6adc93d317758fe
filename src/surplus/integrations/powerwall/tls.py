"""The gateway's self-signed TLS certificate: SHA-256 fingerprints (for pinning), the
certificate a server presents (read before trusting it) and, for the simulator, a freshly
generated certificate like the one a gateway presents.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import ipaddress
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from surplus.domain.errors import UnavailableError

# The names a gateway accepts as TLS SNI; any other name aborts the handshake.
GATEWAY_NAMES = ("powerwall", "teg", "powerpack")


def fingerprint(der: bytes) -> str:
    """The SHA-256 fingerprint of a DER certificate: lowercase hex, colon-separated pairs."""
    digest = hashlib.sha256(der).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def normalize_fingerprint(text: str) -> str:
    """``text`` (hex, with or without colons, any case) in the form ``fingerprint`` gives."""
    digits = text.replace(":", "").replace(" ", "").lower()
    if len(digits) != 64 or any(c not in "0123456789abcdef" for c in digits):
        raise ValueError("a SHA-256 fingerprint is 64 hex digits (colons allowed)")
    return ":".join(digits[i : i + 2] for i in range(0, 64, 2))


@dataclass(frozen=True, slots=True)
class SelfSigned:
    """A certificate and its private key, both PEM."""

    cert_pem: bytes
    key_pem: bytes
    der: bytes

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.der)


def self_signed(
    ip: str = "127.0.0.1", days: int = 3650, *, names: Sequence[str] = GATEWAY_NAMES
) -> SelfSigned:
    """A new key and a certificate valid for the DNS ``names`` (the first is its CN; by
    default a Powerwall gateway's: CN ``powerwall``) and ``ip``."""
    if not names:
        raise ValueError("a certificate needs at least one DNS name")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = dt.datetime.now(dt.UTC)
    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    alt_names.append(x509.IPAddress(ipaddress.ip_address(ip)))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return SelfSigned(
        cert.public_bytes(serialization.Encoding.PEM),
        key_pem,
        cert.public_bytes(serialization.Encoding.DER),
    )


async def presented_certificate(host: str, port: int, *, sni: str, timeout_s: float) -> bytes:
    """The DER certificate the server at ``host:port`` presents for ``sni``, read without
    trusting it: the caller compares its fingerprint with the pinned one."""
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    probe.check_hostname = False
    probe.verify_mode = ssl.CERT_NONE
    where = f"https://{host}:{port}"
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(host, port, ssl=probe, server_hostname=sni)
    except (OSError, TimeoutError) as e:
        raise UnavailableError(f"cannot reach {where} ({e or 'no answer'})") from e
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
    if not der:
        raise UnavailableError(f"{where} presented no certificate")
    return bytes(der)


def trusting_only(der: bytes) -> ssl.SSLContext:
    """A TLS context that accepts exactly this certificate, whatever name it carries."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # the pin stands in for the name: the gateway's is not its URL's
    ctx.load_verify_locations(cadata=der)
    return ctx


def certificate_refused(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) is a refused certificate."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
