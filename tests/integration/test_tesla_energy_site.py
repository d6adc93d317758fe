"""A Powerwall steered through the Fleet API where its gateway refuses local writes.

``TeslaEnergySite`` against the simulated Fleet API over HTTPS on 127.0.0.1: each battery
mode maps onto the site's operation and backup reserve, only what differs is written, the
same mode again sends nothing, a grid outage (or a live status too old to tell) changes
nothing. The factory gives the car and its energy site one client. The control loop falls
back to the energy site when the site device refuses a mode, and from then on sends that
mode there; and the whole service steers a Powerwall 3's battery through the Fleet API,
never writing to its gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from surplus.config import load_config
from surplus.control.settings import SiteSettings
from surplus.control.state import (
    BatteryCommand,
    BatteryMode,
    ChargerCommand,
    ControlState,
    Decision,
)
from surplus.domain.errors import NotSupportedError, UnavailableError
from surplus.domain.readings import BatteryState, MeterReading, SessionProgress
from surplus.integrations.powerwall import models as m
from surplus.integrations.powerwall.adapter import PowerwallReading
from surplus.integrations.powerwall.simulator import PowerwallSimulator
from surplus.integrations.powerwall.simulator import running_simulator as running_gateway
from surplus.integrations.tesla.config import TeslaConfig
from surplus.integrations.tesla.energy import TeslaEnergySite
from surplus.integrations.tesla.factory import build_tesla, tokens_of
from surplus.integrations.tesla.simstate import FleetSimulator, SimSite
from surplus.integrations.tesla.simulator import running_simulator as running_fleet
from surplus.integrations.tesla.tokens import scopes_for
from surplus.runtime.datadir import open_store, open_vault
from surplus.runtime.devices import Device
from surplus.runtime.loop import ControlLoop
from surplus.runtime.poller import Poller
from surplus.runtime.service import Service
from surplus.security.vault import Secret
from surplus.sim.devices import HomeBattery
from tests.tesla_kit import ENTRY, VIN, Fleet, fleet

SITE_ID = "1234567"  # the simulator's default energy site
WRITE = "POST /api/1/energy_sites/{site}/{what}"


def the_site(f: Fleet) -> SimSite:
    return f.sim.sites[int(SITE_ID)]


def watch_writes(sim: FleetSimulator) -> list[tuple[str, dict[str, Any]]]:
    """Every site write the simulator takes: what, and its body."""
    writes: list[tuple[str, dict[str, Any]]] = []
    write = sim.site_write

    def watched(site: SimSite, what: str, body: dict[str, Any]) -> dict[str, Any]:
        writes.append((what, body))
        return write(site, what, body)

    sim.site_write = watched  # type: ignore[method-assign]
    return writes


def grid_down(sim: FleetSimulator) -> None:
    """The site islands: Tesla's live status says so (as in an outage)."""
    live = sim.live_status

    def islanded(site: SimSite) -> dict[str, Any]:
        return {**live(site), "grid_status": "Inactive", "island_status": "off_grid"}

    sim.live_status = islanded  # type: ignore[method-assign]


# --- TeslaEnergySite against the simulated Fleet API ---


async def test_each_mode_maps_onto_the_operation_and_the_reserve(tmp_path: Path) -> None:
    async with fleet(tmp_path, energy=True) as f:
        site = the_site(f)
        site.default_real_mode, site.backup_reserve_percent = "autonomous", 30
        site.percentage_charged = 57.8
        energy = TeslaEnergySite(f.client, SITE_ID, now=f.clock)

        await energy.set_battery_mode(BatteryMode.HOLD)
        assert (site.default_real_mode, site.backup_reserve_percent) == ("self_consumption", 57)
        await energy.set_battery_mode(BatteryMode.CHARGE)
        assert (site.default_real_mode, site.backup_reserve_percent) == ("self_consumption", 100)
        await energy.set_battery_mode(BatteryMode.NORMAL)  # Tesla's factory reserve
        assert (site.default_real_mode, site.backup_reserve_percent) == ("self_consumption", 20)


async def test_the_normal_reserve_can_be_given(tmp_path: Path) -> None:
    """A reserve left raised (by a run stopped during a hold) is put back to the given one."""
    async with fleet(tmp_path, energy=True) as f:
        the_site(f).backup_reserve_percent = 80
        energy = TeslaEnergySite(f.client, SITE_ID, now=f.clock, normal_reserve_pct=25)
        await energy.set_battery_mode(BatteryMode.NORMAL)
        assert the_site(f).backup_reserve_percent == 25
        with pytest.raises(ValueError, match=r"within 0\.\.100"):
            TeslaEnergySite(f.client, SITE_ID, now=f.clock, normal_reserve_pct=101)


async def test_only_what_differs_is_written_and_the_same_mode_sends_nothing(
    tmp_path: Path,
) -> None:
    async with fleet(tmp_path, energy=True) as f:
        writes = watch_writes(f.sim)
        energy = TeslaEnergySite(f.client, SITE_ID, now=f.clock)
        await energy.set_battery_mode(BatteryMode.NORMAL)  # self_consumption at 20 % already
        assert writes == []
        await energy.set_battery_mode(BatteryMode.HOLD)
        assert writes == [("backup", {"backup_reserve_percent": 60})]  # the mode was right
        calls = sum(f.sim.requests.values())
        await energy.set_battery_mode(BatteryMode.HOLD, 1_000.0)
        assert sum(f.sim.requests.values()) == calls  # nothing read, nothing written
        assert f.sim.requests[WRITE] == 1


async def test_idle_and_discharge_are_not_supported(tmp_path: Path) -> None:
    async with fleet(tmp_path, energy=True) as f:
        energy = TeslaEnergySite(f.client, SITE_ID, now=f.clock)
        calls = sum(f.sim.requests.values())
        for mode in (BatteryMode.IDLE, BatteryMode.DISCHARGE):
            with pytest.raises(NotSupportedError, match=f"cannot set a battery to {mode}"):
                await energy.set_battery_mode(mode)
        with pytest.raises(NotSupportedError, match="unknown battery mode 'turbo'"):
            await energy.set_battery_mode("turbo")
        assert sum(f.sim.requests.values()) == calls  # nothing asked


async def test_a_grid_outage_changes_nothing(tmp_path: Path) -> None:
    async with fleet(tmp_path, energy=True) as f:
        writes = watch_writes(f.sim)
        live = f.sim.live_status
        grid_down(f.sim)
        energy = TeslaEnergySite(f.client, SITE_ID, now=f.clock)
        for mode in (BatteryMode.CHARGE, BatteryMode.CHARGE, BatteryMode.NORMAL):
            with pytest.raises(UnavailableError, match=r"grid outage .* not changed"):
                await energy.set_battery_mode(mode)
        assert writes == []
        assert f.sim.requests["GET /api/1/energy_sites/{site}/site_info"] == 0
        f.sim.live_status = live  # type: ignore[method-assign]
        await energy.set_battery_mode(BatteryMode.CHARGE)  # asked again once the grid is back
        assert the_site(f).backup_reserve_percent == 100


async def test_a_live_status_too_old_to_show_the_grid_changes_nothing(tmp_path: Path) -> None:
    async with fleet(tmp_path, energy=True) as f:
        writes = watch_writes(f.sim)
        energy = TeslaEnergySite(f.client, SITE_ID, now=lambda: f.clock() + timedelta(hours=1))
        with pytest.raises(UnavailableError, match="too old to show the grid is up"):
            await energy.set_battery_mode(BatteryMode.CHARGE)
        assert writes == []


async def test_a_write_that_does_not_take_is_caught_and_asked_again(tmp_path: Path) -> None:
    async with fleet(tmp_path, energy=True) as f:
        energy = TeslaEnergySite(f.client, SITE_ID, now=f.clock)
        f.sim.faults.add("ack_ignored", times=1)
        with pytest.raises(UnavailableError, match="acknowledged but reads back"):
            await energy.set_battery_mode(BatteryMode.CHARGE)
        await energy.set_battery_mode(BatteryMode.CHARGE)  # not taken for done
        assert the_site(f).backup_reserve_percent == 100


# --- the factory ---


def tesla_config(f: Fleet, tmp_path: Path, **extra: Any) -> TeslaConfig:
    ca = tmp_path / "fleet-ca.pem"
    ca.write_bytes(f.served.tls.cert_pem)
    return TeslaConfig.model_validate(
        {
            "type": "tesla",
            "name": "model3",
            "vin": VIN,
            "token_secret": ENTRY,
            "client_id": f.sim.client_id,
            "fleet_url": f.served.url,
            "auth_url": f.served.auth_url,
            "ca_file": str(ca),
            **extra,
        }
    )


async def test_the_car_and_its_energy_site_share_one_client(tmp_path: Path) -> None:
    """One client, so one holder of the rotating refresh token."""
    async with fleet(tmp_path, energy=True) as f:
        config = tesla_config(f, tmp_path, energy_site_id=SITE_ID, energy_site_reserve_pct=15)
        car = build_tesla(config, f.vault, f.clock)
        try:
            assert car.energy_site is not None and car.energy_site.client is car.client
            await car.energy_site.set_battery_mode(BatteryMode.NORMAL)
            assert the_site(f).backup_reserve_percent == 15
            await car.refresh()
            assert car.health == "ok"
        finally:
            await car.client.aclose()
        without = build_tesla(tesla_config(f, tmp_path), f.vault, f.clock)
        assert without.energy_site is None
        await without.client.aclose()
        with pytest.raises(ValueError, match="give energy_site_id too"):
            tesla_config(f, tmp_path, energy_site_reserve_pct=15)


# --- the control loop's fallback ---


class _Gateway:
    """A site device whose gateway refuses every local battery write."""

    name = "gateway"

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def read_site(self) -> PowerwallReading:
        at = datetime.now(UTC)
        meter = MeterReading(0.0, at)
        battery = BatteryState(50.0, 0.0, 13_500.0, at)
        return PowerwallReading(meter, meter, battery, meter, "SystemGridConnected", at)

    async def set_battery_mode(self, mode: str, power_w: float = 0.0) -> None:
        self.calls.append(mode)
        raise NotSupportedError("local operation writes are refused")


class _Site:
    """An energy site failing as ``errors`` says, per mode."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.errors: dict[str, Exception] = {}

    async def set_battery_mode(self, mode: str, power_w: float = 0.0) -> None:
        self.calls.append(mode)
        error = self.errors.get(mode)
        if error is not None:
            raise error


@dataclass
class _Car:
    """A charger whose cloud reaches the site's battery."""

    energy_site: _Site | None
    health: str = "ok"
    detail: str = ""

    def reading(self) -> None:
        return None

    def session(self) -> SessionProgress:
        return SessionProgress(active=False)

    async def apply(self, command: ChargerCommand) -> str:
        return "ok"


def wants(mode: BatteryMode) -> Decision:
    return Decision((BatteryCommand(mode),), ControlState(battery_mode=mode), {"battery": "x"})


async def test_the_loop_steers_through_the_energy_site_once_the_gateway_refuses(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gateway, site = _Gateway(), _Site()
    car = _Car(site, health="refused")
    poller: Poller[Any] = Poller("gateway", gateway.read_site, 1.0, 1.0)
    await poller.poll_once()
    device = Device("gateway", "powerwall", gateway, None, poller)
    tesla = Device("model3", "tesla", None, None, None, charger=car)
    at = datetime.now(UTC)
    caplog.set_level(logging.WARNING)
    with open_store(tmp_path) as store:
        loop = ControlLoop(SiteSettings(), [], [device, tesla], store.log, 1.0, lambda: at)
        await loop.apply(wants(BatteryMode.HOLD), device, at)  # the car needs re-auth: waits
        assert (gateway.calls, site.calls) == (["hold"], [])
        car.health = "ok"
        site.errors[BatteryMode.HOLD] = UnavailableError("grid outage")
        for _ in range(2):
            await loop.apply(wants(BatteryMode.HOLD), device, at)
        assert loop.state.battery_mode == BatteryMode.NORMAL  # not taken: asked again
        del site.errors[BatteryMode.HOLD]
        await loop.apply(wants(BatteryMode.HOLD), device, at)
        assert loop.state.battery_mode == BatteryMode.HOLD
        assert (gateway.calls, site.calls) == (["hold"] * 2, ["hold"] * 3)  # then cloud only
        await loop.apply(wants(BatteryMode.CHARGE), device, at)
        car.health = "refused"
        await loop.apply(wants(BatteryMode.HOLD), device, at)  # not written to
        car.health = "ok"
        site.errors[BatteryMode.IDLE] = NotSupportedError("no idle")
        for _ in range(2):
            await loop.apply(wants(BatteryMode.IDLE), device, at)  # neither can: dropped
        assert gateway.calls == ["hold", "hold"]  # once refused, every mode goes to the cloud
        assert site.calls == ["hold", "hold", "hold", "charge", "idle"]
        entries = store.log.between(at, at + timedelta(seconds=1))
    logged = [(e.command.get("via"), e.command["battery_mode"], e.result) for e in entries]
    assert [(via, mode, result.partition(":")[0]) for via, mode, result in reversed(logged)] == [
        ("model3", "hold", "failed, retried next tick"),
        ("model3", "hold", "failed, retried next tick"),
        ("model3", "hold", "ok"),
        ("model3", "charge", "ok"),
        ("model3", "idle", "not supported, not asked again"),
    ]
    steered = [r for r in caplog.records if "steered through the Fleet API" in r.getMessage()]
    assert len(steered) == 1
    assert "refused locally: local operation writes are refused" in steered[0].getMessage()


async def test_without_an_energy_site_a_refused_mode_is_dropped(tmp_path: Path) -> None:
    gateway = _Gateway()
    poller: Poller[Any] = Poller("gateway", gateway.read_site, 1.0, 1.0)
    await poller.poll_once()
    device = Device("gateway", "powerwall", gateway, None, poller)
    tesla = Device("model3", "tesla", None, None, None, charger=_Car(None))
    at = datetime.now(UTC)
    with open_store(tmp_path) as store:
        loop = ControlLoop(SiteSettings(), [], [device, tesla], store.log, 1.0, lambda: at)
        for _ in range(2):
            await loop.apply(wants(BatteryMode.HOLD), device, at)
        entries = store.log.between(at, at + timedelta(seconds=1))
    assert gateway.calls == ["hold"]
    assert [e.result.partition(":")[0] for e in entries] == ["not supported, not asked again"]
    assert "via" not in entries[0].command


# --- the whole service with a Powerwall 3 ---

TESLA = "model3"
PASSWORD = "Pw3-gateway-Kx7"


def tariff_now() -> str:
    """A tariff cheap for the hour from now's slot and dear after it: the engine charges the
    battery from the grid now (or holds it) for the dearer hours."""
    now = datetime.now(UTC)
    start = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
    end = start + timedelta(hours=1)
    return (
        '[tariff]\ntimezone = "UTC"\nimport_eur_per_kwh = 0.60\nexport_eur_per_kwh = 0.0\n'
        f'[[tariff.periods]]\nfrom = "{start:%H:%M}"\nto = "{end:%H:%M}"\n'
        "import_eur_per_kwh = 0.05\n"
    )


@contextlib.asynccontextmanager
async def pw3_service(tmp_path: Path, sim: FleetSimulator) -> AsyncIterator[PowerwallSimulator]:
    """The service with a Powerwall 3 site (no sun, the house drawing) and a Tesla account
    with the site's energy site, under ``tariff_now``; the gateway's simulator."""
    gateway = PowerwallSimulator(
        PASSWORD,
        firmware="pw3",
        solar_w=0.0,
        load_w=1_500.0,
        battery=HomeBattery(energy_wh=4_000.0),
    )
    async with running_fleet(sim) as served_fleet, running_gateway(gateway) as served:
        open_vault(tmp_path).set("gateway.password", PASSWORD)
        ca = tmp_path / "fleet-ca.pem"
        ca.write_bytes(served_fleet.tls.cert_pem)
        path = tmp_path / "surplus.toml"
        path.write_text(
            f'[service]\ndata_dir = "{tmp_path}"\n\n'
            f'[[devices]]\ntype = "powerwall"\nname = "gateway"\nhost = "{served.url}"\n'
            f'password_secret = "gateway.password"\nfingerprint = "{served.fingerprint}"\n'
            "poll_interval_s = 0.3\n\n"
            f'[[devices]]\ntype = "tesla"\nname = "{TESLA}"\nvin = "{VIN}"\n'
            f'token_secret = "{TESLA}.tokens"\nclient_id = "{sim.client_id}"\n'
            f'fleet_url = "{served_fleet.url}"\nauth_url = "{served_fleet.auth_url}"\n'
            f'ca_file = "{ca}"\nenergy_site_id = "{SITE_ID}"\npoll_interval_s = 5\n'
            "timeout_s = 2\n\n" + tariff_now()
        )
        config = load_config(path)
        tesla = next(d for d in config.devices if isinstance(d, TeslaConfig))
        tokens = tokens_of(tesla, open_vault(tmp_path), lambda: datetime.now(UTC))
        await tokens.adopt(Secret(sim.issue_refresh_token(scopes_for(energy_site=True))))
        task = asyncio.create_task(Service(config, api_port=0).run())
        try:
            yield gateway
            assert not task.done(), "the service stopped"
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_a_powerwall_3_is_steered_through_the_fleet_api(tmp_path: Path) -> None:
    """The engine charges (or holds) the battery for dearer hours; the gateway refuses the
    customer its operation, so the energy site's reserve is raised through the Fleet API,
    and the gateway is never written to."""
    sim = FleetSimulator()
    sim.add_vehicle(VIN)
    site = sim.add_site(percentage_charged=41.5)
    writes = watch_writes(sim)
    async with pw3_service(tmp_path, sim) as gateway:
        deadline = time.monotonic() + 20
        entries: list[Any] = []
        while not any(e.result == "ok" for e in entries):
            assert time.monotonic() < deadline, [e.result for e in entries]
            await asyncio.sleep(0.1)
            with open_store(tmp_path) as store:
                now = datetime.now(UTC)
                entries = store.log.between(now - timedelta(minutes=1), now + timedelta(minutes=1))
        operation = gateway.operation
    done = next(e for e in reversed(entries) if e.result == "ok")
    mode = done.command["battery_mode"]
    assert mode in ("charge", "hold"), done
    assert done.command["device"] == "gateway" and done.command["via"] == TESLA
    reserve = 100 if mode == "charge" else 41
    assert writes[0] == ("backup", {"backup_reserve_percent": reserve})  # the mode was right
    assert site.default_real_mode == "self_consumption"
    assert gateway.requests["GET /api/operation"] >= 1  # asked first, and refused
    assert gateway.requests["POST /api/operation"] == 0
    assert operation.real_mode == m.RealMode.SELF_CONSUMPTION
    assert operation.backup_reserve_percent == pytest.approx(m.app_to_raw_pct(20.0))
