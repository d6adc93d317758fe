"""The simulated Envoy / IQ Gateway without HTTP: sessions and roles, the site's physics as
the gateway reports them, firmware quirks and injectable faults.

Physics (W, Wh; the gateway's signs): the production CT measures the solar power; the
consumption CT sits at the grid connection (``net-consumption``, + import, - export) and
``total-consumption`` is calculated as net + production. IQ Batteries sit behind the
consumption CT, so ``total-consumption`` is the household's load less what the batteries
give (+ discharging): ``net = load - solar - battery``, ``total = load - battery``. The
battery (``sim.devices.HomeBattery``) is stepped in at most one-minute steps between requests,
so state of charge and the lifetime counters move with the power that flowed. ``whToday``
resets ``today_reset_s`` after local midnight, not at it, as gateways do.

Firmware: ``firmware`` is the ``/info`` software string (``D8.2.4264``, ``R5.0.62`` ...).
Below 7 the gateway speaks plain HTTP without tokens; from 7.6.175 on ``/stream/meter``
needs an installer token; from 8.3.5433 on ``total-consumption`` reports the net values.

Sessions: ``check_jwt`` turns a token the gateway accepts (signature, ``exp``, ``aud`` =
its serial, see ``simtokens``) into a ``sessionId``, valid while used at least every
``session_idle_s`` and while the token lives. Any request may also carry the token itself.
"""

from __future__ import annotations

import random
import secrets
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from surplus.control.state import BatteryMode
from surplus.integrations.envoy import models as m
from surplus.integrations.envoy.simcloud import EnlightenSimulator
from surplus.integrations.envoy.simtokens import TokenAuthority, TokenRefused
from surplus.integrations.envoy.tokens import INSTALLER, OWNER
from surplus.sim.devices import HomeBattery
from surplus.sim.serving import Faults

__all__ = [
    "FAULTS",
    "OPTIONAL_PATHS",
    "EnvoySimulator",
    "Faults",
    "SimError",
    "unauthorized",
    "unavailable",
]

Power = float | Callable[[datetime], float]

MAX_STEP_S = 60.0
DISPATCH_S = 1.0  # the horizon over which the battery decides its instant power
VOLTS = 230.0
HERTZ = 50.0
PART_NUMBER = "800-00654-r08"
BATTERY_SERIAL = "482301000001"
EIDS = {m.PRODUCTION: 704643328, m.NET: 704643584}
ROLE_LEVELS = {OWNER: 2, INSTALLER: 6}
PROV_LEVEL = 3
TOKENS_SINCE = (7,)
STREAM_NEEDS_PROV_SINCE = (7, 6, 175)
TOTAL_IS_NET_SINCE = (8, 3, 5433)

OPTIONAL_PATHS = frozenset(
    {
        "/ivp/meters",
        "/ivp/meters/readings",
        "/ivp/livedata/status",
        "/ivp/ensemble/inventory",
        "/ivp/ensemble/secctrl",
        "/ivp/ensemble/power",
    }
)

FAULTS = frozenset(
    {
        "slow",  # every gateway answer waits a random 1-10 s (``latency_s``) first
        "outage",  # the gateway is down (503), as in its nightly outage or a firmware push
        "booting",  # the gateway is starting: everything but /info answers 503
        "zeros",  # readings are all zero, as right after a boot
        "error_body",  # optional endpoints answer 200 {"error": ...}
        "role_401",  # optional endpoints answer 401 to every role
        "session_expired",  # one-shot: every session ends, as after 10 min idle
        "total_is_net",  # total-consumption reports the net values (as from 8.3.5433 on)
        "cloud_down",  # the Enlighten cloud answers 503
        "tokens_route_gone",  # entrez POST /tokens answers 404; the older route works
    }
)

UNAUTHORIZED_PAGE = (
    "<html><head><title>401 Authorization Required</title>"
    '<meta http-equiv="refresh" content="0; url=/home"></head>'
    "<body><h1>401 Authorization Required</h1></body></html>"
)
VALID_TOKEN_PAGE = "<!DOCTYPE html><h2>Valid token.</h2>"


class SimError(Exception):
    """An answer other than the endpoint's data: ``status`` and a text ``body``."""

    def __init__(self, status: int, body: str = "", media_type: str = "text/html") -> None:
        self.status = status
        self.body = body
        self.media_type = media_type
        super().__init__(f"{status}")


def unauthorized() -> SimError:
    return SimError(401, UNAUTHORIZED_PAGE)


def unavailable() -> SimError:
    return SimError(503, "<html><body><h1>503 Service Unavailable</h1></body></html>")


@dataclass(slots=True)
class Session:
    role: str
    token_expires: datetime
    last_used: datetime


@dataclass(slots=True)
class Flows:
    """Instant powers in W, the gateway's signs."""

    solar_w: float = 0.0
    load_w: float = 0.0
    battery_w: float = 0.0  # + discharging
    net_w: float = 0.0  # + import

    @property
    def total_w(self) -> float:
        return self.net_w + self.solar_w


@dataclass(slots=True)
class Counter3:
    """Wh of one measurement: lifetime (signed), today, the last seven whole days."""

    lifetime: float = 0.0
    delivered: float = 0.0  # the positive part of the lifetime flow
    received: float = 0.0  # the negative part, as a positive number
    today: float = 0.0
    days: deque[float] = field(default_factory=lambda: deque(maxlen=7))

    def add(self, wh: float) -> None:
        self.lifetime += wh
        self.today += wh
        self.delivered += max(wh, 0.0)
        self.received += max(-wh, 0.0)

    def new_day(self) -> None:
        self.days.append(self.today)
        self.today = 0.0

    @property
    def last_seven_days(self) -> float:
        return sum(self.days)


class EnvoySimulator:
    """An Envoy (metered, with production and consumption CTs, by default) and its site.

    ``battery`` None: no IQ Battery (the ensemble inventory answers ``[]``). ``clock`` is the
    site's time; ``stream_interval_s`` and ``latency_s`` are real seconds. Without a ``cloud``
    one is made with one owner account, ``email`` / ``password``.
    """

    def __init__(
        self,
        *,
        serial: str = "122301012345",
        firmware: str = "D8.2.4264",
        solar_w: Power = 3_000.0,
        load_w: Power = 1_200.0,
        battery: HomeBattery | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        metered: bool = True,
        production_ct: bool = True,
        consumption_ct: bool = True,
        phases: int = 1,
        inverters: int = 12,
        session_idle_s: float = 600.0,
        stream_interval_s: float = 1.0,
        latency_s: tuple[float, float] = (1.0, 10.0),
        latency_seed: int = 0,
        boot_s: float = 120.0,
        zeros_s: float = 60.0,
        outage_start: time | None = None,
        outage_s: float = 600.0,
        tz: tzinfo | None = None,
        today_reset_s: float = 1800.0,
        authority: TokenAuthority | None = None,
        email: str = "owner@example.com",
        password: str = "enlighten-password",
        cloud: EnlightenSimulator | None = None,
    ) -> None:
        if phases not in (1, 2, 3):
            raise ValueError(f"phases must be 1, 2 or 3, not {phases}")
        if not 0.0 <= latency_s[0] <= latency_s[1]:
            raise ValueError(f"latency_s must be (low, high) with 0 <= low <= high: {latency_s}")
        if not serial.isalnum():
            raise ValueError(f"a gateway serial is letters and digits, not {serial!r}")
        self.serial = serial
        self.firmware = firmware
        self.version = m.parse_version(firmware)
        if not self.version:
            raise ValueError(f"firmware must hold a version, e.g. D8.2.4264, not {firmware!r}")
        self.solar_w = solar_w
        self.load_w = load_w
        self.battery = battery
        self.clock = clock
        self.metered = metered
        self.production_ct = metered and production_ct
        self.consumption_ct = metered and consumption_ct
        self.phases = phases
        self.inverter_count = inverters
        self.session_idle_s = session_idle_s
        self.stream_interval_s = stream_interval_s
        self.latency_s = latency_s
        self.boot_s = boot_s
        self.zeros_s = zeros_s
        self.outage_start = outage_start
        self.outage_s = outage_s
        self.tz = tz
        self.today_reset_s = today_reset_s
        self.faults = Faults(FAULTS, one_shot={"session_expired"})
        self.authority = authority if authority is not None else TokenAuthority()
        if cloud is None:
            cloud = EnlightenSimulator(self.authority, clock, self.faults)
            cloud.add_account(email, password, serials={serial})
        self.cloud = cloud
        self.requests: Counter[str] = Counter()  # "METHOD /path" -> count
        self.refusals: list[str] = []  # why tokens were refused, for tests
        self._sessions: dict[str, Session] = {}
        self._latency_rng = random.Random(latency_seed)
        self._booted_at: datetime | None = None
        self._live = False
        start = clock()
        self._live_snapshot = m.LiveMeters(last_update=int(start.timestamp()))
        self._t = start
        self._day = self._day_of(start)
        self.energy = {k: Counter3() for k in (m.PRODUCTION, m.NET, m.TOTAL)}
        self.flows = self._flows_at(start)

    # --- the gateway ---

    @property
    def tokens_required(self) -> bool:
        return self.version >= TOKENS_SINCE

    def info(self) -> m.Info:
        return m.Info(
            serial=self.serial,
            part_number=PART_NUMBER,
            software=self.firmware,
            metered=self.metered,
            web_tokens=self.tokens_required,
        )

    def issue_token(self, role: str = OWNER, *, lifetime: timedelta | None = None) -> str:
        """A token for this gateway as the cloud would issue it (for tests and the CLI)."""
        return self.authority.issue(
            serial=self.serial,
            role=role,
            username="sim@example.com",
            now=self.clock(),
            lifetime=lifetime,
        )

    def latency(self) -> float:
        """How long the next answer waits (seconds); 0 unless the ``slow`` fault is on."""
        return self._latency_rng.uniform(*self.latency_s) if "slow" in self.faults else 0.0

    def reboot(self) -> None:
        """Start again: sessions end, ``boot_s`` of 503, then ``zeros_s`` of zero readings."""
        self._booted_at = self.clock()
        self._sessions.clear()

    @property
    def down(self) -> bool:
        """Unreachable: the ``outage`` fault or within the scheduled (nightly) outage."""
        if "outage" in self.faults:
            return True
        if self.outage_start is None:
            return False
        local = self.clock().astimezone(self.tz)
        for day in (local.date(), local.date() - timedelta(days=1)):
            start = datetime.combine(day, self.outage_start, tzinfo=local.tzinfo)
            if start <= local < start + timedelta(seconds=self.outage_s):
                return True
        return False

    @property
    def booting(self) -> bool:
        return "booting" in self.faults or self._since_boot() < self.boot_s

    @property
    def zeros(self) -> bool:
        return "zeros" in self.faults or self._since_boot() < self.boot_s + self.zeros_s

    def _since_boot(self) -> float:
        if self._booted_at is None:
            return float("inf")
        return (self.clock() - self._booted_at).total_seconds()

    @property
    def total_is_net(self) -> bool:
        return "total_is_net" in self.faults or self.version >= TOTAL_IS_NET_SINCE

    # --- sessions ---

    def check_jwt(self, token: str | None) -> str:
        """A new session id for an accepted token; else the 401 page."""
        if self.down or self.booting:
            raise unavailable()
        if not self.tokens_required:
            raise SimError(404, "Not Found", "text/plain")
        role, expires = self._verify(token)
        session_id = secrets.token_hex(16)
        self._sessions[session_id] = Session(role, expires, self.clock())
        return session_id

    def _verify(self, token: str | None) -> tuple[str, datetime]:
        if token is None:
            raise unauthorized()
        try:
            claims = self.authority.verify(token, serial=self.serial, now=self.clock())
        except TokenRefused as e:
            self.refusals.append(str(e))
            raise unauthorized() from None
        if claims.role not in ROLE_LEVELS:
            self.refusals.append(f"role {claims.role}")
            raise unauthorized()
        return claims.role, claims.expires_at

    def admit(self, path: str, token: str | None, session_id: str | None) -> str:
        """The checks before an endpoint answers, in the gateway's order: reachable (503),
        started (503), authorised (401: session or token), role (401); the role it runs as."""
        if self.down or (self.booting and path != "/info"):
            raise unavailable()
        if not self.tokens_required:
            return INSTALLER
        if self.faults.take("session_expired"):
            self._sessions.clear()
        role = self._role(token, session_id)
        needs = PROV_LEVEL if self._stream_needs_prov(path) else ROLE_LEVELS[OWNER]
        if ROLE_LEVELS[role] < needs:
            self.refusals.append(f"{role} may not read {path}")
            raise unauthorized()
        if path in OPTIONAL_PATHS and "role_401" in self.faults:
            raise unauthorized()
        return role

    def _stream_needs_prov(self, path: str) -> bool:
        return path == "/stream/meter" and self.version >= STREAM_NEEDS_PROV_SINCE

    def _role(self, token: str | None, session_id: str | None) -> str:
        now = self.clock()
        if token is not None:
            return self._verify(token)[0]
        session = self._sessions.get(session_id) if session_id is not None else None
        if session is None:
            raise unauthorized()
        idle = (now - session.last_used).total_seconds()
        if idle > self.session_idle_s or now >= session.token_expires:
            assert session_id is not None
            del self._sessions[session_id]
            raise unauthorized()
        session.last_used = now
        return session.role

    def check_digest_user(self, username: str) -> str | None:
        """The password of a Digest user on firmware < 7 (``envoy``: the serial's last six)."""
        return self.serial[-6:] if username == "envoy" else None

    def error_instead(self, path: str) -> str | None:
        """The ``{"error": ...}`` message an optional endpoint answers instead of its data."""
        if path in OPTIONAL_PATHS and "error_body" in self.faults:
            return "Service Unavailable: not available on this gateway"
        return None

    # --- readings ---

    def production(self, *, details: bool) -> m.Production:
        """``/production.json``; ``details`` adds the per-phase ``lines``."""
        self.advance()
        now_s = int(self.clock().timestamp())
        f = Flows() if self.zeros else self.flows
        e = self.energy if not self.zeros else {k: Counter3() for k in self.energy}
        inverters = m.ProductionEntry(
            type=m.INVERTERS,
            activeCount=self.inverter_count,
            readingTime=now_s,
            wNow=round(f.solar_w),
            whLifetime=round(e[m.PRODUCTION].lifetime),
        )
        storage = m.StorageEntry()
        if not self.metered:
            return m.Production(production=[inverters], storage=[storage])
        prod = self._eim(m.PRODUCTION, f.solar_w, e[m.PRODUCTION], self.production_ct, now_s)
        net = self._eim(m.NET, f.net_w, e[m.NET], self.consumption_ct, now_s)
        total = self._eim(m.TOTAL, f.total_w, e[m.TOTAL], self.consumption_ct, now_s)
        if self.total_is_net:
            total = net.model_copy(update={"measurementType": m.TOTAL})
        if not details:
            prod, net, total = (x.model_copy(update={"lines": None}) for x in (prod, net, total))
        return m.Production(
            production=[inverters, prod], consumption=[total, net], storage=[storage]
        )

    def _eim(
        self, kind: str, watts: float, energy: Counter3, measured: bool, now_s: int
    ) -> m.ProductionEntry:
        w = watts if measured else 0.0
        counts = energy if measured else Counter3()
        n = self.phases
        line = m.Line(
            wNow=w / n,
            whLifetime=counts.lifetime / n,
            whToday=counts.today / n,
            whLastSevenDays=counts.last_seven_days / n,
            rmsCurrent=abs(w) / n / VOLTS,
            rmsVoltage=VOLTS if measured else 0.0,
            pwrFactor=1.0 if w else 0.0,
        )
        return m.ProductionEntry(
            type=m.EIM,
            activeCount=1 if measured else 0,
            measurementType=kind,
            readingTime=now_s,
            wNow=w,
            whLifetime=counts.lifetime,
            whToday=counts.today,
            whLastSevenDays=counts.last_seven_days,
            rmsCurrent=abs(w) / VOLTS,
            rmsVoltage=line.rmsVoltage * n,
            pwrFactor=line.pwrFactor,
            lines=[line] * n,
        )

    def api_v1_production(self) -> m.ApiV1Production:
        self.advance()
        if self.zeros:
            return m.ApiV1Production()
        e = self.energy[m.PRODUCTION]
        return m.ApiV1Production(
            wattHoursToday=round(e.today),
            wattHoursSevenDays=round(e.last_seven_days),
            wattHoursLifetime=round(e.lifetime),
            wattsNow=round(self.flows.solar_w),
        )

    def inverters(self) -> list[m.InverterReport]:
        self.advance()
        each = 0.0 if self.zeros else self.flows.solar_w / self.inverter_count
        now_s = int(self.clock().timestamp())
        return [
            m.InverterReport(
                serialNumber=f"2020{i:08d}",
                lastReportDate=now_s,
                devType=1,
                lastReportWatts=round(each),
                maxReportWatts=380,
            )
            for i in range(1, self.inverter_count + 1)
        ]

    def meters(self) -> list[m.MeterConfig]:
        """The CTs: ``[]`` on a gateway that is not metered."""
        if not self.metered:
            return []
        mode = {1: "single", 2: "split", 3: "three"}[self.phases]
        return [
            m.MeterConfig(
                eid=EIDS[kind],
                state="enabled" if on else "disabled",
                measurementType=kind,
                phaseMode=mode,
                phaseCount=self.phases,
                meteringStatus="normal" if on else "not-metering",
            )
            for kind, on in ((m.PRODUCTION, self.production_ct), (m.NET, self.consumption_ct))
        ]

    def meter_readings(self) -> list[m.MeterReading]:
        if not self.metered:
            return []
        self.advance()
        now_s = int(self.clock().timestamp())
        readings = []
        for kind, watts, on in (
            (m.PRODUCTION, self.flows.solar_w, self.production_ct),
            (m.NET, self.flows.net_w, self.consumption_ct),
        ):
            counts = self.energy[kind] if on and not self.zeros else Counter3()
            w = watts if on and not self.zeros else 0.0
            channels = [
                self._channel(EIDS[kind], now_s, w / self.phases, counts, self.phases)
                if i < self.phases
                else m.MeterChannel(eid=EIDS[kind] + 1 + i, timestamp=now_s)
                for i in range(3)
            ]
            whole = self._channel(EIDS[kind], now_s, w, counts, 1)
            readings.append(m.MeterReading(**whole.model_dump(), channels=channels))
        return readings

    def _channel(
        self, eid: int, now_s: int, watts: float, counts: Counter3, share: int
    ) -> m.MeterChannel:
        volts = 0.0 if self.zeros else VOLTS
        return m.MeterChannel(
            eid=eid,
            timestamp=now_s,
            actEnergyDlvd=counts.delivered / share,
            actEnergyRcvd=counts.received / share,
            apparentEnergy=(counts.delivered + counts.received) / share,
            instantaneousDemand=watts,
            activePower=watts,
            apparentPower=abs(watts),
            pwrFactor=1.0 if watts else 0.0,
            voltage=volts,
            current=abs(watts) / VOLTS,
            freq=HERTZ if volts else 0.0,
        )

    def set_livedata(self, enable: bool) -> str:
        """``POST /ivp/livedata/stream``; the state of the live stream after it."""
        if self._live and not enable:
            self._live_snapshot = self._live_meters()
        self._live = enable
        return "enabled" if enable else "disabled"

    def livedata(self) -> m.LiveData:
        """``/ivp/livedata/status``: current while the live stream is on, else the values
        of when it went off, with their stale ``last_update``."""
        state = "enabled" if self._live else "disabled"
        meters = self._live_meters() if self._live else self._live_snapshot
        return m.LiveData(
            connection=m.LiveConnection(
                mqtt_state="connected", prov_state="configured", auth_state="ok", sc_stream=state
            ),
            meters=meters,
            tasks={"task_id": 0, "timestamp": meters.last_update},
        )

    def _live_meters(self) -> m.LiveMeters:
        self.advance()
        f = Flows() if self.zeros else self.flows
        soc = round(self.battery.soc_pct) if self.battery is not None else 0
        return m.LiveMeters(
            last_update=int(self.clock().timestamp()),
            soc=soc,
            phase_count=self.phases,
            enc_agg_soc=soc,
            enc_agg_energy=self.battery.energy_wh if self.battery is not None else 0.0,
            pv=_live(f.solar_w),
            storage=_live(f.battery_w),
            grid=_live(f.net_w),
            load=_live(f.load_w),
        )

    def inventory(self) -> list[m.InventoryGroup]:
        b = self.battery
        if b is None:
            return []
        self.advance()
        now_s = int(self.clock().timestamp())
        device = m.InventoryDevice(
            serial_num=BATTERY_SERIAL,
            part_num="830-01760-r37",
            installed=now_s - 86_400 * 200,
            last_rpt_date=now_s,
            admin_state=6,
            admin_state_str="ENCHG_STATE_READY",
            img_load_date=now_s - 86_400 * 30,
            img_pnum_running="2.6.5973_rel/22.11",
            bmu_fw_version="2.1.34",
            encharge_rev=2,
            encharge_capacity=b.capacity_wh,
            led_status=17,
            maxCellTemp=25,
            temperature=22,
            comm_level_2_4_ghz=5,
            comm_level_sub_ghz=5,
            percentFull=round(b.soc_pct),
        )
        return [m.InventoryGroup(type=m.ENCHARGE, devices=[device])]

    def secctrl(self) -> m.SecCtrl:
        b = self.battery
        if b is None:
            return m.SecCtrl()
        self.advance()
        soc = round(b.soc_pct)
        return m.SecCtrl(
            agg_soc=soc,
            Max_energy=b.capacity_wh,
            ENC_agg_soc=soc,
            ENC_agg_backup_energy=b.capacity_wh * b.min_soc_pct / 100.0,
            ENC_agg_avail_energy=b.energy_wh,
            Enc_commissioned_capacity=b.capacity_wh,
            Enc_max_available_capacity=b.capacity_wh,
            configured_backup_soc=b.min_soc_pct,
            adjusted_backup_soc=b.min_soc_pct,
        )

    def ensemble_power(self) -> m.EnsemblePower:
        b = self.battery
        if b is None:
            return m.EnsemblePower()
        self.advance()
        mw = 0.0 if self.zeros else self.flows.battery_w * 1000.0
        device = m.BatteryPower(
            serial_num=BATTERY_SERIAL,
            real_power_mw=round(mw),
            apparent_power_mva=round(abs(mw)),
            soc=round(b.soc_pct),
        )
        return m.EnsemblePower(devices=[device])

    def stream_frame(self) -> m.StreamFrame:
        """One frame of ``/stream/meter``; all zero (no voltage) right after a boot."""
        self.advance()
        if self.zeros:
            return m.StreamFrame()
        f, silent = self.flows, m.StreamMeter()
        return m.StreamFrame(
            production=self._stream_meter(f.solar_w) if self.production_ct else silent,
            net_consumption=self._stream_meter(f.net_w) if self.consumption_ct else silent,
            total_consumption=self._stream_meter(f.total_w) if self.consumption_ct else silent,
        )

    def _stream_meter(self, watts: float) -> m.StreamMeter:
        each = watts / self.phases
        sample = m.PhaseSample(
            p=each, q=0.0, s=abs(each), v=VOLTS, i=abs(each) / VOLTS, pf=1.0, f=HERTZ
        )
        phases = [sample if i < self.phases else m.PhaseSample() for i in range(3)]
        return m.StreamMeter(ph_a=phases[0], ph_b=phases[1], ph_c=phases[2])

    # --- physics ---

    def advance(self) -> None:
        """Step the site up to ``clock()``: battery, counters, the day, instant flows."""
        now = self.clock()
        while self._t < now:
            dt = min(MAX_STEP_S, (now - self._t).total_seconds())
            self._integrate(self._flows_at(self._t), dt)
            self._t += timedelta(seconds=dt)
            day = self._day_of(self._t)
            if day != self._day:
                self._day = day
                for counts in self.energy.values():
                    counts.new_day()
        self.flows = self._flows_at(now)

    def _day_of(self, t: datetime) -> date:
        """The day ``whToday`` counts: it turns ``today_reset_s`` after local midnight."""
        return (t.astimezone(self.tz) - timedelta(seconds=self.today_reset_s)).date()

    def _flows_at(self, t: datetime) -> Flows:
        solar = max(0.0, _power(self.solar_w, t))
        load = max(0.0, _power(self.load_w, t))
        battery = 0.0
        if self.battery is not None:
            battery = self.battery.dispatch(load - solar, BatteryMode.NORMAL, 0.0, DISPATCH_S)
        return Flows(solar, load, battery, load - solar - battery)

    def _integrate(self, f: Flows, dt_s: float) -> None:
        if self.battery is not None:
            self.battery.apply(f.battery_w, dt_s)
        h = dt_s / 3600.0
        self.energy[m.PRODUCTION].add(f.solar_w * h)
        self.energy[m.NET].add(f.net_w * h)
        self.energy[m.TOTAL].add(f.total_w * h)


def _live(watts: float) -> m.LivePower:
    mw = round(watts * 1000.0)
    return m.LivePower(agg_p_mw=mw, agg_s_mva=abs(mw), agg_p_ph_a_mw=mw)


def _power(p: Power, t: datetime) -> float:
    return p(t) if callable(p) else p
