"""The configured devices at run time: each one's adapter, client and poller, and recording.

``build_devices`` turns the ``[[devices]]`` tables into ``Device``s through the registry. A
device that cannot be built (its secret is missing from the vault) is kept, without a
poller, in the state "needs re-authentication", so the others run on and the API says why.
Every successful reading goes to the store's recorder as one sample per quantity.

A device that needs re-authentication (a refused password, a missing secret, a certificate
other than the pinned one) is not retried: a login loop locks gateways and accounts. It
waits until what it is built from changes (the vault file, after ``surplus secret set``,
or its pin, after ``surplus pin``) and is then built and polled again, without a restart.

A charger (``type = "ocpp"``) is neither polled nor pushed: it is what the OCPP central
system knows of it, and the control loop steers it.

Certificates: a device whose config names no fingerprint gets the one pinned in the store;
the one it trusted on first use is pinned there at its first good reading.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Protocol

from surplus.capabilities import RunningCharger, SteeredCharger
from surplus.domain.errors import StoreError, VaultError
from surplus.domain.readings import BatteryState, MeterReading
from surplus.integrations.ocpp.central import CentralSystem
from surplus.integrations.ocpp.config import OcppDeviceConfig
from surplus.integrations.ocpp.loadpoint import OcppLoadpoint
from surplus.integrations.push.config import PushConfig
from surplus.integrations.registry import (
    Adapter,
    Client,
    DeviceConfig,
    PolledConfig,
    build_charger,
    build_device,
)
from surplus.integrations.tesla.config import TeslaConfig
from surplus.integrations.wallbox.config import WallboxConfig
from surplus.runtime.backoff import Backoff
from surplus.runtime.poller import Health, Poller, PollState
from surplus.runtime.pushed import PushedFeed
from surplus.security.vault import Secret, Vault
from surplus.store.pins import Pins
from surplus.store.recorder import Recorder

__all__ = ["Builder", "Device", "SiteReading", "build_devices", "samples", "site_device"]

log = logging.getLogger(__name__)

POLL_BACKOFF = Backoff()  # after a failed poll
RESTART_BACKOFF = Backoff(initial_s=5.0, max_s=300.0)  # after a poller crashed
RECHECK_S = 5.0  # how often a device needing re-authentication looks for new credentials
# A polled reading is stale once this many polls were missed, and the grace.
STALE_POLLS, STALE_GRACE_S = 3, 1.0
REQUESTS_PER_READ = 4
CHARGER_HEALTH = {"ok": Health.OK, "stale": Health.STALE, "refused": Health.NEEDS_REAUTH}
_rng = random.Random()


class SiteReading(Protocol):
    """One round of a device's telemetry of the whole site (e.g. a ``PowerwallReading``)."""

    @property
    def grid(self) -> MeterReading: ...
    @property
    def pv(self) -> MeterReading: ...
    @property
    def battery(self) -> BatteryState | None: ...  # None: the site has no home battery
    @property
    def load(self) -> MeterReading: ...


def samples(reading: SiteReading) -> list[tuple[str, str, float, datetime]]:
    """The recorded quantities of a reading, each with its unit and time."""
    found = [
        ("grid_w", "W", reading.grid.power_w, reading.grid.at),
        ("solar_w", "W", reading.pv.power_w, reading.pv.at),
        ("load_w", "W", reading.load.power_w, reading.load.at),
    ]
    battery = reading.battery
    if battery is not None:
        found += [
            ("battery_w", "W", battery.power_w, battery.at),
            ("battery_soc_pct", "%", battery.soc_pct, battery.at),
        ]
    return found


class Builder:
    """Builds one device from its config, the vault and its pin; again on new credentials."""

    def __init__(
        self,
        config: DeviceConfig,
        open_vault: Callable[[], Vault],
        vault_path: Path,
        pins: Pins,
        recorder: Recorder,
        now: Callable[[], datetime],
        on_secrets: Callable[[Sequence[Secret]], None],
        recheck_s: float = RECHECK_S,
        central: CentralSystem | None = None,
    ) -> None:
        self.config = config
        self._central = central
        self._open_vault = open_vault
        self._vault_path = vault_path
        self._pins = pins
        self._recorder = recorder
        self._now = now
        self._on_secrets = on_secrets
        self.recheck_s = recheck_s

    def credentials(self) -> tuple[object, ...]:
        """What a new attempt would be built from: it differs once the owner changed it."""
        try:
            stat = self._vault_path.stat()
            vault: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            vault = None
        pin = self._pins.get(self.config.name)
        return (vault, pin.fingerprint if pin else None)

    def build(self, vault: Vault | None = None) -> Device:
        """The device polled (or fed by its pushes), or held back ("needs
        re-authentication") when its secret is missing from the vault."""
        config = self.config
        if isinstance(config, OcppDeviceConfig):
            return self._charger(config)
        if isinstance(config, WallboxConfig | TeslaConfig):
            try:
                cloud = build_charger(
                    config, vault if vault is not None else self._open_vault(), self._now
                )
            except VaultError as err:
                log.error("%s: cannot be set up: %s", config.name, err)
                return Device(config.name, config.type, None, None, None, str(err), builder=self)
            return Device(
                config.name,
                config.type,
                None,
                None,
                None,
                builder=self,
                charger=cloud.charger,
                closing=cloud.aclose,
            )
        if isinstance(config, PushConfig):
            feed: PushedFeed[SiteReading] = PushedFeed(
                config.name,
                config.stale_after_s,
                self._now,
                _recording(config.name, self._recorder),
            )
            return Device(config.name, config.type, None, None, None, feed=feed)
        try:
            pin = self._pins.get(config.name)
            built = build_device(
                config,
                vault if vault is not None else self._open_vault(),
                self._now,
                pinned=pin.fingerprint if pin else None,
            )
        except VaultError as err:
            log.error("%s: cannot be set up: %s", config.name, err)
            return Device(config.name, config.type, None, None, None, str(err), builder=self)
        self._on_secrets(built.secrets)
        poller: Poller[SiteReading] = Poller(
            config.name,
            built.adapter.read_site,
            config.poll_interval_s,
            # ``timeout_s`` bounds each request; a reading takes a few of them
            REQUESTS_PER_READ * config.timeout_s,
            POLL_BACKOFF,
            on_reading=self._on_reading(config, built.client),
            now=self._now,
        )
        return Device(config.name, config.type, built.adapter, built.client, poller, builder=self)

    def _charger(self, config: OcppDeviceConfig) -> Device:
        if self._central is None:  # the service starts one whenever an ocpp device is set
            raise RuntimeError("an ocpp device needs the central system")
        charger = OcppLoadpoint(
            self._central,
            config.charger_id,
            connector_id=config.connector_id,
            phases=config.phases,
            voltage_v=config.voltage_v,
            now=self._now,
        )
        return Device(config.name, config.type, None, None, None, charger=charger)

    def _on_reading(self, config: PolledConfig, client: Client) -> Callable[[SiteReading], None]:
        record = _recording(config.name, self._recorder)
        pinned = config.fingerprint is not None

        def on_reading(reading: SiteReading) -> None:
            nonlocal pinned
            record(reading)
            if not pinned and client.fingerprint is not None:
                pinned = True
                try:
                    if self._pins.get(self.config.name) is None:
                        self._pins.set(self.config.name, client.fingerprint, self._now())
                        log.info("%s: certificate %s pinned", self.config.name, client.fingerprint)
                except StoreError as err:
                    log.warning("%s: certificate not pinned: %s", self.config.name, err)

        return on_reading


@dataclass(eq=False)
class Device:
    """One ``[[devices]]`` table at run time; ``adapter`` is None when it could not be built."""

    name: str
    type: str
    adapter: Adapter | None
    client: Client | None
    poller: Poller[SiteReading] | None
    problem: str = ""  # why it could not be built
    builder: Builder | None = None  # to build it again once its credentials change
    feed: PushedFeed[SiteReading] | None = None  # a device that pushes instead
    charger: SteeredCharger | None = None  # a loadpoint's charger, driven by the loop
    closing: Callable[[], Awaitable[None]] | None = None  # what its ``aclose`` closes

    @property
    def state(self) -> PollState:
        if self.charger is not None:
            health = CHARGER_HEALTH.get(self.charger.health, Health.STALE)
            return PollState(health, self.charger.detail)
        source = self.poller or self.feed
        if source is None:
            return PollState(Health.NEEDS_REAUTH, self.problem)
        return source.state

    @property
    def latest(self) -> SiteReading | None:
        source = self.poller or self.feed
        return None if source is None else source.latest

    @property
    def stale_after_s(self) -> float:
        """How old its latest reading may be before it counts as stale."""
        if self.feed is not None:
            return self.feed.stale_after_s
        interval_s = self.poller.interval_s if self.poller is not None else 0.0
        return STALE_POLLS * interval_s + STALE_GRACE_S

    async def run(self) -> None:
        """Poll until cancelled or until the device refuses the call (not supported); after
        a refusal of its credentials, wait for new ones and poll again."""
        if self.feed is not None:
            await self.feed.run()
            return
        while True:
            if isinstance(self.charger, RunningCharger):
                await self.charger.run()  # keeps its reading fresh itself
            elif self.poller is not None:
                await self._poll(self.poller)
            if self.builder is None or self.state.health != Health.NEEDS_REAUTH:
                return
            await self._rebuild_on_new_credentials(self.builder)

    async def _poll(self, poller: Poller[SiteReading]) -> None:
        """An unexpected error is logged and polling starts again after a pause."""
        failures = 0
        while True:
            try:
                await poller.run()
                return
            except Exception as err:
                failures += 1
                log.exception("%s: polling failed unexpectedly; restarting it", self.name)
                poller.state = replace(
                    poller.state, health=Health.STALE, detail=f"unexpected error: {err}"
                )
                await asyncio.sleep(RESTART_BACKOFF.delay_s(failures, _rng))

    async def _rebuild_on_new_credentials(self, builder: Builder) -> None:
        seen = builder.credentials()
        while True:
            await asyncio.sleep(builder.recheck_s)
            current = builder.credentials()
            if current == seen:
                continue
            seen = current
            log.info("%s: its credentials changed; trying them", self.name)
            fresh = builder.build()
            await self.aclose()
            self.adapter, self.client, self.poller = fresh.adapter, fresh.client, fresh.poller
            self.charger, self.closing = fresh.charger, fresh.closing
            self.problem = fresh.problem
            if self.poller is not None or self.charger is not None:
                return

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()
        if self.closing is not None:
            await self.closing()


def build_devices(
    configs: Iterable[DeviceConfig],
    vault: Vault,
    pins: Pins,
    recorder: Recorder,
    now: Callable[[], datetime],
    on_secrets: Callable[[Sequence[Secret]], None],
    *,
    reopen_vault: Callable[[], Vault] | None = None,
    recheck_s: float = RECHECK_S,
    central: CentralSystem | None = None,
) -> list[Device]:
    """The devices; ``on_secrets`` is told every credential they hold (for the log
    redaction), and ``reopen_vault`` opens the vault again when credentials change;
    ``central`` is the OCPP central system the chargers connect to."""
    reopen = reopen_vault if reopen_vault is not None else (lambda: vault)
    return [
        Builder(
            config, reopen, vault.path, pins, recorder, now, on_secrets, recheck_s, central
        ).build(vault)
        for config in configs
    ]


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
