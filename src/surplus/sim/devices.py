"""Physical models of the home battery and the car, stepped in fixed intervals."""

from __future__ import annotations

from dataclasses import dataclass

from surplus.control.state import BatteryMode


@dataclass(slots=True)
class HomeBattery:
    """A home battery (defaults: a Powerwall 2) that behaves like one.

    In ``normal`` mode it covers any deficit and stores any surplus (self-consumption); in
    ``hold`` it does not discharge; in ``charge`` it also charges from the grid; in
    ``discharge`` it gives at least the power asked, exporting what the house does not use.
    """

    capacity_wh: float = 13_500.0
    energy_wh: float = 6_750.0
    max_charge_w: float = 5_000.0
    max_discharge_w: float = 5_000.0
    efficiency_charge: float = 0.95  # sqrt of a 90 % round trip
    efficiency_discharge: float = 0.95
    min_soc_pct: float = 5.0

    @property
    def soc_pct(self) -> float:
        return 100.0 * self.energy_wh / self.capacity_wh

    def dispatch(self, deficit_w: float, mode: BatteryMode, power_w: float, dt_s: float) -> float:
        """Battery power for a step (+ discharging) given the site's deficit (load - PV)."""
        dt_h = dt_s / 3600.0
        room_w = (self.capacity_wh - self.energy_wh) / (self.efficiency_charge * dt_h)
        floor_wh = self.min_soc_pct / 100.0 * self.capacity_wh
        avail_w = max(0.0, self.energy_wh - floor_wh) * self.efficiency_discharge / dt_h
        charge_cap = min(self.max_charge_w, room_w)
        if mode == BatteryMode.IDLE:
            return 0.0
        if mode == BatteryMode.CHARGE:
            return -min(max(power_w, -deficit_w, 0.0), charge_cap)
        if mode == BatteryMode.DISCHARGE:
            return min(max(power_w, deficit_w), self.max_discharge_w, avail_w)
        if deficit_w > 0:
            if mode == BatteryMode.HOLD:
                return 0.0
            return min(deficit_w, self.max_discharge_w, avail_w)
        return -min(-deficit_w, charge_cap)

    def apply(self, power_w: float, dt_s: float) -> None:
        dt_h = dt_s / 3600.0
        if power_w >= 0:
            self.energy_wh -= power_w * dt_h / self.efficiency_discharge
        else:
            self.energy_wh -= power_w * dt_h * self.efficiency_charge
        self.energy_wh = min(max(self.energy_wh, 0.0), self.capacity_wh)


@dataclass(slots=True)
class ElectricVehicle:
    """A car: onboard charger limits per phase count, losses, and a taper near full."""

    capacity_wh: float = 60_000.0
    energy_wh: float = 36_000.0
    max_current_a: float = 16.0  # per phase, onboard charger
    efficiency: float = 0.9  # grid to battery
    taper_from_pct: float = 85.0  # above this the car accepts less, down to ``taper_end_w``
    taper_end_w: float = 1_500.0

    @property
    def soc_pct(self) -> float:
        return 100.0 * self.energy_wh / self.capacity_wh

    def accepts_w(self, current_a: float, phases: int, volts: float) -> float:
        """Grid-side power the car draws when offered ``current_a`` on ``phases``."""
        if self.energy_wh >= self.capacity_wh - 1.0:
            return 0.0
        offered = min(current_a, self.max_current_a) * phases * volts
        soc = self.soc_pct
        if soc > self.taper_from_pct:
            full = self.max_current_a * 3 * volts
            frac = (100.0 - soc) / (100.0 - self.taper_from_pct)
            offered = min(offered, self.taper_end_w + frac * (full - self.taper_end_w))
        room_w = (self.capacity_wh - self.energy_wh) / self.efficiency * 4.0  # <= 15 min to fill
        return max(0.0, min(offered, room_w))

    def charge(self, power_w: float, dt_s: float) -> None:
        self.energy_wh = min(
            self.capacity_wh, self.energy_wh + power_w * self.efficiency * dt_s / 3600.0
        )
