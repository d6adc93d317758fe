"""The configured devices at run time: each one's adapter, client and poller, and recording.

``build_devices`` turns the ``[[devices]]`` tables into ``Device``s through the registry. A
device that cannot be built (its secret is missing from the vault) is kept, without a
poller, in the state "needs re-authentication", so the others run on and the API says why.
Every successful reading goes to the store's recorder as one sample per quantity.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from surplus.domain.errors import StoreError, VaultError
from surplus.domain.readings import BatteryState, MeterReading
from surplus.integrations.registry import Adapter, Client, DeviceConfig, build_device
from surplus.runtime.backoff import Backoff
from surplus.runtime.poller import Health, Poller, PollState
from surplus.security.vault import Secret, Vault
from surplus.store.recorder import Recorder

__all__ = ["Device", "SiteReading", "build_devices", "samples", "site_device"]

log = logging.getLogger(__name__)

RESTART_BACKOFF = Backoff(initial_s=5.0, max_s=300.0)
_rng = random.Random()


class SiteReading(Protocol):
    """One round of a device's telemetry of the whole site (e.g. a ``PowerwallReading``)."""

    @property
    def grid(self) -> MeterReading: ...
    @property
    def pv(self) -> MeterReading: ...
    @property
    def battery(self) -> BatteryState: ...
    @property
    def load(self) -> MeterReading: ...


def samples(reading: SiteReading) -> list[tuple[str, str, float, datetime]]:
    """The recorded quantities of a reading, each with its unit and time."""
    return [
        ("grid_w", "W", reading.grid.power_w, reading.grid.at),
        ("solar_w", "W", reading.pv.power_w, reading.pv.at),
        ("load_w", "W", reading.load.power_w, reading.load.at),
        ("battery_w", "W", reading.battery.power_w, reading.battery.at),
        ("battery_soc_pct", "%", reading.battery.soc_pct, reading.battery.at),
    ]


@dataclass(eq=False)
class Device:
    """One ``[[devices]]`` table at run time; ``adapter`` is None when it could not be built."""

    name: str
    type: str
    adapter: Adapter | None
    client: Client | None
    poller: Poller[SiteReading] | None
    problem: str = ""  # why it could not be built

    @property
    def state(self) -> PollState:
        if self.poller is None:
            return PollState(Health.NEEDS_REAUTH, self.problem)
        return self.poller.state

    @property
    def latest(self) -> SiteReading | None:
        return None if self.poller is None else self.poller.latest

    async def run(self) -> None:
        """Poll until cancelled or until the device stops it (re-authentication, not
        supported); an unexpected error is logged and polling starts again after a pause."""
        if self.poller is None:
            return
        failures = 0
        while True:
            try:
                await self.poller.run()
                return
            except Exception as err:
                failures += 1
                log.exception("%s: polling failed unexpectedly; restarting it", self.name)
                self.poller.state = replace(
                    self.poller.state, health=Health.STALE, detail=f"unexpected error: {err}"
                )
                await asyncio.sleep(RESTART_BACKOFF.delay_s(failures, _rng))

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()


def build_devices(
    configs: Iterable[DeviceConfig],
    vault: Vault,
    recorder: Recorder,
    now: Callable[[], datetime],
) -> tuple[list[Device], list[Secret]]:
    """The devices, and every credential they hold (to be redacted from the logs)."""
    devices: list[Device] = []
    held: list[Secret] = []
    for config in configs:
        try:
            built = build_device(config, vault, now)
        except VaultError as err:
            log.error("%s: cannot be set up: %s", config.name, err)
            devices.append(Device(config.name, config.type, None, None, None, str(err)))
            continue
        held.extend(built.secrets)
        poller: Poller[SiteReading] = Poller(
            config.name,
            built.adapter.read_site,
            config.poll_interval_s,
            config.timeout_s,
            on_reading=_recording(config.name, recorder),
            now=now,
        )
        devices.append(Device(config.name, config.type, built.adapter, built.client, poller))
    return devices, held


def site_device(devices: Sequence[Device]) -> Device | None:
    """The device the site's readings come from: the first one that has read anything."""
    return next((d for d in devices if d.latest is not None), None)


def _recording(device: str, recorder: Recorder) -> Callable[[SiteReading], None]:
    def record(reading: SiteReading) -> None:
        try:
            for quantity, unit, value, at in samples(reading):
                recorder.record(device, quantity, unit, at, value)
        except (StoreError, ValueError) as err:  # a closed store, a changed unit, a NaN
            log.warning("%s: reading not recorded: %s", device, err)

    return record
