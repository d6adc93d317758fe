"""Async client of the Envoy / IQ Gateway local API (``https://<gateway>/...``).

A thin client over httpx rather than the public ``pyenphase`` library: that library never
checks the gateway's certificate (so it cannot pin one), sends the token with every request,
retries on its own for minutes, raises its own exception types and brings aiohttp, a second
HTTP stack. The wire models are shared with the simulator beside this module.

TLS: firmware 7 and later speak HTTPS with a self-signed certificate. It is pinned by its
SHA-256 fingerprint: without one the client trusts the certificate it meets first and
exposes its fingerprint for the caller to store; from then on a connection presenting any
other certificate is refused during the handshake, before the token is sent. Older firmware
speaks plain HTTP without tokens (``http://`` URL): nothing to pin, nothing to send.

Sessions: the token (``tokens.EnvoyTokens``) goes to ``/auth/check_jwt`` only; the gateway
answers with a ``sessionId`` cookie that authorises the requests after it. When a request is
refused (401/403) the client checks the token again, silently (a session ends after 10 idle
minutes); if the gateway refuses the token itself, the client asks for a new one from the
cloud, once; if that fails too (no cloud credentials, the cloud down, a new token refused),
it keeps the old token, raises ``AuthenticationError`` and sends nothing again: a login loop
gets nowhere. Redirects are never followed (firmware redirects to ``https://localhost``).

Optional endpoints (``OPTIONAL_PATHS``: meters, live data, batteries, the meter stream) that
answer 401 or 403 even right after the gateway accepted the token (the token's role may not
read them), 404, ``[]`` or ``{"error": ...}`` are asked once: from then on their calls raise
``NotSupportedError`` without asking the gateway, until a changed firmware is seen in
``/info`` (read again after ``REPROBE_AFTER`` failures in a row, as after an update).

Errors: 503, timeouts and refused connections raise ``UnavailableError``; neither the token
nor the session id appears in a log record, a repr or an exception text (the ``Set-Cookie``
redaction on httpcore's trace comes with the Powerwall client's module, imported here).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from surplus.domain.errors import (
    AuthenticationError,
    NotSupportedError,
    RateLimitedError,
    UnavailableError,
)
from surplus.integrations.closing import Closing
from surplus.integrations.envoy import models as m
from surplus.integrations.envoy.tokens import EnvoyTokens, TokenClaims, read_claims
from surplus.integrations.powerwall.client import CertificateMismatchError
from surplus.integrations.powerwall.tls import (
    certificate_refused,
    fingerprint,
    normalize_fingerprint,
    presented_certificate,
    trusting_only,
)
from surplus.security.vault import Secret

__all__ = ["OPTIONAL_PATHS", "SNI_NAME", "CertificateMismatchError", "EnvoyClient"]

log = logging.getLogger(__name__)

SNI_NAME = "envoy.local"  # what the gateway's certificate is issued for; it accepts any
SESSION_COOKIE = "sessionId"
PRODUCTION_PATH = "/production.json"
STREAM_PATH = "/stream/meter"
INVERTERS_PATH = "/api/v1/production/inverters"
OPTIONAL_PATHS = frozenset(
    {
        "/ivp/meters",
        "/ivp/meters/readings",
        "/ivp/livedata/status",
        "/ivp/ensemble/inventory",
        "/ivp/ensemble/secctrl",
        "/ivp/ensemble/power",
        INVERTERS_PATH,
        STREAM_PATH,
    }
)
REPROBE_AFTER = 3  # failures in a row after which /info is read again
STREAM_READ_TIMEOUT_S = 60.0  # D7.0.88 buffers 16 KB: its frames come in bursts ~20 s apart
RATE_LIMITED_RETRY_S = 30.0  # the gateway names no Retry-After

_M = TypeVar("_M", bound=BaseModel)


class EnvoyClient(Closing):
    """One gateway; every method may raise a ``DeviceError``.

    ``tokens`` None: no token (enough for ``info``, ``check_token`` and firmware < 7).
    ``serial``: the gateway's serial, if known; ``/info`` must then name the same one.
    """

    def __init__(
        self,
        host_url: str,
        tokens: EnvoyTokens | None = None,
        fingerprint: str | None = None,
        *,
        serial: str | None = None,
        timeout_s: float = 10.0,
        stream_timeout_s: float = STREAM_READ_TIMEOUT_S,
    ) -> None:
        url = httpx.URL(host_url)
        if url.scheme not in ("https", "http") or not url.host:
            raise ValueError(
                f"the gateway URL must be https://<host>[:port] (or http:// for firmware"
                f" before 7), not {host_url!r}"
            )
        self._plain = url.scheme == "http"
        self._url = f"{url.scheme}://{url.host}" + (f":{url.port}" if url.port else "")
        self._host, self._port = url.host, url.port or (80 if self._plain else 443)
        self._tokens = tokens
        self._fingerprint = normalize_fingerprint(fingerprint) if fingerprint else None
        self._expected_serial = serial
        self._serial = serial
        self._timeout_s = timeout_s
        self._stream_timeout_s = stream_timeout_s
        self._http: httpx.AsyncClient | None = None
        self._info: m.Info | None = None
        self._session_id: str | None = None
        self._refused: str | None = None  # once set, the token is not sent again
        self._disabled: dict[str, str] = {}  # optional path -> why it is not asked
        self._failures = 0
        self._auth_lock = asyncio.Lock()
        self._on_close: list[Callable[[], Awaitable[None]]] = []

    def __repr__(self) -> str:
        return f"EnvoyClient({self._url!r}, fingerprint={self._fingerprint!r}, {self._tokens!r})"

    @property
    def url(self) -> str:
        return self._url

    @property
    def fingerprint(self) -> str | None:
        """The pinned SHA-256 fingerprint; after first use also the one trusted on first use.
        None over plain HTTP."""
        return self._fingerprint

    @property
    def serial(self) -> str | None:
        """The gateway's serial: the one given, else the one ``/info`` named."""
        return self._serial

    @property
    def firmware(self) -> str | None:
        return self._info.firmware if self._info is not None else None

    @property
    def role(self) -> str | None:
        """The token's role (``owner``, ``installer``); None without a readable token."""
        claims = self._tokens.claims if self._tokens is not None else None
        return claims.role if claims is not None else None

    def on_close(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run ``callback`` first when the client closes (e.g. to end a stream reader)."""
        self._on_close.append(callback)

    async def aclose(self) -> None:
        callbacks, self._on_close = self._on_close, []
        for callback in callbacks:
            await callback()
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        self._session_id = None

    # --- reads ---

    async def info(self) -> m.Info:
        """``/info`` (no token needed): serial, firmware, metered or not."""
        response = await self._send("GET", "/info")
        _raise_for(response, f"GET /info on {self._url}")
        try:
            info = m.parse_info(response.content)
        except ValueError as e:
            raise UnavailableError(f"GET /info on {self._url}: {e}") from None
        if self._expected_serial is not None and info.serial != self._expected_serial:
            raise AuthenticationError(
                f"{self._url} is gateway {info.serial}, not the configured {self._expected_serial};"
                " correct serial in the config file"
            )
        if self._info is not None and self._info.software != info.software:
            log.warning(
                "%s: firmware changed from %s to %s; optional endpoints are probed again",
                self._url,
                self._info.software,
                info.software,
            )
            self._disabled.clear()
        self._info, self._serial = info, info.serial
        return info

    async def check_token(self, token: Secret) -> TokenClaims:
        """Whether the gateway accepts ``token`` (``AuthenticationError`` if not); its claims.
        The client's own token and session stay as they are."""
        try:
            claims = read_claims(token)
        except ValueError as e:
            raise AuthenticationError(f"that is {e}") from None
        if self._plain:
            raise NotSupportedError(f"{self._url} is plain HTTP (firmware < 7): it takes no token")
        if self._info is None:
            await self.info()
        if not await self._check_jwt(token):
            raise AuthenticationError(
                f"{self._url} refused the token ({claims.role}, for"
                f" {claims.audience or 'any gateway'}, until"
                f" {claims.expires_at:%Y-%m-%d %H:%M} UTC)"
            )
        return claims

    async def production(self) -> m.Production:
        """``/production.json?details=1``: solar, consumption and net, with their lines."""
        return await self._get(PRODUCTION_PATH, m.Production, params={"details": "1"})

    async def api_v1_production(self) -> m.ApiV1Production:
        return await self._get("/api/v1/production", m.ApiV1Production)

    async def inverters(self) -> list[m.InverterReport]:
        """Per inverter; Digest authentication (``envoy``) below firmware 7."""
        return await self._get_list(INVERTERS_PATH, m.InverterReport, digest=True)

    async def meters(self) -> list[m.MeterConfig]:
        """The CTs (``[]``, hence ``NotSupportedError``, on a gateway that is not metered)."""
        return await self._get_list("/ivp/meters", m.MeterConfig)

    async def meter_readings(self) -> list[m.MeterReading]:
        """Per CT, joined to ``meters()`` on ``eid``."""
        return await self._get_list("/ivp/meters/readings", m.MeterReading)

    async def livedata(self) -> m.LiveData:
        """``/ivp/livedata/status`` (mW); current only while ``sc_stream`` is enabled."""
        return await self._get("/ivp/livedata/status", m.LiveData)

    async def inventory(self) -> list[m.InventoryGroup]:
        """The IQ Batteries and other ensemble devices (``[]``: none, ``NotSupportedError``)."""
        return await self._get_list("/ivp/ensemble/inventory", m.InventoryGroup)

    async def secctrl(self) -> m.SecCtrl:
        return await self._get("/ivp/ensemble/secctrl", m.SecCtrl)

    async def battery_power(self) -> m.EnsemblePower:
        return await self._get("/ivp/ensemble/power", m.EnsemblePower)

    async def meter_stream(self) -> AsyncIterator[m.StreamFrame]:
        """The frames of ``/stream/meter`` as they come (about one a second), until the
        gateway ends the stream; ``NotSupportedError`` when the token's role may not read it
        (owner tokens since firmware 7.6.175)."""
        response = await self._call(STREAM_PATH, stream=True)
        where = f"GET {STREAM_PATH} on {self._url}"
        try:
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                try:
                    yield m.StreamFrame.model_validate_json(line[5:])
                except ValidationError:
                    log.debug("%s: a frame this client does not understand, skipped", where)
        except httpx.TimeoutException as e:
            raise UnavailableError(f"{where}: no frame within {self._stream_timeout_s} s") from e
        except httpx.TransportError as e:
            raise UnavailableError(f"{where}: the stream broke off ({e})") from e
        finally:
            await response.aclose()

    # --- the calls ---

    async def _get(self, path: str, model: type[_M], *, params: dict[str, str] | None = None) -> _M:
        response = await self._call(path, params=params)
        self._raise_if_error_body(path, response)
        return _parse(response, model, f"GET {path} on {self._url}")

    async def _get_list(self, path: str, model: type[_M], *, digest: bool = False) -> list[_M]:
        response = await self._call(path, digest=digest)
        self._raise_if_error_body(path, response)
        items = _parse_list(response, model, f"GET {path} on {self._url}")
        if not items and path in OPTIONAL_PATHS:
            self._disable(path, "it answered []")
            self._raise_if_disabled(path)
        return items

    def _raise_if_error_body(self, path: str, response: httpx.Response) -> None:
        error = m.error_of(response.content)
        if error is None:
            return
        if path in OPTIONAL_PATHS:
            self._disable(path, f"it answered 200 with the error {error!r}")
            self._raise_if_disabled(path)
        raise UnavailableError(f"GET {path} on {self._url}: 200 with the error {error!r}")

    async def _call(
        self,
        path: str,
        *,
        params: dict[str, str] | None = None,
        stream: bool = False,
        digest: bool = False,
    ) -> httpx.Response:
        """A GET with the session; a refusal gets one silent re-check, then it raises."""
        self._raise_if_disabled(path)
        await self._ready()
        auth = None
        if digest and self._plain and self._serial:
            auth = httpx.DigestAuth("envoy", self._serial[-6:])  # the documented default
        session = self._session_id
        response = await self._send("GET", path, params=params, stream=stream, auth=auth)
        code = response.status_code
        if code in (401, 403) and not self._plain:
            await response.aclose()
            log.info("%s refused GET %s (%d); checking the token again", self._url, path, code)
            await self._authenticate(stale=session)
            response = await self._send("GET", path, params=params, stream=stream)
            code = response.status_code
        if code in (401, 403):
            await response.aclose()
            whom = "without a token" if self._plain else f"to the session of a {self.role} token"
            refused = f"GET {path} on {self._url} refused ({code}) {whom}"
            if path in OPTIONAL_PATHS:
                self._disable(path, f"refused ({code}) {whom}")
                self._raise_if_disabled(path)
            if self._plain:
                raise AuthenticationError(
                    f"{refused}: is its firmware 7 or later now? Then give https:// and a token"
                    " (surplus auth envoy <device> --config <file>)"
                )
            raise AuthenticationError(
                f"{refused}, right after the gateway accepted the token: its role may not read it"
            )
        if code == 404 and path in OPTIONAL_PATHS:
            await response.aclose()
            self._disable(path, "it answered 404")
            self._raise_if_disabled(path)
        if code >= 300 and stream:
            await response.aread()
        _raise_for(response, f"GET {path} on {self._url}")
        return response

    async def _ready(self) -> None:
        """``/info`` read (again after repeated failures), and a session opened."""
        if self._info is None or self._failures >= REPROBE_AFTER:
            info = await self.info()
            self._failures = 0
            if self._plain and info.web_tokens:
                raise AuthenticationError(
                    f"{self._url} runs firmware {info.firmware}, which wants a token over"
                    " HTTPS: give https:// as its host and get a token with: surplus auth"
                    " envoy <device> --config <file>"
                )
        if self._plain:
            return
        if self._tokens is not None and self._serial is not None:
            await self._tokens.renew_if_due(self._serial)
        if self._session_id is None:
            await self._authenticate(stale=None)

    async def _authenticate(self, *, stale: str | None) -> None:
        """A session: the current one unless it is ``stale``; else the token checked again;
        if refused, a new token from the cloud (once); else ``AuthenticationError``."""
        async with self._auth_lock:
            if self._session_id is not None and self._session_id != stale:
                return  # another task opened one meanwhile
            self._session_id = None
            if self._refused is not None:
                raise AuthenticationError(self._refused)
            tokens = self._tokens
            if tokens is None or tokens.token is None:
                raise AuthenticationError(
                    f"{self._url} wants a token and none is given; get one with: surplus auth"
                    " envoy <device> --config <file>"
                )
            why = "it has expired" if tokens.expired() else "the gateway refused it"
            if not tokens.expired() and await self._check_jwt(tokens.token):
                return
            serial = self._serial
            if (
                serial is not None
                and await tokens.renew(serial, why)
                and await self._check_jwt(tokens.token)
            ):
                return
            renewal = (
                "a new one from Enlighten did not help (see the log)"
                if tokens.can_renew
                else "no Enlighten credentials are configured to renew it"
            )
            self._refused = (
                f"{self._url}: {tokens.describe()} cannot be used: {why}, and {renewal}; get a"
                " new token: surplus auth envoy <device> --config <file>"
            )
            raise AuthenticationError(self._refused)

    async def _check_jwt(self, token: Secret | None) -> bool:
        """Whether the gateway accepts ``token``; if so, its session is this client's."""
        if token is None:
            return False
        http = await self._client()
        http.cookies.clear()
        response = await self._send(
            "GET", "/auth/check_jwt", headers={"Authorization": f"Bearer {token.reveal()}"}
        )
        if response.status_code in (401, 403):
            return False
        _raise_for(response, f"GET /auth/check_jwt on {self._url}")
        session = response.cookies.get(SESSION_COOKIE)
        if "Valid token." not in response.text or not session:
            return False
        self._session_id = session
        log.info("%s accepted the token; session opened", self._url)
        return True

    def _disable(self, path: str, why: str) -> None:
        self._disabled[path] = why
        log.info("%s: %s; not asking for %s again", self._url, why, path)

    def _raise_if_disabled(self, path: str) -> None:
        why = self._disabled.get(path)
        if why is not None:
            raise NotSupportedError(f"GET {path}: {self._url} does not offer it ({why})")

    # --- transport ---

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
        auth: httpx.Auth | None = None,
    ) -> httpx.Response:
        http = await self._client()
        where = f"{method} {path} on {self._url}"
        timeout = httpx.Timeout(self._timeout_s, read=self._stream_timeout_s) if stream else None
        request = http.build_request(
            method,
            path,
            params=params,
            headers=headers,
            extensions={} if self._plain else {"sni_hostname": SNI_NAME},
            timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
        )
        try:
            response = await http.send(request, stream=stream, auth=auth)
        except httpx.TimeoutException as e:
            self._failures += 1
            raise UnavailableError(f"{where}: no answer within {self._timeout_s} s") from e
        except httpx.TransportError as e:
            if certificate_refused(e) and self._fingerprint is not None:
                raise CertificateMismatchError(self._url, self._fingerprint, None) from e
            self._failures += 1
            raise UnavailableError(f"{where}: cannot reach the gateway ({e})") from e
        if response.status_code >= 500:
            self._failures += 1
        else:
            self._failures = 0
        log.debug("%s -> %d", where, response.status_code)
        return response

    async def _client(self) -> httpx.AsyncClient:
        if self._http is not None:
            return self._http
        if self._plain:
            self._http = httpx.AsyncClient(base_url=self._url, timeout=self._timeout_s)
            return self._http
        try:
            der = await presented_certificate(
                self._host, self._port, sni=SNI_NAME, timeout_s=self._timeout_s
            )
        except UnavailableError:
            self._failures += 1
            raise
        presented = fingerprint(der)
        if self._fingerprint is not None and presented != self._fingerprint:
            raise CertificateMismatchError(self._url, self._fingerprint, presented)
        if self._fingerprint is None:
            log.info("trusting the certificate of %s on first use: %s", self._url, presented)
        self._fingerprint = presented
        self._http = httpx.AsyncClient(
            base_url=self._url, verify=trusting_only(der), timeout=self._timeout_s
        )
        return self._http


def _raise_for(response: httpx.Response, where: str) -> None:
    """The error branch for an answer other than 2xx; nothing for a success."""
    code = response.status_code
    if code < 300:
        return
    if code < 400:
        location = response.headers.get("location", "nowhere")
        raise UnavailableError(
            f"{where}: redirected ({code}) to {location}, not followed; check the host's"
            " scheme (https:// from firmware 7 on)"
        )
    if code in (401, 403):
        raise AuthenticationError(f"{where}: refused ({code})")
    if code == 404:
        raise NotSupportedError(f"{where}: not available on this gateway's firmware (404)")
    if code == 429:
        raise RateLimitedError(f"{where}: rate limited (429)", retry_after_s=RATE_LIMITED_RETRY_S)
    if code == 503:
        raise UnavailableError(f"{where}: the gateway is starting, updating or busy (503)")
    raise UnavailableError(f"{where}: the gateway answered {code}")


def _parse(response: httpx.Response, model: type[_M], where: str) -> _M:
    try:
        return model.model_validate_json(response.content)
    except ValidationError as e:
        raise UnavailableError(_not_understood(e, where)) from None


def _parse_list(response: httpx.Response, model: type[_M], where: str) -> list[_M]:
    try:
        items = json.loads(response.content)
    except ValueError:
        raise UnavailableError(f"{where}: an answer that is not JSON") from None
    if not isinstance(items, list):
        raise UnavailableError(f"{where}: an answer that is not a JSON list")
    try:
        return [model.model_validate(item) for item in items]
    except ValidationError as e:
        raise UnavailableError(_not_understood(e, where)) from None


def _not_understood(e: ValidationError, where: str) -> str:
    # The validation error itself is not chained: it would quote the answer.
    first = ".".join(str(p) for p in e.errors()[0]["loc"]) or "(the body)"
    return (
        f"{where}: an answer this client does not understand ({e.error_count()} problems,"
        f" first at {first})"
    )
