"""The simulated Wallbox cloud without HTTP: one account, its sign-in sessions and their
cap, its rate limits, and one charger with a simulated car behind it.

Two clocks: ``clock`` (wall time) stamps tokens; the charger's world (the car, the delay
before a write shows, a reboot, the sessions) and the rate-limit windows run ``speed`` times
as fast from the simulator's start, so a sped-up day makes the calls of a real one.

- Sign-in (``signin``, ``legacy_token``) opens a session; the account keeps at most
  ``session_cap`` of them and the next evicts the oldest (counted in ``evicted``: the
  owner's phone app, signed in first, is the first to go). A refresh keeps its session.
- Access tokens are RS256 JWTs carrying the account's email; ``ttl`` is their absolute
  expiry in epoch milliseconds.
- Reads (GET) and writes (other methods) have per-minute budgets (``read_limit``,
  ``write_limit``); over them the answer is 429, or 403 with the ``throttle_403`` fault.
- A write is echoed at once but applied ``apply_delay_s`` later (simulated), and never
  while the charger is ``offline``.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from surplus.security.vault import Secret
from surplus.sim.devices import ElectricVehicle
from surplus.sim.serving import Faults

__all__ = ["FAULTS", "ChargingSession", "Faults", "SimError", "WallboxSimulator"]

MAX_STEP_S = 60.0
MIN_CURRENT_A = 6
REBOOT_READY_S = 10.0  # a rebooting charger says Ready this long, then Disconnected
REBOOT_OFFLINE_S = 90.0
CAR_WAKE_S = 5.0  # a plugged car waits for demand this long before it draws

FAULTS = frozenset(
    {
        "throttle_429",  # every data call answers 429
        "throttle_403",  # throttled calls answer 403 instead of 429 (as seen in 2025)
        "status_504",  # chargers/status answers 504
        "offline",  # the charger lost the cloud: writes wait, last_sync stays old
        "ignore_writes",  # writes are accepted (200) and never applied
        "refresh_revoked",  # one-shot: every refresh token issued so far is revoked
        "token_expired",  # one-shot: every access token issued so far expires
        "signin_refused",  # Basic sign-in answers 403 (bad password, or a Google-SSO account)
        "moved",  # the data routes answer 404 (the API moved)
        "nulls",  # chargers/status answers null for the power and energy fields
    }
)


class SimError(Exception):
    """An HTTP error the cloud answers with a ``{"message": ...}`` body."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"{status} {message}")


@dataclass(slots=True)
class ChargingSession:
    """One charging session; ``energy_wh`` in Wh, times in epoch seconds."""

    id: str
    start_time: int
    end_time: int | None = None
    charging_time: float = 0.0
    energy_wh: float = 0.0

    def attributes(self, sim: WallboxSimulator) -> dict[str, Any]:
        return {
            "id": self.id,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "charging_time": round(self.charging_time),
            "user_id": sim.user_id,
            "user_name": "Owner",
            "user_email": sim.email,
            "charger_id": sim.charger_id,
            "charger_name": sim.name,
            "group_id": sim.group_id,
            "energy": round(self.energy_wh),
            "mid_energy": 0,
            "energy_price": 0.2,
            "total_cost": round(self.energy_wh / 1000 * 0.2, 2),
            "currency_code": "EUR",
            "session_type": "free",
        }


@dataclass(slots=True)
class _Session:
    id: str
    refresh_expires: datetime
    access: set[str] = field(default_factory=set)
    refresh: str | None = None
    latest: str = ""


@dataclass(slots=True)
class _Config:
    """What the charger applies: its lock, pause and current limit."""

    locked: bool = False
    paused: bool = False
    max_charging_current: int = 32


class WallboxSimulator:
    """One Wallbox account (``email``/``password``) with the charger ``charger_id``."""

    def __init__(
        self,
        email: str = "owner@example.com",
        password: Secret | str = "sim-password",
        *,
        charger_id: int = 12345,
        group_id: int = 257061,
        max_available_current: int = 32,
        phases: int = 3,
        volts: float = 230.0,
        car: ElectricVehicle | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        speed: float = 1.0,
        access_ttl_s: float = 900.0,
        refresh_ttl_s: float = 30 * 86_400.0,
        session_cap: int = 3,
        read_limit: int | None = 3,
        write_limit: int | None = 5,
        apply_delay_s: float = 3.0,
    ) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, not {speed}")
        self.email = email
        self._password = password if isinstance(password, Secret) else Secret(password)
        self.charger_id = charger_id
        self.group_id = group_id
        self.user_id = 1001
        self.uid = "01GA" + secrets.token_hex(11).upper()
        self.name = f"PulsarPlus SN {charger_id}"
        self.max_available_current = max_available_current
        self.phases = phases
        self.volts = volts
        self.car = car if car is not None else ElectricVehicle()
        self.clock = clock
        self.speed = speed
        self.access_ttl_s = access_ttl_s
        self.refresh_ttl_s = refresh_ttl_s
        self.session_cap = session_cap
        self.read_limit = read_limit
        self.write_limit = write_limit
        self.apply_delay_s = apply_delay_s
        self.faults = Faults(FAULTS, one_shot={"refresh_revoked", "token_expired"})
        self.status_override: int | None = None  # an injected status code, mapped or not
        self.requests: Counter[str] = Counter()  # "METHOD /path" -> count
        self.signins = 0
        self.evicted = 0  # sessions logged out by the cap
        self.tokens_issued: list[str] = []  # so tests can show that none ever leaks
        self.sessions: list[ChargingSession] = []  # closed ones, oldest first
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._started = clock()
        self._t = self._started
        self._accounts: list[_Session] = []
        self._calls: dict[bool, list[datetime]] = {True: [], False: []}  # write? -> times
        self._applied = _Config(max_charging_current=max_available_current)
        self._pending: list[tuple[datetime, dict[str, int]]] = []
        self._plugged_at: datetime | None = None
        self._session: ChargingSession | None = None
        self._reboot_at: datetime | None = None
        self._power_w = 0.0
        self._last_sync = self._started
        self._open_app_session()

    # --- time ---

    def sim_now(self) -> datetime:
        """The charger's world's time: ``speed`` times as fast as ``clock`` since the start."""
        return self._started + (self.clock() - self._started) * self.speed

    def _advance(self) -> None:
        """Step the car, the pending writes and the session up to now."""
        now = self.sim_now()
        while self._t < now:
            step = min(now, self._t + timedelta(seconds=MAX_STEP_S))
            self._apply_due(step)
            dt = (step - self._t).total_seconds()
            self._power_w = self._draw_w(step)
            if self._power_w > 0:
                self.car.charge(self._power_w, dt)
                if self._session is not None:
                    self._session.energy_wh += self._power_w * dt / 3600
                    self._session.charging_time += dt
            self._t = step
        if "offline" not in self.faults:
            self._last_sync = now
        self._power_w = self._draw_w(now)

    def _apply_due(self, at: datetime) -> None:
        if "offline" in self.faults:
            return
        due = [change for when, change in self._pending if when <= at]
        self._pending = [(when, change) for when, change in self._pending if when > at]
        for change in due:
            if "locked" in change:
                self._applied.locked = bool(change["locked"])
            if "maxChargingCurrent" in change:
                self._applied.max_charging_current = change["maxChargingCurrent"]
            if "action" in change:
                self._act(change["action"], at)

    def _act(self, action: int, at: datetime) -> None:
        if action in (1, 9):
            self._applied.paused = False
        elif action == 2 and self._plugged_at is not None:
            self._applied.paused = True
        elif action == 3:
            self._reboot_at = at

    # --- the charger ---

    def status_code(self) -> int:
        """The status code the charger has now (before any injected one)."""
        now = self.sim_now()
        if self._reboot_at is not None:
            since = (now - self._reboot_at).total_seconds()
            if since < REBOOT_READY_S:
                return 161
            if since < REBOOT_READY_S + REBOOT_OFFLINE_S:
                return 163
            self._reboot_at = None
        plugged = self._plugged_at is not None
        if self._applied.locked:
            return 210 if plugged else 209
        if self._plugged_at is None:
            return 161
        if self._applied.paused:
            return 182
        if self._draw_w(now) <= 0:
            return 181
        return 194

    def _draw_w(self, at: datetime) -> float:
        if self._plugged_at is None or self._reboot_at is not None:
            return 0.0
        if self._applied.locked or self._applied.paused:
            return 0.0
        if (at - self._plugged_at).total_seconds() < CAR_WAKE_S:
            return 0.0
        return self.car.accepts_w(self._applied.max_charging_current, self.phases, self.volts)

    def power_w(self) -> float:
        """What the charger draws now, in W: the site around it adds it to its load."""
        self._advance()
        return self._power_w

    @property
    def plugged(self) -> bool:
        return self._plugged_at is not None

    def plug_in(self) -> None:
        """The car is plugged in: a session opens."""
        self._advance()
        if self._plugged_at is not None:
            return
        now = self.sim_now()
        self._plugged_at = now
        self._session = ChargingSession(_ulid(), int(now.timestamp()))

    def unplug(self) -> None:
        """The car is unplugged: its session closes; a pause ends with it."""
        self._advance()
        if self._plugged_at is None:
            return
        self._plugged_at = None
        self._applied.paused = False
        if self._session is not None:
            self._session.end_time = int(self.sim_now().timestamp())
            self.sessions.append(self._session)
            self._session = None

    def add_session(self, start: datetime, end: datetime, energy_wh: float) -> ChargingSession:
        """A closed session in the history (for imports)."""
        session = ChargingSession(
            _ulid(),
            int(start.timestamp()),
            int(end.timestamp()),
            (end - start).total_seconds(),
            energy_wh,
        )
        self.sessions.append(session)
        self.sessions.sort(key=lambda s: s.start_time)
        return session

    @property
    def applied(self) -> dict[str, int]:
        """What the charger applies now: ``locked``, ``paused`` and ``maxChargingCurrent``."""
        self._advance()
        a = self._applied
        return {
            "locked": int(a.locked),
            "paused": int(a.paused),
            "maxChargingCurrent": a.max_charging_current,
        }

    # --- accounts and tokens ---

    def _open_app_session(self) -> _Session:
        session = _Session(
            secrets.token_hex(8), self.clock() + timedelta(seconds=self.refresh_ttl_s)
        )
        self._accounts.append(session)
        while len(self._accounts) > self.session_cap:
            self._accounts.pop(0)
            self.evicted += 1
        return session

    def check_basic(self, email: str, password: str) -> None:
        if "signin_refused" in self.faults:
            raise SimError(403, "Forbidden: this account cannot sign in with a password")
        if email != self.email or Secret(password) != self._password:
            raise SimError(403, "Invalid credentials")

    def signin(self, email: str, password: str) -> dict[str, Any]:
        """The ``users/signin`` answer's attributes for a valid account (a new session)."""
        self.check_basic(email, password)
        self.signins += 1
        session = self._open_app_session()
        session.refresh = self._issue(session, refresh=True)
        self._issue(session, refresh=False)
        return self._attributes(session)

    def legacy_token(self, email: str, password: str) -> dict[str, Any]:
        """The legacy ``auth/token/user`` answer (a new session too)."""
        self.check_basic(email, password)
        self.signins += 1
        session = self._open_app_session()
        token = self._issue(session, refresh=False)
        return {
            "jwt": token,
            "user_id": self.user_id,
            "ttl": self._ttl_ms(self.access_ttl_s),
            "error": False,
            "status": 200,
        }

    def refresh(self, refresh_token: str | None) -> dict[str, Any]:
        """A new access token in the session of ``refresh_token``."""
        if self.faults.take("refresh_revoked"):
            for s in self._accounts:
                s.refresh = None
        now = self.clock()
        session = next(
            (s for s in self._accounts if refresh_token and s.refresh == refresh_token), None
        )
        if session is None or session.refresh_expires <= now:
            raise SimError(401, "Refresh token not valid")
        self._issue(session, refresh=False)
        return self._attributes(session)

    def _attributes(self, session: _Session) -> dict[str, Any]:
        return {
            "token": session.latest,
            "refresh_token": session.refresh,
            "user_id": self.user_id,
            "ttl": self._ttl_ms(self.access_ttl_s),
            "refresh_token_ttl": int(session.refresh_expires.timestamp() * 1000),
            "error": False,
            "status": 200,
        }

    def _ttl_ms(self, seconds: float) -> int:
        return int((self.clock().timestamp() + seconds) * 1000)

    def _issue(self, session: _Session, *, refresh: bool) -> str:
        now = self.clock().timestamp()
        life = self.refresh_ttl_s if refresh else self.access_ttl_s
        claims = {
            "username": self.email,
            "uid": self.uid,
            "iat": int(now),
            "exp": int(now + life),
            "jti": secrets.token_hex(8),
        }
        token = self._sign(claims)
        if not refresh:
            session.access.add(token)
            session.latest = token
        self.tokens_issued.append(token)
        return token

    def _sign(self, claims: dict[str, Any]) -> str:
        header = _b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
        body = _b64(json.dumps(claims).encode())
        signed = f"{header}.{body}".encode()
        signature = self._key.sign(signed, padding.PKCS1v15(), hashes.SHA256())
        return f"{header}.{body}.{_b64(signature)}"

    def authorize(self, token: str | None) -> None:
        """The bearer token of a data call: 401 unless it is live in a live session."""
        if self.faults.take("token_expired"):
            for s in self._accounts:
                s.access.clear()
        now = int(self.clock().timestamp())
        for s in self._accounts:
            if token in s.access:
                if _claims(token)["exp"] > now:
                    return
                break
        raise SimError(401, "Unauthorized")

    def admit(self, method: str, path: str) -> None:
        """The budgets and faults a data call meets once authorized."""
        write = method != "GET"
        now = self.sim_now()
        window = [t for t in self._calls[write] if now - t < timedelta(seconds=60)]
        limit = self.write_limit if write else self.read_limit
        window.append(now)
        self._calls[write] = window
        if "throttle_429" in self.faults or (limit is not None and len(window) > limit):
            if "throttle_403" in self.faults:
                raise SimError(403, "Forbidden")
            raise SimError(429, "Too Many Requests")
        if "moved" in self.faults:
            raise SimError(404, "Not Found")

    def charger(self, charger_id: int) -> None:
        if charger_id != self.charger_id:
            raise SimError(404, f"Charger {charger_id} not found")

    # --- data ---

    def status(self) -> dict[str, Any]:
        """The ``chargers/status/{id}`` answer."""
        if "status_504" in self.faults:
            raise SimError(504, "Gateway Timeout")
        self._advance()
        a = self._applied
        session = self._session
        nulls = "nulls" in self.faults
        code = self.status_override if self.status_override is not None else self.status_code()
        added_kwh = round(session.energy_wh / 1000, 3) if session else 0.0
        return {
            "status_id": code,
            "name": self.name,
            "charging_power": None if nulls else round(self._power_w / 1000, 3),
            "max_available_power": self.max_available_current,  # in A, as the cloud sends
            "charging_speed": 0,
            "added_range": 0,
            "added_energy": None if nulls else added_kwh,
            "added_green_energy": 0,
            "added_grid_energy": 0,
            "charging_time": round(session.charging_time) if session else 0,
            "finished": False,
            "cost": 0,
            "state_of_charge": None,
            "ocpp_status": 4,
            "last_sync": self._last_sync.strftime("%Y-%m-%d %H:%M:%S"),
            "config_data": {
                "charger_id": self.charger_id,
                "locked": int(a.locked),
                "max_charging_current": a.max_charging_current,
                "max_available_current": self.max_available_current,
                "icp_max_current": 0,
                "energy_price": 0.2,
                "currency": {"code": "EUR"},
                "part_number": "PLP1-M-2-4-9-002-F",
                "software": {"currentVersion": "5.17.59"},
                "plan": {"features": ["POWER_BOOST"]},
                "ecosmart": {"enabled": False, "mode": 0},
            },
        }

    def charger_data(self, echo: dict[str, int] | None = None) -> dict[str, Any]:
        """The ``v2/charger/{id}`` answer: the applied state, or a write's values echoed."""
        self._advance()
        a = self._applied
        data = {
            "id": self.charger_id,
            "uid": self.uid,
            "serialNumber": str(self.charger_id),
            "name": self.name,
            "group": self.group_id,
            "softwareVersion": "5.17.59",
            "status": self.status_override or self.status_code(),
            "maxAvailableCurrent": self.max_available_current,
            "maxChargingCurrent": a.max_charging_current,
            "locked": int(a.locked),
            "lastConnection": int(self._last_sync.timestamp()),
        }
        return {"data": {"chargerData": {**data, **(echo or {})}, "users": []}}

    def groups(self) -> dict[str, Any]:
        self._advance()
        charger = {
            "id": self.charger_id,
            "uid": self.uid,
            "name": self.name,
            "status": self.status_override or self.status_code(),
            "locked": int(self._applied.locked),
            "maxChargingCurrent": self._applied.max_charging_current,
            "addedEnergy": round(self._session.energy_wh / 1000, 3) if self._session else 0,
            "chargingPower": round(self._power_w / 1000, 3),
        }
        return {"result": {"groups": [{"id": self.group_id, "chargers": [charger]}]}}

    def put_charger(self, body: dict[str, Any]) -> dict[str, Any]:
        """``PUT v2/charger/{id}``: ``locked`` and/or ``maxChargingCurrent`` (strings too)."""
        change: dict[str, int] = {}
        try:
            if "locked" in body:
                change["locked"] = 1 if int(body["locked"]) else 0
            if "maxChargingCurrent" in body:
                amps = int(float(body["maxChargingCurrent"]))
                change["maxChargingCurrent"] = max(
                    MIN_CURRENT_A, min(amps, self.max_available_current)
                )
        except (TypeError, ValueError):
            raise SimError(400, "Invalid value") from None
        if not change:
            raise SimError(400, "Nothing to change")
        self._schedule(change)
        return self.charger_data(echo=change)

    def remote_action(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST v3/chargers/{id}/remote-action``: 1 resume, 2 pause, 3 reboot, 9 back to
        schedule; factory reset (4) and firmware update (5) are refused here."""
        try:
            action = int(body.get("action", 0))
        except (TypeError, ValueError):
            action = 0
        if action not in (1, 2, 3, 9):
            raise SimError(400, f"Action {action} not available")
        self._schedule({"action": action})
        return {"action": action, "status": 200}

    def _schedule(self, change: dict[str, int]) -> None:
        self._advance()
        if "ignore_writes" in self.faults:
            return
        self._pending.append((self.sim_now() + timedelta(seconds=self.apply_delay_s), change))

    def session_page(
        self, start: int | None, end: int | None, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], bool]:
        """Closed sessions starting in ``[start, end)`` (epoch s): one page, and whether
        another follows."""
        self._advance()
        chosen = [
            s
            for s in self.sessions
            if (start is None or s.start_time >= start) and (end is None or s.start_time < end)
        ]
        page = chosen[offset : offset + limit]
        items = [
            {"type": "charger_charging_session", "id": s.id, "attributes": s.attributes(self)}
            for s in page
        ]
        return items, offset + limit < len(chosen)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _claims(token: str) -> dict[str, Any]:
    body = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return claims


def _ulid() -> str:
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    return "01" + "".join(secrets.choice(alphabet) for _ in range(24))
