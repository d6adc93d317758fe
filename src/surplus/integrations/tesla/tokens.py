"""The Fleet API's OAuth tokens: the authorization-code flow with PKCE, and refreshing.

The access token (8 h), the refresh token and the access token's expiry live as one JSON
entry in the vault (the device's ``token_secret``) and nowhere else on disk. ``TeslaTokens``
hands out the access token, refreshing it ``refresh_before_s`` before it expires and when the
API refused it. Refresh tokens rotate and are single-use (reference B), so:

- refreshes are serialized by a lock, and a caller whose refused token was already replaced
  by another caller's refresh gets the new one instead of refreshing again;
- the new pair is written to the vault before the access token is used; a vault that cannot
  be written keeps the pair pending and every call tries the write again before anything;
- a lost refresh answer is harmless: the old refresh token stays in the vault, and Tesla
  keeps the last used one valid for 24 h;
- ``login_required`` (an expired, cycled-out or revoked refresh token) raises
  ``AuthenticationError`` and is not sent again until the vault holds another refresh token
  (``surplus auth tesla`` stores one).

``pkce_pair``, ``authorize_url`` and ``RedirectListener`` serve ``surplus auth tesla``.
Secrets are held as ``Secret`` and revealed only into a request; they never appear in a log
record, a repr or an exception text.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import secrets
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from surplus.domain.errors import AuthenticationError, UnavailableError, VaultError
from surplus.security.vault import Secret, Vault

__all__ = [
    "BASE_SCOPES",
    "ENERGY_SCOPES",
    "RedirectListener",
    "TeslaTokens",
    "TokenSet",
    "authorize_url",
    "pkce_pair",
    "redirect_listener",
    "scopes_for",
]

log = logging.getLogger(__name__)

BASE_SCOPES = ("openid", "offline_access", "vehicle_device_data", "vehicle_charging_cmds")
ENERGY_SCOPES = ("energy_device_data", "energy_cmds")
REFRESH_BEFORE_S = 600.0
REAUTH = "run: surplus auth tesla <device> --config <file>"


def scopes_for(energy_site: bool) -> str:
    """The smallest scopes surplus needs: energy ones only when a site is configured."""
    return " ".join(BASE_SCOPES + (ENERGY_SCOPES if energy_site else ()))


def pkce_pair() -> tuple[Secret, str]:
    """A PKCE code verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return Secret(verifier), base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize_url(
    auth_url: str, client_id: str, redirect_uri: str, scope: str, state: str, challenge: str
) -> str:
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": scope,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "prompt_missing_scopes": "true",
        }
    )
    return f"{auth_url}/oauth2/v3/authorize?{query}"


@dataclass(frozen=True, slots=True)
class TokenSet:
    """One vault entry: the tokens and when the access token expires."""

    access: Secret = field(repr=False)
    refresh: Secret = field(repr=False)
    expires_at: datetime
    scope: str = ""

    def dump(self) -> str:
        return json.dumps(
            {
                "access_token": self.access.reveal(),
                "refresh_token": self.refresh.reveal(),
                "expires_at": self.expires_at.isoformat(),
                "scope": self.scope,
            }
        )

    @classmethod
    def load(cls, text: str) -> TokenSet:
        try:
            doc = json.loads(text)
            return cls(
                Secret(str(doc["access_token"])),
                Secret(str(doc["refresh_token"])),
                datetime.fromisoformat(str(doc["expires_at"])),
                str(doc.get("scope", "")),
            )
        except (ValueError, KeyError, TypeError):
            raise ValueError(
                "not a Tesla token entry (JSON with access and refresh tokens)"
            ) from None


class TeslaTokens:
    """The tokens of one Tesla account, kept in ``vault`` under ``entry``."""

    def __init__(
        self,
        vault: Vault,
        entry: str,
        *,
        client_id: str,
        auth_url: str,
        client_secret: Secret | None = None,
        verify: ssl.SSLContext | bool = True,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        refresh_before_s: float = REFRESH_BEFORE_S,
        timeout_s: float = 10.0,
    ) -> None:
        self._vault = vault
        self._entry = entry
        self._client_id = client_id
        self._client_secret = client_secret
        self._auth_url = auth_url.rstrip("/")
        self._verify = verify
        self._now = now
        self._refresh_before = timedelta(seconds=refresh_before_s)
        self._timeout_s = timeout_s
        self._lock = asyncio.Lock()
        self._tokens: TokenSet | None = None
        self._pending: TokenSet | None = None  # refreshed, not yet in the vault
        self._refused: Secret | None = None  # the refresh token answered login_required
        self.refreshes = 0

    def __repr__(self) -> str:
        until = self._tokens.expires_at.isoformat() if self._tokens else "unknown"
        return f"TeslaTokens(entry={self._entry!r}, client_id={self._client_id!r}, until={until})"

    @property
    def expires_at(self) -> datetime | None:
        return self._tokens.expires_at if self._tokens else None

    async def access_token(self) -> Secret:
        """A valid access token, refreshed first when it expires within the margin."""
        async with self._lock:
            tokens = self._current()
            if self._now() >= tokens.expires_at - self._refresh_before:
                tokens = await self._refresh(tokens, "it expires soon")
            return tokens.access

    async def refused(self, access: Secret) -> Secret:
        """The API refused ``access`` (401): a new access token, unless another caller
        refreshed since ``access`` was handed out (then that caller's)."""
        async with self._lock:
            tokens = self._current()
            if tokens.access != access:
                return tokens.access
            return (await self._refresh(tokens, "the API refused the access token")).access

    async def exchange_code(self, code: str, verifier: Secret, redirect_uri: str) -> TokenSet:
        """Step 2 of the authorization-code flow; the tokens are stored."""
        form = {
            "grant_type": "authorization_code",
            "client_id": self._client_id,
            "code": code,
            "code_verifier": verifier.reveal(),
            "redirect_uri": redirect_uri,
        }
        async with self._lock:
            return await self._grant(form)

    async def adopt(self, refresh: Secret) -> TokenSet:
        """A pasted refresh token: exchanged at once (it rotates) and the pair stored."""
        async with self._lock:
            return await self._grant(self._refresh_form(refresh))

    # --- inside the lock ---

    def _current(self) -> TokenSet:
        if self._pending is not None:
            self._store(self._pending)
        if self._tokens is None or self._refused is not None:
            stored = self._read_vault()
            if self._refused is not None and stored.refresh == self._refused:
                raise AuthenticationError(
                    f"Tesla needs re-authentication (the refresh token was refused); {REAUTH}"
                )
            self._tokens, self._refused = stored, None
        return self._tokens

    def _read_vault(self) -> TokenSet:
        try:
            text = self._vault.get(self._entry).reveal()
        except VaultError as e:
            raise AuthenticationError(
                f"Tesla needs re-authentication: no tokens in vault entry {self._entry!r}"
                f" ({e.message}); {REAUTH}"
            ) from None
        try:
            return TokenSet.load(text)
        except ValueError as e:
            raise AuthenticationError(f"vault entry {self._entry!r}: {e}; {REAUTH}") from None

    async def _refresh(self, tokens: TokenSet, why: str) -> TokenSet:
        log.info("refreshing the Tesla access token (vault entry %s): %s", self._entry, why)
        try:
            return await self._grant(self._refresh_form(tokens.refresh))
        except AuthenticationError:
            self._refused = tokens.refresh
            raise

    def _refresh_form(self, refresh: Secret) -> dict[str, str]:
        return {
            "grant_type": "refresh_token",
            "client_id": self._client_id,
            "refresh_token": refresh.reveal(),
        }

    async def _grant(self, form: dict[str, str]) -> TokenSet:
        if self._client_secret is not None and form["grant_type"] == "authorization_code":
            form = {**form, "client_secret": self._client_secret.reveal()}
        url = f"{self._auth_url}/oauth2/v3/token"
        try:
            async with httpx.AsyncClient(verify=self._verify, timeout=self._timeout_s) as http:
                response = await http.post(url, data=form)
        except httpx.HTTPError as e:
            raise UnavailableError(
                f"the Tesla token endpoint {url} did not answer ({type(e).__name__})"
            ) from None
        if response.status_code != 200:
            error = _error_of(response)
            if response.status_code in (400, 401) and error in (
                "login_required",
                "invalid_grant",
                "invalid_auth_code",
                "invalid_client",
                "unauthorized_client",
            ):
                raise AuthenticationError(f"Tesla needs re-authentication ({error}); {REAUTH}")
            raise UnavailableError(
                f"the Tesla token endpoint answered {response.status_code} {error or ''}".strip()
            )
        try:
            doc = response.json()
            tokens = TokenSet(
                Secret(str(doc["access_token"])),
                Secret(str(doc["refresh_token"])),
                self._now() + timedelta(seconds=float(doc["expires_in"])),
                str(doc.get("scope", "")),
            )
        except (ValueError, KeyError, TypeError):
            raise UnavailableError("the Tesla token endpoint answered no tokens") from None
        self.refreshes += 1
        self._pending = tokens
        self._store(tokens)
        return tokens

    def _store(self, tokens: TokenSet) -> None:
        """Write ``tokens`` to the vault; until that works they are not used."""
        try:
            self._vault.set(self._entry, tokens.dump())
        except VaultError as e:
            raise UnavailableError(
                f"the new Tesla tokens cannot be stored ({e.message}); not using them until"
                " they are"
            ) from None
        self._tokens, self._pending, self._refused = tokens, None, None


def _error_of(response: httpx.Response) -> str | None:
    try:
        doc: Any = response.json()
    except ValueError:
        return None
    return str(doc.get("error")) if isinstance(doc, dict) and doc.get("error") else None


@dataclass(slots=True)
class RedirectListener:
    """A one-shot HTTP listener on 127.0.0.1 catching the OAuth redirect."""

    redirect_uri: str
    _answer: asyncio.Future[dict[str, str]] = field(repr=False)

    async def wait(self, state: str, timeout_s: float) -> str:
        """The authorization code of the redirect carrying ``state``."""
        try:
            async with asyncio.timeout(timeout_s):
                query = await self._answer
        except TimeoutError:
            raise AuthenticationError(
                f"no authorization arrived within {timeout_s:.0f} s"
            ) from None
        if query.get("state") != state:
            raise AuthenticationError("the redirect carried another state: not our request")
        if "code" not in query:
            raise AuthenticationError(
                f"Tesla refused the authorization ({query.get('error', 'no code')})"
            )
        return query["code"]


@contextlib.asynccontextmanager
async def redirect_listener(
    port: int = 0, path: str = "/callback"
) -> AsyncIterator[RedirectListener]:
    """Listen on ``127.0.0.1:port`` for the browser's redirect to ``path``."""
    answer: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = (await reader.readline()).decode("latin-1").split()
            target = urlsplit(line[1]) if len(line) >= 2 else None
            if target is not None and target.path == path and not answer.done():
                query = {k: v[0] for k, v in parse_qs(target.query).items()}
                answer.set_result(query)
                body = b"surplus: authorization received; you can close this page."
                status = b"200 OK"
            else:
                body, status = b"not found", b"404 Not Found"
            writer.write(
                b"HTTP/1.1 "
                + status
                + b"\r\nContent-Type: text/plain\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\nConnection: close\r\n\r\n"
                + body
            )
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    bound = server.sockets[0].getsockname()[1]
    try:
        yield RedirectListener(f"http://127.0.0.1:{bound}{path}", answer)
    finally:
        server.close()
        await server.wait_closed()
