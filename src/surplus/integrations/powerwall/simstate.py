"""The simulated Powerwall gateway without HTTP: sessions, sitemaster, staged operation
writes, grid transitions, firmware quirks, injectable faults, and the site's physics.

Firmware profiles (``FIRMWARE``): ``21.44`` and ``1.45`` serve every endpoint, vitals
included; ``23.44`` no longer routes ``/api/devices/vitals`` (404), answers bursts of 503
"current config mode is busy" and throttles logins harder; ``pw3`` (a Powerwall 3) has no
``/api/status`` (404), refuses ``/tedapi/din`` (403) and lets the customer read only the
aggregates, the state of energy and the grid status (403 for every other endpoint).

Physics follow the gateway's signs (site + import, battery + discharge):
``site = load - solar - battery``. The battery (``sim.devices.HomeBattery``) is stepped in at
most one-minute steps between requests, so state of energy and the lifetime counters move
with the power that flowed, whatever the clock does between two requests.
"""

from __future__ import annotations

import random
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from surplus.control.state import BatteryMode
from surplus.integrations.powerwall import models as m
from surplus.security.vault import Secret
from surplus.sim.devices import HomeBattery
from surplus.sim.serving import Faults

Power = float | Callable[[datetime], float]

MAX_STEP_S = 60.0
DISPATCH_S = 1.0  # the horizon over which the battery decides its instant power
VOLTS = 230.0
HERTZ = 50.0
DIN = "1232100-00-E--TG000000000000"

FAULTS = frozenset(
    {
        "sitemaster_stopped",  # sitemaster is down and ``run`` cannot start it (e.g. an update)
        "login_429",  # every login is rate limited
        "busy_503",  # authenticated endpoints answer 503 "current config mode is busy"
        "commit_fails",  # ``config/completed`` answers 500 and drops the staged change
        "commit_ignored",  # ``config/completed`` answers 202 and drops the staged change
        "token_expired",  # one-shot: every session issued so far expires
        "grid_down",  # the grid is lost: islanded until the fault is removed
        "slow",  # every ``/api`` answer waits ``slow_s`` first
        "garbled",  # telemetry answers 200 with an HTML page (a firmware mid-update)
    }
)


@dataclass(frozen=True, slots=True)
class Firmware:
    """The quirks of one firmware generation."""

    version: str
    rejects_autonomous: bool  # only self_consumption and backup can be set locally
    stops_sitemaster: bool  # login and operation writes stop sitemaster (<= 1.4x)
    removed: frozenset[str] = frozenset()  # paths answering 404, before any auth check
    customer_paths: frozenset[str] | None = None  # the authenticated paths allowed; None: all
    tedapi_din: bool = True  # ``GET /tedapi/din`` answers the DIN; False: 403
    busy_rate: float = 0.0  # chance that an authenticated request starts a busy burst
    login_limit: int | None = None  # logins per window before 429, unless the sim sets one


PW3_CUSTOMER_PATHS = frozenset(
    {"/api/meters/aggregates", "/api/system_status/soe", "/api/system_status/grid_status"}
)

FIRMWARE = {
    "21.44": Firmware("21.44.1 c58c2df3", rejects_autonomous=True, stops_sitemaster=False),
    # That 1.x firmware let the customer set autonomous locally is an inference.
    "1.45": Firmware("1.45.2 3e6b7a1f", rejects_autonomous=False, stops_sitemaster=True),
    # The reference gives no numbers for 23.44's throttling: a 5 % burst chance and 3 logins
    # a minute are a choice that makes both show in a short session.
    "23.44": Firmware(
        "23.44.0 eb113390",
        rejects_autonomous=True,
        stops_sitemaster=False,
        removed=frozenset({"/api/devices/vitals"}),
        busy_rate=0.05,
        login_limit=3,
    ),
    # The PW3's version string is never seen locally (no /api/status); this one is made up.
    "pw3": Firmware(
        "24.44.1 5c9e2a7b",
        rejects_autonomous=True,
        stops_sitemaster=False,
        removed=frozenset({"/api/status"}),
        customer_paths=PW3_CUSTOMER_PATHS,
        tedapi_din=False,
    ),
}


class SimError(Exception):
    """An HTTP error the gateway answers with; ``body`` None means an empty body."""

    def __init__(self, status: int, body: m.ErrorBody | None) -> None:
        self.status = status
        self.body = body
        super().__init__(f"{status} {body.error if body else '(empty body)'}")


def _error(status: int, error: str, message: str) -> SimError:
    return SimError(status, m.ErrorBody(code=status, error=error, message=message))


FORBIDDEN = (403, "Unable to GET to resource", "User does not have adequate access rights")
BUSY = (503, "current config mode is busy", "current config mode is busy")
# What a gateway says for a path it does not route is not documented; an inference: its
# usual error shape (clients look only at the status).
NOT_FOUND = (404, "Not Found", "The requested resource was not found")
REALMODE_500 = (
    500,
    "RealMode must be either self_consumption or backup",
    "Unable to set operational mode",
)


@dataclass(slots=True)
class Flows:
    """Instant powers in W, gateway signs."""

    solar_w: float = 0.0
    load_w: float = 0.0
    battery_w: float = 0.0
    site_w: float = 0.0


@dataclass(slots=True)
class Counters:
    """Lifetime energy in Wh per meter, as the gateway counts it."""

    site_imported: float = 0.0
    site_exported: float = 0.0
    battery_imported: float = 0.0  # charged
    battery_exported: float = 0.0  # discharged
    solar_exported: float = 0.0  # generated
    load_imported: float = 0.0  # consumed


class PowerwallSimulator:
    """A Powerwall 2 gateway and the site behind it; powers are W, reserve and soe raw %.

    ``login_limit`` and ``busy_rate`` default to the firmware's. A busy burst answers
    ``busy_burst`` authenticated requests in a row with 503; the bursts come from a
    ``random.Random(busy_seed)``, so a run is reproducible. ``lockout_after`` consecutive
    failed logins lock the gateway: every login is refused, the right password too, until
    ``toggle_reset()`` (the physical switch toggle).
    """

    def __init__(
        self,
        password: Secret | str = "sim-password",
        *,
        firmware: str | Firmware = "21.44",
        solar_w: Power = 3_000.0,
        load_w: Power = 1_200.0,
        battery: HomeBattery | None = None,
        real_mode: str = m.RealMode.SELF_CONSUMPTION,
        backup_reserve_raw: float = m.app_to_raw_pct(20.0),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        token_ttl_s: float | None = None,
        login_limit: int | None = None,
        login_window_s: float = 60.0,
        reconnect_s: float = 5.0,
        slow_s: float = 1.0,
        busy_rate: float | None = None,
        busy_burst: int = 3,
        busy_seed: int = 0,
        lockout_after: int | None = None,
    ) -> None:
        self._password = password if isinstance(password, Secret) else Secret(password)
        self.firmware = FIRMWARE[firmware] if isinstance(firmware, str) else firmware
        self.busy_rate = self.firmware.busy_rate if busy_rate is None else busy_rate
        if not 0.0 <= self.busy_rate <= 1.0:
            raise ValueError(f"busy_rate must be within 0..1, not {self.busy_rate}")
        if busy_burst < 1:
            raise ValueError(f"busy_burst must be at least 1, not {busy_burst}")
        if lockout_after is not None and lockout_after < 1:
            raise ValueError(f"lockout_after must be at least 1, not {lockout_after}")
        self.busy_burst = busy_burst
        self.lockout_after = lockout_after
        self.locked = False
        self.solar_w = solar_w
        self.load_w = load_w
        self.battery = battery if battery is not None else HomeBattery()
        self.operation = m.Operation(
            real_mode=real_mode,
            backup_reserve_percent=backup_reserve_raw,
            freq_shift_load_shed_soe=75.0,
            freq_shift_load_shed_delta_f=-0.32,
        )
        self.clock = clock
        self.token_ttl_s = token_ttl_s
        self.login_limit = login_limit if login_limit is not None else self.firmware.login_limit
        self.login_window_s = login_window_s
        self.reconnect_s = reconnect_s
        self.slow_s = slow_s
        self.faults = Faults(FAULTS, one_shot={"token_expired"})
        self.requests: Counter[str] = Counter()  # "METHOD /path" -> count
        self.tokens_issued: list[str] = []  # so tests can show that none ever leaks
        self.sitemaster_running = True
        self.commission_count = 1
        self.island_requested = False
        self.grid_status = m.GridStatus.CONNECTED
        self.counters = Counters()
        self._started = clock()
        self._t = self._started
        self._reconnect_at: datetime | None = None
        self._sessions: dict[str, datetime] = {}
        self._login_attempts: list[datetime] = []
        self._failed_logins = 0
        self._busy_left = 0
        self._busy_rng = random.Random(busy_seed)
        self._staged: m.OperationWrite | None = None
        self.flows = self._flows_at(self._t)

    # --- sessions ---

    def login(self, request: m.LoginRequest) -> m.LoginResponse:
        now = self.clock()
        window = timedelta(seconds=self.login_window_s)
        self._login_attempts = [t for t in self._login_attempts if now - t < window]
        self._login_attempts.append(now)
        limited = self.login_limit is not None and len(self._login_attempts) > self.login_limit
        if "login_429" in self.faults or limited:
            raise _error(429, "Api Limit reached for this endpoint", "API Limit Reached")
        if (
            self.locked
            or request.username != m.CUSTOMER
            or Secret(request.password) != self._password
        ):
            self._failed_logins += 1
            if self.lockout_after is not None and self._failed_logins >= self.lockout_after:
                self.locked = True
            raise _error(401, "bad credentials", "Login Error")
        self._failed_logins = 0
        token = secrets.token_urlsafe(64)
        self._sessions[token] = now
        self.tokens_issued.append(token)
        if self.firmware.stops_sitemaster:
            self.sitemaster_running = False
        return m.LoginResponse(
            email=request.email,
            firstname="Tesla",
            lastname="Energy",
            roles=["Home_Owner"],
            token=token,
            provider="Basic",
            loginTime=now.isoformat(),
        )

    def set_password(self, password: Secret | str) -> None:
        """The owner sets a new customer password (at the gateway); sessions stay valid."""
        self._password = password if isinstance(password, Secret) else Secret(password)

    def logout(self, token: str | None) -> None:
        if token is not None:
            self._sessions.pop(token, None)

    def toggle_reset(self) -> None:
        """The switch toggle on the gateway: a lockout ends and failures count from zero."""
        self.locked = False
        self._failed_logins = 0

    def admit(self, path: str, token: str | None, *, auth: bool) -> None:
        """The checks before an endpoint answers: is ``path`` routed on this firmware (404),
        then, if it needs ``auth``, the session (403), the role (403) and a busy gateway (503).
        """
        if path in self.firmware.removed:
            raise _error(*NOT_FOUND)
        if not auth:
            return
        self.authorize(token)
        allowed = self.firmware.customer_paths
        if allowed is not None and path not in allowed:
            raise _error(*FORBIDDEN)
        if self._busy():
            raise _error(*BUSY)

    def _busy(self) -> bool:
        if "busy_503" in self.faults:
            return True
        if self._busy_left > 0:
            self._busy_left -= 1
            return True
        if self.busy_rate > 0.0 and self._busy_rng.random() < self.busy_rate:
            self._busy_left = self.busy_burst - 1
            return True
        return False

    def authorize(self, token: str | None) -> None:
        if self.faults.take("token_expired"):
            self._sessions.clear()
        issued = self._sessions.get(token) if token is not None else None
        ttl = self.token_ttl_s
        if issued is None or (ttl is not None and self.clock() - issued > timedelta(seconds=ttl)):
            raise _error(*FORBIDDEN)

    # --- sitemaster ---

    @property
    def sitemaster_up(self) -> bool:
        return self.sitemaster_running and "sitemaster_stopped" not in self.faults

    def sitemaster(self) -> m.Sitemaster:
        up = self.sitemaster_up
        return m.Sitemaster(
            status="StatusUp" if up else "StatusDown",
            running=up,
            connected_to_tesla=up,
            power_supply_mode=False,
            can_reboot="Yes" if up else "",
        )

    def run_sitemaster(self) -> None:
        self.sitemaster_running = True

    def _require_sitemaster(self) -> None:
        if not self.sitemaster_up:
            raise SimError(502, None)

    # --- telemetry ---

    def aggregates(self) -> m.Aggregates:
        self._require_sitemaster()
        self.advance()
        f, c = self.flows, self.counters
        return m.Aggregates(
            site=self._meter(f.site_w, c.site_exported, c.site_imported, 1),
            battery=self._meter(f.battery_w, c.battery_exported, c.battery_imported, 1),
            load=self._meter(f.load_w, 0.0, c.load_imported, None),
            solar=self._meter(f.solar_w, c.solar_exported, 0.0, 1),
        )

    def soe(self) -> m.Soe:
        self._require_sitemaster()
        self.advance()
        return m.Soe(percentage=self.battery.soc_pct)

    def grid(self) -> m.GridStatusResponse:
        self._require_sitemaster()
        self.advance()
        return m.GridStatusResponse(grid_status=self.grid_status, grid_services_active=False)

    def system_status(self) -> m.SystemStatus:
        self._require_sitemaster()
        self.advance()
        b, c = self.battery, self.counters
        block = m.BatteryBlock(
            PackageSerialNumber="TG000000000001",
            nominal_energy_remaining=b.energy_wh,
            nominal_full_pack_energy=b.capacity_wh,
            p_out=self.flows.battery_w,
            v_out=VOLTS,
            f_out=HERTZ,
            energy_charged=c.battery_imported,
            energy_discharged=c.battery_exported,
            pinv_state="PINV_GridFollowing",
            backup_ready=True,
        )
        return m.SystemStatus(
            nominal_full_pack_energy=b.capacity_wh,
            nominal_energy_remaining=b.energy_wh,
            max_charge_power=b.max_charge_w,
            max_discharge_power=b.max_discharge_w,
            system_island_state=self.grid_status,
            available_blocks=1,
            battery_blocks=[block],
        )

    def vitals(self) -> bytes:
        """``/api/devices/vitals``: a protobuf; this one holds only the DIN, as field 1."""
        din = DIN.encode()
        return bytes([0x0A, len(din)]) + din

    def tedapi_din(self) -> str:
        """``GET /tedapi/din``: the DIN, or 403 on a PW3. Clients send HTTP Basic with the
        gateway's Wi-Fi password; that a Powerwall 2 answers without it is an inference.
        """
        if not self.firmware.tedapi_din:
            raise _error(*FORBIDDEN)
        return DIN

    def status(self) -> m.Status:
        now = self.clock()
        up = (now - self._started).total_seconds()
        return m.Status(
            din=DIN,
            start_time=self._started.strftime("%Y-%m-%d %H:%M:%S %z"),
            up_time_seconds=f"{int(up // 3600)}h{int(up % 3600 // 60)}m{up % 60:.1f}s",
            version=self.firmware.version,
            git_hash="c58c2df3e6b7a1f0",
            commission_count=self.commission_count,
            device_type="teg",
            sync_type="v2.1",
        )

    def _meter(self, power: float, exported: float, imported: float, n: int | None) -> m.Meter:
        amps = power / VOLTS
        return m.Meter(
            last_communication_time=self._t.isoformat(),
            instant_power=power,
            instant_apparent_power=abs(power),
            frequency=HERTZ,
            energy_exported=exported,
            energy_imported=imported,
            instant_average_voltage=VOLTS,
            instant_average_current=amps,
            i_a_current=amps,
            num_meters_aggregated=n,
            instant_total_current=amps,
        )

    # --- operation ---

    def stage_operation(self, write: m.OperationWrite) -> m.OperationWrite:
        allowed = (
            {m.RealMode.SELF_CONSUMPTION, m.RealMode.BACKUP}
            if self.firmware.rejects_autonomous
            else set(m.RealMode)
        )
        if write.real_mode not in allowed:
            raise _error(*REALMODE_500)
        self._staged = write
        if self.firmware.stops_sitemaster:
            self.sitemaster_running = False
        return write

    def commit(self) -> None:
        staged, self._staged = self._staged, None
        if "commit_fails" in self.faults:
            raise _error(500, "Unable to commit configuration", "Unable to complete config")
        if staged is None or "commit_ignored" in self.faults:
            return
        reserve = staged.backup_reserve_percent
        self.operation = self.operation.model_copy(
            update={
                "real_mode": staged.real_mode,
                "backup_reserve_percent": (
                    self.operation.backup_reserve_percent if reserve is None else reserve
                ),
            }
        )
        self.commission_count += 1

    def request_island(self, mode: str) -> None:
        if mode not in set(m.IslandMode):
            raise _error(
                400, "Invalid island mode", f"island_mode must be one of {list(m.IslandMode)}"
            )
        self.island_requested = mode == m.IslandMode.OFF_GRID
        self.advance()

    # --- physics ---

    def advance(self) -> None:
        """Step the site up to ``clock()``: grid state, battery, counters, instant flows."""
        now = self.clock()
        self._update_grid(now)
        while self._t < now:
            dt = min(MAX_STEP_S, (now - self._t).total_seconds())
            self._integrate(self._flows_at(self._t), dt)
            self._t += timedelta(seconds=dt)
        self.flows = self._flows_at(now)

    def _update_grid(self, now: datetime) -> None:
        if "grid_down" in self.faults or self.island_requested:
            self.grid_status = m.GridStatus.ISLANDED
            self._reconnect_at = None
        elif self.grid_status == m.GridStatus.ISLANDED:
            self.grid_status = m.GridStatus.TRANSITION_TO_GRID
            self._reconnect_at = now + timedelta(seconds=self.reconnect_s)
        elif self._reconnect_at is not None and now >= self._reconnect_at:
            self.grid_status = m.GridStatus.CONNECTED
            self._reconnect_at = None

    def _flows_at(self, t: datetime) -> Flows:
        solar = max(0.0, _power(self.solar_w, t))
        load = max(0.0, _power(self.load_w, t))
        # Until it has synchronised again (TransitionToGrid) the site is still an island.
        islanded = self.grid_status != m.GridStatus.CONNECTED
        below_reserve = self.battery.soc_pct <= self.operation.backup_reserve_percent
        if islanded or not (self.operation.real_mode == m.RealMode.BACKUP or below_reserve):
            mode = BatteryMode.NORMAL
        else:
            mode = BatteryMode.HOLD
        battery = self.battery.dispatch(load - solar, mode, 0.0, DISPATCH_S)
        if islanded:  # nothing flows to or from the grid: curtail solar or shed load
            if solar + battery > load:
                solar = load - battery
            else:
                load = solar + battery
        return Flows(solar, load, battery, load - solar - battery)

    def _integrate(self, f: Flows, dt_s: float) -> None:
        self.battery.apply(f.battery_w, dt_s)
        h = dt_s / 3600.0
        c = self.counters
        c.site_imported += max(f.site_w, 0.0) * h
        c.site_exported += max(-f.site_w, 0.0) * h
        c.battery_exported += max(f.battery_w, 0.0) * h
        c.battery_imported += max(-f.battery_w, 0.0) * h
        c.solar_exported += f.solar_w * h
        c.load_imported += f.load_w * h


def _power(p: Power, t: datetime) -> float:
    return p(t) if callable(p) else p
