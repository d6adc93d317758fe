"""The simulated Tesla Fleet API and its OAuth server without HTTP: tokens, vehicles that
sleep and charge, commands with Tesla's quirks, signing, rate limits, billing, energy sites.

OAuth (reference B, E1.10): an authorization code carries the account's region prefix
(``EU_…``) and, when the request had one, a PKCE S256 challenge the exchange must answer.
Access tokens live ``access_ttl_s`` (28800). Refresh tokens rotate: using one issues the next;
the one just used stays valid for ``refresh_grace_s`` (24 h) from its first use, and every
older one answers 401 ``login_required``. Two concurrent refreshes with the same token thus
leave the first answer's refresh token invalid, as on Tesla's server.

Vehicles (E1.11–13): driven by ``sim.devices.ElectricVehicle``. A car goes to sleep after
``sleep_after_s`` without charging or API traffic; asleep it answers 408 to data and commands,
``wake_up`` answers ``asleep`` at once and the car is online ``wake_delay_s`` later. Every
command answers 200 with ``result``/``reason``: amps below 5 A apply only on the second call
with the same value, amps are clamped to ``charge_current_request_max``, a charge limit
outside 50–100 answers ``result:true`` and is clamped. A car with ``command_signing =
"required"`` answers unsigned commands 403 (protocol required); the proxy listener
(``tesla-http-proxy`` stand-in) counts as signed.

Fleet checks (E1.14–15), in the order Tesla's gateway plausibly applies them (an inference):
billing (402 once the cost passed ``billing_cap_usd``), app registered in the region (412),
region (421), token (401), scopes (403), content type on writes (406), then per-vehicle
buckets (60 data, 30 commands, 3 wakes a minute; 429 with ``Retry-After``). Every answer
below 500 is billed at the reference's prices.

Time: ``clock`` gives real time; simulated time runs ``speed`` times as fast from the start,
for the car's physics and its sleep and wake delays; tokens and rate limits use it too.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from surplus.integrations.tesla.models import ASLEEP, MISSING_SCOPES, PROTOCOL_REQUIRED
from surplus.sim.devices import ElectricVehicle
from surplus.sim.serving import Faults

__all__ = ["FAULTS", "Faults", "FleetError", "FleetSimulator", "SimSite", "SimVehicle"]

MAX_STEP_S = 60.0
PRICES_USD = {"data": 0.002, "command": 0.001, "wake": 0.02}
LIMITS = {"data": 60, "command": 30, "wake": 3}  # per vehicle and minute
VEHICLE_SCOPES = {"data": "vehicle_device_data", "command": "vehicle_charging_cmds"}
SITE_SCOPES = {"data": "energy_device_data", "command": "energy_cmds"}

FAULTS = frozenset(
    {
        "unavailable_503",  # vehicle and site endpoints answer 503
        "timeout_504",  # … 504
        "device_540",  # … 540 (device unexpected response)
        "billing_402",  # the app is disabled for billing: 402 everywhere on /api
        "unregistered_412",  # the app is not registered in the account's region
        "site_stale_404",  # energy site endpoints answer 404
        "site_upstream_500",  # energy site endpoints answer 500 upstream internal error
        "ack_ignored",  # commands and site writes answer success and change nothing
        "token_revoked",  # every access token answers 401 with no body (as after expiry)
        "lose_refresh_answer",  # the token endpoint rotates, then answers 504
    }
)


class FleetError(Exception):
    """An HTTP error answer: ``status``, the ``error`` text (None: no body), headers."""

    def __init__(
        self, status: int, error: str | None, headers: dict[str, str] | None = None
    ) -> None:
        self.status = status
        self.error = error
        self.headers = headers or {}
        super().__init__(f"{status} {error or '(no body)'}")

    def body(self) -> dict[str, Any] | None:
        if self.error is None:
            return None
        return {"response": None, "error": self.error, "error_description": ""}


@dataclass(slots=True)
class _Family:
    """One authorization's chain of refresh tokens."""

    client_id: str
    scopes: frozenset[str]
    current: str
    previous: str | None = None
    previous_used_at: datetime | None = None
    issued_at: dict[str, datetime] = field(default_factory=dict)


@dataclass(slots=True)
class _Code:
    client_id: str
    redirect_uri: str
    scopes: frozenset[str]
    challenge: str | None
    issued_at: datetime


@dataclass(slots=True)
class SimVehicle:
    """One car: its identity, its cloud state and its charge port."""

    vin: str
    id: int
    car: ElectricVehicle = field(default_factory=ElectricVehicle)
    display_name: str = "Model 3"
    command_signing: str = "allowed"  # "required": unsigned commands are refused
    state: str = "online"
    plugged: bool = False
    charge_on: bool = False  # the car wants to charge (charge_start given, or on plug-in)
    charge_limit_soc: int = 80
    charge_current_request: int = 16
    charge_current_request_max: int = 16
    phases: int = 3
    volts: float = 230.0
    energy_added_kwh: float = 0.0
    power: float = 0.0  # W drawn now
    low_amps_pending: int | None = None
    wake_at: datetime | None = None
    idle_since: datetime | None = None
    calls: dict[str, deque[datetime]] = field(default_factory=dict)

    @property
    def charging_state(self) -> str:
        if not self.plugged:
            return "Disconnected"
        if self.car.soc_pct >= self.charge_limit_soc - 0.05:
            return "Complete"
        return "Charging" if self.charge_on else "Stopped"

    def power_w(self) -> float:
        """What the car draws from the site now (W), for a site simulation to add to its load."""
        return self.power


@dataclass(slots=True)
class SimSite:
    """An energy site with a Powerwall, as the Fleet API shows it."""

    energy_site_id: int = 1_234_567
    site_name: str = "Home"
    solar_w: float = 3_000.0
    base_load_w: float = 800.0
    battery_w: float = 0.0
    percentage_charged: float = 60.0
    backup_reserve_percent: int = 20
    default_real_mode: str = "self_consumption"
    storm_mode_enabled: bool = False
    export_rule: str = "pv_only"
    disallow_grid_charging: bool | None = None  # absent key: grid charging allowed


class FleetSimulator:
    """The Fleet API's state: an account in ``region`` with its vehicles and sites."""

    def __init__(
        self,
        *,
        client_id: str = "sim-client-id",
        client_secret: str | None = None,
        region: str = "eu",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        speed: float = 1.0,
        access_ttl_s: float = 28_800.0,
        refresh_grace_s: float = 86_400.0,
        refresh_ttl_s: float = 90 * 86_400.0,
        wake_delay_s: float = 20.0,
        sleep_after_s: float = 900.0,
        billing_cap_usd: float | None = None,
    ) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, not {speed}")
        self.client_id = client_id
        self.client_secret = client_secret
        self.region = region
        self.clock = clock
        self.speed = speed
        self.access_ttl_s = access_ttl_s
        self.refresh_grace_s = refresh_grace_s
        self.refresh_ttl_s = refresh_ttl_s
        self.wake_delay_s = wake_delay_s
        self.sleep_after_s = sleep_after_s
        self.billing_cap_usd = billing_cap_usd
        self.faults = Faults(FAULTS)
        self.vehicles: dict[str, SimVehicle] = {}
        self.sites: dict[int, SimSite] = {}
        self.requests: Counter[str] = Counter()  # "METHOD /path" -> count
        self.cost_usd = 0.0
        self.billed: Counter[str] = Counter()  # "data" | "command" | "wake" -> count
        self.tokens_issued: list[str] = []  # so tests can show that none ever leaks
        self._real_start = clock()
        self._t = self._real_start
        self._codes: dict[str, _Code] = {}
        self._families: list[_Family] = []
        self._access: dict[str, tuple[_Family, datetime]] = {}

    # --- time ---

    def now(self) -> datetime:
        """Simulated time: ``speed`` times as fast as ``clock`` since the start."""
        return self._real_start + (self.clock() - self._real_start) * self.speed

    # --- setup ---

    def add_vehicle(self, vin: str, **kwargs: Any) -> SimVehicle:
        vehicle = SimVehicle(vin=vin, id=1_000 + len(self.vehicles), **kwargs)
        vehicle.idle_since = self.now()
        self.vehicles[vin] = vehicle
        return vehicle

    def add_site(self, **kwargs: Any) -> SimSite:
        site = SimSite(**kwargs)
        self.sites[site.energy_site_id] = site
        return site

    def plug_in(self, vin: str) -> None:
        """The owner plugs the cable in: the car wakes and, under its limit, starts charging."""
        self.advance()
        v = self.vehicles[vin]
        v.plugged, v.charge_on, v.state, v.wake_at = True, True, "online", None
        v.energy_added_kwh = 0.0
        v.idle_since = self.now()
        self._update_power(v)

    def unplug(self, vin: str) -> None:
        """The owner unlocks the charge port and pulls the cable: that wakes the car too."""
        self.advance()
        v = self.vehicles[vin]
        v.plugged, v.charge_on, v.power = False, False, 0.0
        v.state, v.wake_at = "online", None
        v.idle_since = self.now()

    def fall_asleep(self, vin: str) -> None:
        self.advance()
        v = self.vehicles[vin]
        if v.power == 0.0:
            v.state, v.wake_at = "asleep", None

    # --- OAuth ---

    def issue_code(
        self,
        client_id: str,
        redirect_uri: str,
        scope: str,
        challenge: str | None = None,
        method: str | None = None,
    ) -> str:
        """``/oauth2/v3/authorize`` once the owner consented: a code with the region prefix."""
        if client_id != self.client_id:
            raise FleetError(400, "unauthorized_client")
        if challenge is not None and method != "S256":
            raise FleetError(400, "invalid_request")
        code = f"{self.region.upper()}_{secrets.token_hex(24)}"
        self._codes[code] = _Code(
            client_id, redirect_uri, frozenset(scope.split()), challenge, self.now()
        )
        return code

    def grant(self, form: dict[str, str]) -> dict[str, Any]:
        """``POST /oauth2/v3/token``: ``authorization_code`` or ``refresh_token``."""
        if form.get("client_id") != self.client_id:
            raise FleetError(401, "invalid_client")
        kind = form.get("grant_type")
        if kind == "authorization_code":
            answer = self._exchange(form)
        elif kind == "refresh_token":
            answer = self._refresh(form.get("refresh_token", ""))
        else:
            raise FleetError(400, "unsupported_grant_type")
        if self.faults.take("lose_refresh_answer"):
            raise FleetError(504, None)
        return answer

    def _exchange(self, form: dict[str, str]) -> dict[str, Any]:
        code = self._codes.pop(form.get("code", ""), None)
        if code is None or self.now() - code.issued_at > timedelta(minutes=10):
            raise FleetError(400, "invalid_auth_code")
        if form.get("redirect_uri") != code.redirect_uri:
            raise FleetError(400, "invalid_redirect_url")
        if code.challenge is not None:
            verifier = form.get("code_verifier", "")
            digest = hashlib.sha256(verifier.encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != code.challenge:
                raise FleetError(400, "invalid_grant")
        elif self.client_secret is not None and form.get("client_secret") != self.client_secret:
            raise FleetError(401, "invalid_client")
        refresh = self._new_refresh()
        family = _Family(code.client_id, code.scopes, refresh, issued_at={refresh: self.now()})
        self._families.append(family)
        return self._tokens(family, refresh)

    def issue_refresh_token(self, scope: str) -> str:
        """A refresh token as if the owner had authorized (for ``surplus sim tesla``)."""
        refresh = self._new_refresh()
        family = _Family(self.client_id, frozenset(scope.split()), refresh)
        family.issued_at[refresh] = self.now()
        self._families.append(family)
        return refresh

    def _refresh(self, token: str) -> dict[str, Any]:
        now = self.now()
        for family in self._families:
            if token == family.current:
                family.previous, family.previous_used_at = token, now
                break
            if token == family.previous:
                used = family.previous_used_at
                if used is None or now - used > timedelta(seconds=self.refresh_grace_s):
                    raise FleetError(401, "login_required")
                break
        else:
            raise FleetError(401, "login_required")
        if now - family.issued_at[token] > timedelta(seconds=self.refresh_ttl_s):
            raise FleetError(401, "login_required")
        family.current = self._new_refresh()
        family.issued_at[family.current] = now
        return self._tokens(family, family.current)

    def _new_refresh(self) -> str:
        token = f"{self.region.upper()}_{secrets.token_hex(32)}"
        self.tokens_issued.append(token)
        return token

    def _tokens(self, family: _Family, refresh: str) -> dict[str, Any]:
        access = secrets.token_urlsafe(48)
        self.tokens_issued.append(access)
        self._access[access] = (family, self.now() + timedelta(seconds=self.access_ttl_s))
        return {
            "access_token": access,
            "refresh_token": refresh,
            "id_token": secrets.token_urlsafe(24),
            "expires_in": int(self.access_ttl_s),
            "token_type": "Bearer",
            "scope": " ".join(sorted(family.scopes)),
        }

    def scopes_of(self, access: str) -> frozenset[str]:
        entry = self._access.get(access)
        return frozenset() if entry is None else entry[0].scopes

    # --- the checks in front of every Fleet API call ---

    def admit(
        self, region: str | None, token: str | None, *, scope: str | None, write: bool, json: bool
    ) -> None:
        """Billing, registration, region (None: the proxy, which knows it), token, scope and
        content type, each answered as Tesla does."""
        if "billing_402" in self.faults or (
            self.billing_cap_usd is not None and self.cost_usd >= self.billing_cap_usd
        ):
            raise FleetError(402, "Payment required: the application is disabled")
        if "unregistered_412" in self.faults:
            raise FleetError(412, "Account must be registered in the current region " + self.region)
        if region is not None and region != self.region:
            raise FleetError(421, f"user out of region, use base URL for {self.region}")
        entry = self._access.get(token or "")
        if entry is None or self.faults.take("token_revoked"):
            raise FleetError(401, None if token else "invalid bearer token")
        if self.now() >= entry[1]:
            raise FleetError(401, "token expired (401)")
        if scope is not None and scope not in entry[0].scopes and not _covers(entry[0], scope):
            raise FleetError(403, MISSING_SCOPES)
        if write and not json:
            raise FleetError(406, "Content-Type must be application/json")

    def bill(self, kind: str | None, status: int) -> None:
        if kind is not None and status < 500:
            self.cost_usd += PRICES_USD[kind]
            self.billed[kind] += 1

    def take_slot(self, vehicle: SimVehicle, kind: str) -> None:
        """A call from ``vehicle``'s bucket ``kind``; 429 when the minute's calls are used."""
        now = self.now()
        calls = vehicle.calls.setdefault(kind, deque())
        while calls and now - calls[0] >= timedelta(minutes=1):
            calls.popleft()
        limit = LIMITS[kind]
        if len(calls) >= limit:
            reset = max(1, int(60 - (now - calls[0]).total_seconds() + 0.999))
            raise FleetError(
                429,
                "Too Many Requests",
                {
                    "Retry-After": str(reset),
                    "RateLimit-Limit": str(limit),
                    "RateLimit-Remaining": "0",
                    "RateLimit-Reset": str(reset),
                },
            )
        calls.append(now)

    def upstream(self, *, site: bool = False) -> None:
        """The faults of the vehicle (or site) behind the API."""
        for name, status, error in (
            ("unavailable_503", 503, "vehicle or internal service did not respond"),
            ("timeout_504", 504, "upstream timeout"),
            ("device_540", 540, "device unexpected response"),
        ):
            if self.faults.take(name):
                raise FleetError(status, error)
        if site and self.faults.take("site_stale_404"):
            raise FleetError(404, "not_found")
        if site and self.faults.take("site_upstream_500"):
            raise FleetError(500, "upstream internal error")

    # --- vehicles ---

    def vehicle(self, tag: str) -> SimVehicle:
        self.advance()
        for v in self.vehicles.values():
            if tag in (v.vin, str(v.id)):
                return v
        raise FleetError(404, "not_found")

    def summary(self, v: SimVehicle) -> dict[str, Any]:
        return {
            "id": v.id,
            "vehicle_id": v.id + 500_000,
            "vin": v.vin,
            "display_name": v.display_name,
            "state": v.state,
            "in_service": False,
            "id_s": str(v.id),
            "api_version": 71,
            "access_type": "OWNER",
            "command_signing": v.command_signing,
        }

    def vehicle_data(self, v: SimVehicle) -> dict[str, Any]:
        self._require_awake(v)
        v.idle_since = self.now()
        charging = v.power > 0.0
        amps = v.power / (v.phases * v.volts) if charging else 0.0
        return {
            "id": v.id,
            "vin": v.vin,
            "state": v.state,
            "charge_state": {
                "battery_level": round(v.car.soc_pct),
                "usable_battery_level": round(v.car.soc_pct),
                "charge_limit_soc": v.charge_limit_soc,
                "charge_limit_soc_min": 50,
                "charge_limit_soc_max": 100,
                "charge_limit_soc_std": 80,
                "charging_state": v.charging_state,
                "charge_amps": v.charge_current_request,
                "charge_current_request": v.charge_current_request,
                "charge_current_request_max": v.charge_current_request_max,
                "charger_actual_current": round(amps),
                "charger_pilot_current": v.charge_current_request_max if v.plugged else 0,
                "charger_voltage": round(v.volts) if charging else 2,
                "charger_phases": v.phases if charging else None,
                "charger_power": round(v.power / 1000.0),
                "charge_energy_added": round(v.energy_added_kwh, 2),
                "conn_charge_cable": "IEC" if v.plugged else "<invalid>",
                "charge_port_door_open": v.plugged,
                "fast_charger_present": False,
                "scheduled_charging_pending": False,
                "timestamp": int(self.now().timestamp() * 1000),
            },
        }

    def wake_up(self, v: SimVehicle) -> dict[str, Any]:
        if v.state != "online" and v.wake_at is None:
            v.wake_at = self.now() + timedelta(seconds=self.wake_delay_s)
        return self.summary(v)

    def command(self, v: SimVehicle, name: str, body: dict[str, Any], *, signed: bool) -> Any:
        self._require_awake(v)
        if v.command_signing == "required" and not signed:
            raise FleetError(403, PROTOCOL_REQUIRED)
        v.idle_since = self.now()
        if self.faults.take("ack_ignored"):
            return {"result": True, "reason": ""}
        handler = _COMMANDS.get(name)
        if handler is None:
            raise FleetError(400, "invalid_command")
        result, reason = handler(v, body)
        self._update_power(v)
        return {"result": result, "reason": reason}

    def _require_awake(self, v: SimVehicle) -> None:
        if v.state != "online":
            raise FleetError(408, ASLEEP)

    # --- energy sites ---

    def site(self, site_id: str) -> SimSite:
        self.advance()
        site = self.sites.get(int(site_id)) if site_id.isdigit() else None
        if site is None:
            raise FleetError(404, "not_found")
        return site

    def live_status(self, s: SimSite) -> dict[str, Any]:
        load = s.base_load_w + sum(v.power_w() for v in self.vehicles.values())
        return {
            "solar_power": s.solar_w,
            "percentage_charged": s.percentage_charged,
            "backup_capable": True,
            "battery_power": s.battery_w,
            "load_power": load,
            "grid_status": "Active",
            "grid_services_active": False,
            "grid_power": load - s.solar_w - s.battery_w,
            "grid_services_power": 0,
            "generator_power": 0,
            "island_status": "on_grid",
            "storm_mode_active": False,
            "timestamp": self.now().isoformat(),
            "wall_connectors": [],
        }

    def site_info(self, s: SimSite) -> dict[str, Any]:
        components: dict[str, Any] = {
            "battery": True,
            "solar": True,
            "grid": True,
            "customer_preferred_export_rule": s.export_rule,
            "non_export_configured": s.export_rule == "never",
        }
        if s.disallow_grid_charging is not None:
            components["disallow_charge_from_grid_with_solar_installed"] = s.disallow_grid_charging
        return {
            "id": str(s.energy_site_id),
            "site_name": s.site_name,
            "backup_reserve_percent": s.backup_reserve_percent,
            "default_real_mode": s.default_real_mode,
            "user_settings": {"storm_mode_enabled": s.storm_mode_enabled},
            "components": components,
            "version": "24.44.1",
            "battery_count": 1,
        }

    def site_write(self, s: SimSite, what: str, body: dict[str, Any]) -> dict[str, Any]:
        if not self.faults.take("ack_ignored"):
            _apply_site_write(s, what, body)
        return {"code": 201, "message": "Updated"}

    def products(self) -> list[dict[str, Any]]:
        self.advance()
        items = [self.summary(v) for v in self.vehicles.values()]
        items += [
            {
                "energy_site_id": s.energy_site_id,
                "resource_type": "battery",
                "site_name": s.site_name,
                "id": f"STE{s.energy_site_id}",
                "percentage_charged": s.percentage_charged,
                "battery_power": s.battery_w,
                "components": {"battery": True, "solar": True, "grid": True},
            }
            for s in self.sites.values()
        ]
        return items

    # --- physics ---

    def advance(self) -> None:
        """Step every car up to now: charging, the end of a wake-up, falling asleep."""
        now = self.now()
        while self._t < now:
            dt = min(MAX_STEP_S, (now - self._t).total_seconds())
            for v in self.vehicles.values():
                self._step(v, dt)
            self._t += timedelta(seconds=dt)
        for v in self.vehicles.values():
            if v.wake_at is not None and now >= v.wake_at:
                v.state, v.wake_at, v.idle_since = "online", None, now
            self._update_power(v)
            idle = v.idle_since is not None and now - v.idle_since >= timedelta(
                seconds=self.sleep_after_s
            )
            if v.state == "online" and v.power == 0.0 and idle:
                v.state = "asleep"

    def _step(self, v: SimVehicle, dt_s: float) -> None:
        if v.power <= 0.0:
            return
        before = v.car.energy_wh
        v.car.charge(v.power, dt_s)
        v.energy_added_kwh += (v.car.energy_wh - before) / 1000.0
        v.idle_since = self._t + timedelta(seconds=dt_s)
        self._update_power(v)

    def _update_power(self, v: SimVehicle) -> None:
        if v.charging_state != "Charging" or v.state != "online":
            v.power = 0.0
            return
        v.power = v.car.accepts_w(v.charge_current_request, v.phases, v.volts)


def _covers(family: _Family, scope: str) -> bool:
    # ``vehicle_cmds`` includes the charging commands.
    return scope == "vehicle_charging_cmds" and "vehicle_cmds" in family.scopes


def _charge_start(v: SimVehicle, body: dict[str, Any]) -> tuple[bool, str]:
    if not v.plugged:
        return False, "disconnected"
    if v.charging_state == "Complete":
        return False, "complete"
    if v.charge_on:
        return False, "is_charging"
    v.charge_on = True
    return True, ""


def _charge_stop(v: SimVehicle, body: dict[str, Any]) -> tuple[bool, str]:
    if not v.charge_on or not v.plugged:
        return False, "not_charging"
    v.charge_on = False
    return True, ""


def _set_charging_amps(v: SimVehicle, body: dict[str, Any]) -> tuple[bool, str]:
    amps = body.get("charging_amps")
    if not isinstance(amps, int) or isinstance(amps, bool):
        raise FleetError(400, "invalid_field")
    amps = max(0, min(amps, v.charge_current_request_max))
    if amps < 5 and v.low_amps_pending != amps:
        v.low_amps_pending = amps  # below 5 A the car takes the value only when sent again
        return True, ""
    v.low_amps_pending = None
    v.charge_current_request = amps
    return True, ""


def _set_charge_limit(v: SimVehicle, body: dict[str, Any]) -> tuple[bool, str]:
    percent = body.get("percent")
    if not isinstance(percent, int) or isinstance(percent, bool):
        raise FleetError(400, "invalid_field")
    if percent == v.charge_limit_soc:
        return False, "already_set"
    v.charge_limit_soc = max(50, min(percent, 100))  # invalid values still answer success
    return True, ""


_COMMANDS: dict[str, Callable[[SimVehicle, dict[str, Any]], tuple[bool, str]]] = {
    "charge_start": _charge_start,
    "charge_stop": _charge_stop,
    "set_charging_amps": _set_charging_amps,
    "set_charge_limit": _set_charge_limit,
}


def _apply_site_write(s: SimSite, what: str, body: dict[str, Any]) -> None:
    if what == "backup":
        pct = body.get("backup_reserve_percent")
        if not isinstance(pct, int) or not 0 <= pct <= 100:
            raise FleetError(400, "invalid_field")
        s.backup_reserve_percent = pct
    elif what == "operation":
        mode = body.get("default_real_mode")
        if mode not in ("self_consumption", "autonomous", "backup"):
            raise FleetError(400, "invalid_field")
        s.default_real_mode = str(mode)
    elif what == "storm_mode":
        s.storm_mode_enabled = bool(body.get("enabled"))
    elif what == "grid_import_export":
        if "customer_preferred_export_rule" in body:
            s.export_rule = str(body["customer_preferred_export_rule"])
        if "disallow_charge_from_grid_with_solar_installed" in body:
            disallow = bool(body["disallow_charge_from_grid_with_solar_installed"])
            s.disallow_grid_charging = True if disallow else None
    else:
        raise FleetError(404, "not_found")
