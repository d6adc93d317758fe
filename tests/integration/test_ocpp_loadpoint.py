"""An OCPP charger as the engine's loadpoint, against the simulated charger over real
websockets: its status, current and power as readings, the engine's commands carried out
(remote start, limits, suspending at 0 A), and what it says when it is gone or silent."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from surplus.control.state import ChargerCommand
from surplus.domain.errors import UnavailableError
from surplus.domain.readings import ChargerState, ChargerStatus
from surplus.integrations.ocpp.loadpoint import OcppLoadpoint
from surplus.integrations.ocpp.quirks import Quirks
from surplus.integrations.ocpp.state import Health
from tests.ocpp_kit import FAST, Site, central, eventually, running, simulated

VOLTS, PHASES = 230.0, 3
SPEED = 60.0  # the simulated charger's clock: a minute of charging a second


def now() -> datetime:
    return datetime.now(UTC)


def loadpoint(site: Site) -> OcppLoadpoint:
    return OcppLoadpoint(site.cs, "CP", now=now)


def read(lp: OcppLoadpoint) -> ChargerState:
    reading = lp.reading()
    assert reading is not None
    return reading


def command(
    *, enable: bool | None = None, current_a: float | None = None, phases: int | None = None
) -> ChargerCommand:
    return ChargerCommand("garage", enable, current_a, phases)


async def test_a_remote_started_session_follows_the_engines_commands(tmp_path: Path) -> None:
    async with (
        central(tmp_path) as site,
        running(simulated(site, "CP", speed=SPEED, auto_start=False)) as sim,
    ):
        await eventually(lambda: "Current.Offered" in sim.config.text("MeterValuesSampledData"))
        lp = loadpoint(site)
        await eventually(lambda: read(lp).status is ChargerStatus.DISCONNECTED)
        assert not read(lp).enabled and read(lp).phases == PHASES
        assert lp.health is Health.OK and lp.detail == "connector 1: Available"

        await sim.plug_in()
        await eventually(lambda: read(lp).status is ChargerStatus.CONNECTED)
        assert lp.transaction is None

        assert await lp.apply(command(enable=True, current_a=10)) == "ok; transaction started"
        tx = lp.transaction
        assert tx is not None and tx.id_tag == "surplus"
        await eventually(lambda: read(lp).power_w == pytest.approx(10 * PHASES * VOLTS, rel=0.01))
        reading = read(lp)
        assert reading.status is ChargerStatus.CHARGING and reading.enabled
        assert reading.offered_current_a == 10.0
        assert (reading.phases, reading.voltage_v) == (PHASES, VOLTS)
        assert (now() - reading.at).total_seconds() < 1.0

        def charged() -> bool:
            running_tx = lp.transaction
            return running_tx is not None and running_tx.energy_wh > 50.0

        await eventually(charged)

        assert await lp.apply(command(current_a=6)) == "ok"
        await eventually(lambda: read(lp).power_w == pytest.approx(6 * PHASES * VOLTS, rel=0.01))
        assert read(lp).offered_current_a == 6.0

        assert await lp.apply(command(enable=False)) == "ok"
        await eventually(lambda: read(lp).status is ChargerStatus.CONNECTED)
        reading = read(lp)
        assert (reading.offered_current_a, reading.power_w, reading.enabled) == (0.0, 0.0, False)
        still = lp.transaction
        assert still is not None and still.id == tx.id  # suspended, not stopped
        assert sim.connectors[1].status == "SuspendedEVSE"

        # while disabled a current alone is kept, not applied
        assert await lp.apply(command(current_a=8)) == "ok; 8 A kept until charging is enabled"
        assert sim.connectors[1].offered_a == 0.0
        result = await lp.apply(command(enable=True, phases=1))
        assert result == "ok; 1-phase charging ignored: no switching over OCPP 1.6"
        await eventually(lambda: read(lp).status is ChargerStatus.CHARGING)
        resumed = lp.transaction
        assert resumed is not None and resumed.id == tx.id
        assert read(lp).offered_current_a == 8.0

        await sim.unplug()
        await eventually(lambda: read(lp).status is ChargerStatus.DISCONNECTED)
        assert lp.transaction is None and read(lp).power_w == 0.0
        last = lp.last_transaction
        assert last is not None and last.id == tx.id
        assert last.energy_wh > 50.0 and last.stop_reason == "EVDisconnected"


async def test_a_charger_ignoring_a_purpose_gets_its_limit_by_another(tmp_path: Path) -> None:
    quirks = Quirks.parse(["profile_ignored=TxDefaultProfile"])
    async with (
        central(tmp_path) as site,
        running(simulated(site, "CP", speed=SPEED, quirks=quirks)) as sim,
    ):
        await eventually(lambda: "Current.Offered" in sim.config.text("MeterValuesSampledData"))
        lp = loadpoint(site)
        await sim.plug_in()  # it starts charging on its own, at its maximum
        await eventually(lambda: read(lp).status is ChargerStatus.CHARGING)
        assert not read(lp).enabled

        assert await lp.apply(command(enable=True, current_a=10)) == (
            "ok; 10 A applied by TxProfile"
        )
        assert sim.connectors[1].offered_a == 10.0
        await eventually(lambda: read(lp).power_w == pytest.approx(10 * PHASES * VOLTS, rel=0.01))
        assert await lp.apply(command(current_a=7)) == "ok"  # the purpose that worked first
        assert sim.connectors[1].offered_a == 7.0


async def test_a_limit_refused_or_not_applied_is_unavailable(tmp_path: Path) -> None:
    only_tx = dataclasses.replace(FAST, purposes=("TxProfile",))
    async with central(tmp_path, options=only_tx) as site, running(simulated(site, "CP")):
        lp = loadpoint(site)
        # no transaction (no car) takes a TxProfile
        with pytest.raises(
            UnavailableError, match=re.escape("10 A rejected (no charging profile purpose applies)")
        ):
            await lp.apply(command(enable=True, current_a=10))
        assert not read(lp).enabled

    only_default = dataclasses.replace(FAST, purposes=("TxDefaultProfile",))
    ignoring = Quirks.parse(["profile_ignored"])
    async with (
        central(tmp_path / "ignored", options=only_default) as site,
        running(simulated(site, "CP", quirks=ignoring)) as sim,
    ):
        await eventually(lambda: "Current.Offered" in sim.config.text("MeterValuesSampledData"))
        lp = loadpoint(site)
        with pytest.raises(
            UnavailableError,
            match=re.escape("10 A not applied (TxDefaultProfile accepted, not applied)"),
        ):
            await lp.apply(command(enable=True, current_a=10))
        assert not read(lp).enabled


async def test_power_and_phases_from_the_phase_currents(tmp_path: Path) -> None:
    leave_alone = dataclasses.replace(FAST, measurands=())
    async with central(tmp_path, options=leave_alone) as site:
        sim = simulated(site, "CP", speed=SPEED, phases=1)
        sim.config.set("MeterValuesSampledData", "Current.Import,Voltage")  # no power
        async with running(sim):
            lp = loadpoint(site)
            await sim.plug_in()
            await eventually(lambda: read(lp).status is ChargerStatus.CHARGING)
            await eventually(lambda: read(lp).voltage_v is not None)
            reading = read(lp)
            # one phase of a charger wired for three, at the car's 16 A
            assert reading.phases == 1 and reading.voltage_v == VOLTS
            assert reading.power_w == pytest.approx(16 * VOLTS, rel=0.01)


async def test_a_charger_that_is_not_connected_is_unavailable(tmp_path: Path) -> None:
    async with central(tmp_path) as site:
        site.register("CP")
        lp = loadpoint(site)
        assert lp.reading() is None
        assert (lp.health, lp.detail) == (Health.STALE, "never connected")
        with pytest.raises(UnavailableError, match="not connected"):
            await lp.apply(command(enable=True, current_a=10))

        sim = simulated(site, "CP")
        async with running(sim):
            await eventually(lambda: read(lp).status is ChargerStatus.DISCONNECTED)
            sim.drop(redial_after_s=60)
            await eventually(lambda: lp.detail == "disconnected")
            assert lp.health is Health.STALE
            assert read(lp).status is ChargerStatus.DISCONNECTED  # the last one known
            with pytest.raises(UnavailableError, match="not connected"):
                await lp.apply(command(enable=False))
            assert not read(lp).enabled

    async with central(tmp_path / "other") as site:
        assert OcppLoadpoint(site.cs, "NOBODY", now=now).reading() is None
        assert OcppLoadpoint(site.cs, "NOBODY", now=now).health is Health.STALE


async def test_a_silent_charger_ages_and_turns_stale(tmp_path: Path) -> None:
    options = dataclasses.replace(FAST, stale_after_s=1.0)
    async with (
        central(tmp_path, options=options) as site,
        running(simulated(site, "CP", speed=SPEED)) as sim,
    ):
        lp = loadpoint(site)
        await sim.plug_in()
        await eventually(lambda: read(lp).status is ChargerStatus.CHARGING)
        await asyncio.sleep(0.5)  # a few meter values on, it is fresh
        assert (now() - read(lp).at).total_seconds() < options.stale_after_s
        assert lp.health is Health.OK

        sim.freeze()
        await eventually(lambda: lp.health is Health.STALE, 3.0)
        assert lp.detail.startswith("silent for")
        age = (now() - read(lp).at).total_seconds()
        assert age > 0.5 * options.stale_after_s  # its last word is as old as its silence
        await asyncio.sleep(0.3)
        assert (now() - read(lp).at).total_seconds() >= age + 0.3
