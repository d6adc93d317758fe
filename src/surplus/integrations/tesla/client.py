"""Async client of the Tesla Fleet API: vehicles (list, data, wake, charging commands) and
energy sites (live status, site info, backup reserve, operation mode).

A thin client over httpx rather than the ``tesla-fleet-api`` library: its releases that know
today's API need Python 3.13 (surplus supports 3.11); it brings aiohttp, a second HTTP stack;
its OAuth class posts to Tesla's fixed auth host (it cannot be pointed at the simulator),
refreshes without a lock and keeps the rotated refresh token only in memory (it cannot be
persisted before use, and a lost refresh answer loses the account); and it raises its own
exception types. Its status table informed the mapping below.

Error handling (reference B, E2.8–16), each raising a ``surplus.domain.errors`` type:

- 401: the access token is refreshed once (``TeslaTokens.refused``) and the call sent again:
  a refused call did nothing, commands included.
- 421: the account's region is looked up (``/api/1/users/region``), the base URL switched
  (``base_url``) and the call sent again; 412: ``AppNotRegisteredError``.
- 402: ``FleetDisabledError``; the client then sends nothing for ``disabled_for_s`` (every
  call raises at once): the site degrades to local control instead of being billed.
- 429: ``RateLimitedError`` with ``Retry-After``; that bucket of that vehicle is not asked
  again before then.
- 503, 504, 540 and transport errors: reads are retried with jittered exponential backoff
  that honours ``Retry-After``; commands and wakes never are (their effect is unknown; the
  caller reads back).
- 408: ``AsleepError``. ``wake`` sends at most 3 wake-ups a minute per vehicle and confirms
  ``online`` through the free ``/vehicles/{vin}``.
- 403 "Vehicle Command Protocol required" (or ``unsigned_cmds_hardlocked``): with
  ``proxy_url`` (a ``tesla-http-proxy``) the vehicle's commands go through it from then on
  (a refused command did nothing, so it is sent again there); without, ``SigningRequiredError``
  says what to set up. Vehicles listed with ``command_signing = "required"`` go to the proxy
  from the start.

``usage`` counts per vehicle (or site) the calls Tesla bills (every answer below 500) and
estimates their cost at the reference's prices. Tokens never appear in a log record, a repr
or an exception text.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from surplus.domain.errors import (
    AsleepError,
    AuthenticationError,
    NotSupportedError,
    RateLimitedError,
    UnavailableError,
)
from surplus.integrations.closing import Closing
from surplus.integrations.tesla.models import (
    PROTOCOL_REQUIRED,
    ChargeState,
    CommandResult,
    LiveStatus,
    SiteInfo,
    VehicleSummary,
)
from surplus.security.vault import Secret

__all__ = [
    "PRICES_USD",
    "AppNotRegisteredError",
    "FleetClient",
    "FleetDisabledError",
    "SigningRequiredError",
    "TokenSource",
    "Usage",
]

log = logging.getLogger(__name__)

PRICES_USD = {"data": 0.002, "command": 0.001, "wake": 0.02}  # since 1 Feb 2025
WAKES_PER_MINUTE = 3
RETRIED = frozenset({503, 504, 540})
DISABLED_FOR_S = 3600.0

_M = TypeVar("_M", bound=BaseModel)


class TokenSource(Protocol):
    async def access_token(self) -> Secret: ...

    async def refused(self, access: Secret) -> Secret: ...


class FleetDisabledError(AuthenticationError):
    """402: the app is disabled (billing cap reached or no payment method)."""


class AppNotRegisteredError(AuthenticationError):
    """412: the app is not registered in the account's region."""


class SigningRequiredError(NotSupportedError):
    """The car accepts only commands signed with a paired key (Vehicle Command Protocol)."""


@dataclass(slots=True)
class Usage:
    """Billed calls of one vehicle or site."""

    reads: int = 0
    commands: int = 0
    wakes: int = 0

    @property
    def cost_usd(self) -> float:
        return (
            self.reads * PRICES_USD["data"]
            + self.commands * PRICES_USD["command"]
            + self.wakes * PRICES_USD["wake"]
        )


class FleetClient(Closing):
    """The Fleet API at ``base_url`` (switched on 421) with tokens from ``tokens``."""

    def __init__(
        self,
        base_url: str,
        tokens: TokenSource,
        *,
        verify: ssl.SSLContext | bool = True,
        proxy_url: str | None = None,
        proxy_verify: ssl.SSLContext | bool | None = None,
        timeout_s: float = 10.0,
        attempts: int = 3,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        wake_poll_s: float = 5.0,
        wake_timeout_s: float = 60.0,
        disabled_for_s: float = DISABLED_FOR_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._tokens = tokens
        self._proxy = proxy_url.rstrip("/") if proxy_url else None
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._wake_poll_s = wake_poll_s
        self._wake_timeout_s = wake_timeout_s
        self._disabled_for_s = disabled_for_s
        self._clock = clock
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()
        self._http = httpx.AsyncClient(verify=verify, timeout=timeout_s)
        self._proxy_http = httpx.AsyncClient(
            verify=verify if proxy_verify is None else proxy_verify, timeout=timeout_s
        )
        self._signing: set[str] = set()  # VINs that need signed commands
        self._cooldown: dict[tuple[str, str], float] = {}  # (key, bucket) -> until
        self._wakes: dict[str, deque[float]] = {}
        self._disabled_until: float | None = None
        self.usage: dict[str, Usage] = {}

    def __repr__(self) -> str:
        return f"FleetClient({self._base!r}, proxy={self._proxy!r})"

    @property
    def base_url(self) -> str:
        return self._base

    @property
    def total_cost_usd(self) -> float:
        return sum(u.cost_usd for u in self.usage.values())

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._proxy_http.aclose()

    # --- vehicles ---

    async def vehicles(self) -> list[VehicleSummary]:
        """Every vehicle of the account (free; never wakes a car)."""
        items = await self._call("GET", "/api/1/vehicles")
        found = [_parse(VehicleSummary, item, "/api/1/vehicles") for item in items or []]
        for v in found:
            if v.command_signing == "required":
                self._signing.add(v.vin)
        return found

    async def vehicle(self, vin: str) -> VehicleSummary:
        """One vehicle, with its ``state`` (free; never wakes it)."""
        path = f"/api/1/vehicles/{vin}"
        v = _parse(VehicleSummary, await self._call("GET", path), path)
        if v.command_signing == "required":
            self._signing.add(vin)
        return v

    async def charge_state(self, vin: str) -> ChargeState:
        """``vehicle_data`` (billed): the charge state. ``AsleepError`` when asleep."""
        path = f"/api/1/vehicles/{vin}/vehicle_data"
        data = await self._call(
            "GET", path, params={"endpoints": "charge_state"}, bucket="data", key=vin
        )
        if not isinstance(data, dict):
            raise UnavailableError(f"{path}: no vehicle data in the answer")
        return _parse(ChargeState, data.get("charge_state"), path)

    async def wake(self, vin: str) -> VehicleSummary:
        """Wake the car and wait until ``/vehicles/{vin}`` shows it ``online``; at most
        ``WAKES_PER_MINUTE`` wake-ups a minute (``RateLimitedError`` beyond)."""
        now = self._clock()
        sent = self._wakes.setdefault(vin, deque())
        while sent and now - sent[0] >= 60.0:
            sent.popleft()
        if len(sent) >= WAKES_PER_MINUTE:
            retry = 60.0 - (now - sent[0])
            raise RateLimitedError(
                f"{vin}: {WAKES_PER_MINUTE} wake-ups in the last minute; not waking it again"
                f" for {retry:.0f} s",
                retry,
            )
        sent.append(now)
        await self._call("POST", f"/api/1/vehicles/{vin}/wake_up", bucket="wake", key=vin)
        waited = 0.0
        while True:
            v = await self.vehicle(vin)
            if v.state == "online":
                return v
            if waited >= self._wake_timeout_s:
                raise AsleepError(f"{vin} did not come online within {waited:.0f} s of a wake-up")
            await self._sleep(self._wake_poll_s)
            waited += self._wake_poll_s

    async def command(
        self, vin: str, name: str, body: dict[str, Any] | None = None
    ) -> CommandResult:
        """``POST …/command/{name}``: Tesla's ``result`` and ``reason``, as they came."""
        path = f"/api/1/vehicles/{vin}/command/{name}"
        try:
            answer = await self._send_command(vin, path, body)
        except SigningRequiredError:
            if self._proxy is None:
                raise self._signing_error(vin) from None
            if vin in self._signing:
                raise
            self._signing.add(vin)
            log.info("%s requires signed commands; sending them through the proxy", vin)
            answer = await self._send_command(vin, path, body)
        if not answer.result and answer.reason == "unsigned_cmds_hardlocked":
            raise self._signing_error(vin)
        return answer

    async def _send_command(
        self, vin: str, path: str, body: dict[str, Any] | None
    ) -> CommandResult:
        proxy = vin in self._signing and self._proxy is not None
        if vin in self._signing and not proxy:
            raise self._signing_error(vin)
        data = await self._call(
            "POST", path, json_body=body or {}, bucket="command", key=vin, via_proxy=proxy
        )
        return _parse(CommandResult, data, path)

    def _signing_error(self, vin: str) -> SigningRequiredError:
        self._signing.add(vin)
        return SigningRequiredError(
            f"{vin} accepts only signed commands (Tesla Vehicle Command Protocol): run"
            " tesla-http-proxy with the app's key, pair the key with the car"
            " (https://tesla.com/_ak/<your app's domain>) and set proxy_url for this device"
        )

    # --- energy sites ---

    async def products(self) -> list[dict[str, Any]]:
        items = await self._call("GET", "/api/1/products")
        return [i for i in items or [] if isinstance(i, dict)]

    async def live_status(self, site_id: str) -> LiveStatus:
        path = f"/api/1/energy_sites/{site_id}/live_status"
        return _parse(LiveStatus, await self._call("GET", path, bucket="data", key=site_id), path)

    async def site_info(self, site_id: str) -> SiteInfo:
        path = f"/api/1/energy_sites/{site_id}/site_info"
        return _parse(SiteInfo, await self._call("GET", path, bucket="data", key=site_id), path)

    async def set_backup_reserve(self, site_id: str, percent: int) -> SiteInfo:
        """Set the backup reserve (app %), verified by reading ``site_info`` back."""
        await self._site_write(site_id, "backup", {"backup_reserve_percent": percent})
        info = await self.site_info(site_id)
        if info.backup_reserve_percent != percent:
            raise UnavailableError(
                f"site {site_id}: the backup reserve of {percent} % was acknowledged but reads"
                f" back as {info.backup_reserve_percent} %"
            )
        return info

    async def set_operation(self, site_id: str, mode: str) -> SiteInfo:
        """Set the operation mode, verified by reading ``site_info`` back."""
        await self._site_write(site_id, "operation", {"default_real_mode": mode})
        info = await self.site_info(site_id)
        if info.default_real_mode != mode:
            raise UnavailableError(
                f"site {site_id}: the mode {mode} was acknowledged but reads back as"
                f" {info.default_real_mode}"
            )
        return info

    async def _site_write(self, site_id: str, what: str, body: dict[str, Any]) -> None:
        path = f"/api/1/energy_sites/{site_id}/{what}"
        answer = await self._call("POST", path, json_body=body, bucket="command", key=site_id)
        if not isinstance(answer, dict) or answer.get("code") not in (200, 201):
            raise UnavailableError(f"{path}: the write was not acknowledged ({answer!r})")

    # --- the request pipeline ---

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
        bucket: str | None = None,
        key: str | None = None,
        via_proxy: bool = False,
    ) -> Any:
        """The ``response`` of one call, with the error handling the module describes."""
        self._check_open(key, bucket)
        retry_reads = method == "GET"
        refreshed = switched = False
        attempt = 0
        access = await self._tokens.access_token()
        while True:
            attempt += 1
            try:
                response = await self._send(method, path, params, json_body, access, via_proxy)
            except httpx.HTTPError as e:
                if retry_reads and attempt < self._attempts:
                    await self._backoff(attempt, None)
                    continue
                outcome = "" if retry_reads else "; its outcome is unknown, read back"
                raise UnavailableError(
                    f"{method} {path}: no answer ({type(e).__name__}){outcome}"
                ) from None
            status = response.status_code
            self._count(key, bucket, status)
            if status == 401 and not refreshed:
                refreshed = True
                access = await self._tokens.refused(access)
                continue
            if status == 421 and not switched and not via_proxy:
                switched = True
                await self._switch_region(access)
                continue
            if status in RETRIED and retry_reads and attempt < self._attempts:
                await self._backoff(attempt, _retry_after(response))
                continue
            return self._answer(method, path, response, key, bucket)

    async def _send(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None,
        json_body: dict[str, Any] | None,
        access: Secret,
        via_proxy: bool,
    ) -> httpx.Response:
        http, base = (self._proxy_http, self._proxy) if via_proxy else (self._http, self._base)
        return await http.request(
            method,
            f"{base}{path}",
            params=params,
            json=json_body,
            headers={
                "Authorization": f"Bearer {access.reveal()}",
                "Content-Type": "application/json",
            },
        )

    def _check_open(self, key: str | None, bucket: str | None) -> None:
        now = self._clock()
        if self._disabled_until is not None and now < self._disabled_until:
            raise FleetDisabledError(
                "the Tesla Fleet API disabled this app (402: billing limit reached or no payment"
                f" method); not calling it for {self._disabled_until - now:.0f} s; raise the"
                " limit at developer.tesla.com. Local control goes on."
            )
        if key is not None and bucket is not None:
            until = self._cooldown.get((key, bucket), 0.0)
            if now < until:
                raise RateLimitedError(
                    f"{key}: Tesla's {bucket} rate limit; next call in {until - now:.0f} s",
                    until - now,
                )

    def _count(self, key: str | None, bucket: str | None, status: int) -> None:
        if key is None or bucket is None or status >= 500:
            return
        usage = self.usage.setdefault(key, Usage())
        if bucket == "data":
            usage.reads += 1
        elif bucket == "command":
            usage.commands += 1
        else:
            usage.wakes += 1

    async def _backoff(self, attempt: int, retry_after: float | None) -> None:
        delay = min(self._max_backoff_s, self._backoff_s * 2 ** (attempt - 1))
        delay *= self._rng.uniform(0.5, 1.5)
        if retry_after is not None:
            delay = max(delay, retry_after)
        await self._sleep(delay)

    async def _switch_region(self, access: Secret) -> None:
        response = await self._send("GET", "/api/1/users/region", None, None, access, False)
        try:
            url = str(response.json()["response"]["fleet_api_base_url"])
        except (ValueError, KeyError, TypeError):
            raise UnavailableError(
                f"wrong Fleet API region and /api/1/users/region answered {response.status_code}"
            ) from None
        log.warning("the Tesla account is served from %s; switching from %s", url, self._base)
        self._base = url.rstrip("/")

    def _answer(
        self, method: str, path: str, response: httpx.Response, key: str | None, bucket: str | None
    ) -> Any:
        status = response.status_code
        error = _error_text(response)
        where = f"{method} {path}"
        if status == 200:
            try:
                return response.json()["response"]
            except (ValueError, KeyError, TypeError):
                raise UnavailableError(f"{where}: the answer is not the Fleet API's JSON") from None
        if status == 401:
            raise AuthenticationError(
                f"{where}: Tesla refused a fresh access token ({error or 'no reason'}); Tesla"
                " needs re-authentication: run surplus auth tesla <device> --config <file>"
            )
        if status == 402:
            self._disabled_until = self._clock() + self._disabled_for_s
            raise FleetDisabledError(
                f"{where}: the Tesla Fleet API disabled this app (402: billing limit reached or"
                " no payment method); raise the limit at developer.tesla.com. Local control"
                " goes on."
            )
        if status == 403 and error is not None and "Command Protocol" in error:
            raise SigningRequiredError(PROTOCOL_REQUIRED)
        if status == 403:
            raise AuthenticationError(
                f"{where}: refused ({error or 'forbidden'}); grant the missing scopes: run"
                " surplus auth tesla <device> --config <file>"
            )
        if status == 408:
            raise AsleepError(f"{where}: the vehicle is asleep or offline")
        if status == 412:
            raise AppNotRegisteredError(
                f"{where}: the app is not registered in this region; register it once per region"
                " (POST /api/1/partner_accounts with a partner token)"
            )
        if status == 429:
            retry = _retry_after(response) or 60.0
            if key is not None and bucket is not None:
                self._cooldown[(key, bucket)] = self._clock() + retry
            raise RateLimitedError(f"{where}: rate limited by Tesla; retry in {retry:.0f} s", retry)
        if status == 404:
            raise UnavailableError(f"{where}: not found (a stale site or vehicle?)")
        raise UnavailableError(f"{where}: answered {status} {error or ''}".strip())


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None


def _error_text(response: httpx.Response) -> str | None:
    try:
        doc = response.json()
    except ValueError:
        return None
    return str(doc["error"]) if isinstance(doc, dict) and doc.get("error") else None


def _parse(model: type[_M], data: Any, where: str) -> _M:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise UnavailableError(f"{where}: unexpected answer ({e.error_count()} problems)") from None
