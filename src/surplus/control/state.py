"""What the engine decides (commands, reasons) and what it remembers between ticks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

from surplus.control.prices import PriceMemory
from surplus.control.trips import TripLog


class BatteryMode(StrEnum):
    """How the home battery is steered."""

    NORMAL = "normal"  # self-consumption: covers any load, charges from any surplus
    HOLD = "hold"  # no discharge; still charges from solar surplus
    CHARGE = "charge"  # charge from the grid at ``power_w``
    IDLE = "idle"  # neither: leave room to store solar later, when export pays less
    DISCHARGE = "discharge"  # discharge at ``power_w``, exporting what the house does not use


@dataclass(frozen=True, slots=True)
class ChargerCommand:
    """Set a charger; ``None`` fields stay as they are."""

    loadpoint: str
    enable: bool | None = None
    current_a: float | None = None
    phases: int | None = None


@dataclass(frozen=True, slots=True)
class BatteryCommand:
    mode: BatteryMode
    power_w: float = 0.0


Command = ChargerCommand | BatteryCommand


@dataclass(frozen=True, slots=True)
class LoadpointState:
    """Memory of one loadpoint: the contactor, the timers and the command budget."""

    on: bool = False
    switched_at: datetime | None = None  # last start or stop
    want_since: datetime | None = None  # surplus enough to start, since
    short_since: datetime | None = None  # surplus too little to go on, since
    starts_day: date | None = None
    starts_today: int = 0
    current_a: float = 0.0  # last current sent
    current_at: datetime | None = None  # when it was sent
    phases: int = 3
    phase_want: int | None = None  # phase count wanted, since ``phase_since``
    phase_since: datetime | None = None
    phase_switched_at: datetime | None = None
    connected: bool = False
    trips: TripLog = field(default_factory=TripLog)  # the car's habits
    short_of_sun_since: datetime | None = None  # running on more than the surplus, since
    session_commands: int = 0  # charger commands since the car was plugged in


@dataclass(frozen=True, slots=True)
class Plan:
    """A site plan per 15-minute slot from ``start``: over the published prices and, for
    a car's deadline or foreseen trips, the expected ones after them (``rates_end`` is where
    the published prices end)."""

    start: datetime
    made_at: datetime
    rates_end: datetime
    ev_w: Mapping[str, NDArray[np.float64]]  # planned charging power per loadpoint
    ev_grid_w: Mapping[str, NDArray[np.float64]]  # of which not from solar, as one block
    ev_energy_wh: Mapping[str, NDArray[np.float64]]  # expected energy in the car, slot end
    grid_import_w: NDArray[np.float64]
    battery_charge_w: NDArray[np.float64]
    battery_discharge_w: NDArray[np.float64]
    battery_soc_wh: NDArray[np.float64]  # slot end
    deficit_w: NDArray[np.float64]  # forecast load + EV - PV
    solar_w: NDArray[np.float64]  # forecast PV left after the household
    key: tuple[object, ...] = ()  # what the plan was made for (targets, plugged cars)
    cost_eur: float = 0.0


@dataclass(frozen=True, slots=True)
class ControlState:
    """Everything the engine remembers; the engine returns a new one each tick."""

    loadpoints: Mapping[str, LoadpointState] = field(default_factory=dict)
    plan: Plan | None = None
    battery_mode: BatteryMode = BatteryMode.NORMAL
    battery_power_w: float = 0.0
    prices: PriceMemory = field(default_factory=PriceMemory)  # the usual prices


@dataclass(frozen=True, slots=True)
class Decision:
    """The result of one tick."""

    commands: tuple[Command, ...]
    state: ControlState
    reasons: Mapping[str, str]  # per loadpoint, and "battery"
