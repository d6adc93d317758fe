"""TLS for OCPP security profiles 2 and 3, both ends: the central system's server contexts
(profile 3 also asks for a client certificate issued by our CA) and a charger's client
context, plus the client certificate's CN that names the charger.

As the whitepaper asks: TLS 1.2 or newer, AES-GCM suites, no compression.
"""

from __future__ import annotations

import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from surplus.integrations.ocpp.ca import IssuedCertificate

__all__ = ["client_context", "peer_common_name", "server_context"]

_CIPHERS = "ECDHE+AESGCM:!aNULL"


def _harden(ctx: ssl.SSLContext) -> ssl.SSLContext:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION
    return ctx


def _load_chain(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:  # load_cert_chain reads only files
        cert, key = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        cert.write_bytes(cert_pem)
        key.write_text(key_pem)
        ctx.load_cert_chain(cert, key)


def server_context(
    server: IssuedCertificate, *, client_ca_pem: bytes | None = None
) -> ssl.SSLContext:
    """The server side of profile 2, or of profile 3 when ``client_ca_pem`` is given: then a
    client without a certificate issued by that CA fails the TLS handshake."""
    ctx = _harden(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    _load_chain(ctx, server.cert_pem, server.key_pem.reveal())
    if client_ca_pem is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=client_ca_pem.decode("ascii"))
    return ctx


def client_context(
    ca_file: Path | None = None,
    *,
    cert_file: Path | None = None,
    key_file: Path | None = None,
) -> ssl.SSLContext:
    """A charger's side: trust ``ca_file`` (else the system's roots) and, for profile 3,
    present ``cert_file`` with ``key_file``. The server's name is checked."""
    ctx = _harden(ssl.create_default_context(cafile=None if ca_file is None else str(ca_file)))
    if cert_file is not None:
        ctx.load_cert_chain(cert_file, key_file)
    return ctx


def peer_common_name(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str | None:
    """The CN of the verified client certificate on ``ssl_object``, if there is one."""
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    names = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None
