"""The simulated charger's hardware: its clock, its connectors with the car plugged into them,
the energy register and the sampled values it reports.

The car is ``surplus.sim.devices.ElectricVehicle``: it draws what it accepts of the current
offered (nothing below 6 A, IEC 61851), tapering when nearly full; the register counts the
energy drawn. Physics are stepped lazily, whenever the charger looks, so an idle charger
costs nothing. The clock may run ``speed`` times faster than real time.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from surplus.integrations.ocpp.quirks import Quirks
from surplus.sim.devices import ElectricVehicle

__all__ = ["MIN_CURRENT_A", "SimClock", "SimConnector", "sampled_values"]

MIN_CURRENT_A = 6.0  # below this the car may not draw (IEC 61851)
_STEP_S = 10.0  # the longest physics step


class SimClock:
    """Time for the simulated charger: real time, ``speed`` times faster."""

    def __init__(self, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._t0 = time.monotonic()
        self._start = datetime.now(UTC)

    def now(self) -> datetime:
        return self._start + timedelta(seconds=(time.monotonic() - self._t0) * self.speed)

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of simulated time."""
        await asyncio.sleep(max(seconds, 0.0) / self.speed)


@dataclass(slots=True)
class SimConnector:
    id: int
    status: str = "Available"
    operative: bool = True
    scheduled_operative: bool | None = None  # a ChangeAvailability waiting for the transaction
    plugged: bool = False
    ev: ElectricVehicle | None = None
    tx_id: int | None = None  # negative: started offline, the central system's id not yet known
    tx_start: datetime | None = None
    tx_tag: str | None = None
    meter_start_wh: int = 0
    register_wh: float = 1_234_000.0  # the meter's lifetime count
    session_base_wh: float = 0.0  # where this session's register started (register_resets)
    offered_a: float = 0.0
    power_w: float = 0.0
    updated: datetime | None = None
    previous_sample: dict[str, object] | None = field(default=None, repr=False)

    def draw_w(self, phases: int, volts: float) -> float:
        if self.tx_id is None or self.ev is None or self.offered_a < MIN_CURRENT_A:
            return 0.0
        return self.ev.accepts_w(self.offered_a, phases, volts)

    def advance(self, now: datetime, phases: int, volts: float) -> None:
        """Charge the car (and count) up to ``now``."""
        if self.updated is not None and now > self.updated:
            total = (now - self.updated).total_seconds()
            steps = max(1, math.ceil(total / _STEP_S))
            for _ in range(steps):
                watts = self.draw_w(phases, volts)
                if self.ev is not None:
                    self.ev.charge(watts, total / steps)
                self.register_wh += watts * total / steps / 3600.0
        self.updated = now if self.updated is None or now > self.updated else self.updated
        self.power_w = self.draw_w(phases, volts)

    def charging_status(self, phases: int, volts: float) -> str:
        if self.offered_a < MIN_CURRENT_A:
            return "SuspendedEVSE"
        return "Charging" if self.draw_w(phases, volts) > 0 else "SuspendedEV"

    def reported_register_wh(self, quirks: Quirks) -> float:
        if "register_resets" in quirks:
            return self.register_wh - self.session_base_wh
        return self.register_wh


def _number(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}"


def _odd(text: str, unit: str, turn: int) -> tuple[str, str | None]:
    """``text`` the way a sloppy firmware writes it (and the unit it still states)."""
    style = turn % 3
    if style == 0:
        return f"  {text} ", unit
    if style == 1:
        return text.replace(".", ","), unit
    return f"{text} {unit}", None


def sampled_values(
    connector: SimConnector,
    measurands: list[str],
    context: str,
    quirks: Quirks,
    phases: int,
    volts: float,
    turn: int = 0,
) -> list[dict[str, object]]:
    """The sampled values (snake_case keys, as the library sends them) of ``measurands``."""
    if "sparse_measurands" in quirks:
        measurands = [
            m for m in measurands if m in ("Energy.Active.Import.Register", "Power.Active.Import")
        ]
    kwh = "kwh_values" in quirks
    power = connector.power_w
    out: list[dict[str, object]] = []

    def add(measurand: str, value: str, unit: str, **extra: str) -> None:
        text, stated = (
            _odd(value, unit, turn + len(out)) if "odd_strings" in quirks else (value, unit)
        )
        item: dict[str, object] = {"value": text, "context": context, "measurand": measurand}
        if stated:
            item["unit"] = stated
        item.update(extra)
        out.append(item)

    for m in measurands:
        if m == "Energy.Active.Import.Register":
            register = connector.reported_register_wh(quirks)
            if kwh:
                add(m, _number(register / 1000.0, 3), "kWh", location="Outlet")
            else:
                add(m, _number(register, 1), "Wh", location="Outlet")
        elif m == "Power.Active.Import":
            if kwh:
                add(m, _number(power / 1000.0, 3), "kW")
            else:
                add(m, _number(power, 1), "W")
        elif m == "Current.Import":
            for p in range(1, phases + 1):
                add(m, _number(power / (phases * volts), 2), "A", phase=f"L{p}")
        elif m == "Voltage":
            for p in range(1, phases + 1):
                label = f"L{p}" if "voltage_l1" in quirks else f"L{p}-N"
                add(m, _number(volts, 1), "V", phase=label)
        elif m == "Current.Offered":
            add(m, _number(connector.offered_a, 1), "A")
        elif m == "Power.Offered":
            add(m, _number(connector.offered_a * phases * volts, 1), "W")
        elif m == "SoC" and connector.ev is not None:
            add(m, _number(connector.ev.soc_pct, 1), "Percent", location="EV")
        elif m == "Temperature":
            add(m, "31.5", "Celsius", location="Body")
        elif m == "Frequency":
            add(m, "50.0", "")  # OCPP 1.6 has no unit for hertz
    return out
