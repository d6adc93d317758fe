"""The simulated Enphase token authority: real JWTs, signed ES256 with a key of its own.

The simulated cloud issues tokens with it and the simulated gateway verifies them with the
matching public key, as a real gateway does offline: the signature, the expiry (``exp``) and
the audience (``aud``, the gateway serial). A token signed by any other key is refused.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from surplus.integrations.envoy.tokens import (
    INSTALLER,
    OWNER,
    TokenClaims,
    b64url_decode,
    b64url_encode,
    read_claims,
)

__all__ = ["LIFETIMES", "TokenAuthority", "TokenRefused"]

LIFETIMES = {OWNER: timedelta(days=365), INSTALLER: timedelta(hours=12)}
_HEADER = {"kid": "surplus-sim", "typ": "JWT", "alg": "ES256"}
_COORDINATE_BYTES = 32  # P-256


class TokenRefused(Exception):
    """Why the gateway refuses a token (for the simulator's own records, never sent)."""


class TokenAuthority:
    """Signs tokens for gateways and verifies them as a gateway would."""

    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())

    def issue(
        self,
        *,
        serial: str,
        role: str,
        username: str,
        now: datetime,
        lifetime: timedelta | None = None,
    ) -> str:
        """A token for gateway ``serial``; by default it lives as long as the role's do."""
        if role not in LIFETIMES:
            raise ValueError(f"role must be one of {sorted(LIFETIMES)}, not {role!r}")
        life = lifetime if lifetime is not None else LIFETIMES[role]
        issued = int(now.timestamp())
        payload = {
            "aud": serial,
            "iss": "Entrez",
            "enphaseUser": role,
            "exp": issued + int(life.total_seconds()),
            "iat": issued,
            "jti": str(uuid.uuid4()),
            "username": username,
        }
        signing_input = f"{_part(_HEADER)}.{_part(payload)}"
        der = self._key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        raw = r.to_bytes(_COORDINATE_BYTES, "big") + s.to_bytes(_COORDINATE_BYTES, "big")
        return f"{signing_input}.{b64url_encode(raw)}"

    def verify(self, token: str, *, serial: str, now: datetime) -> TokenClaims:
        """The claims of a token the gateway ``serial`` accepts at ``now``."""
        try:
            claims = read_claims(token)
            header_b64, payload_b64, signature_b64 = token.split(".")
            header = json.loads(b64url_decode(header_b64))
            raw = b64url_decode(signature_b64)
        except ValueError as e:
            raise TokenRefused(f"malformed: {e}") from None
        if not isinstance(header, dict) or header.get("alg") != "ES256":
            raise TokenRefused("not signed ES256")
        if len(raw) != 2 * _COORDINATE_BYTES:
            raise TokenRefused("a signature of the wrong length")
        r = int.from_bytes(raw[:_COORDINATE_BYTES], "big")
        s = int.from_bytes(raw[_COORDINATE_BYTES:], "big")
        try:
            self._key.public_key().verify(
                encode_dss_signature(r, s),
                f"{header_b64}.{payload_b64}".encode("ascii"),
                ec.ECDSA(hashes.SHA256()),
            )
        except InvalidSignature:
            raise TokenRefused("signed by another key") from None
        if claims.expires_at <= now:
            raise TokenRefused("expired")
        if claims.audience != serial:
            raise TokenRefused(f"for gateway {claims.audience}")
        return claims


def _part(obj: Mapping[str, object]) -> str:
    return b64url_encode(json.dumps(obj, separators=(",", ":")).encode())
