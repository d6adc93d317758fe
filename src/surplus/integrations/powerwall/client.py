"""Async client of the Powerwall 2 local gateway API (``https://<gateway>/api/...``).

A thin client over httpx rather than the public ``tesla_powerwall`` library: that library
either checks the gateway's self-signed certificate against the system's CAs (which always
fails) or not at all, so it cannot pin a fingerprint; it raises its own exception types, logs
in again on every refusal (the road to a 429 lockout), and has no guarded write (commit,
sitemaster restart, read-back). It also brings aiohttp, a second HTTP stack, where surplus
uses httpx. The wire models here are shared with the simulator beside this module.

TLS: the gateway's certificate is pinned by its SHA-256 fingerprint. Without one the client
trusts the certificate it meets first and exposes its fingerprint for the caller to store;
from then on, as with a given fingerprint, a connection presenting any other certificate is
refused during the handshake, before a password or token is sent.

Removed endpoints: firmware drops endpoints (23.44 removed ``/api/devices/vitals``; a
Powerwall 3 has no ``/api/status`` and refuses the customer most others). An optional
endpoint (``OPTIONAL_PATHS``) that answers 404, or 403 even right after a fresh login, is
remembered as unsupported for ``unsupported_ttl_s``: until then its calls raise
``NotSupportedError`` without asking the gateway. The telemetry every caller needs
(aggregates, state of energy, grid status) is never remembered so.

Secrets: the password is held as a ``Secret`` and revealed only into the login body; neither
it nor the session token appears in a log record, a repr or an exception text.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from surplus.domain.errors import (
    AuthenticationError,
    DeviceError,
    NotSupportedError,
    RateLimitedError,
    UnavailableError,
)
from surplus.integrations.closing import Closing
from surplus.integrations.powerwall import models as m
from surplus.integrations.powerwall.tls import (
    certificate_refused,
    fingerprint,
    normalize_fingerprint,
    presented_certificate,
    trusting_only,
)
from surplus.security.vault import Secret

__all__ = ["OPTIONAL_PATHS", "CertificateMismatchError", "GatewayBusyError", "PowerwallClient"]

log = logging.getLogger(__name__)

LOGIN_COOLDOWN_S = 300.0  # what pypowerwall waits after a 429; sooner risks a lockout
BUSY_RETRY_S = 60.0
UNSUPPORTED_TTL_S = 600.0  # pypowerwall negative-caches removed endpoints for 5-10 min
OPTIONAL_PATHS = frozenset(
    {
        "/api/status",
        "/api/system_status",
        "/api/devices/vitals",
        "/api/operation",
        "/api/sitemaster",
    }
)
SNI_NAME = "powerwall"  # a gateway aborts the handshake for names it does not know

_M = TypeVar("_M", bound=BaseModel)

_SET_COOKIE = re.compile(r"(\(b'set-cookie', b')[^']*(')", re.IGNORECASE)


class _SetCookieRedactor(logging.Filter):
    """httpcore's DEBUG trace prints response headers: the gateway's ``Set-Cookie`` carries the
    session token. A filter on the logger itself, so every handler sees the redacted record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "set-cookie" in message.lower():
            record.msg, record.args = _SET_COOKIE.sub(r"\1<redacted>\2", message), None
        return True


for _name in ("httpcore.http11", "httpcore.http2"):
    logging.getLogger(_name).addFilter(_SetCookieRedactor())


class CertificateMismatchError(AuthenticationError):
    """The gateway presented a certificate other than the pinned one."""

    def __init__(self, url: str, pinned: str, presented: str | None) -> None:
        self.pinned = pinned
        self.presented = presented
        shown = f" {presented}" if presented else " another one"
        super().__init__(
            f"the gateway at {url} presented the certificate{shown}, not the pinned {pinned};"
            " if the gateway was replaced, reset or got a new certificate, check the new one"
            " and pin it: surplus pin <device> --config <file> (or change the fingerprint in"
            " the config file, if it names one)"
        )


class GatewayBusyError(UnavailableError):
    """503 "current config mode is busy": retry after ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message)


class PowerwallClient(Closing):
    """One gateway, logged in as ``customer``; every method may raise a ``DeviceError``."""

    def __init__(
        self,
        host_url: str,
        password: Secret,
        fingerprint: str | None = None,
        *,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        login_cooldown_s: float | None = None,
        write_attempts: int = 3,
        write_retry_delay_s: float = 2.0,
        unsupported_ttl_s: float = UNSUPPORTED_TTL_S,
    ) -> None:
        url = httpx.URL(host_url)
        if url.scheme != "https" or not url.host:
            raise ValueError(f"the gateway URL must be https://<host>[:port], not {host_url!r}")
        self._url = f"https://{url.host}" + (f":{url.port}" if url.port else "")
        self._host, self._port = url.host, url.port or 443
        self._password = password
        self._fingerprint = normalize_fingerprint(fingerprint) if fingerprint else None
        self._timeout_s = timeout_s
        self._clock = clock
        self._login_cooldown_s = LOGIN_COOLDOWN_S if login_cooldown_s is None else login_cooldown_s
        self._write_attempts = write_attempts
        self._write_retry_delay_s = write_retry_delay_s
        self._unsupported_ttl_s = unsupported_ttl_s
        self._unsupported: dict[str, tuple[float, int]] = {}  # path -> (ask again at, status)
        self._http: httpx.AsyncClient | None = None
        self._token: str | None = None
        self._blocked_until: float | None = None
        # Once the password is refused, every later login would be refused too and count
        # towards a lockout: the client refuses to send it again (a new client gets a new one).
        self._refused: str | None = None
        self._login_lock = asyncio.Lock()
        self._write_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"PowerwallClient({self._url!r}, fingerprint={self._fingerprint!r})"

    @property
    def fingerprint(self) -> str | None:
        """The pinned SHA-256 fingerprint; after first use also the one trusted on first use."""
        return self._fingerprint

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        self._token = None

    # --- reads ---

    async def status(self) -> m.Status:
        """``/api/status`` (no login needed): firmware version, DIN, device type."""
        self._raise_if_unsupported("GET", "/api/status")
        response = await self._send("GET", "/api/status", None, None)
        if response.status_code == 404:
            self._remember_unsupported("/api/status", 404)
        _raise_for(response, "GET /api/status")
        return _parse(response, m.Status, "GET /api/status")

    async def aggregates(self) -> m.Aggregates:
        return await self._get("/api/meters/aggregates", m.Aggregates)

    async def soe_pct(self) -> float:
        """State of energy as the app shows it (the raw pack % less the hidden bottom 5 %)."""
        soe = await self._get("/api/system_status/soe", m.Soe)
        return m.raw_to_app_pct(soe.percentage)

    async def grid_status(self) -> m.GridStatusResponse:
        return await self._get("/api/system_status/grid_status", m.GridStatusResponse)

    async def system_status(self) -> m.SystemStatus:
        return await self._get("/api/system_status", m.SystemStatus)

    async def operation(self) -> m.Operation:
        """Mode and backup reserve; the reserve is raw (``m.raw_to_app_pct`` for the app's)."""
        return await self._get("/api/operation", m.Operation)

    async def sitemaster(self) -> m.Sitemaster:
        return await self._get("/api/sitemaster", m.Sitemaster)

    async def vitals(self) -> bytes:
        """``/api/devices/vitals``, the raw protobuf (gone since firmware 23.44)."""
        return (await self._call("GET", "/api/devices/vitals")).content

    async def logout(self) -> None:
        if self._token is not None:
            token, self._token = self._token, None
            await self._send("GET", "/api/logout", None, token)

    # --- the guarded write ---

    async def set_operation(self, mode: str, reserve_app_pct: float) -> m.Operation:
        """Set the mode and the backup reserve (app scale), verified by reading back.

        Refused unless the grid is connected. Each attempt stages the change, commits it and
        then, whatever happened, makes sure sitemaster runs again (old firmware stops it).
        """
        if mode not in set(m.RealMode):
            raise ValueError(f"mode must be one of {[str(r) for r in m.RealMode]}, not {mode!r}")
        if not 0.0 <= reserve_app_pct <= 100.0:
            raise ValueError(f"reserve_app_pct must be within 0..100, not {reserve_app_pct}")
        target = m.OperationWrite(
            real_mode=mode, backup_reserve_percent=m.app_to_raw_pct(reserve_app_pct)
        )
        async with self._write_lock:
            grid = (await self.grid_status()).grid_status
            if grid != m.GridStatus.CONNECTED:
                raise UnavailableError(
                    f"not changing the operation of {self._url} while its grid status is"
                    f" {grid}; writes wait until it is {m.GridStatus.CONNECTED}"
                )
            for attempt in range(1, self._write_attempts + 1):
                await self._stage_and_commit(target)
                current = await self.operation()
                if _took_effect(current, target):
                    log.info(
                        "operation of %s set to %s, reserve %.1f %%",
                        self._url,
                        mode,
                        reserve_app_pct,
                    )
                    return current
                log.warning(
                    "operation change on %s not in effect after attempt %d of %d",
                    self._url,
                    attempt,
                    self._write_attempts,
                )
                if attempt < self._write_attempts:
                    await asyncio.sleep(self._write_retry_delay_s)
            raise UnavailableError(
                f"setting {self._url} to {mode} with a {reserve_app_pct:.1f} % reserve did not"
                f" take effect after {self._write_attempts} attempts; it still reports"
                f" {current.real_mode} with a"
                f" {m.raw_to_app_pct(current.backup_reserve_percent):.1f} % reserve"
            )

    async def _stage_and_commit(self, target: m.OperationWrite) -> None:
        committed = False
        try:
            await self._call("POST", "/api/operation", target.model_dump(exclude_none=True))
            await self._call("GET", "/api/config/completed")
            committed = True
        finally:
            await self._ensure_sitemaster_running(strict=committed)

    async def _ensure_sitemaster_running(self, *, strict: bool) -> None:
        """Start sitemaster and confirm it runs; when the write already failed (``strict``
        False), a failure here is logged so the write's own error is the one raised.
        """
        try:
            for attempt in range(1, self._write_attempts + 1):
                await self._call("GET", "/api/sitemaster/run")
                state = await self.sitemaster()
                if state.running:
                    return
                if attempt < self._write_attempts:
                    await asyncio.sleep(self._write_retry_delay_s)
            raise UnavailableError(
                f"sitemaster on {self._url} does not run after a configuration write"
                f" ({state.status}); readings stay unavailable until it does"
            )
        except DeviceError:
            if strict:
                raise
            log.warning("could not confirm that sitemaster runs on %s", self._url, exc_info=True)

    # --- sessions ---

    async def _get(self, path: str, model: type[_M]) -> _M:
        return _parse(await self._call("GET", path), model, f"GET {path}")

    async def _call(self, method: str, path: str, body: Any = None) -> httpx.Response:
        """An authenticated request; a refused session gets one fresh login, then it raises."""
        self._raise_if_unsupported(method, path)
        token = self._token or await self._login(stale=None)
        response = await self._send(method, path, body, token)
        if response.status_code in (401, 403):
            log.info("%s refused the session on %s %s; logging in again", self._url, method, path)
            token = await self._login(stale=token)
            response = await self._send(method, path, body, token)
            code = response.status_code
            if code in (401, 403):
                refused = (
                    f"{method} {path} on {self._url} refused ({code}) right after a fresh login;"
                    " the customer account lacks the rights for it"
                )
                if path in OPTIONAL_PATHS:
                    self._remember_unsupported(path, code)
                    raise NotSupportedError(
                        f"{refused} on this gateway (on a Powerwall 3 the customer may read"
                        " only the meters, the state of energy and the grid status)"
                    )
                raise AuthenticationError(refused)
        if response.status_code == 404:
            self._remember_unsupported(path, 404)
        _raise_for(response, f"{method} {path}")
        return response

    def _raise_if_unsupported(self, method: str, path: str) -> None:
        remembered = self._unsupported.get(path)
        if remembered is None:
            return
        until, code = remembered
        left = until - self._clock()
        if left <= 0:
            del self._unsupported[path]
            return
        raise NotSupportedError(
            f"{method} {path}: {self._url} does not offer it (it answered {code});"
            f" not asking again for another {left:.0f} s"
        )

    def _remember_unsupported(self, path: str, code: int) -> None:
        """Stop asking for an optional ``path`` for a while; essential ones are not kept."""
        if path not in OPTIONAL_PATHS:
            return
        self._unsupported[path] = (self._clock() + self._unsupported_ttl_s, code)
        log.info(
            "%s answered %d for %s; not asking for it again for %.0f s",
            self._url,
            code,
            path,
            self._unsupported_ttl_s,
        )

    async def _login(self, *, stale: str | None) -> str:
        """A session token: the current one unless it is ``stale``, else a fresh login."""
        async with self._login_lock:
            if self._token is not None and self._token != stale:
                return self._token  # another task logged in meanwhile
            self._token = None
            if self._refused is not None:
                raise AuthenticationError(self._refused)
            now = self._clock()
            if self._blocked_until is not None and now < self._blocked_until:
                wait = self._blocked_until - now
                raise RateLimitedError(
                    f"not logging in to {self._url} for another {wait:.0f} s: it rate limited"
                    " the last login (429)",
                    retry_after_s=wait,
                )
            login = m.LoginRequest(username=m.CUSTOMER, password=self._password.reveal())
            response = await self._send("POST", "/api/login/Basic", login.model_dump(), None)
            if response.status_code == 429:
                self._blocked_until = now + self._login_cooldown_s
                log.warning(
                    "%s rate limited the login (429); next attempt in %.0f s",
                    self._url,
                    self._login_cooldown_s,
                )
                raise RateLimitedError(
                    f"{self._url} rate limited the login (429); waiting"
                    f" {self._login_cooldown_s:.0f} s before the next attempt",
                    retry_after_s=self._login_cooldown_s,
                )
            if response.status_code == 401:
                self._refused = (
                    f"{self._url} refused the password of user {m.CUSTOMER} (401); set the"
                    " customer password again (by default the last 5 characters of the"
                    " password on the gateway's QR sticker); not logging in again with it"
                )
                raise AuthenticationError(self._refused)
            _raise_for(response, "POST /api/login/Basic")
            try:
                token = m.LoginResponse.model_validate_json(response.content).token
            except ValidationError:
                # Not chained: the validation error would quote the answer, token and all.
                raise UnavailableError(f"{self._url} answered the login with no token") from None
            log.info("logged in to %s", self._url)
            self._token = token
            await self._restart_sitemaster_if_stopped(token)
            return token

    async def _restart_sitemaster_if_stopped(self, token: str) -> None:
        """Old firmware (<= 1.4x) stops sitemaster on every login; start it again."""
        response = await self._send("GET", "/api/sitemaster", None, token)
        if response.status_code != 200:
            return
        if not _parse(response, m.Sitemaster, "GET /api/sitemaster").running:
            log.info("sitemaster on %s stopped at login; starting it", self._url)
            await self._send("GET", "/api/sitemaster/run", None, token)

    # --- transport ---

    async def _send(self, method: str, path: str, body: Any, token: str | None) -> httpx.Response:
        http = await self._client()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        where = f"{method} {path} on {self._url}"
        try:
            response = await http.request(
                method, path, json=body, headers=headers, extensions={"sni_hostname": SNI_NAME}
            )
        except httpx.TimeoutException as e:
            raise UnavailableError(f"{where}: no answer within {self._timeout_s} s") from e
        except httpx.TransportError as e:
            if certificate_refused(e) and self._fingerprint is not None:
                raise CertificateMismatchError(self._url, self._fingerprint, None) from e
            raise UnavailableError(f"{where}: cannot reach the gateway ({e})") from e
        log.debug("%s -> %d", where, response.status_code)
        return response

    async def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            der = await presented_certificate(
                self._host, self._port, sni=SNI_NAME, timeout_s=self._timeout_s
            )
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


def _took_effect(current: m.Operation, target: m.OperationWrite) -> bool:
    reserve = target.backup_reserve_percent
    return current.real_mode == target.real_mode and (
        reserve is None or abs(current.backup_reserve_percent - reserve) < 0.01
    )


def _raise_for(response: httpx.Response, where: str) -> None:
    """The error branch for an HTTP error answer; nothing for a success."""
    code = response.status_code
    if code < 400:
        return
    if code == 502 and not response.content:
        raise UnavailableError(
            f"{where}: 502 with an empty body: sitemaster is not running (stopped, updating or"
            " rebooting); the readings are stale"
        )
    body = _error_body(response)
    said = f" ({body.error}: {body.message})" if body else ""
    if code == 503:
        retry = _retry_after(response) or BUSY_RETRY_S
        raise GatewayBusyError(
            f"{where}: the gateway is busy (503){said}; retry in {retry:.0f} s", retry
        )
    if code == 429:
        retry = _retry_after(response) or LOGIN_COOLDOWN_S
        raise RateLimitedError(f"{where}: rate limited (429){said}", retry_after_s=retry)
    if code == 404:
        raise NotSupportedError(f"{where}: not available on this gateway's firmware (404)")
    if code == 500 and body and body.error.startswith("RealMode must be"):
        raise NotSupportedError(
            f"{where}: autonomous cannot be set locally on this firmware{said}; only"
            " self_consumption and backup can; set autonomous (time-based control) from the"
            " Tesla app or through the Fleet API"
        )
    raise UnavailableError(f"{where}: the gateway answered {code}{said}")


def _error_body(response: httpx.Response) -> m.ErrorBody | None:
    try:
        return m.ErrorBody.model_validate_json(response.content)
    except ValidationError:
        return None


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers.get("retry-after", ""))
    except ValueError:
        return None


def _parse(response: httpx.Response, model: type[_M], where: str) -> _M:
    try:
        return model.model_validate_json(response.content)
    except ValidationError as e:
        first = ".".join(str(p) for p in e.errors()[0]["loc"]) or "(the body)"
        raise UnavailableError(
            f"{where}: an answer this client does not understand ({e.error_count()} problems,"
            f" first at {first})"
        ) from e
