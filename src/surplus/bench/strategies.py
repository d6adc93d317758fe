"""The strategies the benchmark replays: surplus's own engine and the baselines.

- ``surplus``: the very ``control.decide`` the service runs, fed the world's snapshots.
- ``naive``: charge at maximum current from plug-in until the target.
- ``evcc`` / ``evcc-1p3p``: evcc's PV mode as its documentation and source describe it
  (enable after 1 min of surplus, disable after 3 min of import at minimum current, whole
  amps, battery charging counted as surplus), plus its planner: full power in the cheapest
  known slots before the departure, PV ignored; with and without 1p/3p switching.
- ``chargehq``: Charge HQ's solar tracking (6 min below minimum before a stop, 15 min
  before a restart, home battery first up to 90 %), with a grid top-up at the last moment
  that still reaches the target.
In every strategy but surplus's own the home battery stays in self-consumption.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from math import floor
from typing import Protocol

from surplus.control.planner import cheapest_slots
from surplus.control.settings import (
    ChargerSettings,
    LoadpointSettings,
    Mode,
    PlanTarget,
    SiteSettings,
)
from surplus.control.state import ChargerCommand, Command, ControlState
from surplus.control.surplus import decide
from surplus.domain.readings import SiteSnapshot
from surplus.sim.world import LOADPOINT, World


class Strategy(Protocol):
    name: str

    def act(self, world: World, i: int) -> list[Command]: ...


STRATEGIES = ("surplus", "naive", "evcc", "evcc-1p3p", "chargehq")


def make(name: str, settings: SiteSettings, use_targets: bool) -> Strategy:
    if name == "surplus":
        return SurplusStrategy(settings, use_targets)
    if name == "naive":
        return Naive()
    if name in ("evcc", "evcc-1p3p"):
        return EvccLike(name, switch_phases=name == "evcc-1p3p", use_targets=use_targets)
    if name == "chargehq":
        return ChargeHqLike(use_targets)
    raise ValueError(f"unknown strategy {name!r}")


class SurplusStrategy:
    """surplus's engine; the owner's plan (target by departure) is set at each plug-in."""

    name = "surplus"

    def __init__(self, settings: SiteSettings, use_targets: bool) -> None:
        self.base = settings
        self.settings = settings
        self.use_targets = use_targets
        self.state = ControlState()
        self._session: int | None = None

    def act(self, world: World, i: int) -> list[Command]:
        session = world.session(i)
        key = session.arrive if session else None
        if key != self._session:
            self._session = key
            lp = self.base.loadpoints[0]
            if self.use_targets and session is not None and session.depart < world.n:
                plan = PlanTarget(deadline=session.deadline, soc_pct=world.target_soc_pct)
                lp = lp.model_copy(update={"plan": plan, "mode": Mode.PLAN})
            else:
                lp = lp.model_copy(update={"plan": None, "mode": Mode.SOLAR})
            self.settings = self.base.model_copy(update={"loadpoints": [lp]})
        snap = world.snapshot(i, rates=True, forecast=True)
        decision = decide(snap, self.settings, self.state, snap.at)
        self.state = decision.state
        return list(decision.commands)


def default_settings() -> SiteSettings:
    """The bench's site: one charger that can switch between 1 and 3 phases."""
    charger = ChargerSettings(phases="auto")
    lp = LoadpointSettings(name=LOADPOINT, mode=Mode.SOLAR, charger=charger)
    return SiteSettings(loadpoints=[lp])


@dataclass(slots=True)
class _Charger:
    """What a baseline last told the charger, to send only changes."""

    enabled: bool = False
    current_a: float = 0.0
    phases: int = 3

    def set(
        self, enabled: bool, current_a: float = 0.0, phases: int | None = None
    ) -> list[Command]:
        cmd = ChargerCommand(
            LOADPOINT,
            enable=enabled if enabled != self.enabled else None,
            current_a=current_a if enabled and current_a != self.current_a else None,
            phases=phases if phases is not None and phases != self.phases else None,
        )
        self.enabled = enabled
        if enabled:
            self.current_a = current_a
        if phases is not None:
            self.phases = phases
        if cmd.enable is None and cmd.current_a is None and cmd.phases is None:
            return []
        return [cmd]


MIN_A, MAX_A, VOLTS = 6.0, 16.0, 230.0


def _need_wh(world: World, snap: SiteSnapshot) -> float:
    """Energy still missing to the target (to full where the track sets none)."""
    vehicle = snap.loadpoints[LOADPOINT].vehicle
    if vehicle is None:
        return 0.0
    target = world.target_soc_pct or 100.0
    return max(0.0, (target - vehicle.soc_pct) / 100.0 * vehicle.capacity_wh)


class Naive:
    name = "naive"

    def __init__(self) -> None:
        self.charger = _Charger()

    def act(self, world: World, i: int) -> list[Command]:
        snap = world.snapshot(i, rates=False, forecast=False)
        plugged = snap.loadpoints[LOADPOINT].charger.status != "disconnected"
        return self.charger.set(plugged and _need_wh(world, snap) > 0, MAX_A)


class _Timer:
    """A condition that must hold for a while; evcc's and Charge HQ's timers."""

    def __init__(self) -> None:
        self.since: datetime | None = None

    def held(self, condition: bool, now: datetime, delay_s: float) -> bool:
        if not condition:
            self.since = None
            return False
        if self.since is None:
            self.since = now
        return (now - self.since).total_seconds() >= delay_s

    def reset(self) -> None:
        self.since = None


class EvccLike:
    """evcc's PV mode and planner (see the module docstring)."""

    def __init__(self, name: str, switch_phases: bool, use_targets: bool) -> None:
        self.name = name
        self.switch_phases = switch_phases
        self.use_targets = use_targets
        self.charger = _Charger()
        self.enable_timer = _Timer()
        self.disable_timer = _Timer()
        self.up_timer = _Timer()
        self.down_timer = _Timer()

    def _planned(self, world: World, i: int, snap: SiteSnapshot) -> bool:
        session = world.session(i)
        if not self.use_targets or session is None or session.depart >= world.n:
            return False
        rates = snap.rates
        need = _need_wh(world, snap) / world.ev.efficiency
        if rates is None or need <= 0:
            return False
        power = MAX_A * 3 * VOLTS
        after_h = max(0.0, (session.deadline - rates.end).total_seconds() / 3600.0)
        need = max(0.0, need - power * after_h)
        chosen = cheapest_slots(rates, snap.at, session.deadline, need, power)
        k = rates.slot_index(snap.at)
        return bool(0 <= k < len(chosen) and chosen[k])

    def act(self, world: World, i: int) -> list[Command]:
        snap = world.snapshot(i, rates=self.use_targets, forecast=False)
        now = snap.at
        view = snap.loadpoints[LOADPOINT]
        if view.charger.status == "disconnected" or (
            view.vehicle is not None and view.vehicle.soc_pct >= 99.9
        ):
            self.enable_timer.reset()
            self.disable_timer.reset()
            return self.charger.set(False)
        if self._planned(world, i, snap):
            return self.charger.set(True, MAX_A, 3 if self.switch_phases else None)
        assert snap.grid is not None and snap.battery is not None
        site_w = snap.grid.power_w + snap.battery.power_w  # battery charging counts as surplus
        phases = self.charger.phases if self.switch_phases else 3
        on = self.charger.enabled
        measured_a = view.charger.power_w / (VOLTS * phases) if on else 0.0
        target_a = measured_a - site_w / (VOLTS * phases)
        if self.switch_phases:
            avail_w = target_a * VOLTS * phases
            if phases == 3 and self.down_timer.held(
                avail_w < MIN_A * 3 * VOLTS and (site_w > 0 or not on), now, 180.0
            ):
                phases = 1
                self.up_timer.reset()
            elif phases == 1 and self.up_timer.held(
                target_a > MAX_A and avail_w >= MIN_A * 3 * VOLTS, now, 60.0
            ):
                phases = 3
                self.down_timer.reset()
            target_a = avail_w / (VOLTS * phases)
        amps = float(min(max(floor(target_a), MIN_A), MAX_A))
        if not on:
            if self.enable_timer.held(target_a >= MIN_A, now, 60.0):
                self.disable_timer.reset()
                return self.charger.set(True, amps, phases if self.switch_phases else None)
            return self.charger.set(False, phases=phases if self.switch_phases else None)
        if target_a < MIN_A:
            if self.disable_timer.held(site_w > 0, now, 180.0):
                self.enable_timer.reset()
                return self.charger.set(False)
            return self.charger.set(True, MIN_A, phases if self.switch_phases else None)
        self.disable_timer.reset()
        return self.charger.set(True, amps, phases if self.switch_phases else None)


class ChargeHqLike:
    """Charge HQ's solar tracking with its stop and restart delays (module docstring)."""

    name = "chargehq"
    BATTERY_PRIORITY_SOC = 90.0

    def __init__(self, use_targets: bool) -> None:
        self.use_targets = use_targets
        self.charger = _Charger()
        self.below = _Timer()
        self.stopped_at: datetime | None = None

    def act(self, world: World, i: int) -> list[Command]:
        snap = world.snapshot(i, rates=False, forecast=False)
        now = snap.at
        view = snap.loadpoints[LOADPOINT]
        if view.charger.status == "disconnected" or (
            view.vehicle is not None and view.vehicle.soc_pct >= 99.9
        ):
            self.below.reset()
            return self.charger.set(False)
        session = world.session(i)
        if self.use_targets and session is not None and session.depart < world.n:
            left_h = (session.deadline - now).total_seconds() / 3600.0
            power = MAX_A * 3 * VOLTS * world.ev.efficiency
            if _need_wh(world, snap) >= power * (left_h - 0.5):
                return self.charger.set(True, MAX_A)
        assert snap.grid is not None and snap.battery is not None
        battery_w = snap.battery.power_w
        excess = -snap.grid.power_w + view.charger.power_w
        if battery_w > 0 or snap.battery.soc_pct >= self.BATTERY_PRIORITY_SOC:
            excess -= battery_w  # discharge is not excess; charging above priority is
        min_w = MIN_A * 3 * VOLTS
        amps = float(min(max(floor(excess / (3 * VOLTS)), MIN_A), MAX_A))
        if not self.charger.enabled:
            rested = self.stopped_at is None or (now - self.stopped_at).total_seconds() >= 900
            if rested and excess >= min_w:
                return self.charger.set(True, amps)
            return []
        if self.below.held(excess < min_w, now, 360.0):
            self.stopped_at = now
            self.below.reset()
            return self.charger.set(False)
        return self.charger.set(True, amps)
