"""One Tesla as a loadpoint's charger: ``TeslaVehicle`` implements ``SteeredCharger``.

``run()`` keeps the reading fresh within the car's budget: the free ``/vehicles/{vin}``
tells whether it is online or asleep every ``poll_interval_s``; the billed ``vehicle_data``
is asked only while the car is online and plugged in (or charging), when it has just woken
(a car wakes when its cable is plugged in), else at most every ``idle_data_s``; an asleep
car is never woken to be read (it is not charging). So an idle car costs little and may
sleep.

``apply`` carries out the engine's commands: enable -> ``charge_start``, disable ->
``charge_stop``, a current -> ``set_charging_amps`` (sent twice below 5 A, and only when
``allow_below_5a``; otherwise raised to 5 A). A car is woken only when a command must
actually be sent; a current given while charging is disabled is kept until it is enabled.
Benign ``result:false`` reasons (already so) are not failures. Every command is verified by
reading the charge state back: Tesla answers success to values it does not apply.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from surplus.capabilities import ApiUsage
from surplus.control.state import ChargerCommand
from surplus.domain.errors import (
    AsleepError,
    AuthenticationError,
    DeviceError,
    NotSupportedError,
    UnavailableError,
)
from surplus.domain.readings import ChargerState, ChargerStatus, SessionProgress
from surplus.integrations.tesla.client import FleetClient, SigningRequiredError
from surplus.integrations.tesla.energy import TeslaEnergySite
from surplus.integrations.tesla.models import BENIGN_REASONS, IDLE_DATA_S, ChargeState

__all__ = ["TeslaVehicle"]

log = logging.getLogger(__name__)

MIN_AMPS = 5
_CHARGING = frozenset({"Charging", "Starting"})


class TeslaVehicle:
    """The car ``vin`` through ``client``; times come from ``now``."""

    def __init__(
        self,
        client: FleetClient,
        vin: str,
        *,
        now: Callable[[], datetime],
        poll_interval_s: float = 30.0,
        idle_data_s: float = IDLE_DATA_S,
        allow_below_5a: bool = False,
        voltage_v: float = 230.0,
        energy_site: TeslaEnergySite | None = None,
    ) -> None:
        self.client = client
        self.vin = vin
        self._now = now
        self.poll_interval_s = poll_interval_s
        self.idle_data_s = idle_data_s
        self.allow_below_5a = allow_below_5a
        self.voltage_v = voltage_v
        self.energy_site = energy_site  # the account's home battery, on the same client
        self.state: str | None = None  # online | asleep | offline, from /vehicles
        self.charge: ChargeState | None = None
        self._charge_at: datetime | None = None  # when ``charge`` was read
        self._checked_at: datetime | None = None  # when the state was last known
        self._enabled = False
        self._current_a: int | None = None
        self._problem: DeviceError | None = None
        self._refused: DeviceError | None = None  # a command the car will never take as sent

    def __repr__(self) -> str:
        return f"TeslaVehicle({self.vin!r}, state={self.state!r})"

    # --- keeping the reading fresh ---

    async def run(self) -> None:
        """Refresh until the account is refused (re-authentication, a disabled app): the
        runtime then waits for new credentials; other failures show in ``health``."""
        while True:
            await self.refresh()
            if self.health == "refused":
                return
            await asyncio.sleep(self.poll_interval_s)

    async def refresh(self) -> None:
        """One round: the free state, then the charge state when it is worth its price."""
        try:
            summary = await self.client.vehicle(self.vin)
            woke = summary.state == "online" and self.state not in (None, "online")
            self.state = summary.state
            self._checked_at = self._now()
            if self.state == "online" and (woke or self._data_due()):
                await self._read()
            self._problem = None
        except AsleepError:
            self.state, self._checked_at, self._problem = "asleep", self._now(), None
        except DeviceError as e:
            self._problem = e
            log.warning("tesla %s: %s", self.vin, e)

    def _data_due(self) -> bool:
        c, at = self.charge, self._charge_at
        if c is None or at is None:
            return True
        if c.plugged_in or c.charging_state in _CHARGING:
            return True
        return self._now() - at >= timedelta(seconds=self.idle_data_s)

    async def _read(self) -> ChargeState:
        self.charge = await self.client.charge_state(self.vin)
        self._charge_at = self._checked_at = self._now()
        return self.charge

    # --- SteeredCharger ---

    @property
    def health(self) -> str:
        if self._refused is not None:
            return "refused"
        if isinstance(self._problem, AuthenticationError | NotSupportedError):
            return "refused"
        if self._problem is not None or self._checked_at is None:
            return "stale"
        if self._now() - self._checked_at > timedelta(seconds=3 * self.poll_interval_s):
            return "stale"
        return "ok"

    @property
    def detail(self) -> str:
        if self._refused is not None:
            return str(self._refused)
        if self._problem is not None:
            return str(self._problem)
        if self._checked_at is None:
            return f"{self.vin}: not read yet"
        charging = self.charge.charging_state if self.charge else "unknown"
        return f"{self.vin}: {self.state}, {charging}"

    def reading(self) -> ChargerState | None:
        c = self.charge
        if c is None or self._checked_at is None:
            return None
        charging = c.charging_state in _CHARGING and self.state == "online"
        if not c.plugged_in:
            status = ChargerStatus.DISCONNECTED
        elif charging and (c.charger_power > 0 or c.charger_actual_current > 0):
            status = ChargerStatus.CHARGING
        else:
            status = ChargerStatus.CONNECTED
        power_w = _power_w(c) if status is ChargerStatus.CHARGING else 0.0
        # An asleep car draws nothing: that is confirmed as of the free state check.
        at = self._checked_at if self.state != "online" else self._charge_at or self._checked_at
        return ChargerState(
            status=status,
            enabled=self._enabled,
            offered_current_a=float(c.charge_current_request),
            power_w=power_w,
            phases=_phases(c),
            at=at,
            voltage_v=float(c.charger_voltage) if c.charger_voltage > 10 else None,
        )

    def api_usage(self) -> ApiUsage:
        """The Fleet API calls billed for this car so far, and their estimated price."""
        used = self.client.usage.get(self.vin)
        if used is None:
            return ApiUsage(cost_usd=0.0)
        return ApiUsage(used.reads, used.commands, used.wakes, used.cost_usd)

    def session(self) -> SessionProgress:
        c = self.charge
        if c is None or not c.plugged_in:
            return SessionProgress(active=False)
        return SessionProgress(active=True, energy_wh=c.charge_energy_added * 1000.0)

    async def apply(self, command: ChargerCommand) -> str:
        """Carry out ``command``: "ok", with what else happened after a semicolon."""
        try:
            result = await self._apply(command)
        except AsleepError:
            self.state = "asleep"  # the next command wakes it first, never a blind resend
            raise
        except SigningRequiredError as err:
            self._refused = err  # shown in ``health`` until a command goes through
            raise
        self._refused = None
        return result

    async def _apply(self, command: ChargerCommand) -> str:
        notes: list[str] = []
        if command.phases is not None:
            notes.append(f"{command.phases}-phase charging ignored: the car chooses its phases")
        amps = self._amps(command.current_a, notes) if command.current_a is not None else None
        if command.enable is False:
            self._enabled = False
            if amps is not None:
                self._current_a = amps
            notes += await self._stop()
        elif command.enable or (amps is not None and self._enabled):
            await self._awake()
            if amps is not None:
                notes += await self._set_amps(amps)
                self._current_a = amps
            self._enabled = True
            if command.enable or not self._charging():  # billed: not with each current
                notes += await self._start()
        elif amps is not None:
            self._current_a = amps
            notes.append(f"{amps} A kept until charging is enabled")
        return "; ".join(["ok", *notes])

    def _charging(self) -> bool:
        """Charging, as last read (a set current is read back, so fresh then)."""
        return self.charge is not None and self.charge.charging_state in _CHARGING

    def _amps(self, current_a: float, notes: list[str]) -> int:
        amps = int(current_a)
        if amps < MIN_AMPS and not self.allow_below_5a:
            notes.append(f"{current_a:g} A raised to {MIN_AMPS} A (allow_below_5a is off)")
            return MIN_AMPS
        return max(amps, 0)

    async def _awake(self) -> None:
        if self.state == "online":
            return
        summary = await self.client.vehicle(self.vin)
        if summary.state != "online":
            log.info("tesla %s is %s; waking it to send a command", self.vin, summary.state)
            await self.client.wake(self.vin)
        self.state = "online"

    async def _stop(self) -> list[str]:
        summary = await self.client.vehicle(self.vin)
        self.state = summary.state
        if summary.state != "online":
            return [f"{summary.state}: not charging, nothing to stop"]
        result = await self.client.command(self.vin, "charge_stop")
        self._check(result.result, result.reason, "charge_stop")
        c = await self._read()
        if c.charging_state in _CHARGING:
            raise UnavailableError(f"{self.vin}: charge_stop acknowledged, the car still charges")
        return []

    async def _start(self) -> list[str]:
        result = await self.client.command(self.vin, "charge_start")
        if not result.result and result.reason == "complete":
            await self._read()
            return ["charge_start: the car is at its charge limit"]
        self._check(result.result, result.reason, "charge_start")
        c = await self._read()
        if c.charging_state not in _CHARGING:
            raise UnavailableError(
                f"{self.vin}: charge_start acknowledged, the car is {c.charging_state}"
            )
        return []

    async def _set_amps(self, amps: int) -> list[str]:
        c, at = self.charge, self._charge_at
        fresh = at is not None and self._now() - at <= timedelta(seconds=self.poll_interval_s)
        if fresh and c is not None and c.charge_current_request == amps:
            return []  # the car asks for this current already: no billed command
        sends = 2 if amps < MIN_AMPS else 1  # below 5 A a car takes the value on the second
        for _ in range(sends):
            result = await self.client.command(
                self.vin, "set_charging_amps", {"charging_amps": amps}
            )
            self._check(result.result, result.reason, "set_charging_amps")
        c = await self._read()
        if c.charge_current_request == amps:
            return []
        if amps > c.charge_current_request_max and (
            c.charge_current_request == c.charge_current_request_max
        ):
            return [f"{amps} A capped by the car at {c.charge_current_request_max} A"]
        raise UnavailableError(
            f"{self.vin}: set_charging_amps {amps} acknowledged, the car requests"
            f" {c.charge_current_request} A"
        )

    def _check(self, ok: bool, reason: str, name: str) -> None:
        if ok or reason in BENIGN_REASONS:
            return
        raise UnavailableError(f"{self.vin}: {name} refused ({reason or 'no reason given'})")


def _phases(c: ChargeState) -> int:
    """The phases the car charges on: Tesla reports 2 for three (a known quirk)."""
    if c.charger_phases is None:
        return 3
    return 3 if c.charger_phases == 2 else c.charger_phases


def _power_w(c: ChargeState) -> float:
    """What the car draws: amperes x volts x phases, as ``charger_power`` is whole kW."""
    if c.charger_actual_current > 0 and c.charger_voltage > 10:
        return float(c.charger_actual_current * c.charger_voltage * _phases(c))
    return c.charger_power * 1000.0
