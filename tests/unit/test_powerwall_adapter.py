"""The Powerwall adapter against the simulated gateway on 127.0.0.1: readings in the domain's
signs and scales, each engine battery mode's effect on the gateway, writes only when needed,
what the local API cannot do, and the errors that must surface.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest

from surplus.capabilities import (
    Battery,
    BatteryController,
    Charger,
    CurrentLimiter,
    Meter,
    PhaseSwitcher,
    TariffSource,
    Vehicle,
    VehicleWaker,
)
from surplus.control.state import BatteryMode
from surplus.domain.errors import NotSupportedError, UnavailableError
from surplus.integrations.powerwall import models as m
from surplus.integrations.powerwall.adapter import CAPABILITIES, PowerwallAdapter
from surplus.integrations.powerwall.client import PowerwallClient
from surplus.integrations.powerwall.simstate import FIRMWARE
from surplus.integrations.powerwall.simulator import PowerwallSimulator, running_simulator
from surplus.security.vault import Secret
from surplus.sim.devices import HomeBattery
from tests.powerwall_kit import T0, SimClock

PASSWORD = "adapter-test-pw"
AGGREGATES = "GET /api/meters/aggregates"
WRITE = "POST /api/operation"
ALL_PROTOCOLS = (
    Meter,
    Battery,
    BatteryController,
    Charger,
    CurrentLimiter,
    PhaseSwitcher,
    Vehicle,
    VehicleWaker,
    TariffSource,
)


def pack(energy_wh: float = 8_100.0) -> HomeBattery:
    """A 13.5 kWh pack at 60 % raw, with limits unlike ``BatteryState``'s defaults."""
    return HomeBattery(
        capacity_wh=13_500.0, energy_wh=energy_wh, max_charge_w=3_300.0, max_discharge_w=4_600.0
    )


def simulator(clock: SimClock, **kwargs: Any) -> PowerwallSimulator:
    kwargs.setdefault("battery", pack())
    return PowerwallSimulator(PASSWORD, clock=clock, **kwargs)


@asynccontextmanager
async def gateway(
    sim: PowerwallSimulator, clock: SimClock, **adapter_kwargs: Any
) -> AsyncIterator[PowerwallAdapter]:
    """``sim`` served on 127.0.0.1 and an adapter over a client pinned to it."""
    async with running_simulator(sim) as served:
        client = PowerwallClient(
            served.url, Secret(PASSWORD), served.fingerprint, write_retry_delay_s=0.0
        )
        async with client:
            adapter_kwargs.setdefault("now", clock)
            yield PowerwallAdapter(client, "powerwall", **adapter_kwargs)


# --- capabilities ---


async def test_it_satisfies_exactly_the_declared_capabilities() -> None:
    clock = SimClock()
    async with gateway(simulator(clock), clock) as adapter:
        satisfied = {p for p in ALL_PROTOCOLS if isinstance(adapter, p)}
    assert satisfied == set(CAPABILITIES) == {Meter, Battery, BatteryController}


# --- readings ---


@pytest.mark.parametrize(
    ("solar_w", "load_w", "battery_w", "grid_w"),
    [
        (1_000.0, 8_000.0, 4_600.0, 2_400.0),  # discharging at its limit, importing the rest
        (9_000.0, 1_000.0, -3_300.0, -4_700.0),  # charging at its limit, exporting the rest
    ],
)
async def test_a_site_read_gives_flows_and_soc_in_domain_signs_and_scales(
    solar_w: float, load_w: float, battery_w: float, grid_w: float
) -> None:
    clock = SimClock()
    sim = simulator(clock, solar_w=solar_w, load_w=load_w)
    async with gateway(sim, clock) as adapter:
        reading = await adapter.read_site()

    assert reading.grid.power_w == pytest.approx(grid_w)
    assert reading.pv.power_w == pytest.approx(solar_w)
    assert reading.load.power_w == pytest.approx(load_w)
    battery = reading.battery
    assert battery.power_w == pytest.approx(battery_w)
    assert battery.soc_pct == pytest.approx((60.0 - 5.0) / 0.95)  # raw 60 % in the app's scale
    assert battery.capacity_wh == pytest.approx(13_500.0 * 0.95)
    assert battery.soc_pct / 100 * battery.capacity_wh == pytest.approx(8_100.0 - 675.0)
    assert (battery.max_charge_w, battery.max_discharge_w) == (3_300.0, 4_600.0)
    assert reading.grid_status == m.GridStatus.CONNECTED
    assert reading.grid_connected


async def test_every_part_is_stamped_when_the_last_answer_arrived() -> None:
    clock = SimClock()
    sim = simulator(clock)

    def answers_so_far() -> datetime:  # one second per request the gateway has answered
        return T0 + timedelta(seconds=sum(sim.requests.values()))

    async with gateway(sim, clock, now=answers_so_far) as adapter:
        reading = await adapter.read_site()
        arrived = answers_so_far()

    assert arrived > T0
    assert reading.at == arrived
    parts = (reading.grid, reading.pv, reading.battery, reading.load)
    assert [part.at for part in parts] == [arrived] * 4


async def test_night_solar_noise_reads_zero_but_real_production_does_not() -> None:
    clock = SimClock()
    async with gateway(simulator(clock, solar_w=7.0, load_w=500.0), clock) as adapter:
        night = await adapter.read_site()
    async with gateway(simulator(clock, solar_w=60.0, load_w=500.0), clock) as adapter:
        dawn = await adapter.read_site()
    assert night.pv.power_w == 0.0
    assert dawn.pv.power_w == pytest.approx(60.0)


async def test_meter_and_battery_share_one_round_until_it_is_too_old() -> None:
    clock = SimClock()
    sim = simulator(clock)
    async with gateway(sim, clock, max_age_s=5.0) as adapter:
        battery = await adapter.read_battery()  # no round yet: reads one
        grid = await adapter.read_power()
        assert sim.requests[AGGREGATES] == 1
        assert grid.at == battery.at == T0
        assert grid == (await adapter.read_site()).grid
        assert sim.requests[AGGREGATES] == 2  # a site read always reads

        clock.advance(5.0)
        fresh = await adapter.read_power()
        assert sim.requests[AGGREGATES] == 3
        assert fresh.at == T0 + timedelta(seconds=5)


async def test_a_stopped_sitemaster_surfaces_as_unavailable() -> None:
    clock = SimClock()
    sim = simulator(clock)
    sim.faults.add("sitemaster_stopped")
    async with gateway(sim, clock) as adapter:
        with pytest.raises(UnavailableError, match="502"):
            await adapter.read_site()
        with pytest.raises(UnavailableError, match="502"):
            await adapter.read_battery()


# --- steering ---


@pytest.mark.parametrize(
    ("mode", "reserve_raw"),
    [
        (BatteryMode.NORMAL, 30.0 * 0.95 + 5.0),  # the configured normal reserve
        (BatteryMode.HOLD, 57.0 * 0.95 + 5.0),  # app SoC 57.9 %, rounded down
        (BatteryMode.CHARGE, 100.0),
    ],
)
async def test_each_mode_sets_self_consumption_and_a_reserve_once(
    mode: BatteryMode, reserve_raw: float
) -> None:
    clock = SimClock()
    sim = simulator(clock, real_mode=m.RealMode.BACKUP, backup_reserve_raw=50.0)
    async with gateway(sim, clock, normal_reserve_pct=30.0) as adapter:
        await adapter.set_battery_mode(mode)
        assert sim.operation.real_mode == m.RealMode.SELF_CONSUMPTION
        assert sim.operation.backup_reserve_percent == pytest.approx(reserve_raw)
        assert sim.requests[WRITE] == 1

        await adapter.set_battery_mode(mode)
    assert sim.requests[WRITE] == 1


async def test_a_hold_keeps_the_level_it_began_at_as_the_charge_moves() -> None:
    clock = SimClock()
    sim = simulator(clock)
    async with gateway(sim, clock, max_age_s=5.0) as adapter:
        await adapter.set_battery_mode(BatteryMode.HOLD)
        held = sim.operation.backup_reserve_percent
        sim.battery.energy_wh = 10_800.0  # solar filled it to 80 % raw
        clock.advance(60.0)
        await adapter.set_battery_mode(BatteryMode.HOLD)
    assert sim.operation.backup_reserve_percent == held == pytest.approx(57.0 * 0.95 + 5.0)
    assert sim.requests[WRITE] == 1


async def test_a_mode_already_in_effect_on_the_gateway_sends_no_write() -> None:
    clock = SimClock()
    sim = simulator(clock, backup_reserve_raw=m.app_to_raw_pct(20.0))
    async with gateway(sim, clock, normal_reserve_pct=20.0) as adapter:
        await adapter.set_battery_mode(BatteryMode.NORMAL)
    assert sim.requests["GET /api/operation"] == 1
    assert sim.requests[WRITE] == 0


async def test_every_change_of_mode_is_written() -> None:
    clock = SimClock()
    sim = simulator(clock)
    async with gateway(sim, clock, normal_reserve_pct=20.0) as adapter:
        for mode in (BatteryMode.NORMAL, BatteryMode.CHARGE, BatteryMode.NORMAL):
            await adapter.set_battery_mode(mode)
        assert sim.operation.backup_reserve_percent == pytest.approx(24.0)
        await adapter.set_battery_mode(BatteryMode.CHARGE)
    assert sim.requests[WRITE] == 3  # the first NORMAL was already in effect
    assert sim.operation.backup_reserve_percent == 100.0


@pytest.mark.parametrize("mode", [BatteryMode.IDLE, BatteryMode.DISCHARGE])
async def test_idle_and_discharge_are_not_supported(mode: BatteryMode) -> None:
    clock = SimClock()
    sim = simulator(clock)
    before = sim.operation
    async with gateway(sim, clock) as adapter:
        with pytest.raises(NotSupportedError, match=f"to {mode}"):
            await adapter.set_battery_mode(mode, 2_000.0)
    assert sim.operation == before
    assert sim.requests[WRITE] == 0


async def test_nothing_changes_while_the_grid_is_down_and_the_mode_is_set_once_back() -> None:
    clock = SimClock()
    sim = simulator(clock)
    sim.faults.add("grid_down")
    before = sim.operation
    async with gateway(sim, clock) as adapter:
        reading = await adapter.read_site()
        assert reading.grid_status == m.GridStatus.ISLANDED
        assert not reading.grid_connected
        with pytest.raises(UnavailableError, match="grid status is SystemIslandedActive"):
            await adapter.set_battery_mode(BatteryMode.CHARGE)
        assert sim.operation == before
        assert sim.requests[WRITE] == 0

        sim.faults.discard("grid_down")
        sim.advance()  # the grid is back; the gateway synchronises for ``reconnect_s``
        clock.advance(sim.reconnect_s)
        await adapter.set_battery_mode(BatteryMode.CHARGE)
    assert sim.operation.backup_reserve_percent == 100.0
    assert sim.requests[WRITE] == 1


# --- degraded gateways ---


async def test_without_system_status_the_last_known_limits_stand_in() -> None:
    clock = SimClock()
    sim = simulator(clock, solar_w=1_000.0, load_w=8_000.0)
    async with gateway(sim, clock, max_age_s=0.0) as adapter:
        full = await adapter.read_site()
        sim.firmware = FIRMWARE["pw3"]  # a firmware update took /api/system_status away
        degraded = await adapter.read_site()
    assert degraded.battery.capacity_wh == full.battery.capacity_wh == pytest.approx(12_825.0)
    assert (degraded.battery.max_charge_w, degraded.battery.max_discharge_w) == (3_300.0, 4_600.0)
    assert degraded.battery.power_w == pytest.approx(4_600.0)
    assert degraded.grid_status == m.GridStatus.CONNECTED
    assert sim.requests["GET /api/system_status/grid_status"] == 1


async def test_the_default_limits_can_be_configured() -> None:
    clock = SimClock()
    sim = simulator(clock, firmware="pw3")
    async with gateway(sim, clock, default_capacity_wh=10_000.0, default_max_w=3_000.0) as adapter:
        battery = await adapter.read_battery()
    assert battery.capacity_wh == 10_000.0
    assert (battery.max_charge_w, battery.max_discharge_w) == (3_000.0, 3_000.0)


@pytest.mark.parametrize("kwargs", [{"default_capacity_wh": 0.0}, {"default_max_w": -1.0}])
def test_default_limits_must_be_positive(kwargs: dict[str, float]) -> None:
    client = PowerwallClient("https://127.0.0.1:1", Secret(PASSWORD))
    with pytest.raises(ValueError, match="must be positive"):
        PowerwallAdapter(client, "powerwall", **kwargs)
