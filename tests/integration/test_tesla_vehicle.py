"""``TeslaVehicle`` (the ``SteeredCharger`` of a Tesla) against the simulated Fleet API."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

from surplus.capabilities import SteeredCharger
from surplus.control.state import ChargerCommand
from surplus.demo_chargers import start_charger
from surplus.domain.readings import ChargerStatus
from tests.tesla_kit import VIN, fleet

LP = "garage"


async def test_a_charging_session_follows_the_commands(tmp_path: Path) -> None:
    async with fleet(tmp_path) as f:
        v = f.vehicle()
        assert isinstance(v, SteeredCharger)
        await v.refresh()
        reading = v.reading()
        assert reading is not None and reading.status is ChargerStatus.DISCONNECTED
        assert not v.session().active
        assert v.health == "ok"

        f.sim.plug_in(VIN)
        await v.refresh()
        assert await v.apply(ChargerCommand(LP, enable=True, current_a=10)) == "ok"
        reading = v.reading()
        assert reading is not None and reading.status is ChargerStatus.CHARGING
        assert reading.offered_current_a == 10
        assert reading.power_w == 6900.0  # 10 A x 3 x 230 V, not the whole kW of charger_power
        assert reading.phases == 3
        assert v.charge is not None  # some cars say 2 phases for 3: read as 3
        v.charge = v.charge.model_copy(update={"charger_phases": 2})
        reading = v.reading()
        assert reading is not None and (reading.phases, reading.power_w) == (3, 6900.0)

        assert await v.apply(ChargerCommand(LP, current_a=6)) == "ok"
        assert f.car.charge_current_request == 6
        f.clock.advance(1800)
        await v.refresh()
        session = v.session()
        assert session.active and session.energy_wh is not None
        assert session.energy_wh == pytest.approx(f.car.energy_added_kwh * 1000, abs=10)
        assert session.energy_wh > 1000

        assert await v.apply(ChargerCommand(LP, enable=False)) == "ok"
        reading = v.reading()
        assert reading is not None and reading.status is ChargerStatus.CONNECTED
        assert reading.power_w == 0.0 and not reading.enabled
        assert v.session().active  # still plugged in


async def test_an_idle_car_is_left_asleep_and_woken_only_to_command(tmp_path: Path) -> None:
    async with fleet(tmp_path, wake_delay_s=15.0) as f:
        v = f.vehicle()
        await v.refresh()
        reads = f.sim.billed["data"]
        f.sim.fall_asleep(VIN)
        for _ in range(5):
            await v.refresh()
        assert f.sim.billed["data"] == reads  # asleep: only the free state was asked
        assert f.sim.billed["wake"] == 0
        assert v.health == "ok"
        assert (await v.apply(ChargerCommand(LP, current_a=8))).startswith("ok; 8 A kept")
        assert f.sim.billed["wake"] == 0  # nothing had to be sent
        assert "asleep" in await v.apply(ChargerCommand(LP, enable=False))
        f.sim.vehicles[VIN].plugged = True  # plugged while asleep
        assert await v.apply(ChargerCommand(LP, enable=True, current_a=8)) == "ok"
        assert f.sim.billed["wake"] == 1
        assert f.car.charge_current_request == 8


async def test_below_5a_is_sent_twice_only_when_allowed(tmp_path: Path) -> None:
    async with fleet(tmp_path) as f:
        f.sim.plug_in(VIN)
        strict = f.vehicle()
        await strict.refresh()
        note = await strict.apply(ChargerCommand(LP, enable=True, current_a=3))
        assert "raised to 5 A" in note
        assert f.car.charge_current_request == 5
        loose = f.vehicle(allow_below_5a=True)
        await loose.refresh()
        assert await loose.apply(ChargerCommand(LP, enable=True, current_a=3)) == "ok"
        assert f.car.charge_current_request == 3


async def test_reauthentication_shows_as_refused(tmp_path: Path) -> None:
    async with fleet(tmp_path) as f:
        v = f.vehicle()
        f.vault.delete("tesla.tokens")
        f.tokens._tokens = None  # a restart: the tokens are read from the vault again
        await v.refresh()
        assert v.health == "refused"
        assert "needs re-authentication" in v.detail
        assert "surplus auth tesla" in v.detail


async def test_the_demo_car_stays_awake_after_a_wake_up(tmp_path: Path) -> None:
    """The demo's car, woken and seen online, is still online a real second later (a
    simulated minute at the demo's 60x, well within its 15 minutes before sleep): long
    enough for the client's ``/vehicles`` polls to confirm it."""
    async with contextlib.AsyncExitStack() as stack:
        demo: Any = await start_charger("tesla", tmp_path, 60.0, stack)
        sim = demo.sim
        sim.fall_asleep(VIN)
        sim.wake_up(sim.vehicles[VIN])
        await asyncio.sleep(0.5)  # its wake delay: 20 simulated seconds
        assert sim.vehicle(VIN).state == "online"
        await asyncio.sleep(1.0)  # the next /vehicles poll comes seconds later
        assert sim.vehicle(VIN).state == "online"
