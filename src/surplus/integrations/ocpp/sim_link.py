"""The simulated charger's side of the connection: how it answers the central system's CALLs.

Each handler answers at once; what the charger then does (a status change, a reboot, the
message a TriggerMessage asked for) runs after the answer has gone out, as on a real
charger, and never inside the handler: the connection's one reader would wait on itself.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from surplus.integrations.ocpp._lib import ChargePoint, after, call_result, on

if TYPE_CHECKING:
    from surplus.integrations.ocpp.chargepoint_sim import SimulatedChargePoint

__all__ = ["Link"]

# the library logs every frame at INFO
wire_log = logging.getLogger("surplus.ocpp.sim.wire")
wire_log.setLevel(logging.WARNING)

_TRIGGERS = (
    "BootNotification",
    "DiagnosticsStatusNotification",
    "FirmwareStatusNotification",
    "Heartbeat",
    "MeterValues",
    "StatusNotification",
)


def _status(value: str) -> dict[str, str]:
    return {"status": value}


class Link(ChargePoint):
    def __init__(
        self, sim: SimulatedChargePoint, connection: Any, response_timeout_s: float
    ) -> None:
        super().__init__(sim.id, connection, response_timeout_s, wire_log)
        self._sim = sim
        self._next: dict[str, Callable[[], Awaitable[None]]] = {}

    def transport_abort(self) -> None:
        self._connection.transport.abort()

    async def send_frame(self, frame: str) -> None:
        await self._connection.send(frame)

    async def close(self) -> None:
        await self._connection.close()

    async def route_message(self, raw_msg: str) -> None:
        if not self._sim.frozen:
            await super().route_message(raw_msg)

    def _heard(self, action: str, payload: dict[str, Any]) -> None:
        if self._sim.on_call is not None:
            self._sim.on_call(action, payload)

    def _then(self, unique_id: str, job: Callable[[], Awaitable[None]]) -> None:
        self._next[unique_id] = job

    def _followup(self, unique_id: str) -> None:
        job = self._next.pop(unique_id, None)
        if job is not None:
            self._sim.spawn(job())

    # --- configuration ---

    @on("GetConfiguration")
    def on_get_configuration(self, call_unique_id: str, key: list[str] | None = None) -> Any:
        sim = self._sim
        self._heard("GetConfiguration", {"key": key})
        known, unknown = sim.config.get(key)
        enabled = len(sim.config.listed("MeterValuesSampledData"))
        if "config_reboot" in sim.quirks and not key and enabled > 4:
            self._then(call_unique_id, lambda: sim.reboot("Reboot"))
        return call_result.GetConfiguration(configuration_key=known, unknown_key=unknown or None)

    @after("GetConfiguration")
    def after_get_configuration(self, call_unique_id: str, **_: Any) -> None:
        self._followup(call_unique_id)

    @on("ChangeConfiguration")
    def on_change_configuration(self, key: str, value: str) -> Any:
        self._heard("ChangeConfiguration", {"key": key, "value": value})
        status = self._sim.config.change(key, value)
        self._sim.say(f"ChangeConfiguration {key}={value}: {status}")
        return call_result.ChangeConfiguration(status=status)

    # --- smart charging ---

    @on("SetChargingProfile")
    def on_set_charging_profile(
        self, call_unique_id: str, connector_id: int, cs_charging_profiles: dict[str, Any]
    ) -> Any:
        sim = self._sim
        self._heard(
            "SetChargingProfile",
            {"connector_id": connector_id, "cs_charging_profiles": cs_charging_profiles},
        )
        connector = sim.connectors.get(connector_id)
        if connector_id != 0 and connector is None:
            return call_result.SetChargingProfile(status="Rejected")
        tx = None if connector is None else connector.tx_id
        status = sim.profiles.install(connector_id, cs_charging_profiles, tx, sim.clock.now())
        purpose = cs_charging_profiles.get("charging_profile_purpose")
        schedule = cs_charging_profiles.get("charging_schedule") or {}
        periods = schedule.get("charging_schedule_period") or [{}]
        ignored = " (and ignored)" if purpose in sim.quirks.ignored_purposes else ""
        sim.say(
            f"SetChargingProfile {purpose} {float(periods[0].get('limit', 0)):g}"
            f" {schedule.get('charging_rate_unit')} on connector {connector_id}: {status}{ignored}"
        )
        if status == "Accepted":
            self._then(call_unique_id, sim.refresh_all)
        return call_result.SetChargingProfile(status=status)

    @after("SetChargingProfile")
    def after_set_charging_profile(self, call_unique_id: str, **_: Any) -> None:
        self._followup(call_unique_id)

    @on("ClearChargingProfile")
    def on_clear_charging_profile(
        self,
        call_unique_id: str,
        id: int | None = None,
        connector_id: int | None = None,
        charging_profile_purpose: str | None = None,
        stack_level: int | None = None,
    ) -> Any:
        self._heard("ClearChargingProfile", {"id": id, "connector_id": connector_id})
        status = self._sim.profiles.clear(id, connector_id, charging_profile_purpose, stack_level)
        if status == "Accepted":
            self._then(call_unique_id, self._sim.refresh_all)
        return call_result.ClearChargingProfile(status=status)

    @after("ClearChargingProfile")
    def after_clear_charging_profile(self, call_unique_id: str, **_: Any) -> None:
        self._followup(call_unique_id)

    @on("GetCompositeSchedule")
    def on_get_composite_schedule(
        self, connector_id: int, duration: int, charging_rate_unit: str | None = None
    ) -> Any:
        sim = self._sim
        self._heard("GetCompositeSchedule", {"connector_id": connector_id, "duration": duration})
        connector = sim.connectors.get(connector_id)
        if connector_id != 0 and connector is None:
            return call_result.GetCompositeSchedule(status="Rejected")
        now = sim.clock.now()
        factor = sim.volts * sim.phases
        periods = sim.profiles.composite(
            connector_id,
            now,
            int(duration),
            None if connector is None else connector.tx_start,
            volts_x_phases=factor,
            ceiling_a=sim.max_current_a,
        )
        unit = charging_rate_unit or "A"
        start = now.isoformat(timespec="seconds").replace("+00:00", "Z")
        schedule = {
            "duration": int(duration),
            "start_schedule": start,
            "charging_rate_unit": unit,
            "charging_schedule_period": [
                {
                    "start_period": offset,
                    "limit": round(limit * factor if unit == "W" else limit, 1),
                }
                for offset, limit in periods
            ],
        }
        return call_result.GetCompositeSchedule(
            status="Accepted",
            connector_id=connector_id,
            schedule_start=start,
            charging_schedule=schedule,
        )

    # --- transactions ---

    @on("RemoteStartTransaction")
    def on_remote_start_transaction(
        self,
        call_unique_id: str,
        id_tag: str,
        connector_id: int | None = None,
        charging_profile: dict[str, Any] | None = None,
    ) -> Any:
        sim = self._sim
        self._heard("RemoteStartTransaction", {"id_tag": id_tag, "connector_id": connector_id})
        connector = sim.connectors.get(connector_id or 1)
        refuse = (
            not sim.registered
            or connector is None
            or not connector.operative
            or connector.tx_id is not None
            or (connector.status == "Finishing" and "stuck_finishing" in sim.quirks)
            or (
                charging_profile is not None
                and charging_profile.get("charging_profile_purpose") != "TxProfile"
            )
        )
        answer = "Rejected" if refuse else "Accepted"
        sim.say(f"RemoteStartTransaction on connector {connector_id or 1}: {answer}")
        if refuse or connector is None:
            return call_result.RemoteStartTransaction(status="Rejected")
        self._then(call_unique_id, lambda: sim.remote_start(connector, id_tag, charging_profile))
        return call_result.RemoteStartTransaction(status="Accepted")

    @after("RemoteStartTransaction")
    def after_remote_start_transaction(self, call_unique_id: str, **_: Any) -> None:
        self._followup(call_unique_id)

    @on("RemoteStopTransaction")
    def on_remote_stop_transaction(self, call_unique_id: str, transaction_id: int) -> Any:
        sim = self._sim
        self._heard("RemoteStopTransaction", {"transaction_id": transaction_id})
        found = [c for c in sim.connectors.values() if c.tx_id == transaction_id]
        if not sim.registered or not found:
            return call_result.RemoteStopTransaction(status="Rejected")
        self._then(call_unique_id, lambda: sim.stop_transaction(found[0], "Remote"))
        return call_result.RemoteStopTransaction(status="Accepted")

    @after("RemoteStopTransaction")
    def after_remote_stop_transaction(self, call_unique_id: str, **_: Any) -> None:
        self._followup(call_unique_id)

    # --- the charger as a whole ---

    @on("ChangeAvailability")
    def on_change_availability(self, call_unique_id: str, connector_id: int, type: str) -> Any:
        sim = self._sim
        self._heard("ChangeAvailability", {"connector_id": connector_id, "type": type})
        if connector_id == 0 and "reject_connector0_availability" in sim.quirks:
            return call_result.ChangeAvailability(status="Rejected")
        if connector_id == 0:
            targets = list(sim.connectors.values())
        elif connector_id in sim.connectors:
            targets = [sim.connectors[connector_id]]
        else:
            return call_result.ChangeAvailability(status="Rejected")
        operative = type == "Operative"
        if any(c.tx_id is not None for c in targets):
            for c in targets:
                c.scheduled_operative = operative
            return call_result.ChangeAvailability(status="Scheduled")
        for c in targets:
            c.operative = operative
        self._then(call_unique_id, lambda: sim.announce_availability(targets))
        return call_result.ChangeAvailability(status="Accepted")

    @after("ChangeAvailability")
    def after_change_availability(self, call_unique_id: str, **_: Any) -> None:
        self._followup(call_unique_id)

    @on("Reset")
    def on_reset(self, call_unique_id: str, type: str) -> Any:
        self._heard("Reset", {"type": type})
        reason = "HardReset" if type == "Hard" else "SoftReset"
        self._then(call_unique_id, lambda: self._sim.reboot(reason))
        return call_result.Reset(status="Accepted")

    @after("Reset")
    def after_reset(self, call_unique_id: str, **_: Any) -> None:
        self._followup(call_unique_id)

    @on("UnlockConnector")
    def on_unlock_connector(self, call_unique_id: str, connector_id: int) -> Any:
        sim = self._sim
        self._heard("UnlockConnector", {"connector_id": connector_id})
        connector = sim.connectors.get(connector_id)
        if connector is None:
            return call_result.UnlockConnector(status="NotSupported")
        if connector.tx_id is not None:
            self._then(call_unique_id, lambda: sim.stop_transaction(connector, "UnlockCommand"))
        return call_result.UnlockConnector(status="Unlocked")

    @after("UnlockConnector")
    def after_unlock_connector(self, call_unique_id: str, **_: Any) -> None:
        self._followup(call_unique_id)

    @on("TriggerMessage")
    def on_trigger_message(
        self, call_unique_id: str, requested_message: str, connector_id: int | None = None
    ) -> Any:
        sim = self._sim
        self._heard("TriggerMessage", {"requested_message": requested_message})
        if connector_id is not None and connector_id != 0 and connector_id not in sim.connectors:
            return call_result.TriggerMessage(status="Rejected")
        if requested_message not in _TRIGGERS:
            return call_result.TriggerMessage(status="NotImplemented")
        self._then(call_unique_id, lambda: sim.triggered(requested_message, connector_id))
        return call_result.TriggerMessage(status="Accepted")

    @after("TriggerMessage")
    def after_trigger_message(self, call_unique_id: str, **_: Any) -> None:
        self._followup(call_unique_id)
