"""What the central system must survive (reference C.8, items 1-10), one test per item; in
each, another charger ("CP-A") keeps being served throughout."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from surplus.domain.errors import NotSupportedError, UnavailableError
from surplus.integrations.ocpp._lib import call
from surplus.integrations.ocpp.limits import LimitStatus
from surplus.integrations.ocpp.quirks import Quirks
from surplus.integrations.ocpp.session import CONFIG_KEYS
from surplus.integrations.ocpp.state import Health
from surplus.store import Store
from tests.integration.test_ocpp_security import handshake_status
from tests.ocpp_kit import (
    FAST,
    RawCharger,
    Site,
    basic,
    central,
    eventually,
    running,
    served,
    simulated,
)


def connector(site: Site, charger_id: str, connector_id: int = 1) -> Any:
    state = site.cs.state(charger_id)
    assert state is not None
    return state.connector(connector_id)


def stamp(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def energy(value: str, at: datetime, unit: str | None = "Wh", **extra: str) -> dict[str, Any]:
    sampled: dict[str, Any] = {"value": value, "measurand": "Energy.Active.Import.Register"}
    if unit is not None:
        sampled["unit"] = unit
    sampled.update(extra)
    return {"timestamp": stamp(at), "sampledValue": [sampled]}


# 1. odd URLs and a missing or wrong subprotocol


async def test_1_odd_urls_and_subprotocols(tmp_path: Path) -> None:
    async with central(tmp_path) as site, running(simulated(site, "CP-A")):
        url = site.cs.urls[1]
        for charger_id, path in (
            ("CP one", "extra/segments/CP%20one"),
            ("CP-T", "CP-T/"),
            ("CP-Q", "CP-Q?token=x"),
        ):
            key = site.register(charger_id)
            async with RawCharger.connect(url, charger_id, key, path_id=path) as raw:
                assert (await raw.boot())["status"] == "Accepted"
                await eventually(lambda cid=charger_id: cid in site.cs.connected())
            await served(site, "CP-A")
        key = site.keys["CP-Q"]
        for protocols in (None, ["ocpp2.0.1"], ["ocpp2.0.1", "ocpp1.5"]):
            status = await handshake_status(
                f"{url}/CP-Q", headers=basic("CP-Q", key), subprotocols=protocols
            )
            assert status == 400
            await served(site, "CP-A")
        # a charger offering several takes the one we speak
        sim = simulated(site, "CP-M", subprotocols=("ocpp2.0.1", "ocpp1.6"))
        async with running(sim):
            await served(site, "CP-M")


# 2. no BootNotification after a reconnect


async def test_2_traffic_without_a_boot_is_served_and_boot_and_status_are_asked_for(
    tmp_path: Path,
) -> None:
    async with central(tmp_path) as site, running(simulated(site, "CP-A")) as other:
        key = site.register("CP-R")
        async with RawCharger.connect(site.cs.urls[1], "CP-R", key) as raw:
            assert "currentTime" in await raw.result("Heartbeat", {})
            answer = await raw.result(
                "StatusNotification",
                {"connectorId": 1, "errorCode": "NoError", "status": "Charging"},
            )
            assert answer == {}

            def asked(message: str) -> bool:
                return ("TriggerMessage", {"requestedMessage": message}) in raw.received

            await eventually(lambda: asked("BootNotification") and asked("StatusNotification"))
            assert connector(site, "CP-R").status == "Charging"
            await served(site, "CP-A")

        # the simulator, dropped, reconnects without booting again
        await eventually(lambda: other.connectors[1].status == "Available")
        other.drop(redial_after_s=0.1)
        await eventually(lambda: other.connections == 2 and "CP-A" in site.cs.connected())
        assert other.boots == 1
        await served(site, "CP-A")


# 3. crossing CALLs, timeouts, CALLERRORs, None under suppress; one CALL at a time


async def test_3_crossing_calls_timeouts_and_callerrors(tmp_path: Path) -> None:
    arrivals: dict[str, float] = {}
    raw_holder: list[RawCharger] = []

    async def answer(action: str, payload: dict[str, Any]) -> Any:
        arrivals.setdefault(action, time.monotonic())
        if action == "Reset":
            return None  # never answered: the central system times out
        if action == "UnlockConnector":
            return ("NotSupported", "this charger has no lock")
        if action == "GetConfiguration":
            return ("NotImplemented", "")  # suppressed: None, and on to the next key
        if (
            action == "TriggerMessage"
            and payload.get("requestedMessage") == "DiagnosticsStatusNotification"
        ):
            # the charger's own CALL crosses ours; both are answered
            assert "currentTime" in await raw_holder[0].result("Heartbeat", {})
        return {"status": "Accepted"}

    async with central(tmp_path, response_timeout_s=1.0) as site, running(simulated(site, "CP-A")):
        key = site.register("CP-C")
        async with RawCharger.connect(site.cs.urls[1], "CP-C", key, answer=answer) as raw:
            raw_holder.append(raw)
            await raw.boot()
            await eventually(
                lambda: sum(a == "GetConfiguration" for a, _ in raw.received) == len(CONFIG_KEYS),
                what="every key asked for despite the CALLERRORs",
            )
            handle = site.cs.charger("CP-C")
            assert await handle.trigger_message("DiagnosticsStatusNotification") == "Accepted"

            started = time.monotonic()
            reset = asyncio.create_task(handle.reset())
            await asyncio.sleep(0.05)
            unlock = asyncio.create_task(handle.unlock_connector(1))
            await served(site, "CP-A")  # while CP-C's call hangs
            with pytest.raises(UnavailableError, match="no answer to Reset"):
                await reset
            with pytest.raises(NotSupportedError, match="NotSupported"):
                await unlock
            # the second CALL went out only once the first had timed out
            assert arrivals["UnlockConnector"] - started >= 0.9
            assert "currentTime" in await raw.result("Heartbeat", {})
            await served(site, "CP-A")


# 4. MeterValues or StopTransaction for a transaction unknown after a restart


async def test_4_unknown_transactions_are_adopted_after_a_restart(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "surplus.db")
    try:
        async with central(tmp_path, store=store) as first:
            port = int(first.cs.urls[1].rsplit(":", 1)[1].split("/")[0])
            sim = simulated(first, "CP-S")
            first.register("CP-A")
            task = asyncio.create_task(sim.run())
            await sim.wait_connected()
            await sim.plug_in()
            await eventually(lambda: (sim.connectors[1].tx_id or 0) > 0)
            tx_id = sim.connectors[1].tx_id
        # the central system restarts and forgets; the charger redials and carries on
        async with central(tmp_path, store=store, ports={1: port}) as second:
            second.keys.update(first.keys)
            async with running(simulated(second, "CP-A")):
                await eventually(lambda: "CP-S" in second.cs.connected(), 10)
                await eventually(lambda: connector(second, "CP-S").transaction is not None, 10)
                adopted = connector(second, "CP-S").transaction
                assert adopted.id == tx_id and adopted.adopted
                assert await second.cs.charger("CP-S").remote_stop()
                await eventually(lambda: connector(second, "CP-S").last_transaction is not None)
                stopped = connector(second, "CP-S").last_transaction
                assert stopped.id == tx_id and stopped.stop_reason == "Remote"
                await served(second, "CP-A")

                key = second.register("CP-R")
                async with RawCharger.connect(second.cs.urls[1], "CP-R", key) as raw:
                    now = datetime.now(UTC)
                    stop = {"transactionId": 4242, "meterStop": 5000, "timestamp": stamp(now)}
                    answer = await raw.result("StopTransaction", stop)
                    assert answer == {"idTagInfo": {"status": "Accepted"}}
                await served(second, "CP-A")
            task.cancel()
    finally:
        store.close()


# 5. replayed offline messages


async def test_5_replayed_messages_change_nothing(tmp_path: Path) -> None:
    async with central(tmp_path) as site, running(simulated(site, "CP-A")):
        key = site.register("CP-R")
        async with RawCharger.connect(site.cs.urls[1], "CP-R", key) as raw:
            await raw.boot()
            t0 = datetime.now(UTC) - timedelta(minutes=5)
            start = {"connectorId": 1, "idTag": "T", "meterStart": 1000, "timestamp": stamp(t0)}
            first = await raw.result("StartTransaction", start)
            again = await raw.result("StartTransaction", start)
            assert first["transactionId"] == again["transactionId"]
            tx_id = first["transactionId"]
            values = {
                "connectorId": 1,
                "transactionId": tx_id,
                "meterValue": [energy("1500", t0 + timedelta(minutes=1))],
            }
            for _ in range(3):
                assert await raw.result("MeterValues", values) == {}
            assert connector(site, "CP-R").transaction.energy_wh == 500
            stop = {
                "transactionId": tx_id,
                "meterStop": 1800,
                "timestamp": stamp(t0 + timedelta(minutes=2)),
            }
            for _ in range(2):
                assert (await raw.result("StopTransaction", stop))["idTagInfo"][
                    "status"
                ] == "Accepted"
            done = connector(site, "CP-R").last_transaction
            assert (done.id, done.energy_wh, done.meter_stop_wh) == (tx_id, 800, 1800)
            assert connector(site, "CP-R").transaction is None
            await served(site, "CP-A")

        # the simulator, offline, queues its transaction messages and replays them
        async with running(simulated(site, "CP-Q")) as sim:
            await sim.plug_in()
            await eventually(lambda: (sim.connectors[1].tx_id or 0) > 0)
            sim.drop(redial_after_s=1.0)
            await eventually(lambda: sim.link is None)
            await asyncio.sleep(0.3)  # a few simulated seconds of charging offline
            await sim.unplug()
            assert sim.queue, "the stop waits in the offline queue"
            await served(site, "CP-A")
            await eventually(lambda: not sim.queue and sim.link is not None, 10)
            assert sim.boots == 1
            await eventually(lambda: connector(site, "CP-Q").last_transaction is not None)
            done = connector(site, "CP-Q").last_transaction
            assert done.stop_reason == "EVDisconnected" and done.energy_wh > 0


# 6. schema-invalid payloads


async def test_6_lenient_validation_per_charger(tmp_path: Path) -> None:
    def options(charger_id: str) -> Any:
        return dataclasses.replace(FAST, lenient=charger_id.startswith("LENIENT"))

    quirks = Quirks.parse(["schema_violations", "missing_timestamps"])
    async with central(tmp_path, options=options) as site, running(simulated(site, "CP-A")):
        lenient = simulated(site, "LENIENT", quirks=quirks, speed=20.0)
        strict = simulated(site, "STRICT", quirks=quirks)
        async with running(lenient), running(strict, wait=False):
            await lenient.plug_in()
            await eventually(lambda: connector(site, "LENIENT").meter.energy_wh is not None)
            state = site.cs.state("LENIENT")
            assert state is not None and state.boot is not None
            assert len(state.boot.serial or "") > 25 and state.schema_violations > 0
            await eventually(lambda: strict.boots >= 1 and "STRICT" in site.cs.connected())
            await asyncio.sleep(0.2)
            assert not strict.registered  # its BootNotification was refused
            refused = site.cs.state("STRICT")
            assert refused is not None and refused.schema_violations >= 1
            await served(site, "CP-A")
            await served(site, "LENIENT")


# 7. profiles accepted but not applied


async def test_7_a_limit_not_applied_falls_back(tmp_path: Path) -> None:
    # Grizzl-E ignores ChargePointMaxProfile, the purpose lbbrhzn/ocpp tries first
    options = dataclasses.replace(FAST, purposes=("ChargePointMaxProfile", "TxDefaultProfile"))
    quirks = Quirks.parse(["profile_ignored=ChargePointMaxProfile"])
    async with (
        central(tmp_path, options=options) as site,
        running(simulated(site, "CP-A")),
        running(simulated(site, "GRIZZL-E", quirks=quirks)) as sim,
    ):
        await eventually(lambda: "Current.Offered" in sim.config.text("MeterValuesSampledData"))
        await sim.plug_in()
        result = await site.cs.charger("GRIZZL-E").set_current_limit(13)
        assert result.status is LimitStatus.APPLIED
        assert result.attempts == (
            ("ChargePointMaxProfile", "accepted, not applied"),
            ("TxDefaultProfile", "applied"),
        )
        assert sim.connectors[1].offered_a == 13.0
        await served(site, "CP-A")


# 8. bad units, scale and blanks; stale and out-of-order samples; registers reset per session


async def test_8_odd_values_units_order_and_resetting_registers(tmp_path: Path) -> None:
    quirks = Quirks.parse(
        [
            "kwh_values",
            "odd_strings",
            "voltage_l1",
            "out_of_order",
            "register_resets",
            "late_meter_values",
        ]
    )

    def options(charger_id: str) -> Any:
        # the raw charger's lower-case measurand breaks the schema: leniency is per charger
        return dataclasses.replace(FAST, lenient=charger_id == "CP-R")

    async with (
        central(tmp_path, options=options) as site,
        running(simulated(site, "CP-A")),
        running(simulated(site, "ODD", quirks=quirks, speed=30.0)) as sim,
    ):
        await eventually(lambda: "Current.Offered" in sim.config.text("MeterValuesSampledData"))
        await sim.plug_in()
        await site.cs.charger("ODD").set_current_limit(16)
        await eventually(lambda: connector(site, "ODD").transaction.energy_wh > 200, 10)
        meter = connector(site, "ODD").meter
        assert meter.power_w.value == pytest.approx(16 * 3 * 230.0, rel=0.01)  # not 11.04
        assert set(meter.voltage_v) == {"L1", "L2", "L3"}
        assert meter.voltage_v["L1"].value == pytest.approx(230.0)
        assert site.cs.state("ODD").unreadable_values == 0  # type: ignore[union-attr]
        tx = connector(site, "ODD").transaction
        # the register restarted at zero, its meterStart did not: still the session's energy
        assert tx.meter_start_wh > 1_000_000 and tx.energy_wh < 20_000
        await sim.unplug()
        await eventually(lambda: connector(site, "ODD").last_transaction is not None)
        await asyncio.sleep(0.2)  # the late closing values arrive after the stop
        assert connector(site, "ODD").transaction is None  # not reopened by them
        assert connector(site, "ODD").last_transaction.energy_wh >= tx.energy_wh
        await served(site, "CP-A")

        key = site.register("CP-R")
        async with RawCharger.connect(site.cs.urls[1], "CP-R", key) as raw:
            await raw.boot()
            now = datetime.now(UTC)
            sampled = [
                {"value": " 7,4 kW", "measurand": "Power.Active.Import"},
                {"value": "16.0", "measurand": "current.offered", "unit": "A"},
                {"value": "230.1", "measurand": "Voltage", "phase": "L2-N", "unit": "V"},
                {"value": "NaN", "measurand": "SoC", "unit": "Percent"},
                {"value": "12.5kWh"},
            ]
            values = {
                "connectorId": 1,
                "meterValue": [{"timestamp": stamp(now), "sampledValue": sampled}],
            }
            assert await raw.result("MeterValues", values) == {}
            older = {
                "connectorId": 1,
                "meterValue": [
                    energy("1", now - timedelta(hours=1)),
                    energy("2", now - timedelta(hours=2)),
                ],
            }
            assert await raw.result("MeterValues", older) == {}
            meter = connector(site, "CP-R").meter
            assert meter.power_w.value == 7400.0
            assert meter.offered_current_a.value == 16.0
            assert meter.voltage_v["L2"].value == 230.1
            assert meter.soc_pct is None
            assert meter.energy_wh.value == 12_500.0  # the older samples did not replace it
            assert site.cs.state("CP-R").unreadable_values == 1  # type: ignore[union-attr]
        await served(site, "CP-A")


# 9. silent drops and chargers that never redial


async def test_9_silent_and_vanished_chargers_go_stale(tmp_path: Path) -> None:
    # heartbeats every 0.1 s of real time for CP-A (100x), and stale after 0.6 s of silence
    options = dataclasses.replace(FAST, stale_after_s=0.6, heartbeat_interval_s=10)
    async with (
        central(tmp_path, options=options, watchdog_period_s=0.1, response_timeout_s=0.5) as site,
        running(simulated(site, "CP-A", speed=100.0)),
    ):
        never = Quirks.parse(["no_redial"])
        teison = simulated(site, "TEISON", quirks=never)
        hung = simulated(site, "HUNG", quirks=never)
        async with running(teison), running(hung):
            teison.drop()
            await eventually(lambda: "TEISON" not in site.cs.connected())
            await eventually(lambda: site.cs.state("TEISON").health is Health.STALE)  # type: ignore[union-attr]

            hung.freeze()
            await eventually(lambda: site.cs.state("HUNG").health is Health.STALE)  # type: ignore[union-attr]
            # asked for a Heartbeat, it cannot answer: its connection is dropped
            await eventually(lambda: "HUNG" not in site.cs.connected(), 5)
            assert site.cs.state("HUNG").health_reason == "disconnected"  # type: ignore[union-attr]

            await served(site, "CP-A")
            state = site.cs.state("CP-A")
            assert state is not None and state.health is Health.OK


# 10. configuration calls that trigger reboots


async def test_10_configuration_is_read_one_key_at_a_time_or_not_at_all(tmp_path: Path) -> None:
    def options(charger_id: str) -> Any:
        return dataclasses.replace(FAST, autodetect=charger_id != "ABB-OFF")

    calls: list[tuple[str, Any]] = []
    quirks = Quirks.parse(["config_reboot"])
    async with central(tmp_path, options=options) as site, running(simulated(site, "CP-A")):
        abb = simulated(site, "ABB", quirks=quirks)
        quiet = simulated(site, "ABB-OFF", quirks=quirks, on_call=lambda a, p: calls.append((a, p)))
        async with running(abb), running(quiet):
            await eventually(lambda: len(sim_measurands(abb)) > 4)
            await eventually(lambda: "MeterValuesSampledData" in site.cs.state("ABB").configuration)  # type: ignore[union-attr]
            await asyncio.sleep(0.3)
            assert abb.boots == 1  # six measurands on, and no reboot
            state = site.cs.state("ABB")
            assert state is not None and set(state.configuration) == set(CONFIG_KEYS)

            # what asking for all of it at once would have done
            await site.cs._sessions["ABB"].call(call.GetConfiguration())
            await eventually(lambda: abb.boots == 2, 10)

            await asyncio.sleep(0.5)
            assert not [a for a, _ in calls if a in ("GetConfiguration", "ChangeConfiguration")]
            await served(site, "ABB-OFF")
            await served(site, "CP-A")


def sim_measurands(sim: Any) -> list[str]:
    return list(sim.config.listed("MeterValuesSampledData"))
