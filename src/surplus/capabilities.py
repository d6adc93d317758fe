"""Small capability Protocols: what a device can do, one ability each.

An integration's adapter implements the ones its device has; the runtime looks them up
with ``isinstance`` and drops a capability whose device says it is not supported.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from surplus.control.state import ChargerCommand
from surplus.domain.readings import (
    BatteryState,
    ChargerState,
    MeterReading,
    SessionProgress,
    VehicleState,
)
from surplus.domain.tariff import Rates


@runtime_checkable
class Meter(Protocol):
    async def read_power(self) -> MeterReading: ...


@runtime_checkable
class Battery(Protocol):
    async def read_battery(self) -> BatteryState: ...


@runtime_checkable
class BatteryController(Protocol):
    async def set_battery_mode(self, mode: str, power_w: float = 0.0) -> None: ...


@runtime_checkable
class Charger(Protocol):
    async def read_charger(self) -> ChargerState: ...

    async def enable(self, on: bool) -> None: ...


@runtime_checkable
class CurrentLimiter(Protocol):
    async def set_current(self, current_a: float) -> None: ...


@runtime_checkable
class PhaseSwitcher(Protocol):
    async def set_phases(self, phases: int) -> None: ...


@runtime_checkable
class Vehicle(Protocol):
    async def read_vehicle(self) -> VehicleState: ...


@runtime_checkable
class VehicleWaker(Protocol):
    async def wake(self) -> None: ...


@runtime_checkable
class TariffSource(Protocol):
    def known_rates(self, now: datetime) -> Rates: ...


@runtime_checkable
class SteeredCharger(Protocol):
    """A loadpoint's charger as the control loop drives it (an OCPP connector, a car through
    its vendor's cloud, a cloud-controlled wallbox): what it last reported, kept fresh by
    the integration itself; its health ("ok", "stale" or "refused") with the reason; its
    charging session; and the engine's commands, carried out (a short result) or refused
    with a ``DeviceError``."""

    @property
    def health(self) -> str: ...

    @property
    def detail(self) -> str: ...

    def reading(self) -> ChargerState | None: ...

    def session(self) -> SessionProgress: ...

    async def apply(self, command: ChargerCommand) -> str: ...


@runtime_checkable
class RunningCharger(SteeredCharger, Protocol):
    """A ``SteeredCharger`` that polls its vendor's cloud itself, within the API's limits."""

    async def run(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ApiUsage:
    """The vendor API calls a device cost so far, and their price where the vendor bills."""

    reads: int = 0
    commands: int = 0
    wakes: int = 0
    cost_usd: float | None = None  # None: the vendor bills nothing per call

    def since(self, earlier: ApiUsage) -> ApiUsage:
        """The calls made after ``earlier`` was taken."""
        cost = None
        if self.cost_usd is not None:
            cost = self.cost_usd - (earlier.cost_usd or 0.0)
        return ApiUsage(
            self.reads - earlier.reads,
            self.commands - earlier.commands,
            self.wakes - earlier.wakes,
            cost,
        )


@runtime_checkable
class MeteredApi(Protocol):
    """A device behind a rate-limited (and maybe billed) vendor API."""

    def api_usage(self) -> ApiUsage: ...
