"""The ``WallboxCharger`` adapter against the simulated cloud: a car plugged in, charging
resumed, current changes followed within the read budget, a pause, and the session's
energy."""

from __future__ import annotations

from pathlib import Path

from surplus.capabilities import SteeredCharger
from surplus.control.state import ChargerCommand
from surplus.domain.readings import ChargerStatus
from surplus.integrations.wallbox.charger import WallboxCharger
from surplus.sim.devices import ElectricVehicle
from tests.wallbox_kit import CHARGER, FakeTime, cloud, new_sim


async def test_charger_follows_commands_within_the_budget(tmp_path: Path) -> None:
    time = FakeTime()
    sim = new_sim(time, car=ElectricVehicle(max_current_a=32))
    async with cloud(sim, tmp_path, time) as (_, client):
        charger = WallboxCharger(client, CHARGER, now=time, sleep=time.sleep)
        assert isinstance(charger, SteeredCharger)
        assert charger.reading() is None and charger.health == "stale"
        await charger.refresh()
        assert charger.reading().status is ChargerStatus.DISCONNECTED  # type: ignore[union-attr]
        assert not charger.session().active and charger.health == "ok"

        sim.plug_in()
        await charger.refresh()
        reading = charger.reading()
        assert reading is not None and reading.status is ChargerStatus.CHARGING
        assert reading.power_w == sim.power_w() > 0

        result = await charger.apply(ChargerCommand("lp", enable=True, current_a=10))
        assert result == "ok; 10 A sent; resume unchanged"
        await charger.refresh()
        reading = charger.reading()
        assert reading is not None and reading.offered_current_a == 10
        assert reading.power_w == sim.power_w() == 3 * 230 * 10
        assert client.pending(CHARGER) == []

        assert (
            await charger.apply(ChargerCommand("lp", current_a=10))
            == "ok; 10 A unchanged; resume unchanged"
        )
        await charger.apply(ChargerCommand("lp", current_a=3))
        await charger.refresh()
        assert charger.reading().offered_current_a == 6  # type: ignore[union-attr]

        assert await charger.apply(ChargerCommand("lp", enable=False)) == "ok; pause sent"
        await charger.refresh()
        reading = charger.reading()
        assert reading is not None and reading.status is ChargerStatus.CONNECTED
        assert not reading.enabled and reading.power_w == 0
        session = charger.session()
        assert session.active and session.energy_wh is not None and session.energy_wh > 0

        await charger.apply(ChargerCommand("lp", enable=True))
        await charger.refresh()
        assert charger.reading().status is ChargerStatus.CHARGING  # type: ignore[union-attr]
        assert charger.health == "ok", charger.detail

        sim.unplug()
        await charger.refresh()
        assert not charger.session().active
        assert sim.sessions[-1].energy_wh > 0
    assert sim.signins == 1
    assert time.slept >= 60 * (sim.requests[f"GET /chargers/status/{CHARGER}"] - 1) - 1


async def test_charger_goes_stale_offline_and_refused_without_the_owner(tmp_path: Path) -> None:
    time = FakeTime()
    sim = new_sim(time)
    async with cloud(sim, tmp_path, time) as (_, client):
        charger = WallboxCharger(client, CHARGER, now=time, sleep=time.sleep)
        await charger.refresh()
        sim.faults.add("offline")
        for _ in range(4):
            await charger.refresh()
        assert charger.health == "stale" and "last synced" in charger.detail
        sim.faults.discard("offline")
        sim.status_override = 163
        await charger.refresh()
        assert charger.health == "stale" and "disconnected" in charger.detail
        sim.status_override = 999
        await charger.refresh()
        assert charger.health == "stale" and "unknown status code 999" in charger.detail
        assert charger.reading().status is ChargerStatus.ERROR  # type: ignore[union-attr]
        sim.status_override = None
        sim.faults.add("token_expired", "refresh_revoked", "signin_refused")
        await charger.refresh()
        assert charger.health == "refused" and "re-authentication" in charger.detail


async def test_a_resume_or_a_limit_right_after_a_write_is_sent(tmp_path: Path) -> None:
    """Writes apply seconds later and reads come a minute apart: a resume (or a limit) sent
    before the pause (or the previous limit) was read back is compared with what was written,
    not with the older read, and the charger ends where the engine wants it."""
    time = FakeTime()
    sim = new_sim(time, car=ElectricVehicle(max_current_a=32))
    async with cloud(sim, tmp_path, time) as (_, client):
        charger = WallboxCharger(client, CHARGER, now=time, sleep=time.sleep)
        await charger.refresh()
        sim.plug_in()
        await charger.refresh()  # a minute later: the car draws
        assert charger.reading().status is ChargerStatus.CHARGING  # type: ignore[union-attr]

        assert await charger.apply(ChargerCommand("lp", enable=False)) == "ok; pause sent"
        reading = charger.reading()  # the last read still shows it charging
        assert reading is not None and not reading.enabled  # ... but it will pause
        result = await charger.apply(ChargerCommand("lp", enable=True, current_a=32))
        assert result == "ok; 32 A unchanged; resume sent"
        assert charger.reading().enabled  # type: ignore[union-attr]

        assert (
            await charger.apply(ChargerCommand("lp", current_a=10)) == "ok; 10 A sent; resume sent"
        )
        assert (
            await charger.apply(ChargerCommand("lp", current_a=32)) == "ok; 32 A sent; resume sent"
        )
        assert client.pending(CHARGER) == ["the resume", "a limit of 32 A"]

        await charger.refresh()
        reading = charger.reading()
        assert reading is not None and reading.status is ChargerStatus.CHARGING, reading
        assert reading.enabled and reading.offered_current_a == 32
        assert sim.applied == {"locked": 0, "paused": 0, "maxChargingCurrent": 32}
        assert client.pending(CHARGER) == [] and charger.health == "ok", charger.detail
    assert sim.requests[f"POST /v3/chargers/{CHARGER}/remote-action"] == 2
