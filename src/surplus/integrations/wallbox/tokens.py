"""The Wallbox account's tokens: the access JWT, the refresh token, their expiries, and
their place in the vault.

``ttl`` and ``refresh_token_ttl`` are absolute expiry times in epoch milliseconds on the
cloud's clock. The access JWT's ``iat`` (also the cloud's clock) gives how far that clock is
from ours, so expiries are turned into local time: a skewed clock neither uses a dead token
nor renews too early. The JWT carries the account's email: every token is a ``Secret``,
and nothing here prints one.

Kept in the vault (one entry, JSON) so a restart reuses the session instead of signing in
again: each sign-in takes one of the account's few sessions.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from surplus.domain.errors import VaultError
from surplus.integrations.envoy.tokens import b64url_decode
from surplus.security.vault import Secret, Vault

__all__ = ["WallboxTokens", "clock_skew_s", "load_tokens", "store_tokens"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WallboxTokens:
    """Tokens with their expiries in local epoch seconds (None: unknown)."""

    access: Secret = field(repr=False)
    access_expires: float
    refresh: Secret | None = field(default=None, repr=False)
    refresh_expires: float | None = None

    def access_valid(self, now: float, margin_s: float) -> bool:
        return now < self.access_expires - margin_s

    def refresh_valid(self, now: float) -> bool:
        return self.refresh is not None and (
            self.refresh_expires is None or now < self.refresh_expires
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "access": self.access.reveal(),
                "access_expires": self.access_expires,
                "refresh": None if self.refresh is None else self.refresh.reveal(),
                "refresh_expires": self.refresh_expires,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> WallboxTokens:
        """``ValueError`` (never quoting the text) when it is not what ``to_json`` wrote."""
        try:
            doc: Any = json.loads(text)
            refresh = doc.get("refresh")
            return cls(
                Secret(str(doc["access"])),
                float(doc["access_expires"]),
                None if refresh is None else Secret(str(refresh)),
                None if doc.get("refresh_expires") is None else float(doc["refresh_expires"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ValueError("the stored Wallbox tokens cannot be read") from None


def clock_skew_s(access: Secret, now: float) -> float:
    """How far the cloud's clock is ahead of ours, by the token's ``iat`` (0 if unknown)."""
    parts = access.reveal().split(".")
    if len(parts) != 3:
        return 0.0
    try:
        iat = json.loads(b64url_decode(parts[1])).get("iat")
    except (ValueError, AttributeError):
        return 0.0
    if not isinstance(iat, int | float) or isinstance(iat, bool):
        return 0.0
    return float(iat) - now


def load_tokens(vault: Vault | None, entry: str | None) -> WallboxTokens | None:
    """The tokens kept under ``entry``; None when there are none (or they cannot be read)."""
    if vault is None or entry is None or entry not in vault.names():
        return None
    try:
        return WallboxTokens.from_json(vault.get(entry).reveal())
    except (VaultError, ValueError) as err:
        log.warning("the Wallbox tokens in vault entry %r are not used: %s", entry, err)
        return None


def store_tokens(vault: Vault | None, entry: str | None, tokens: WallboxTokens) -> None:
    if vault is None or entry is None:
        return
    try:
        vault.set(entry, tokens.to_json())
    except VaultError as err:
        log.warning("the new Wallbox tokens are used but not stored: %s", err)
