"""Readings from the site's devices, each stamped with the time ``at`` it was true.

Signs: grid power is positive when importing; battery power is positive when discharging;
charger and solar power are always >= 0. Units are in the field names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

from surplus.domain.tariff import Rates


class ChargerStatus(StrEnum):
    """What the charger says about the cable and the car (IEC 61851 states, simplified)."""

    DISCONNECTED = "disconnected"  # A: no car
    CONNECTED = "connected"  # B: car plugged in, not drawing
    CHARGING = "charging"  # C: car drawing current
    ERROR = "error"  # E/F


@dataclass(frozen=True, slots=True)
class MeterReading:
    """A power meter: grid (+import / -export), solar (>= 0) or the household."""

    power_w: float
    at: datetime


@dataclass(frozen=True, slots=True)
class BatteryState:
    """The home battery."""

    soc_pct: float
    power_w: float  # + discharging, - charging
    capacity_wh: float
    at: datetime
    max_charge_w: float = 5000.0
    max_discharge_w: float = 5000.0


@dataclass(frozen=True, slots=True)
class ChargerState:
    """One charger (EVSE) as it reports itself."""

    status: ChargerStatus
    enabled: bool  # charging allowed by us
    offered_current_a: float  # the limit we set, per phase
    power_w: float  # measured draw
    phases: int  # phases in use (1 or 3)
    at: datetime
    voltage_v: float | None = None  # measured phase voltage, when the charger reports it


@dataclass(frozen=True, slots=True)
class VehicleState:
    """The car on a loadpoint, when its API tells us."""

    soc_pct: float
    capacity_wh: float
    at: datetime


@dataclass(frozen=True, slots=True)
class SessionProgress:
    """Whether a charging session is under way at a charger, and the energy it counted for
    it (None when the charger counts none: the energy is then taken from its power)."""

    active: bool
    energy_wh: float | None = None


@dataclass(frozen=True, slots=True)
class LoadpointSnapshot:
    """What is known about one loadpoint: its charger and, maybe, its car."""

    charger: ChargerState
    vehicle: VehicleState | None = None


@dataclass(frozen=True, slots=True)
class Forecast:
    """Expected solar production and household load per slot from ``start`` on."""

    start: datetime
    step_s: int
    pv_w: NDArray[np.float64]
    load_w: NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class SiteSnapshot:
    """Everything the controller may look at in one tick; immutable."""

    at: datetime
    grid: MeterReading | None
    pv: MeterReading | None
    battery: BatteryState | None
    loadpoints: Mapping[str, LoadpointSnapshot] = field(default_factory=dict)
    forecast: Forecast | None = None
    rates: Rates | None = None  # prices known at ``at``

    def home_w(self) -> float | None:
        """Household consumption (excluding chargers), derived from the energy balance."""
        if self.grid is None:
            return None
        pv = self.pv.power_w if self.pv else 0.0
        batt = self.battery.power_w if self.battery else 0.0
        ev = sum(lp.charger.power_w for lp in self.loadpoints.values())
        return self.grid.power_w + pv + batt - ev
