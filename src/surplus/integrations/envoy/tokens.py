"""The gateway's access token: its claims, where it is kept, and when it is renewed.

A token is a JWT the Enlighten cloud issues for one gateway serial (claim ``aud``) and one
role (claim ``enphaseUser``: ``owner`` tokens live a year, ``installer`` tokens 12 hours);
the gateway checks its signature offline. Its claims are read here without a JWT library:
surplus never checks the signature, the gateway does.

``EnvoyTokens`` holds the token as a ``Secret`` and keeps it in the vault under the device's
``token_secret``. It warns when the token nears its end (fewer than 30 days left, or less
than half its life for the short-lived installer tokens) and, where Enlighten credentials are
configured, fetches a new one then, or when the gateway refuses the one it has. A cloud that
is down is logged and the old token kept: the client carries on with it while it works.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from surplus.domain.errors import DeviceError, VaultError
from surplus.security.vault import Secret, Vault

__all__ = [
    "INSTALLER",
    "OWNER",
    "EnvoyTokens",
    "TokenClaims",
    "TokenCloud",
    "b64url_decode",
    "b64url_encode",
    "read_claims",
]

log = logging.getLogger(__name__)

OWNER = "owner"
INSTALLER = "installer"
RENEW_BEFORE = timedelta(days=30)  # what Home Assistant does; the owner gets a month's notice
RETRY_AFTER = timedelta(hours=1)  # between two renewals that are due, not refused
WARN_EVERY = timedelta(days=1)


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a token says about itself (unverified: the gateway verifies)."""

    role: str  # ``enphaseUser``: OWNER or INSTALLER
    expires_at: datetime  # ``exp``
    issued_at: datetime | None = None  # ``iat``
    audience: str | None = None  # ``aud``: the gateway serial (or "un-commissioned")
    token_id: str | None = None  # ``jti``

    def remaining(self, now: datetime) -> timedelta:
        return self.expires_at - now

    @property
    def renew_margin(self) -> timedelta:
        """How long before its end the token is renewed: 30 days, or half its life when
        that is shorter (an installer token lives 12 hours)."""
        if self.issued_at is None:
            return RENEW_BEFORE
        return min(RENEW_BEFORE, (self.expires_at - self.issued_at) / 2)


def read_claims(token: Secret | str) -> TokenClaims:
    """The claims of a JWT; ``ValueError`` (never quoting the token) when it is none."""
    value = token.reveal() if isinstance(token, Secret) else token
    parts = value.strip().split(".")
    if len(parts) != 3 or not all(parts):
        raise ValueError("not a token: a JWT is three base64url parts joined by dots")
    try:
        payload = json.loads(b64url_decode(parts[1]))
    except ValueError:
        raise ValueError("not a token: its payload is not base64url JSON") from None
    if not isinstance(payload, dict):
        raise ValueError("not a token: its payload is not a JSON object")
    exp, role = payload.get("exp"), payload.get("enphaseUser")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise ValueError("the token has no expiry (exp)")
    if not isinstance(role, str) or not role:
        raise ValueError("the token names no role (enphaseUser); is it an Enphase token?")
    iat, aud, jti = payload.get("iat"), payload.get("aud"), payload.get("jti")
    if isinstance(aud, list):
        aud = next((a for a in aud if isinstance(a, str)), None)
    return TokenClaims(
        role=role,
        expires_at=datetime.fromtimestamp(exp, UTC),
        issued_at=datetime.fromtimestamp(iat, UTC) if isinstance(iat, int | float) else None,
        audience=aud if isinstance(aud, str) else None,
        token_id=jti if isinstance(jti, str) else None,
    )


class TokenCloud(Protocol):
    """Where new tokens come from (``cloud.EnlightenCloud``)."""

    async def fetch_token(self, serial: str) -> tuple[Secret, TokenClaims]: ...


class EnvoyTokens:
    """The token of one gateway, kept in ``vault`` under ``entry`` (if given) and renewed from
    ``cloud`` (if given)."""

    def __init__(
        self,
        token: Secret | None,
        *,
        vault: Vault | None = None,
        entry: str | None = None,
        cloud: TokenCloud | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        retry_after: timedelta = RETRY_AFTER,
    ) -> None:
        self._token = token
        self._claims = _claims_or_none(token)
        self._vault = vault
        self._entry = entry
        self._cloud = cloud
        self._now = now
        self._retry_after = retry_after
        self._last_renewal: datetime | None = None
        self._last_warning: datetime | None = None

    def __repr__(self) -> str:
        return f"EnvoyTokens(entry={self._entry!r}, {self._describe_claims()})"

    @property
    def token(self) -> Secret | None:
        return self._token

    @property
    def claims(self) -> TokenClaims | None:
        """The token's claims; None without a token or when it cannot be read."""
        return self._claims

    @property
    def can_renew(self) -> bool:
        return self._cloud is not None

    def expired(self) -> bool:
        return self._claims is not None and self._claims.remaining(self._now()) <= timedelta(0)

    def describe(self) -> str:
        """The token for a message: where it is kept and its claims, never its value."""
        where = f"the token in vault entry {self._entry!r}" if self._entry else "the token"
        return f"{where} ({self._describe_claims()})"

    def _describe_claims(self) -> str:
        c = self._claims
        if c is None:
            return "none" if self._token is None else "unreadable"
        return (
            f"{c.role}, for {c.audience or 'any gateway'}, until {c.expires_at:%Y-%m-%d %H:%M} UTC"
        )

    async def renew(self, serial: str, why: str) -> bool:
        """Fetch a new token from the cloud; whether one was got. On failure (the cloud down,
        credentials refused) the old token stays and the failure is logged."""
        if self._cloud is None:
            return False
        self._last_renewal = self._now()
        log.info("fetching a new token for gateway %s from Enlighten: %s", serial, why)
        try:
            token, claims = await self._cloud.fetch_token(serial)
        except DeviceError as err:
            log.warning("no new token for gateway %s; keeping the old one: %s", serial, err)
            return False
        self._token, self._claims = token, claims
        if self._vault is not None and self._entry is not None:
            try:
                self._vault.set(self._entry, token)
            except VaultError as err:
                log.warning("the new token is used but not stored: %s", err)
        return True

    async def renew_if_due(self, serial: str) -> None:
        """Warn when the token nears its end, and renew it then if the cloud is configured
        (at most once per ``retry_after``)."""
        claims, now = self._claims, self._now()
        if claims is None or claims.remaining(now) >= claims.renew_margin:
            return
        if self._last_warning is None or now - self._last_warning >= WARN_EVERY:
            self._last_warning = now
            left = claims.remaining(now)
            log.warning(
                "%s %s%s",
                self.describe(),
                _span(left),
                "; renewing it from Enlighten"
                if self._cloud is not None
                else "; get a new one: surplus auth envoy <device> --config <file>",
            )
        if self._cloud is None:
            return
        if self._last_renewal is not None and now - self._last_renewal < self._retry_after:
            return
        await self.renew(serial, "it ends soon")


def _claims_or_none(token: Secret | None) -> TokenClaims | None:
    if token is None:
        return None
    try:
        return read_claims(token)
    except ValueError as err:
        log.warning("the gateway token cannot be read (%s); the gateway will judge it", err)
        return None


def _span(left: timedelta) -> str:
    if left <= timedelta(0):
        return "has expired"
    if left >= timedelta(days=2):
        return f"ends in {left.days} days"
    return f"ends in {left.total_seconds() / 3600:.1f} hours"
