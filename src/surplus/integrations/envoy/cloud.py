"""The Enlighten cloud, as far as a gateway token needs it: log in, then fetch the token for
one gateway serial.

Two routes give the token. The newer one (entrez ``POST /tokens``, JSON in, the JWT as plain
text out) comes first; where it fails, the older ``GET /entrez-auth-token?serial_num=`` on
Enlighten, sent with the login's session cookie, answers JSON. An account with multi-factor
authentication gets no ``session_id`` from the login: no token can be fetched for it, and the
owner pastes one instead (``surplus auth envoy ... --token-stdin``).

Errors: the cloud unreachable, timing out or answering 5xx raises ``UnavailableError`` (the
caller keeps the token it has); refused credentials or an MFA account raise
``AuthenticationError``. Neither the password, the session nor a token appears in a message.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import httpx
from pydantic import ValidationError

from surplus.domain.errors import AuthenticationError, DeviceError, UnavailableError
from surplus.integrations.envoy import models as m
from surplus.integrations.envoy.tokens import TokenClaims, read_claims
from surplus.security.vault import Secret

__all__ = ["ENLIGHTEN_URL", "ENTREZ_URL", "EnlightenCloud", "MfaRequiredError"]

log = logging.getLogger(__name__)

ENLIGHTEN_URL = "https://enlighten.enphaseenergy.com"
ENTREZ_URL = "https://entrez.enphaseenergy.com"


class MfaRequiredError(AuthenticationError):
    """The Enlighten account has multi-factor authentication on: no token by password."""


class EnlightenCloud:
    """One Enlighten account; ``fetch_token`` logs in afresh each time (tokens are rare)."""

    def __init__(
        self,
        email: str,
        password: Secret,
        *,
        enlighten_url: str = ENLIGHTEN_URL,
        entrez_url: str = ENTREZ_URL,
        ca_file: Path | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self.email = email
        self._password = password
        self._enlighten = enlighten_url.rstrip("/")
        self._entrez = entrez_url.rstrip("/")
        self._ca_file = ca_file
        self._timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"EnlightenCloud({self._enlighten!r}, {self._entrez!r})"

    async def fetch_token(self, serial: str) -> tuple[Secret, TokenClaims]:
        """A new token for the gateway ``serial`` and its claims."""
        async with httpx.AsyncClient(
            verify=self._tls(), timeout=self._timeout_s, follow_redirects=False
        ) as http:
            session = await self._login(http)
            try:
                token = await self._token_by_entrez(http, session, serial)
            except DeviceError as err:
                log.info("%s; trying the older entrez-auth-token route", err)
                token = await self._token_by_enlighten(http, serial)
        claims = _claims(token, serial)
        log.info(
            "got a %s token for gateway %s from Enlighten, valid until %s",
            claims.role,
            serial,
            f"{claims.expires_at:%Y-%m-%d %H:%M} UTC",
        )
        return token, claims

    def _tls(self) -> ssl.SSLContext | bool:
        if self._ca_file is None:
            return True
        try:
            return ssl.create_default_context(cafile=str(self._ca_file))
        except (OSError, ssl.SSLError) as e:
            raise UnavailableError(
                f"the cloud CA file {self._ca_file} cannot be used ({e}); check cloud_ca_file"
            ) from None

    async def _login(self, http: httpx.AsyncClient) -> Secret:
        url = f"{self._enlighten}/login/login.json"
        form = {"user[email]": self.email, "user[password]": self._password.reveal()}
        response = await _send(http, "POST", url, data=form)
        if response.status_code in (401, 403):
            raise AuthenticationError(
                f"Enlighten refused the login of {self.email} ({response.status_code}); check"
                " enlighten_email and the password in the vault"
            )
        _raise_for(response, "the Enlighten login")
        try:
            login = m.LoginResponse.model_validate_json(response.content)
        except ValidationError:
            raise UnavailableError(
                "the Enlighten login answered something else than JSON"
            ) from None
        if not login.session_id:
            raise MfaRequiredError(
                f"Enlighten gave no session for {self.email}: multi-factor authentication is on"
                " for this account, so no token can be fetched with its password; get a token"
                " at https://entrez.enphaseenergy.com and paste it:"
                " surplus auth envoy <device> --config <file> --token-stdin"
            )
        return Secret(login.session_id)

    async def _token_by_entrez(
        self, http: httpx.AsyncClient, session: Secret, serial: str
    ) -> Secret:
        body = m.TokenRequest(session_id=session.reveal(), serial_num=serial, username=self.email)
        response = await _send(http, "POST", f"{self._entrez}/tokens", json=body.model_dump())
        _raise_for(response, "entrez POST /tokens")
        token = response.text.strip()
        if token.count(".") != 2:
            raise UnavailableError("entrez POST /tokens answered something else than a token")
        return Secret(token)

    async def _token_by_enlighten(self, http: httpx.AsyncClient, serial: str) -> Secret:
        # The session cookie of the login is in ``http``'s jar and goes along.
        url = f"{self._enlighten}/entrez-auth-token"
        response = await _send(http, "GET", url, params={"serial_num": serial})
        _raise_for(response, "Enlighten GET /entrez-auth-token")
        try:
            return Secret(m.EntrezToken.model_validate_json(response.content).token)
        except ValidationError:
            raise UnavailableError(
                "Enlighten GET /entrez-auth-token answered something else than a token"
            ) from None


def _claims(token: Secret, serial: str) -> TokenClaims:
    try:
        claims = read_claims(token)
    except ValueError as e:
        raise UnavailableError(f"the cloud's token cannot be read: {e}") from None
    if claims.audience not in (None, serial):
        raise AuthenticationError(
            f"the cloud gave a token for gateway {claims.audience}, not {serial}; check serial"
        )
    return claims


async def _send(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    data: dict[str, str] | None = None,
    json: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> httpx.Response:
    where = f"{method} {url}"
    try:
        return await http.request(method, url, data=data, json=json, params=params)
    except httpx.TimeoutException as e:
        raise UnavailableError(f"{where}: the cloud did not answer in time") from e
    except httpx.TransportError as e:
        raise UnavailableError(f"{where}: cannot reach the cloud ({e})") from e


def _raise_for(response: httpx.Response, what: str) -> None:
    code = response.status_code
    if code == 200:
        return
    if code in (401, 403):
        raise AuthenticationError(f"{what} was refused ({code})")
    raise UnavailableError(f"{what} answered {code}")
