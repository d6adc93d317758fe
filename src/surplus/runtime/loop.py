"""The control tick: latest readings -> ``decide`` -> commands applied -> decision log.

Every ``interval_s`` the loop builds a ``SiteSnapshot`` from the site device's latest
reading and the tariff's known prices, asks the engine, sends its battery commands through
the device's ``BatteryController`` and logs each command with its reason and result. The
engine's new state is kept only for what took effect: a command that failed is decided (and
sent) again next tick. A battery mode the device says it cannot do (``NotSupportedError``)
is dropped: logged once, never sent again. Until a battery command has taken effect, the
engine's mode is sent even when it did not change (see ``_synced``).

No integration drives a charger yet, so every ``[[loadpoints]]`` table is left out of the
engine's settings and reported with the reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from surplus.capabilities import BatteryController, TariffSource
from surplus.config import LoadpointConfig
from surplus.control.settings import SiteSettings
from surplus.control.state import BatteryCommand, BatteryMode, ControlState, Decision
from surplus.control.surplus import decide
from surplus.domain.errors import DeviceError, NotSupportedError
from surplus.domain.readings import SiteSnapshot
from surplus.domain.tariff import SLOT, Rates
from surplus.runtime.devices import Device, SiteReading, site_device
from surplus.runtime.poller import Health
from surplus.store.log import DecisionLog

__all__ = ["ControlLoop", "LoadpointStatus"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoadpointStatus:
    """What the API says about a loadpoint; setpoint and power are None while not driven."""

    name: str
    mode: str
    setpoint_a: float | None
    power_w: float | None
    reason: str


class ControlLoop:
    """Decides every ``interval_s`` and applies what was decided."""

    def __init__(
        self,
        settings: SiteSettings,
        loadpoints: Sequence[LoadpointConfig],
        devices: Sequence[Device],
        decisions: DecisionLog,
        interval_s: float,
        now: Callable[[], datetime],
        tariff: TariffSource | None = None,
    ) -> None:
        self._settings = settings.model_copy(update={"loadpoints": []})
        self._loadpoints = [
            LoadpointStatus(lp.name, lp.mode, None, None, _not_driven(lp, devices))
            for lp in loadpoints
        ]
        self._devices = devices
        self._decisions = decisions
        self.interval_s = interval_s
        self._now = now
        self._tariff = tariff
        self._rates: Rates | None = None
        self.state = ControlState()
        self._dropped: set[tuple[str, BatteryMode]] = set()
        # Until one battery command took effect, the gateway may still do what an earlier
        # run left it doing (a raised reserve): the engine's mode is sent even unchanged.
        self._synced = False

    def loadpoints(self) -> list[LoadpointStatus]:
        return list(self._loadpoints)

    async def run(self) -> None:
        """Tick until cancelled; an error in one tick is logged and the next one runs."""
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("control tick failed; trying again next tick")
            await asyncio.sleep(self.interval_s)

    async def tick(self) -> Decision:
        now = self._now()
        device = site_device(self._devices)
        reading = device.latest if device is not None else None
        snapshot = SiteSnapshot(
            at=now,
            grid=reading.grid if reading else None,
            pv=reading.pv if reading else None,
            battery=reading.battery if reading else None,
            rates=self._known_rates(now),
        )
        decision = decide(snapshot, self._settings, self.state, now)
        if not self._synced and reading is not None and self._fresh(reading, now):
            decision = _with_battery_command(decision)
        await self.apply(decision, device, now)
        return decision

    def _known_rates(self, now: datetime) -> Rates | None:
        """The tariff's prices from now on, worked out again once a slot has passed."""
        if self._tariff is None:
            return None
        if self._rates is None or now - self._rates.start >= SLOT:
            self._rates = self._tariff.known_rates(now)
        return self._rates

    def _fresh(self, reading: SiteReading, now: datetime) -> bool:
        """Whether the engine steers the battery on this reading (it is recent enough)."""
        stale, battery = self._settings.stale, reading.battery
        return (
            battery is not None
            and (now - reading.grid.at).total_seconds() <= stale.grid_max_age_s
            and (now - battery.at).total_seconds() <= stale.battery_max_age_s
        )

    async def apply(self, decision: Decision, device: Device | None, now: datetime) -> None:
        """Send the decision's commands; keep its state for what took effect."""
        state = decision.state
        for command in decision.commands:
            if not isinstance(command, BatteryCommand):
                continue  # charger commands: no loadpoint is driven yet
            if not await self._battery(command, device, decision.reasons.get("battery", ""), now):
                state = replace(
                    state,
                    battery_mode=self.state.battery_mode,
                    battery_power_w=self.state.battery_power_w,
                )
        self.state = state

    async def _battery(
        self, command: BatteryCommand, device: Device | None, reason: str, now: datetime
    ) -> bool:
        """Send one battery command and log it; whether it took effect."""
        adapter = device.adapter if device is not None else None
        if device is None or not isinstance(adapter, BatteryController):
            return False
        if device.state.health != Health.OK:
            return False  # a device that refuses our credentials or throttles us waits
        if (device.name, command.mode) in self._dropped:
            return False
        try:
            await adapter.set_battery_mode(command.mode, command.power_w)
        except NotSupportedError as err:
            self._dropped.add((device.name, command.mode))
            log.warning("%s: battery mode %s dropped: %s", device.name, command.mode, err)
            result, done = f"not supported, not asked again: {err}", False
        except DeviceError as err:
            log.warning(
                "%s: battery mode %s failed, retried next tick: %s", device.name, command.mode, err
            )
            result, done = f"failed, retried next tick: {err}", False
        else:
            result, done = "ok", True
        self._synced = self._synced or done
        entry = {
            "device": device.name,
            "battery_mode": str(command.mode),
            "power_w": command.power_w,
        }
        self._decisions.append(now, None, entry, reason, result)
        return done


def _with_battery_command(decision: Decision) -> Decision:
    """``decision`` with a command for its battery mode, if it has none."""
    if any(isinstance(c, BatteryCommand) for c in decision.commands):
        return decision
    command = BatteryCommand(decision.state.battery_mode, decision.state.battery_power_w)
    return replace(decision, commands=(*decision.commands, command))


def _not_driven(lp: LoadpointConfig, devices: Sequence[Device]) -> str:
    if lp.charger_device is None:
        return "not controlled: no charger_device configured"
    kind = next((d.type for d in devices if d.name == lp.charger_device), "unknown")
    return (
        f"not controlled: {lp.charger_device} ({kind}) is no charger, and no charger"
        " integration exists yet"
    )
