"""The control tick: latest readings -> ``decide`` -> commands applied -> decision log.

Every ``interval_s`` the loop builds a ``SiteSnapshot`` from the site device's latest
reading and the tariff's known prices, asks the engine, sends its battery commands through
the device's ``BatteryController`` and logs each command with its reason and result. The
engine's new state is kept only for what took effect: a command that failed is decided (and
sent) again next tick. A battery mode the device says it cannot do (``NotSupportedError``)
goes to the site's battery through the Fleet API instead, where a device offers an energy
site (a Tesla with ``energy_site_id``; a Powerwall 3 refuses local writes), and from then on
straight there; a mode neither can do is dropped: logged once, never sent again. A device
that is not "ok" (a Tesla that needs re-authentication) is not commanded. Until a battery
command has taken effect, the engine's mode is sent even when it did not change (see
``_synced``).

A ``[[loadpoints]]`` table whose ``charger_device`` is a charger (an OCPP connector) is
driven: its charger's state goes into the snapshot, the engine's charger commands go to it
(logged like the battery's), and its charging sessions are kept with their solar, battery
and grid energy and cost. Any other loadpoint is left out of the engine's settings and
reported with the reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol, runtime_checkable

from surplus.capabilities import (
    ApiUsage,
    BatteryController,
    MeteredApi,
    SteeredCharger,
    TariffSource,
)
from surplus.config import LoadpointConfig
from surplus.control.settings import SiteSettings
from surplus.control.state import (
    BatteryCommand,
    BatteryMode,
    ChargerCommand,
    Command,
    ControlState,
    Decision,
)
from surplus.control.surplus import decide, spent
from surplus.domain.errors import DeviceError, NotSupportedError
from surplus.domain.readings import ChargerStatus, LoadpointSnapshot, SiteSnapshot
from surplus.domain.tariff import SLOT, Rates
from surplus.runtime.devices import Device, SiteReading, site_device
from surplus.runtime.poller import Health
from surplus.runtime.sessions import SessionTracker
from surplus.store.log import DecisionLog

__all__ = ["ControlLoop", "LoadpointStatus"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoadpointStatus:
    """What the API says about a loadpoint; the charger's figures are None while not driven
    (or not heard from)."""

    name: str
    mode: str
    setpoint_a: float | None
    power_w: float | None
    reason: str
    charger_status: str | None = None  # ``ChargerStatus``
    offered_current_a: float | None = None
    session_wh: float | None = None  # the open session's energy so far
    session_solar_share: float | None = None
    # the vendor API calls of the session under way (or of the last one, once it ended)
    session_api: ApiUsage | None = None


@runtime_checkable
class _EnergySiteHolder(Protocol):
    """A charger whose cloud reaches the site's home battery too (a Tesla's energy site)."""

    @property
    def energy_site(self) -> BatteryController | None: ...


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
        sessions: SessionTracker | None = None,
    ) -> None:
        by_name = {d.name: d for d in devices}
        # the devices, not their chargers: a device rebuilt on new credentials has a new one
        self._charger_of: dict[str, Device] = {
            lp.name: device
            for lp in loadpoints
            if lp.charger_device is not None
            and (device := by_name.get(lp.charger_device)) is not None
            and device.charger is not None
        }
        driven = [lp.name for lp in settings.loadpoints if lp.name in self._charger_of]
        self._settings = settings.model_copy(
            update={"loadpoints": [lp for lp in settings.loadpoints if lp.name in driven]}
        )
        self._charger_devices = {lp.name: lp.charger_device for lp in loadpoints}
        self._loadpoints = {
            lp.name: LoadpointStatus(
                lp.name,
                lp.mode,
                None,
                None,
                "waiting for the charger" if lp.name in driven else _not_driven(lp, devices),
            )
            for lp in loadpoints
        }
        self._sessions = sessions
        self._session_api_base: dict[str, ApiUsage] = {}  # API usage when a session began
        self._last_session_api: dict[str, ApiUsage] = {}
        self._devices = devices
        self._decisions = decisions
        self.interval_s = interval_s
        self._now = now
        self._tariff = tariff
        self._rates: Rates | None = None
        self.state = ControlState()
        self._dropped: set[tuple[str, BatteryMode]] = set()
        # site devices that refused a mode: all their modes go through an energy site since
        self._via_cloud: set[str] = set()
        # Until one battery command took effect, the gateway may still do what an earlier
        # run left it doing (a raised reserve): the engine's mode is sent even unchanged.
        self._synced = False

    @property
    def _chargers(self) -> dict[str, SteeredCharger]:
        """Each driven loadpoint's charger as its device holds it now."""
        return {
            name: device.charger
            for name, device in self._charger_of.items()
            if device.charger is not None
        }

    def loadpoints(self) -> list[LoadpointStatus]:
        return list(self._loadpoints.values())

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
        chargers = {name: c.reading() for name, c in self._chargers.items()}
        snapshot = SiteSnapshot(
            at=now,
            grid=reading.grid if reading else None,
            pv=reading.pv if reading else None,
            battery=reading.battery if reading else None,
            loadpoints={
                name: LoadpointSnapshot(state) for name, state in chargers.items() if state
            },
            rates=self._known_rates(now),
        )
        decision = decide(snapshot, self._settings, self.state, now)
        if not self._synced and reading is not None and self._fresh(reading, now):
            decision = _with_battery_command(decision)
        decision = _stopping_unasked_charges(decision, snapshot)
        await self.apply(decision, device, now)
        self._report(decision, snapshot, now)
        return decision

    def _report(self, decision: Decision, snapshot: SiteSnapshot, now: datetime) -> None:
        """The driven loadpoints' figures for the API, and their charging sessions."""
        for name, charger in self._chargers.items():
            view = snapshot.loadpoints.get(name)
            state = self.state.loadpoints.get(name)
            session = None
            if self._sessions is not None and view is not None:
                progress = charger.session()
                session = self._sessions.observe(
                    name,
                    now,
                    charging_session=progress.active,
                    session_energy_wh=progress.energy_wh,
                    ev_w=view.charger.power_w,
                    pv_w=snapshot.pv.power_w if snapshot.pv else 0.0,
                    home_w=max(snapshot.home_w() or 0.0, 0.0),
                    battery_w=snapshot.battery.power_w if snapshot.battery else 0.0,
                    rates=snapshot.rates,
                )
            session_api = self._session_api(name, charger, charger.session().active)
            reason = decision.reasons.get(name, "")
            if view is None:
                reason = f"no reading from {self._charger_devices[name]} yet: {charger.detail}"
            self._loadpoints[name] = replace(
                self._loadpoints[name],
                setpoint_a=(state.current_a if state.on else 0.0) if state else None,
                power_w=view.charger.power_w if view else None,
                reason=reason,
                charger_status=str(view.charger.status) if view else None,
                offered_current_a=view.charger.offered_current_a if view else None,
                session_wh=session.energy.total_wh if session and session.end is None else None,
                session_solar_share=(
                    session.energy.solar_share if session and session.end is None else None
                ),
                session_api=session_api,
            )

    def _session_api(self, name: str, charger: SteeredCharger, active: bool) -> ApiUsage | None:
        """The API calls of ``name``'s session so far, or of its last one; its end logged."""
        if not isinstance(charger, MeteredApi):
            return None
        usage = charger.api_usage()
        base = self._session_api_base.get(name)
        if active and base is None:
            self._session_api_base[name] = usage
        elif not active and base is not None:
            used = self._last_session_api[name] = usage.since(base)
            del self._session_api_base[name]
            cost = "" if used.cost_usd is None else f", about {used.cost_usd:.2f} USD"
            log.info(
                "%s: session ended after %d reads, %d commands and %d wakes%s",
                name,
                used.reads,
                used.commands,
                used.wakes,
                cost,
            )
        base = self._session_api_base.get(name)
        return usage.since(base) if base is not None else self._last_session_api.get(name)

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
            if isinstance(command, ChargerCommand):
                reason = decision.reasons.get(command.loadpoint, "")
                if not await self._charger(command, reason, now):
                    # not taken: the engine's memory of that loadpoint stays as it was
                    kept = dict(state.loadpoints)
                    before = self.state.loadpoints.get(command.loadpoint)
                    if before is None:
                        kept.pop(command.loadpoint, None)
                    else:
                        kept[command.loadpoint] = before
                    state = replace(state, loadpoints=kept)
            elif not await self._battery(command, device, decision.reasons.get("battery", ""), now):
                state = replace(
                    state,
                    battery_mode=self.state.battery_mode,
                    battery_power_w=self.state.battery_power_w,
                )
        self.state = state

    async def _charger(self, command: ChargerCommand, reason: str, now: datetime) -> bool:
        """Send one charger command and log it; whether it took effect."""
        charger = self._chargers.get(command.loadpoint)
        if charger is None:
            return False
        try:
            result, done = await charger.apply(command), True
        except DeviceError as err:
            log.warning("%s: charger command failed, retried next tick: %s", command.loadpoint, err)
            result, done = f"failed, retried next tick: {err}", False
        entry = {"enable": command.enable, "current_a": command.current_a, "phases": command.phases}
        self._decisions.append(now, command.loadpoint, entry, reason, result)
        return done

    async def _battery(
        self, command: BatteryCommand, device: Device | None, reason: str, now: datetime
    ) -> bool:
        """Send one battery command, through an energy site once the device refused its mode,
        and log it; whether it took effect."""
        adapter = device.adapter if device is not None else None
        if device is None or not isinstance(adapter, BatteryController):
            return False
        if device.state.health != Health.OK:
            return False  # a device that refuses our credentials or throttles us waits
        key = (device.name, command.mode)
        if key in self._dropped:
            return False
        site: tuple[Device, BatteryController] | None = None
        if device.name in self._via_cloud:
            site = self._energy_site()
            if site is None or site[0].state.health != Health.OK:
                return False  # the energy site's device waits too
            error = await _sent(site[1], command)
        else:
            error = await _sent(adapter, command)
            if isinstance(error, NotSupportedError) and (site := self._energy_site()) is not None:
                if site[0].state.health != Health.OK:
                    return False  # refused here, and the energy site waits: both asked again
                refused = error
                error = await _sent(site[1], command)
                if not isinstance(error, NotSupportedError):
                    self._steer_through(device.name, command.mode, site[0], refused)
        return self._logged(command, device, site[0].name if site else None, error, reason, now)

    def _energy_site(self) -> tuple[Device, BatteryController] | None:
        """The first device whose cloud reaches the site's battery, and its energy site."""
        for device in self._devices:
            charger = device.charger
            if isinstance(charger, _EnergySiteHolder) and charger.energy_site is not None:
                return device, charger.energy_site
        return None

    def _steer_through(self, name: str, mode: BatteryMode, holder: Device, why: Exception) -> None:
        """From now on send ``name``'s battery modes through ``holder``'s energy site (a
        gateway that refuses one mode locally is not asked the others: their states would
        part); say so once."""
        if not self._via_cloud:
            log.warning(
                "%s: the battery is steered through the Fleet API energy site of %s from now"
                " on: battery mode %s was refused locally: %s",
                name,
                holder.name,
                mode,
                why,
            )
        self._via_cloud.add(name)

    def _logged(
        self,
        command: BatteryCommand,
        device: Device,
        via: str | None,
        error: DeviceError | None,
        reason: str,
        now: datetime,
    ) -> bool:
        """Log what came of one battery command sent (``via`` an energy site's device);
        whether it took effect."""
        if isinstance(error, NotSupportedError):
            self._dropped.add((device.name, command.mode))
            log.warning("%s: battery mode %s dropped: %s", device.name, command.mode, error)
            result = f"not supported, not asked again: {error}"
        elif error is not None:
            log.warning(
                "%s: battery mode %s failed, retried next tick: %s",
                device.name,
                command.mode,
                error,
            )
            result = f"failed, retried next tick: {error}"
        else:
            result = "ok"
        done = error is None
        self._synced = self._synced or done
        entry: dict[str, object] = {
            "device": device.name,
            "battery_mode": str(command.mode),
            "power_w": command.power_w,
        }
        if via is not None:
            entry["via"] = via
        self._decisions.append(now, None, entry, reason, result)
        return done


async def _sent(controller: BatteryController, command: BatteryCommand) -> DeviceError | None:
    """Send ``command`` to ``controller``: its refusal, or None when it took it."""
    try:
        await controller.set_battery_mode(command.mode, command.power_w)
    except DeviceError as err:
        return err
    return None


def _with_battery_command(decision: Decision) -> Decision:
    """``decision`` with a command for its battery mode, if it has none."""
    if any(isinstance(c, BatteryCommand) for c in decision.commands):
        return decision
    command = BatteryCommand(decision.state.battery_mode, decision.state.battery_power_w)
    return replace(decision, commands=(*decision.commands, command))


def _stopping_unasked_charges(decision: Decision, snapshot: SiteSnapshot) -> Decision:
    """``decision`` with a stop for each charger drawing power the engine did not ask for
    (many start by themselves when a car is plugged in) and has no command for."""
    commanded = {c.loadpoint for c in decision.commands if isinstance(c, ChargerCommand)}
    stops: list[Command] = []
    states = dict(decision.state.loadpoints)
    for name, view in snapshot.loadpoints.items():
        state = states.get(name)
        wanted = state is not None and state.on
        charger = view.charger
        unasked = charger.status == ChargerStatus.CHARGING and not charger.enabled
        if unasked and not wanted and name not in commanded:
            stops.append(ChargerCommand(name, enable=False))
            if state is not None:  # counted in the session's command budget too
                states[name] = spent(state, stops[-1:])
    if not stops:
        return decision
    return replace(
        decision,
        commands=(*decision.commands, *stops),
        state=replace(decision.state, loadpoints=states),
    )


def _not_driven(lp: LoadpointConfig, devices: Sequence[Device]) -> str:
    if lp.charger_device is None:
        return "not controlled: no charger_device configured"
    kind = next((d.type for d in devices if d.name == lp.charger_device), "unknown")
    return f"not controlled: {lp.charger_device} ({kind}) is no charger"
