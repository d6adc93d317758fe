"""A client of the Wallbox cloud that keeps the account usable: few calls, few sign-ins.

- **Sign-in** (``users/signin``, Basic auth and ``Partner: wallbox``) only when there is no
  token that a refresh can renew; the legacy ``auth/token/user`` when the sign-in route is
  gone (404). Sign-ins are spaced ``signin_interval_s`` apart: each opens one of the
  account's few sessions and a loop would log the owner's app out. A refused sign-in, or
  one needed again too soon, latches "needs re-authentication" (``AuthenticationError``)
  until ``reauthenticate()``.
- **Refresh** ``refresh_margin_s`` before the access token's ``ttl`` (absolute epoch ms,
  turned into local time by the token's ``iat``); a refused refresh falls back to one sign-in.
- **Budgets**: token buckets for reads (default 1 a minute) and writes; a 429, or a 403 that
  outlives one renewal of the tokens (the cloud throttles with 403 too), starts an
  exponential backoff with jitter during which calls fail at once with ``RateLimitedError``.
- **Writes** only on change, each read back: ``confirm`` polls the status within the read
  budget until the change shows, else ``UnavailableError``; unconfirmed writes are kept as
  ``pending`` and checked by every read. "On change" compares with what the charger will
  have: a setting written and not yet seen applied (the cloud applies writes seconds later,
  and the last read may be a minute old) counts over the last read, so a resume right after
  a pause is sent, and a write replaces the pending one of the same setting.
- 404 means the API moved (or the charger is not on the account): ``NotSupportedError``.

Tokens (the JWT carries the owner's email) are ``Secret``\\ s kept in the vault; no message
holds one, nor the password or the email.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpx

from surplus.domain.errors import (
    AuthenticationError,
    NotSupportedError,
    RateLimitedError,
    UnavailableError,
)
from surplus.integrations.closing import Closing
from surplus.integrations.wallbox.budget import Backoff, TokenBucket
from surplus.integrations.wallbox.models import (
    ChargingSessionRecord,
    WallboxStatus,
    parse_session,
    parse_status,
)
from surplus.integrations.wallbox.statuses import StatusGroup
from surplus.integrations.wallbox.tokens import (
    WallboxTokens,
    clock_skew_s,
    load_tokens,
    store_tokens,
)
from surplus.security.vault import Secret, Vault

__all__ = ["API_URL", "USER_URL", "WallboxClient", "Write"]

log = logging.getLogger(__name__)

USER_URL = "https://user-api.wall-box.com"
API_URL = "https://api.wall-box.com"
MIN_CURRENT_A = 6
RESUME, PAUSE = 1, 2
SSO_HINT = "accounts that sign in with Google cannot use a password here"


class Write(StrEnum):
    """What became of a write."""

    UNCHANGED = "unchanged"  # the charger already had it: nothing sent
    APPLIED = "applied"  # sent and read back
    SENT = "sent"  # sent; the reads to come check it


@dataclass(frozen=True, slots=True)
class _Expectation:
    what: str
    check: Callable[[WallboxStatus], bool]
    deadline: float
    setting: str  # what the write sets: "current", "lock" or "pause"
    value: int | bool  # the value written: amperes, locked, paused


def _ssl(ca_file: Path | None) -> ssl.SSLContext | bool:
    if ca_file is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as e:
        raise UnavailableError(
            f"the CA file {ca_file} cannot be used ({e}); check ca_file"
        ) from None


class WallboxClient(Closing):
    """One Wallbox account. ``clock`` is wall time (token expiries, budgets); ``sleep`` waits
    for the budget (both injectable for tests)."""

    def __init__(
        self,
        email: str,
        password: Secret,
        *,
        user_url: str = USER_URL,
        api_url: str = API_URL,
        ca_file: Path | None = None,
        reads_per_minute: float = 1.0,
        writes_per_minute: float = 5.0,
        timeout_s: float = 10.0,
        vault: Vault | None = None,
        token_entry: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        refresh_margin_s: float = 60.0,
        signin_interval_s: float = 600.0,
        confirm_timeout_s: float = 180.0,
        backoff_base_s: float = 60.0,
        backoff_cap_s: float = 900.0,
        seed: int | None = None,
    ) -> None:
        self._email = email
        self._password = password
        self._user_url = user_url.rstrip("/")
        self._api_url = api_url.rstrip("/")
        self._clock = clock
        self._sleep = sleep
        self._vault = vault
        self._entry = token_entry
        self.refresh_margin_s = refresh_margin_s
        self.signin_interval_s = signin_interval_s
        self.confirm_timeout_s = confirm_timeout_s
        self.page_size = 1000
        now = self._now()
        self._reads = TokenBucket(reads_per_minute, now=now)
        self._writes = TokenBucket(writes_per_minute, now=now)
        self._backoff = Backoff(backoff_base_s, backoff_cap_s, seed=seed)
        self._tokens = load_tokens(vault, token_entry)
        self._last_signin: float | None = None
        self._renewed_on_403 = False
        self._reauth: str | None = None
        self._last: dict[int, WallboxStatus] = {}
        self._pending: dict[int, list[_Expectation]] = {}
        self._unapplied: dict[int, list[_Expectation]] = {}
        self.calls = 0  # requests sent to the charger API
        self.reads = 0  # of which reads (GET)
        self.writes = 0  # and writes
        self._http = httpx.AsyncClient(
            verify=_ssl(ca_file), timeout=timeout_s, follow_redirects=False
        )

    def __repr__(self) -> str:
        return f"WallboxClient({self._api_url!r}, {self._user_url!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    def _now(self) -> float:
        return self._clock().timestamp()

    # --- authentication ---

    @property
    def needs_reauth(self) -> str | None:
        """Why the owner must sign in again; None while the client can go on."""
        return self._reauth

    def reauthenticate(self, password: Secret | None = None) -> None:
        """The owner acted (a new password, or the account fixed): sign in again once."""
        if password is not None:
            self._password = password
        self._reauth = None
        self._last_signin = None

    def _latch(self, why: str) -> AuthenticationError:
        self._reauth = why
        log.warning("Wallbox account needs re-authentication: %s", why)
        return AuthenticationError(f"needs re-authentication: {why}")

    async def _bearer(self) -> Secret:
        if self._reauth is not None:
            raise AuthenticationError(f"needs re-authentication: {self._reauth}")
        now, tokens = self._now(), self._tokens
        if tokens is not None and tokens.access_valid(now, self.refresh_margin_s):
            return tokens.access
        if tokens is not None and tokens.refresh_valid(now):
            try:
                return await self._refresh(tokens)
            except AuthenticationError as err:
                log.info("the Wallbox refresh token was refused (%s); signing in once", err)
        return await self._signin()

    async def _refresh(self, tokens: WallboxTokens) -> Secret:
        assert tokens.refresh is not None  # refresh_valid says so
        url = f"{self._user_url}/users/refresh-token"
        headers = {"Authorization": f"Bearer {tokens.refresh.reveal()}", "Partner": "wallbox"}
        response = await self._send("GET", url, headers=headers)
        if response.status_code in (401, 403):
            self._tokens = None
            raise AuthenticationError(f"the refresh was refused ({response.status_code})")
        self._raise_for(response, "the token refresh")
        return self._keep(self._attributes(response), tokens.refresh, tokens.refresh_expires)

    async def _signin(self) -> Secret:
        now = self._now()
        if self._last_signin is not None and now - self._last_signin < self.signin_interval_s:
            raise self._latch(
                "the account's session ended again soon after a sign-in; signing in again"
                " would log the owner's app out (the account allows few sessions)"
            )
        self._last_signin = now
        auth = httpx.BasicAuth(self._email, self._password.reveal())
        url = f"{self._user_url}/users/signin"
        response = await self._send("GET", url, auth=auth, headers={"Partner": "wallbox"})
        if response.status_code == 404:
            log.info("users/signin is gone (404); trying the legacy auth/token/user")
            return await self._legacy_signin(auth)
        if response.status_code in (401, 403):
            raise self._latch(
                f"the sign-in was refused ({response.status_code}); check the email and the"
                f" password in the vault ({SSO_HINT})"
            )
        self._raise_for(response, "the sign-in")
        log.info("signed in to the Wallbox cloud")
        return self._keep(self._attributes(response), None, None)

    async def _legacy_signin(self, auth: httpx.BasicAuth) -> Secret:
        response = await self._send("GET", f"{self._api_url}/auth/token/user", auth=auth)
        if response.status_code in (401, 403):
            raise self._latch(f"the sign-in was refused ({response.status_code}) ({SSO_HINT})")
        self._raise_for(response, "the legacy sign-in")
        body = _json(response)
        if not isinstance(body, dict) or not isinstance(body.get("jwt"), str):
            raise UnavailableError("the legacy sign-in answered no token")
        return self._keep({"token": body["jwt"], "ttl": body.get("ttl")}, None, None)

    def _attributes(self, response: httpx.Response) -> dict[str, Any]:
        body = _json(response)
        try:
            attrs = body["data"]["attributes"]
        except (KeyError, TypeError):
            raise UnavailableError("the Wallbox sign-in answered no token") from None
        if not isinstance(attrs, dict) or not isinstance(attrs.get("token"), str):
            raise UnavailableError("the Wallbox sign-in answered no token")
        return attrs

    def _keep(
        self, attrs: dict[str, Any], refresh: Secret | None, refresh_expires: float | None
    ) -> Secret:
        """Keep the tokens of a sign-in or refresh answer, expiries in local time."""
        now = self._now()
        access = Secret(attrs["token"])
        skew = clock_skew_s(access, now)
        ttl = attrs.get("ttl")
        # without a usable ttl the token is used until the cloud refuses it
        expires = ttl / 1000 - skew if isinstance(ttl, int | float) else now + 600.0
        if isinstance(attrs.get("refresh_token"), str):
            refresh = Secret(attrs["refresh_token"])
            refresh_ttl = attrs.get("refresh_token_ttl")
            refresh_expires = (
                refresh_ttl / 1000 - skew if isinstance(refresh_ttl, int | float) else None
            )
        self._tokens = WallboxTokens(access, expires, refresh, refresh_expires)
        store_tokens(self._vault, self._entry, self._tokens)
        return access

    # --- calls ---

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        path = httpx.URL(url).path
        try:
            return await self._http.request(method, url, **kwargs)
        except httpx.TimeoutException as e:
            raise UnavailableError(f"{method} {path}: the Wallbox cloud did not answer") from e
        except httpx.TransportError as e:
            raise UnavailableError(f"{method} {path}: cannot reach the Wallbox cloud") from e

    def _raise_for(self, response: httpx.Response, what: str) -> None:
        code = response.status_code
        if code < 300:
            return
        message = _message(response)
        if code == 429:
            delay = self._backoff.fail(self._now(), _retry_after(response))
            raise RateLimitedError(f"{what}: too many calls (429){message}", delay)
        if code == 404:
            raise NotSupportedError(
                f"{what} answered 404{message}: the charger is not on the account, or the"
                " Wallbox API moved (check api_url and user_url)"
            )
        raise UnavailableError(f"{what} answered {code}{message}")

    async def _call(self, method: str, path: str, *, body: Any = None) -> Any:
        """A charger-API call within the budget, renewing the tokens once on 401 or 403."""
        what = f"{method} {path.split('?', maxsplit=1)[0]}"
        left = self._backoff.left_s(self._now())
        if left > 0:
            raise RateLimitedError(f"{what}: backing off after throttling", left)
        bucket = self._reads if method == "GET" else self._writes
        for attempt in (1, 2):
            await self._spend(bucket)
            token = await self._bearer()
            headers = {"Authorization": f"Bearer {token.reveal()}"}
            self.calls += 1
            if method == "GET":
                self.reads += 1
            else:
                self.writes += 1
            response = await self._send(method, self._api_url + path, headers=headers, json=body)
            code = response.status_code
            if code == 401 and attempt == 1:
                self._drop_access()
                continue
            if code == 403:
                if attempt == 1 and not self._renewed_on_403:
                    # a token the cloud stopped honouring looks the same as throttling
                    self._renewed_on_403 = True
                    self._drop_access()
                    continue
                delay = self._backoff.fail(self._now())
                raise RateLimitedError(f"{what}: refused (403), taken for throttling", delay)
            if code == 401:
                raise UnavailableError(f"{what}: the cloud refused a fresh token (401)")
            self._raise_for(response, what)
            self._backoff.succeed()
            self._renewed_on_403 = False
            return _json(response)
        raise AssertionError("unreachable")

    def _drop_access(self) -> None:
        if self._tokens is not None:
            t = self._tokens
            self._tokens = WallboxTokens(t.access, 0.0, t.refresh, t.refresh_expires)

    async def _spend(self, bucket: TokenBucket) -> None:
        while not bucket.take(self._now()):
            await self._sleep(bucket.wait_s(self._now()))

    # --- reading ---

    async def status(self, charger_id: int) -> WallboxStatus:
        """The charger's status (one read of the budget); checks the pending writes."""
        body = await self._call("GET", f"/chargers/status/{charger_id}")
        try:
            status = parse_status(charger_id, body, self._clock())
        except ValueError as e:
            raise UnavailableError(f"charger {charger_id}: {e}") from None
        self._last[charger_id] = status
        self._check_pending(status)
        return status

    def last_status(self, charger_id: int) -> WallboxStatus | None:
        return self._last.get(charger_id)

    def pending(self, charger_id: int) -> list[str]:
        """Writes sent and not yet seen applied."""
        return [e.what for e in self._pending.get(charger_id, [])]

    def on_its_way(self, charger_id: int, setting: str) -> int | bool | None:
        """The value of ``setting`` ("current", "lock" or "pause") written and not yet seen
        applied: what the charger will have, whatever the last read says; None if none."""
        for e in reversed(self._pending.get(charger_id, [])):
            if e.setting == setting:
                return e.value
        return None

    def unapplied(self, charger_id: int) -> list[str]:
        """Writes the charger accepted and did not apply in time (cleared by the next write,
        or by a read showing them applied after all)."""
        return [e.what for e in self._unapplied.get(charger_id, [])]

    def _check_pending(self, status: WallboxStatus) -> None:
        if status.offline:
            return  # an offline charger's status shows nothing new
        now, kept = self._now(), []
        late = [e for e in self._unapplied.get(status.charger_id, []) if not e.check(status)]
        self._unapplied[status.charger_id] = late
        for e in self._pending.get(status.charger_id, []):
            if e.check(status):
                continue
            if now >= e.deadline:
                late.append(e)
                log.warning(
                    "charger %s accepted %s but did not apply it", status.charger_id, e.what
                )
            else:
                kept.append(e)
        self._pending[status.charger_id] = kept

    async def sessions(
        self, charger_id: int, start: datetime, end: datetime, *, group_id: int | None = None
    ) -> list[ChargingSessionRecord]:
        """The sessions that started in ``[start, end)``, energy in kWh; the newer group route
        first, the older ``sessions/stats`` if that one is gone. One read per page."""
        t0, t1 = int(start.timestamp()), int(end.timestamp())
        try:
            group = group_id if group_id is not None else await self._group_of(charger_id)
            filters = json.dumps(
                {
                    "filters": [
                        {"field": "start_time", "operator": "gte", "value": t0},
                        {"field": "start_time", "operator": "lt", "value": t1},
                        {"field": "charger_id", "operator": "eq", "value": charger_id},
                    ]
                }
            )
            query = httpx.QueryParams(
                {
                    "filters": filters,
                    "fields[charger_charging_session]": "",
                    "limit": self.page_size,
                }
            )
            path = f"/v4/groups/{group}/charger-charging-sessions?{query}"
            return await self._pages(path)
        except NotSupportedError as err:
            log.info("the group sessions route failed (%s); trying sessions/stats", err)
        query = httpx.QueryParams(
            {"charger": charger_id, "start_date": t0, "end_date": t1, "limit": self.page_size}
        )
        return await self._pages(f"/v4/sessions/stats?{query}")

    async def _group_of(self, charger_id: int) -> int:
        body = await self._call("GET", "/v3/chargers/groups")
        try:
            for group in body["result"]["groups"]:
                if any(c.get("id") == charger_id for c in group["chargers"]):
                    return int(group["id"])
        except (KeyError, TypeError, ValueError):
            pass
        raise NotSupportedError(f"charger {charger_id} is in none of the account's groups")

    async def _pages(self, path: str) -> list[ChargingSessionRecord]:
        records: list[ChargingSessionRecord] = []
        following: str | None = path
        while following:
            body = await self._call("GET", following)
            items = body.get("data") if isinstance(body, dict) else None
            records += [r for r in map(parse_session, items or []) if r is not None]
            links = body.get("links") if isinstance(body, dict) else None
            following = links.get("next") if isinstance(links, dict) else None
            if following and following.startswith("http"):
                following = httpx.URL(following).raw_path.decode("ascii")
        return records

    # --- writing ---

    async def _current(self, charger_id: int) -> WallboxStatus:
        status = self._last.get(charger_id)
        return status if status is not None else await self.status(charger_id)

    async def set_max_current(self, charger_id: int, amps: float, *, confirm: bool = True) -> Write:
        """The maximum charging current, clamped to 6 A .. the charger's maximum."""
        status = await self._current(charger_id)
        top = status.max_available_current_a or 32
        target = int(max(MIN_CURRENT_A, min(round(amps), top)))
        if self.on_its_way(charger_id, "current") is None and (
            status.max_charging_current_a == target
        ):
            return Write.UNCHANGED
        return await self._write(
            status,
            f"a limit of {target} A",
            ("PUT", f"/v2/charger/{charger_id}", {"maxChargingCurrent": target}),
            lambda s: s.max_charging_current_a == target,
            confirm,
            ("current", target),
        )

    async def set_locked(self, charger_id: int, locked: bool, *, confirm: bool = True) -> Write:
        status = await self._current(charger_id)
        if self.on_its_way(charger_id, "lock") is None and status.locked is locked:
            return Write.UNCHANGED
        return await self._write(
            status,
            "the lock" if locked else "the unlock",
            ("PUT", f"/v2/charger/{charger_id}", {"locked": int(locked)}),
            lambda s: s.locked is locked,
            confirm,
            ("lock", locked),
        )

    async def pause(self, charger_id: int, *, confirm: bool = True) -> Write:
        status = await self._current(charger_id)
        if self.on_its_way(charger_id, "pause") is None and (
            status.group is StatusGroup.PAUSED or not status.car_connected
        ):
            return Write.UNCHANGED
        return await self._write(
            status,
            "the pause",
            ("POST", f"/v3/chargers/{charger_id}/remote-action", {"action": PAUSE}),
            lambda s: s.group is StatusGroup.PAUSED or not s.car_connected,
            confirm,
            ("pause", True),
        )

    async def resume(self, charger_id: int, *, confirm: bool = True) -> Write:
        status = await self._current(charger_id)
        if self.on_its_way(charger_id, "pause") is None and (
            status.group is not StatusGroup.PAUSED
        ):
            return Write.UNCHANGED
        return await self._write(
            status,
            "the resume",
            ("POST", f"/v3/chargers/{charger_id}/remote-action", {"action": RESUME}),
            lambda s: s.group is not StatusGroup.PAUSED,
            confirm,
            ("pause", False),
        )

    async def _write(
        self,
        status: WallboxStatus,
        what: str,
        request: tuple[str, str, dict[str, int]],
        check: Callable[[WallboxStatus], bool],
        confirm: bool,
        sets: tuple[str, int | bool],
    ) -> Write:
        if what in self.pending(status.charger_id) and not confirm:
            return Write.SENT  # the same write is on its way: not sent twice
        self._refuse_offline(status)
        method, path, body = request
        await self._call(method, path, body=body)
        return await self._settle(status.charger_id, what, check, confirm, sets)

    def _refuse_offline(self, status: WallboxStatus) -> None:
        if status.offline:
            raise UnavailableError(
                f"charger {status.charger_id} is {status.label.lower()} ({status.status_id}):"
                " not acting on stale state"
            )

    async def _settle(
        self,
        charger_id: int,
        what: str,
        check: Callable[[WallboxStatus], bool],
        confirm: bool,
        sets: tuple[str, int | bool],
    ) -> Write:
        """Track the write until a read shows it; with ``confirm`` read until it does. It
        replaces a pending write of the same setting (the charger applies them in order)."""
        self._unapplied.pop(charger_id, None)
        deadline = self._now() + self.confirm_timeout_s
        setting, value = sets
        queue = self._pending.setdefault(charger_id, [])
        queue[:] = [e for e in queue if e.setting != setting]
        expectation = _Expectation(what, check, deadline, setting, value)
        queue.append(expectation)
        if not confirm:
            return Write.SENT
        while self._now() < deadline:
            try:
                await self.status(charger_id)
            except RateLimitedError as err:
                await self._sleep(err.retry_after_s or 60.0)
                continue
            if expectation not in self._pending.get(charger_id, []):
                break
        if what in self.unapplied(charger_id) or expectation in self._pending.get(charger_id, []):
            raise UnavailableError(
                f"charger {charger_id} accepted {what} but did not apply it within"
                f" {self.confirm_timeout_s:g} s"
            )
        return Write.APPLIED


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise UnavailableError(
            f"{response.request.method} {response.request.url.path} answered no JSON"
        ) from None


def _message(response: httpx.Response) -> str:
    try:
        message = response.json().get("message")
    except (ValueError, AttributeError):
        return ""
    return f": {message[:200]}" if isinstance(message, str) and message else ""


def _retry_after(response: httpx.Response) -> float:
    try:
        return float(response.headers.get("retry-after", 0))
    except ValueError:
        return 0.0
