"""The simulated site: PV, household, home battery, a car on one charger, and the grid.

Each step the world is *measured* (readings as a controller would see them, with the
actuators as they were), a strategy answers with commands, and the world *advances* one
step with the new settings, booking energy, money, starts and commands. Every strategy in
the benchmark goes through exactly this, so their figures are comparable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from surplus.control.state import BatteryCommand, BatteryMode, ChargerCommand, Command
from surplus.domain.readings import (
    BatteryState,
    ChargerState,
    ChargerStatus,
    LoadpointSnapshot,
    MeterReading,
    SiteSnapshot,
    VehicleState,
)
from surplus.domain.tariff import Rates
from surplus.sim.devices import ElectricVehicle, HomeBattery
from surplus.sim.forecast import Forecaster, WeatherForecaster
from surplus.sim.patterns import Trip

F64 = NDArray[np.float64]
LOADPOINT = "garage"


class Tariff(Protocol):
    def known_rates(self, now: datetime) -> Rates: ...


@dataclass(frozen=True, slots=True)
class Session:
    """A plug-in session: from ``arrive`` (step) to ``depart`` (step, exclusive)."""

    arrive: int
    depart: int  # == n when the replay ends first
    deadline: datetime


@dataclass(slots=True)
class Counts:
    """What the flows alone do not show: contactor starts, commands, shortfalls."""

    starts: int = 0
    commands: int = 0
    battery_commands: int = 0
    unmet_wh: float = 0.0
    starts_by_day: dict[int, int] = field(default_factory=dict)


FORECASTS = ("weather", "persistence")  # see ``sim.forecast``


class World:
    """One replay of a site over a track and a plug-in pattern."""

    def __init__(
        self,
        start: datetime,
        step_s: int,
        pv_w: F64,
        load_w: F64,
        clear_sky_w: F64,
        import_eur_per_kwh: F64,
        export_eur_per_kwh: F64,
        tariff: Tariff,
        trips: Sequence[Trip],
        ev: ElectricVehicle,
        battery: HomeBattery,
        target_soc_pct: float = 80.0,
        volts: float = 230.0,
        phases: int = 3,
        forecast: str = "weather",
    ) -> None:
        self.start = start
        self.step_s = step_s
        self.n = len(pv_w)
        self.pv = pv_w
        self.load = load_w
        self.imp = import_eur_per_kwh
        self.exp = export_eur_per_kwh
        self.tariff = tariff
        self.ev = ev
        self.battery = battery
        self.target_soc_pct = target_soc_pct
        self.volts = volts
        if forecast not in FORECASTS:
            raise ValueError(f"unknown forecast {forecast!r}; choose one of {', '.join(FORECASTS)}")
        kind = WeatherForecaster if forecast == "weather" else Forecaster
        self.forecaster = kind(start, step_s, pv_w, clear_sky_w, load_w)
        self.plugged = np.ones(self.n, dtype=bool)
        self.drain = np.zeros(self.n)
        for trip in trips:
            a, b = self.step_of(trip.leave), self.step_of(trip.back)
            a, b = max(a, 0), min(b, self.n)
            if a < b:
                self.plugged[a:b] = False
                self.drain[b - 1] += trip.energy_wh
        self.sessions = self._sessions()
        self.session_at = np.full(self.n, -1, dtype=int)
        for k, s in enumerate(self.sessions):
            self.session_at[s.arrive : s.depart] = k
        self.enabled = False
        self.current_a = 0.0
        self.phases = phases
        self.battery_mode = BatteryMode.NORMAL
        self.battery_power_w = 0.0
        self.counts = Counts()
        self._was_charging = False
        self._step = 0
        self.ev_w = np.zeros(self.n)
        self.battery_w = np.zeros(self.n)
        self.grid_w = np.zeros(self.n)

    def step_of(self, at: datetime) -> int:
        return int((at - self.start).total_seconds() // self.step_s)

    def time_of(self, step: int) -> datetime:
        return self.start + timedelta(seconds=step * self.step_s)

    def _sessions(self) -> list[Session]:
        out = []
        i = 0
        while i < self.n:
            if not self.plugged[i]:
                i += 1
                continue
            j = i
            while j < self.n and self.plugged[j]:
                j += 1
            out.append(Session(i, j, self.time_of(j)))
            i = j
        return out

    def session(self, step: int) -> Session | None:
        k = int(self.session_at[step])
        return self.sessions[k] if k >= 0 else None

    # --- physics -------------------------------------------------------------------------
    def _flows(self, i: int) -> tuple[float, float, float]:
        """(ev_w, battery_w, grid_w) at step ``i`` with the actuators as they are now."""
        ev_w = 0.0
        if self.plugged[i] and self.enabled and self.current_a > 0:
            ev_w = self.ev.accepts_w(self.current_a, self.phases, self.volts)
        deficit = self.load[i] + ev_w - self.pv[i]
        batt = self.battery.dispatch(deficit, self.battery_mode, self.battery_power_w, self.step_s)
        return ev_w, batt, deficit - batt

    def snapshot(self, i: int, rates: bool = True, forecast: bool = True) -> SiteSnapshot:
        """What a controller reads at the start of step ``i``."""
        now = self.time_of(i)
        ev_w, batt_w, grid_w = self._flows(i)
        plugged = bool(self.plugged[i])
        if not plugged:
            status = ChargerStatus.DISCONNECTED
        elif ev_w > 0:
            status = ChargerStatus.CHARGING
        else:
            status = ChargerStatus.CONNECTED
        charger = ChargerState(
            status=status,
            enabled=self.enabled,
            offered_current_a=self.current_a,
            power_w=ev_w,
            phases=self.phases,
            at=now,
            voltage_v=self.volts,
        )
        vehicle = VehicleState(self.ev.soc_pct, self.ev.capacity_wh, now) if plugged else None
        b = self.battery
        return SiteSnapshot(
            at=now,
            grid=MeterReading(grid_w, now),
            pv=MeterReading(float(self.pv[i]), now),
            battery=BatteryState(
                b.soc_pct, batt_w, b.capacity_wh, now, b.max_charge_w, b.max_discharge_w
            ),
            loadpoints={LOADPOINT: LoadpointSnapshot(charger, vehicle)},
            forecast=self.forecaster.at(i) if forecast else None,
            rates=self.tariff.known_rates(now) if rates else None,
        )

    def apply(self, commands: Sequence[Command]) -> None:
        for cmd in commands:
            if isinstance(cmd, ChargerCommand):
                self.counts.commands += 1
                if cmd.enable is not None:
                    self.enabled = cmd.enable
                if cmd.current_a is not None:
                    self.current_a = cmd.current_a
                if cmd.phases is not None and cmd.phases != self.phases:
                    if self._was_charging:  # a switch under load cycles the contactor
                        self._count_start(self._step)
                    self.phases = cmd.phases
            elif isinstance(cmd, BatteryCommand):
                self.counts.battery_commands += 1
                self.battery_mode = cmd.mode
                self.battery_power_w = cmd.power_w

    def _count_start(self, i: int) -> None:
        self.counts.starts += 1
        day = (i * self.step_s) // 86_400
        self.counts.starts_by_day[day] = self.counts.starts_by_day.get(day, 0) + 1

    def advance(self, i: int) -> None:
        """Run step ``i`` with the current settings and record its flows."""
        self._step = i + 1
        ev_w, batt_w, grid_w = self._flows(i)
        charging = ev_w > 0
        if charging and not self._was_charging:
            self._count_start(i)
        self._was_charging = charging
        self.ev_w[i], self.battery_w[i], self.grid_w[i] = ev_w, batt_w, grid_w
        self.battery.apply(batt_w, self.step_s)
        self.ev.charge(ev_w, self.step_s)
        nxt = i + 1
        if nxt < self.n and self.plugged[i] and not self.plugged[nxt]:
            target = self.target_soc_pct / 100.0 * self.ev.capacity_wh
            self.counts.unmet_wh += max(0.0, target - self.ev.energy_wh - 1.0)
        if self.drain[i]:
            self.ev.energy_wh = max(0.0, self.ev.energy_wh - float(self.drain[i]))
