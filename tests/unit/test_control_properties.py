"""Property-based tests of the control engine: invariants that hold for any input sequence.

Each property drives ``decide`` over a random sequence of ticks, feeding back the state and
a charger that follows the commands, and checks every command issued.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from surplus.control.allocate import Demand, allocate
from surplus.control.settings import (
    ChargerSettings,
    CommandBudget,
    ContactorSettings,
    LoadpointSettings,
    Mode,
    SiteSettings,
    StaleSettings,
)
from surplus.control.state import BatteryCommand, ChargerCommand, ControlState, Decision
from surplus.control.surplus import decide
from surplus.domain.readings import (
    BatteryState,
    LoadpointSnapshot,
    MeterReading,
    SiteSnapshot,
)
from tests.fakes import Evse

START = datetime(2024, 6, 10, 6, 0, tzinfo=UTC)
V = 230.0
HOME_W = 400.0
FAST = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)


# --------------------------------------------------------------------------------------
# a site that follows the engine's commands
# --------------------------------------------------------------------------------------


@dataclass
class Site:
    settings: SiteSettings
    evses: dict[str, Evse] = field(default_factory=dict)
    state: ControlState = field(default_factory=ControlState)

    def __post_init__(self) -> None:
        for lp in self.settings.loadpoints:
            self.evses.setdefault(lp.name, Evse(phases=3 if lp.charger.phases != 1 else 1))

    def snapshot(
        self,
        now: datetime,
        surplus_w: float,
        battery: BatteryState | None = None,
        grid_at: datetime | None = None,
        charger_at: dict[str, datetime] | None = None,
        grid: bool = True,
        missing: frozenset[str] = frozenset(),
    ) -> SiteSnapshot:
        charger_at = charger_at or {}
        readings = {
            name: evse.reading(charger_at.get(name, now))
            for name, evse in self.evses.items()
            if name not in missing
        }
        ev_w = sum(r.power_w for r in readings.values())
        batt_w = battery.power_w if battery is not None else 0.0
        pv_w = HOME_W + max(surplus_w, 0.0)
        home_w = pv_w - surplus_w
        grid_w = home_w + ev_w - pv_w - batt_w
        return SiteSnapshot(
            at=now,
            grid=MeterReading(grid_w, grid_at or now) if grid else None,
            pv=MeterReading(pv_w, now),
            battery=battery,
            loadpoints={n: LoadpointSnapshot(r) for n, r in readings.items()},
        )

    def step(self, snapshot: SiteSnapshot, now: datetime) -> Decision:
        decision = decide(snapshot, self.settings, self.state, now)
        for cmd in decision.commands:
            if isinstance(cmd, ChargerCommand):
                self.evses[cmd.loadpoint].apply(cmd)
        self.state = decision.state
        return decision


# --------------------------------------------------------------------------------------
# strategies
# --------------------------------------------------------------------------------------

delays = st.sampled_from([0.0, 30.0, 120.0, 600.0, 900.0])


@st.composite
def charger_settings(draw: st.DrawFn) -> ChargerSettings:
    resolution = draw(st.sampled_from([1.0, 0.1]))
    unit = 1 if resolution == 1.0 else 10  # currents on the resolution grid
    min_a = draw(st.integers(6 * unit, 10 * unit)) / unit
    max_a = draw(st.integers(int(min_a * unit), 32 * unit)) / unit
    return ChargerSettings(
        min_current_a=min_a,
        max_current_a=max_a,
        resolution_a=resolution,
        phases=draw(st.sampled_from([1, 3, "auto"])),
        deadband_w=draw(st.sampled_from([0.0, 100.0, 300.0])),
    )


@st.composite
def loadpoint_settings(
    draw: st.DrawFn, name: str, modes: list[Mode] | None = None
) -> LoadpointSettings:
    return LoadpointSettings(
        name=name,
        mode=draw(st.sampled_from(modes or [Mode.NOW, Mode.MINSOLAR, Mode.SOLAR, Mode.PLAN])),
        priority=draw(st.integers(0, 2)),
        charger=draw(charger_settings()),
        contactor=ContactorSettings(
            start_delay_s=draw(delays),
            stop_delay_s=draw(delays),
            min_on_s=draw(delays),
            min_off_s=draw(delays),
            max_starts_per_day=draw(st.integers(1, 8)),
            phase_switch_delay_s=draw(delays),
            switch_under_load=draw(st.booleans()),
        ),
        budget=CommandBudget(
            min_interval_s=draw(st.sampled_from([0.0, 60.0, 1800.0])),
            deadband_a=draw(st.sampled_from([0.0, 0.5, 1.0])),
        ),
    )


@st.composite
def site_settings(draw: st.DrawFn, modes: list[Mode] | None = None) -> SiteSettings:
    count = draw(st.integers(1, 2))
    return SiteSettings(
        loadpoints=[draw(loadpoint_settings(f"lp{i}", modes)) for i in range(count)],
        stale=StaleSettings(fallback=draw(st.sampled_from(["hold_min", "stop"]))),
        site_max_current_a=draw(st.sampled_from([16.0, 25.0, 35.0, 63.0])),
    )


surplus_w = st.floats(-3000.0, 25000.0, allow_nan=False)
step_s = st.integers(10, 15 * 60)


@st.composite
def battery_states(draw: st.DrawFn) -> BatteryState | None:
    if not draw(st.booleans()):
        return None
    return BatteryState(
        soc_pct=draw(st.floats(0, 100)),
        power_w=draw(st.floats(-5000, 5000)),
        capacity_wh=10_000,
        at=START,  # re-stamped per tick
    )


@dataclass(frozen=True)
class Tick:
    dt_s: int
    surplus_w: float
    plugged: tuple[bool, ...]  # per loadpoint
    battery: BatteryState | None


@st.composite
def ticks(draw: st.DrawFn, count: int, min_size: int, max_size: int) -> list[Tick]:
    n = draw(st.integers(min_size, max_size))
    out = []
    for _ in range(n):
        plugged = tuple(draw(st.integers(0, 19)) != 0 for _ in range(count))  # mostly plugged
        out.append(Tick(draw(step_s), draw(surplus_w), plugged, draw(battery_states())))
    return out


def run(site: Site, sequence: list[Tick]) -> list[tuple[datetime, Decision]]:
    now = START
    log = []
    for tick in sequence:
        now += timedelta(seconds=tick.dt_s)
        for plugged, evse in zip(tick.plugged, site.evses.values(), strict=True):
            evse.plugged = plugged
        batt = None
        if tick.battery is not None:
            batt = BatteryState(
                tick.battery.soc_pct, tick.battery.power_w, tick.battery.capacity_wh, now
            )
        log.append((now, site.step(site.snapshot(now, tick.surplus_w, battery=batt), now)))
    return log


def on_grid(value: float, resolution: float) -> bool:
    steps = value / resolution
    return abs(steps - round(steps)) < 1e-6


# --------------------------------------------------------------------------------------
# (a) currents: within [0, max], on the resolution, >= min when enabling
# --------------------------------------------------------------------------------------


@FAST
@given(data=st.data())
def test_every_commanded_current_is_valid(data: st.DataObject) -> None:
    cfg = data.draw(site_settings())
    sequence = data.draw(ticks(len(cfg.loadpoints), 5, 80))
    site = Site(cfg)
    by_name = {lp.name: lp.charger for lp in cfg.loadpoints}
    for _, decision in run(site, sequence):
        for cmd in decision.commands:
            if not isinstance(cmd, ChargerCommand) or cmd.current_a is None:
                continue
            ch = by_name[cmd.loadpoint]
            assert 0.0 <= cmd.current_a <= ch.max_current_a + 1e-9
            assert cmd.current_a >= ch.min_current_a - 1e-9
            assert on_grid(cmd.current_a, ch.resolution_a), cmd
            if cmd.phases is not None:
                assert cmd.phases in (1, 3)
                assert ch.phases == "auto"
        for cmd in decision.commands:
            if isinstance(cmd, ChargerCommand) and cmd.enable is True:
                assert cmd.current_a is not None
                assert cmd.current_a >= by_name[cmd.loadpoint].min_current_a - 1e-9


def test_off_resolution_limits_never_reach_the_charger() -> None:
    cfg = SiteSettings(
        loadpoints=[
            LoadpointSettings(
                name="lp0",
                mode=Mode.SOLAR,
                contactor=ContactorSettings(start_delay_s=0),
                charger=ChargerSettings(min_current_a=6.5, max_current_a=15.5, resolution_a=1),
            )
        ]
    )
    site = Site(cfg)
    # a start on a surplus just above the minimum, then the stale-data fallback
    # the limits are rounded inwards: 6.5 A at whole amps is a 7 A minimum
    assert cfg.loadpoints[0].charger.min_current_a == 7.0
    assert cfg.loadpoints[0].charger.max_current_a == 15.0
    first = site.step(site.snapshot(START, 9.5 * 3 * V), START)
    later = START + timedelta(seconds=60)
    second = site.step(site.snapshot(later, 0.0, grid_at=later - timedelta(hours=1)), later)
    currents = [
        c.current_a
        for c in first.commands + second.commands
        if isinstance(c, ChargerCommand) and c.current_a is not None
    ]
    assert len(currents) == 2
    assert all(on_grid(a, 1.0) for a in currents), currents


# --------------------------------------------------------------------------------------
# (b) starts per calendar day never exceed max_starts_per_day
# --------------------------------------------------------------------------------------


@FAST
@given(data=st.data())
def test_starts_per_day_within_budget(data: st.DataObject) -> None:
    cfg = data.draw(site_settings())
    sequence = data.draw(ticks(len(cfg.loadpoints), 20, 300))
    site = Site(cfg)
    starts: Counter[tuple[str, object]] = Counter()
    for now, decision in run(site, sequence):
        for cmd in decision.commands:
            if not isinstance(cmd, ChargerCommand):
                continue
            # a start closes the contactor; so does a phase switch under load
            if cmd.enable is True or (cmd.enable is None and cmd.phases is not None):
                starts[cmd.loadpoint, now.date()] += 1
    budget = {lp.name: lp.contactor.max_starts_per_day for lp in cfg.loadpoints}
    for (name, day), count in starts.items():
        assert count <= budget[name], (name, day, count)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    max_starts=st.integers(1, 6),
    period=st.integers(1, 6),
    dt=st.sampled_from([60, 120, 300, 900]),
)
def test_starts_budget_is_used_and_reset_with_flapping_surplus(
    max_starts: int, period: int, dt: int
) -> None:
    """With no delays and surplus flapping every few ticks, the budget is the only brake."""
    lp = LoadpointSettings(
        name="lp0",
        contactor=ContactorSettings(
            start_delay_s=0, stop_delay_s=0, min_on_s=0, min_off_s=0, max_starts_per_day=max_starts
        ),
    )
    site = Site(SiteSettings(loadpoints=[lp]))
    n = int(2.5 * 86400 // dt) + 1
    sequence = [
        Tick(dt, 8000.0 if (i // period) % 2 == 0 else 0.0, (True,), None) for i in range(n)
    ]
    starts: Counter[object] = Counter()
    for now, decision in run(site, sequence):
        if any(isinstance(c, ChargerCommand) and c.enable for c in decision.commands):
            starts[now.date()] += 1
    assert max(starts.values()) <= max_starts
    # every full day (the second one) has enough surplus windows to use the whole budget
    full_day = (START + timedelta(days=1)).date()
    windows = 86400 // (2 * period * dt)
    if windows > max_starts + 1:
        assert starts[full_day] == max_starts


# --------------------------------------------------------------------------------------
# (c) stale data: only the configured safe-state command
# --------------------------------------------------------------------------------------


@st.composite
def stale_case(
    draw: st.DrawFn,
) -> tuple[SiteSettings, list[Tick], str, frozenset[str], float, float]:
    cfg = draw(site_settings())
    history = draw(ticks(len(cfg.loadpoints), 0, 40))
    kind = draw(st.sampled_from(["grid_old", "grid_missing", "charger_old", "charger_missing"]))
    names = [lp.name for lp in cfg.loadpoints]
    stale = frozenset(draw(st.lists(st.sampled_from(names), min_size=1, unique=True)))
    grid_extra = draw(st.floats(0.001, 3600.0))
    charger_extra = draw(st.floats(0.001, 3600.0))
    return cfg, history, kind, stale, grid_extra, charger_extra


@FAST
@given(case=stale_case(), surplus=surplus_w, battery=battery_states())
def test_stale_data_only_yields_the_safe_state(
    case: tuple[SiteSettings, list[Tick], str, frozenset[str], float, float],
    surplus: float,
    battery: BatteryState | None,
) -> None:
    cfg, history, kind, stale, grid_extra, charger_extra = case
    site = Site(cfg)
    log = run(site, history)
    now = (log[-1][0] if log else START) + timedelta(seconds=30)
    for evse in site.evses.values():
        evse.plugged = True
    if battery is not None:
        battery = BatteryState(battery.soc_pct, battery.power_w, battery.capacity_wh, now)
    limits = cfg.stale
    grid_at = now - timedelta(seconds=limits.grid_max_age_s + grid_extra)
    charger_at = {
        n: now - timedelta(seconds=limits.charger_max_age_s + charger_extra) for n in stale
    }
    if kind == "grid_old":
        snap = site.snapshot(now, surplus, battery, grid_at=grid_at)
        affected = {lp.name for lp in cfg.loadpoints}
    elif kind == "grid_missing":
        snap = site.snapshot(now, surplus, battery, grid=False)
        affected = {lp.name for lp in cfg.loadpoints}
    elif kind == "charger_old":
        snap = site.snapshot(now, surplus, battery, charger_at=charger_at)
        affected = set(stale)
    else:
        snap = site.snapshot(now, surplus, battery, missing=stale)
        affected = set(stale)
    decision = decide(snap, cfg, site.state, now)

    by_name = {lp.name: lp for lp in cfg.loadpoints}
    for cmd in decision.commands:
        if isinstance(cmd, BatteryCommand):
            assert kind.startswith("charger"), "battery steered from a stale grid reading"
            continue
        if cmd.loadpoint not in affected:
            continue
        lp = by_name[cmd.loadpoint]
        if cfg.stale.fallback == "hold_min":
            assert cmd == ChargerCommand(cmd.loadpoint, current_a=lp.charger.min_current_a)
        else:
            assert cmd == ChargerCommand(cmd.loadpoint, enable=False)
    for name in affected:
        assert "safe fallback" in decision.reasons[name]


# --------------------------------------------------------------------------------------
# (d) allocate: totals, maxima, priority
# --------------------------------------------------------------------------------------


@st.composite
def demands(draw: st.DrawFn) -> list[Demand]:
    n = draw(st.integers(1, 5))
    out = []
    for i in range(n):
        min_w = draw(st.floats(500.0, 8000.0))
        max_w = min_w + draw(st.floats(0.0, 15000.0))
        forced = draw(st.sampled_from([0.0, 0.0, 0.0, min_w, max_w]))
        out.append(
            Demand(
                name=f"d{i}",
                priority=draw(st.integers(0, 3)),
                min_w=min_w,
                max_w=max_w,
                forced_w=forced,
                running=draw(st.booleans()),
            )
        )
    return out


@settings(max_examples=400, deadline=None, derandomize=True)
@given(
    available=st.floats(-5000.0, 40000.0),
    ds=demands(),
    cap=st.one_of(st.just(float("inf")), st.floats(0.0, 40000.0)),
    allowance=st.floats(0.0, 5000.0),
)
def test_allocate_invariants(
    available: float, ds: list[Demand], cap: float, allowance: float
) -> None:
    grants = allocate(available, ds, cap_w=cap, allowance_w=allowance)
    eps = 1e-6
    assert set(grants) == {d.name for d in ds}
    forced_total = sum(min(d.forced_w, d.max_w) for d in ds)
    total = sum(grants.values())
    assert total <= max(available, 0.0) + allowance + forced_total + eps
    assert total <= max(cap, 0.0) + eps
    # nothing beyond the surplus (or the forced power) plus the battery's loan
    assert total <= max(available, forced_total) + allowance + eps
    for d in ds:
        g = grants[d.name]
        assert -eps <= g <= d.max_w + eps
        if d.forced_w <= 0 and g > 0:
            assert g >= d.min_w - eps  # never granted less than it can run at
    # priority: a higher-priority loadpoint left at 0 could not have run on what the lower
    # ones got (plus the loan if it was running)
    for high in ds:
        if high.forced_w > 0 or grants[high.name] > 0:
            continue
        lower = sum(
            max(0.0, grants[d.name] - min(d.forced_w, d.max_w))
            for d in ds
            if d.priority < high.priority
        )
        room = high.min_w + (0.0 if high.running else allowance)
        assert lower < room + eps, (high, grants)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(available=st.floats(0.0, 40000.0), ds=demands(), allowance=st.floats(0.0, 5000.0))
def test_allocate_idle_loadpoints_never_lean_on_the_battery(
    available: float, ds: list[Demand], allowance: float
) -> None:
    """Nothing forced, nothing running: the battery's loan is not for starting."""
    ds = [Demand(d.name, d.priority, d.min_w, d.max_w) for d in ds]
    grants = allocate(available, ds, allowance_w=allowance)
    assert sum(grants.values()) <= available + 1e-6
