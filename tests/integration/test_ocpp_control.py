"""Commanding a charger through the central system, against the simulated charger: a current
limit verified by what the charger offers (and the fallback when a profile is accepted but
not applied), remote start and stop, the smart-charging rules, the session's meter values
and the other commands."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from surplus.domain.errors import UnavailableError
from surplus.integrations.ocpp.limits import LimitStatus
from surplus.integrations.ocpp.options import ChargerOptions
from surplus.integrations.ocpp.quirks import Quirks
from tests.ocpp_kit import FAST, central, eventually, running, simulated


def tx_profile(limit: float, transaction_id: int | None = None) -> dict[str, object]:
    profile: dict[str, object] = {
        "charging_profile_id": 77,
        "stack_level": 1,
        "charging_profile_purpose": "TxProfile",
        "charging_profile_kind": "Relative",
        "charging_schedule": {
            "charging_rate_unit": "A",
            "charging_schedule_period": [{"start_period": 0, "limit": limit}],
        },
    }
    if transaction_id is not None:
        profile["transaction_id"] = transaction_id
    return profile


async def test_a_limit_is_verified_by_the_current_offered(tmp_path: Path) -> None:
    async with central(tmp_path) as site, running(simulated(site, "CP")) as sim:
        await eventually(lambda: "Current.Offered" in sim.config.text("MeterValuesSampledData"))
        await sim.plug_in()
        result = await site.cs.charger("CP").set_current_limit(10)
        assert result.status is LimitStatus.APPLIED
        assert (result.limit, result.unit) == (10.0, "A")
        assert result.purpose == "TxDefaultProfile"
        assert result.verified_by == "current_offered"
        assert sim.connectors[1].offered_a == 10.0
        state = site.cs.state("CP")
        assert state is not None and state.limit is not None
        assert state.limit.verified_by == "current_offered"
        offered = state.connectors[1].meter.offered_current_a
        assert offered is not None and offered.value == 10.0

        schedule = await site.cs.charger("CP").get_composite_schedule(1, 600, "A")
        periods = schedule.charging_schedule["charging_schedule_period"]
        assert float(periods[0]["limit"]) == 10.0


async def test_a_profile_accepted_but_not_applied_falls_back_to_another_purpose(
    tmp_path: Path,
) -> None:
    quirks = Quirks.parse(["profile_ignored=TxDefaultProfile"])
    async with central(tmp_path) as site, running(simulated(site, "CP", quirks=quirks)) as sim:
        await eventually(lambda: "Current.Offered" in sim.config.text("MeterValuesSampledData"))
        await sim.plug_in()
        handle = site.cs.charger("CP")
        result = await handle.set_current_limit(8)
        assert result.status is LimitStatus.APPLIED
        assert result.attempts[0] == ("TxDefaultProfile", "accepted, not applied")
        assert result.purpose == "TxProfile"
        assert sim.connectors[1].offered_a == 8.0
        # the ignored profile is cleared, lest it hold the charger back later
        assert [p.purpose for p in sim.profiles.profiles] == ["TxProfile"]

        again = await handle.set_current_limit(12)
        assert again.status is LimitStatus.APPLIED
        assert again.attempts == (("TxProfile", "applied"),)
        assert sim.connectors[1].offered_a == 12.0


async def test_every_purpose_ignored_but_the_charge_point_maximum(tmp_path: Path) -> None:
    quirks = Quirks.parse(["profile_ignored=TxDefaultProfile,TxProfile"])
    async with central(tmp_path) as site, running(simulated(site, "CP", quirks=quirks)) as sim:
        await eventually(lambda: "Current.Offered" in sim.config.text("MeterValuesSampledData"))
        await sim.plug_in()
        result = await site.cs.charger("CP").set_current_limit(7)
        assert result.status is LimitStatus.APPLIED
        assert result.purpose == "ChargePointMaxProfile"
        assert [a[1] for a in result.attempts] == [
            "accepted, not applied",
            "accepted, not applied",
            "applied",
        ]
        assert sim.connectors[1].offered_a == 7.0


async def test_a_limit_in_watts_for_a_charger_that_takes_only_power(tmp_path: Path) -> None:
    async with central(tmp_path) as site:
        sim = simulated(site, "CP", rate_units="Power", quirks=Quirks.parse(["rate_unit_short"]))
        async with running(sim):
            await eventually(lambda: "Current.Offered" in sim.config.text("MeterValuesSampledData"))
            state = site.cs.state("CP")
            assert state is not None
            assert state.configuration["ChargingScheduleAllowedChargingRateUnit"] == "W"
            await sim.plug_in()
            result = await site.cs.charger("CP").set_current_limit(16)
            assert (result.unit, result.limit) == ("W", 16 * 3 * 230.0)
            assert result.status is LimitStatus.APPLIED
            assert sim.connectors[1].offered_a == pytest.approx(16.0)


async def test_without_offered_values_the_composite_schedule_verifies(tmp_path: Path) -> None:
    options = dataclasses.replace(FAST, measurands=())
    async with central(tmp_path, options=options) as site, running(simulated(site, "CP")) as sim:
        await sim.plug_in()
        result = await site.cs.charger("CP").set_current_limit(11)
        assert result.status is LimitStatus.APPLIED
        assert result.verified_by == "composite_schedule"
        assert sim.connectors[1].offered_a == 11.0


async def test_remote_start_and_stop(tmp_path: Path) -> None:
    async with central(tmp_path) as site, running(simulated(site, "CP", auto_start=False)) as sim:
        await sim.plug_in()
        handle = site.cs.charger("CP")
        await eventually(lambda: site.cs.state("CP").connectors[1].status == "Preparing")  # type: ignore[union-attr]
        assert await handle.remote_start("TAG-1", limit_amps=9)
        await eventually(lambda: site.cs.state("CP").connectors[1].transaction is not None)  # type: ignore[union-attr]
        state = site.cs.state("CP")
        assert state is not None
        tx = state.connectors[1].transaction
        assert tx is not None and tx.id_tag == "TAG-1" and not tx.adopted
        await eventually(lambda: sim.connectors[1].offered_a == 9.0)
        # one transaction per connector: a second start is refused
        assert not await handle.remote_start("TAG-2")

        assert await handle.remote_stop()
        await eventually(lambda: site.cs.state("CP").connectors[1].transaction is None)  # type: ignore[union-attr]
        state = site.cs.state("CP")
        assert state is not None
        stopped = state.connectors[1].last_transaction
        assert stopped is not None and stopped.id == tx.id and stopped.stop_reason == "Remote"
        await eventually(lambda: site.cs.state("CP").connectors[1].status == "Finishing")  # type: ignore[union-attr]
        assert await handle.remote_start("TAG-1")  # a charger that is not stuck takes it


async def test_a_charger_stuck_in_finishing_refuses_remote_start(tmp_path: Path) -> None:
    async with (
        central(tmp_path) as site,
        running(simulated(site, "CP", quirks=Quirks.parse(["stuck_finishing"]))) as sim,
    ):
        await sim.plug_in()
        handle = site.cs.charger("CP")
        await eventually(lambda: sim.connectors[1].tx_id is not None)
        assert await handle.remote_stop()
        await eventually(lambda: sim.connectors[1].status == "Finishing")
        assert not await handle.remote_start()
        await sim.unplug()
        await sim.plug_in()
        await eventually(lambda: sim.connectors[1].tx_id is not None)


async def test_a_tx_profile_is_rejected_without_a_transaction(tmp_path: Path) -> None:
    only_tx = dataclasses.replace(FAST, purposes=("TxProfile",))
    async with central(tmp_path, options=only_tx) as site, running(simulated(site, "CP")) as sim:
        handle = site.cs.charger("CP")
        assert await handle.set_charging_profile(1, tx_profile(10)) == "Rejected"
        result = await handle.set_current_limit(10)
        assert result.status is LimitStatus.REJECTED and result.attempts == ()

        await sim.plug_in()
        await eventually(
            lambda: sim.connectors[1].tx_id is not None and sim.connectors[1].tx_id > 0
        )
        tx_id = sim.connectors[1].tx_id
        assert await handle.set_charging_profile(1, tx_profile(10, tx_id + 1)) == "Rejected"  # type: ignore[operator]
        assert await handle.set_charging_profile(1, tx_profile(10, tx_id)) == "Accepted"
        # connector 0 takes no TxProfile at all
        assert await handle.set_charging_profile(0, tx_profile(10)) == "Rejected"
        await eventually(lambda: sim.connectors[1].offered_a == 10.0)
        await sim.unplug()
        assert sim.profiles.profiles == []  # dropped with its transaction


async def test_a_sessions_meter_values_arrive(tmp_path: Path) -> None:
    async with central(tmp_path) as site, running(simulated(site, "CP", speed=30.0)) as sim:
        await eventually(lambda: "SoC" in sim.config.text("MeterValuesSampledData"))
        await sim.plug_in()
        await site.cs.charger("CP").set_current_limit(16)

        def charged() -> bool:
            state = site.cs.state("CP")
            assert state is not None
            tx = state.connectors[1].transaction
            return tx is not None and tx.energy_wh > 100

        await eventually(charged, 10)
        state = site.cs.state("CP")
        assert state is not None
        meter = state.connectors[1].meter
        assert meter.power_w is not None
        assert meter.power_w.value == pytest.approx(16 * 3 * 230.0, rel=0.01)
        assert meter.energy_wh is not None and meter.energy_wh.value > 1_234_000
        assert set(meter.current_a) == {"L1", "L2", "L3"}
        assert meter.current_a["L1"].value == pytest.approx(16.0, abs=0.1)
        assert meter.soc_pct is not None and 59.0 < meter.soc_pct.value < 70.0
        assert state.unreadable_values == 0


async def test_availability_reset_unlock_and_trigger(tmp_path: Path) -> None:
    quirks = Quirks.parse(["reject_connector0_availability"])
    async with central(tmp_path) as site, running(simulated(site, "CP", quirks=quirks)) as sim:
        handle = site.cs.charger("CP")
        # refused on connector 0, so asked of connector 1 instead
        assert await handle.change_availability(False) == "Accepted"
        await eventually(lambda: site.cs.state("CP").connectors[1].status == "Unavailable")  # type: ignore[union-attr]
        assert await handle.change_availability(True) == "Accepted"
        await sim.plug_in()
        await eventually(lambda: sim.connectors[1].tx_id is not None)
        assert await handle.change_availability(False, 1) == "Scheduled"
        assert await handle.trigger_message("StatusNotification", 1) == "Accepted"
        assert await handle.unlock_connector(1) == "Unlocked"
        await eventually(lambda: site.cs.state("CP").connectors[1].status == "Unavailable")  # type: ignore[union-attr]

        assert await handle.reset(hard=True) == "Accepted"
        await eventually(lambda: sim.boots == 2 and sim.registered, 10)
        await eventually(lambda: site.cs.state("CP").connected)  # type: ignore[union-attr]
        assert await handle.trigger_message("Heartbeat") == "Accepted"


async def test_commands_to_a_charger_that_is_not_connected_fail_clearly(tmp_path: Path) -> None:
    async with central(tmp_path) as site:
        site.register("CP")
        with pytest.raises(UnavailableError, match="not connected"):
            await site.cs.charger("CP").set_current_limit(10)


async def test_the_simulator_honours_pending_and_rejected(tmp_path: Path) -> None:
    def options(charger_id: str) -> ChargerOptions:
        status = "Rejected" if charger_id == "CP-REJ" else "Pending"
        return dataclasses.replace(FAST, boot_status=status, heartbeat_interval_s=5)

    calls: list[str] = []
    async with central(tmp_path, options=options) as site:
        rejected = simulated(site, "CP-REJ", on_call=lambda action, _: calls.append(action))
        pending = simulated(site, "CP-PEN")
        async with running(rejected, wait=False), running(pending, wait=False):
            # each boots again after the interval (5 s at 10x), and sends nothing else
            await eventually(lambda: rejected.boots >= 3 and pending.boots >= 3, 10)
            assert not rejected.registered and not pending.registered
            assert calls == []  # a rejected charger is not configured either
            # a pending one is configured meanwhile, but may not be started
            await eventually(
                lambda: "Current.Offered" in pending.config.text("MeterValuesSampledData")
            )
            with pytest.raises(UnavailableError, match="Pending"):
                await site.cs.charger("CP-PEN").remote_start()
            state = site.cs.state("CP-PEN")
            assert state is not None and state.registration == "Pending"
            assert state.connector(1).status is None  # no StatusNotification before Accepted


async def test_the_simulators_configuration_keys(tmp_path: Path) -> None:
    async with central(tmp_path) as site, running(simulated(site, "CP")):
        handle = site.cs.charger("CP")
        assert await handle.change_configuration("NumberOfConnectors", "2") == "Rejected"
        assert await handle.change_configuration("MeterValueSampleInterval", "x") == "Rejected"
        assert await handle.change_configuration("NoSuchKey", "1") == "NotSupported"
        assert await handle.change_configuration("MeterValueSampleInterval", "5") == "Accepted"
        values = await handle.get_configuration(["MeterValueSampleInterval", "NoSuchKey"])
        assert values == {"MeterValueSampleInterval": "5"}


def profile(
    profile_id: int, purpose: str, stack: int, limit: float, unit: str = "A"
) -> dict[str, object]:
    return {
        "charging_profile_id": profile_id,
        "stack_level": stack,
        "charging_profile_purpose": purpose,
        "charging_profile_kind": "Absolute",
        "charging_schedule": {
            "charging_rate_unit": unit,
            "charging_schedule_period": [{"start_period": 0, "limit": limit}],
        },
    }


async def test_stack_levels_units_and_the_minimum_of_purposes(tmp_path: Path) -> None:
    async with central(tmp_path) as site, running(simulated(site, "CP")) as sim:
        await sim.plug_in()
        await eventually(lambda: (sim.connectors[1].tx_id or 0) > 0)
        handle = site.cs.charger("CP")

        async def offers(amps: float) -> None:
            await eventually(lambda: sim.connectors[1].offered_a == pytest.approx(amps))

        assert (
            await handle.set_charging_profile(1, profile(1, "TxDefaultProfile", 1, 16))
            == "Accepted"
        )
        assert (
            await handle.set_charging_profile(1, profile(2, "TxDefaultProfile", 2, 12))
            == "Accepted"
        )
        await offers(12)  # the highest stack level wins
        cap = profile(3, "ChargePointMaxProfile", 0, 10)
        assert await handle.set_charging_profile(1, cap) == "Rejected"  # connector 0 only
        assert await handle.set_charging_profile(0, cap) == "Accepted"
        await offers(10)  # the minimum of the charger's cap and the transaction's limit
        deep = profile(4, "TxDefaultProfile", 99, 8)
        assert await handle.set_charging_profile(1, deep) == "Rejected"  # beyond stack level 8
        watts = profile(5, "TxDefaultProfile", 3, 4140.0, "W")  # 6 A on three phases
        assert await handle.set_charging_profile(1, watts) == "Accepted"
        await offers(6)
        # the same purpose and stack level replaces, whatever its id
        assert (
            await handle.set_charging_profile(1, profile(6, "TxDefaultProfile", 3, 9)) == "Accepted"
        )
        await offers(9)
        assert await handle.clear_charging_profile(3) == "Accepted"
        assert await handle.clear_charging_profile(3) == "Unknown"
        schedule = await handle.get_composite_schedule(1, 600, "W")
        assert schedule.charging_schedule["charging_rate_unit"] == "W"
        limit = float(schedule.charging_schedule["charging_schedule_period"][0]["limit"])
        assert limit == pytest.approx(9 * 3 * 230.0)
        assert sim.connectors[1].status == "Charging"
        too_low = profile(7, "TxDefaultProfile", 4, 5)
        assert await handle.set_charging_profile(1, too_low) == "Accepted"
        await eventually(lambda: sim.connectors[1].status == "SuspendedEVSE")  # below 6 A
