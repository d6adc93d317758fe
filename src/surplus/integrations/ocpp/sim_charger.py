"""What a simulated charger does, whatever its connection: the car plugged in and out, its
transactions, the limit its charging profiles set and the meter values it reports.

``SimulatedCharger`` holds the hardware (``sim_model``), the configuration (``sim_config``),
the charging profiles (``sim_profiles``) and the offline queue (``sim_queue``); how its
messages reach the central system is ``send``, which ``chargepoint_sim`` provides.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Mapping
from typing import Any, TypedDict

from surplus.integrations.ocpp._lib import call
from surplus.integrations.ocpp.limits import allowed_units
from surplus.integrations.ocpp.quirks import Quirks
from surplus.integrations.ocpp.sim_config import ConfigStore
from surplus.integrations.ocpp.sim_model import SimClock, SimConnector, sampled_values
from surplus.integrations.ocpp.sim_profiles import ProfileStore
from surplus.integrations.ocpp.sim_queue import OfflineQueue
from surplus.sim.devices import ElectricVehicle

__all__ = ["Hardware", "SimulatedCharger", "iso"]

log = logging.getLogger(__name__)


def iso(clock: SimClock) -> str:
    return clock.now().isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Hardware(TypedDict, total=False):
    """The keyword arguments of ``SimulatedCharger``, for the classes built on it."""

    quirks: Quirks | None
    speed: float
    connectors: int
    phases: int
    volts: float
    max_current_a: float
    rate_units: str
    auto_start: bool
    id_tag: str
    car: Callable[[], ElectricVehicle]
    say: Callable[[str], None] | None


class SimulatedCharger(abc.ABC):
    def __init__(
        self,
        charger_id: str,
        *,
        quirks: Quirks | None = None,
        speed: float = 1.0,
        connectors: int = 1,
        phases: int = 3,
        volts: float = 230.0,
        max_current_a: float = 32.0,
        rate_units: str = "Current,Power",
        auto_start: bool = True,
        id_tag: str = "SIMTAG",
        car: Callable[[], ElectricVehicle] = ElectricVehicle,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.id = charger_id
        self.quirks = quirks or Quirks()
        self.clock = SimClock(speed)
        self.phases, self.volts, self.max_current_a = phases, volts, max_current_a
        if "rate_unit_short" in self.quirks:
            rate_units = rate_units.replace("Current", "A").replace("Power", "W")
        self.config = ConfigStore(connectors, rate_units, "sparse_measurands" in self.quirks)
        self.profiles = ProfileStore(
            self.config.number("ChargeProfileMaxStackLevel"),
            allowed_units(rate_units),
            self.config.number("MaxChargingProfilesInstalled"),
        )
        self.connectors = {i: SimConnector(i) for i in range(1, connectors + 1)}
        self.queue = OfflineQueue()
        self.auto_start = auto_start
        self.id_tag = id_tag
        self.boots = 0  # BootNotifications sent
        self._car = car
        self._say = say
        self._turn = 0
        self._awaiting: dict[int, tuple[str, Mapping[str, Any] | None]] = {}

    @abc.abstractmethod
    async def send(
        self, payload: Any, *, transactional: bool = False, placeholder: int | None = None
    ) -> Any:
        """Send a CALL and return the answer; None when it could not be sent (a transaction
        message is then queued) or was answered with a CALLERROR."""

    def power_w(self) -> float:
        """What the cars draw through the charger now, in W (for the site around it)."""
        return sum(connector.power_w for connector in self.connectors.values())

    def say(self, line: str) -> None:
        log.info("%s: %s", self.id, line)
        if self._say is not None:
            self._say(line)

    def boot_notification(self) -> Any:
        serial = f"SIM-{self.id}"
        if "schema_violations" in self.quirks:
            serial = serial.ljust(40, "X")  # the schema allows 25 characters
        return call.BootNotification(
            charge_point_vendor="surplus",
            charge_point_model="sim-ocpp",
            charge_point_serial_number=serial,
            firmware_version="1.6.0-sim",
        )

    async def status(self, connector_id: int, status: str) -> None:
        if connector_id:
            self.connectors[connector_id].status = status
        await self.send(
            call.StatusNotification(
                connector_id=connector_id,
                error_code="NoError",
                status=status,
                timestamp=iso(self.clock),
            )
        )

    def effective_limit_a(self, connector: SimConnector) -> float:
        limit = self.profiles.limit_a(
            connector.id,
            self.clock.now(),
            connector.tx_start,
            volts_x_phases=self.volts * self.phases,
            ignored=self.quirks.ignored_purposes,
        )
        return self.max_current_a if limit is None else min(limit, self.max_current_a)

    async def refresh(self, connector: SimConnector) -> None:
        """Bring the car's charging up to now under the limit in force; tell of a change of
        status."""
        connector.advance(self.clock.now(), self.phases, self.volts)
        offered = self.effective_limit_a(connector)
        if offered != connector.offered_a:
            connector.offered_a = offered
            self.say(f"connector {connector.id}: offering {offered:g} A")
        connector.power_w = connector.draw_w(self.phases, self.volts)
        if connector.tx_id is not None and connector.status not in ("Finishing",):
            status = connector.charging_status(self.phases, self.volts)
            if status != connector.status:
                await self.status(connector.id, status)

    async def refresh_all(self) -> None:
        for connector in self.connectors.values():
            await self.refresh(connector)

    def meter_value(
        self, connector: SimConnector, context: str, *, stop_data: bool = False
    ) -> dict[str, object]:
        key = "StopTxnSampledData" if stop_data else "MeterValuesSampledData"
        measurands = self.config.listed(key)
        self._turn += 1
        values = sampled_values(
            connector, measurands, context, self.quirks, self.phases, self.volts, self._turn
        )
        entry: dict[str, object] = {"sampled_value": values}
        if "missing_timestamps" not in self.quirks:
            entry["timestamp"] = iso(self.clock)
        return entry

    async def meter_values(self, connector: SimConnector, context: str) -> None:
        if connector.tx_id is None and context != "Trigger":
            return
        connector.advance(self.clock.now(), self.phases, self.volts)
        entry = self.meter_value(connector, context)
        if not entry["sampled_value"]:
            return
        entries = [entry]
        if "out_of_order" in self.quirks and connector.previous_sample is not None:
            entries.append(connector.previous_sample)
        connector.previous_sample = entry
        payload = call.MeterValues(
            connector_id=connector.id, meter_value=entries, transaction_id=connector.tx_id
        )
        await self.send(payload, transactional=connector.tx_id is not None)

    async def plug_in(self, connector_id: int = 1, car: ElectricVehicle | None = None) -> None:
        connector = self.connectors[connector_id]
        if connector.plugged:
            return
        connector.plugged = True
        connector.ev = car or self._car()
        connector.updated = self.clock.now()
        self.say(f"car plugged into connector {connector_id} ({connector.ev.soc_pct:.0f} %)")
        if not connector.operative:
            return
        awaiting = self._awaiting.pop(connector_id, None)
        if awaiting is not None:
            tag, profile = awaiting
            await self.start_transaction(connector, tag, remote=True)
            if profile is not None and connector.tx_id is not None:
                self.profiles.install(connector_id, profile, connector.tx_id, self.clock.now())
                await self.refresh(connector)
            return
        await self.status(connector_id, "Preparing")
        if self.auto_start:
            await self.start_transaction(connector, self.id_tag)

    async def unplug(self, connector_id: int = 1) -> None:
        connector = self.connectors[connector_id]
        if not connector.plugged:
            return
        if connector.tx_id is not None:
            if self.config.flag("StopTransactionOnEVSideDisconnect"):
                await self.stop_transaction(connector, "EVDisconnected")
            else:
                connector.offered_a = 0.0
        connector.plugged = False
        connector.ev = None
        self.say(f"car unplugged from connector {connector_id}")
        await self._settle(connector)

    async def _settle(self, connector: SimConnector) -> None:
        """A connector without a transaction takes its resting status."""
        if connector.scheduled_operative is not None:
            connector.operative = connector.scheduled_operative
            connector.scheduled_operative = None
        await self._settle_idle(connector)

    async def _settle_idle(self, connector: SimConnector) -> None:
        if not connector.operative:
            await self.status(connector.id, "Unavailable")
        elif connector.plugged:
            await self.status(connector.id, "Finishing")
        else:
            await self.status(connector.id, "Available")

    async def start_transaction(
        self, connector: SimConnector, id_tag: str, *, remote: bool = False
    ) -> None:
        if not remote or self.config.flag("AuthorizeRemoteTxRequests"):
            answer = await self.send(call.Authorize(id_tag=id_tag))
            status = None if answer is None else answer.id_tag_info.get("status")
            if answer is not None and status != "Accepted":
                self.say(f"id tag {id_tag} not authorized ({status})")
                return
        connector.advance(self.clock.now(), self.phases, self.volts)
        if "register_resets" in self.quirks:
            connector.session_base_wh = connector.register_wh
        # a resetting register still states the meter's lifetime count at the start
        connector.meter_start_wh = int(connector.register_wh)
        connector.tx_start = self.clock.now()
        connector.tx_tag = id_tag
        placeholder = self.queue.placeholder()
        payload = call.StartTransaction(
            connector_id=connector.id,
            id_tag=id_tag,
            meter_start=connector.meter_start_wh,
            timestamp=iso(self.clock),
        )
        answer = await self.send(payload, transactional=True, placeholder=placeholder)
        connector.tx_id = placeholder if answer is None else int(answer.transaction_id)
        self.say(f"transaction {connector.tx_id} started on connector {connector.id}")
        connector.status = "Preparing"
        await self.refresh(connector)
        await self.meter_values(connector, "Transaction.Begin")

    async def stop_transaction(self, connector: SimConnector, reason: str) -> None:
        tx_id = connector.tx_id
        if tx_id is None:
            return
        connector.advance(self.clock.now(), self.phases, self.volts)
        late = "late_meter_values" in self.quirks
        closing = self.meter_value(connector, "Transaction.End", stop_data=not late)
        payload = call.StopTransaction(
            meter_stop=int(connector.register_wh),
            timestamp=iso(self.clock),
            transaction_id=tx_id,
            reason=reason,
            id_tag=connector.tx_tag,
            transaction_data=None if late else [closing],
        )
        await self.send(payload, transactional=True)
        if late:
            await self.send(
                call.MeterValues(
                    connector_id=connector.id, meter_value=[closing], transaction_id=tx_id
                ),
                transactional=True,
            )
        self.say(f"transaction {tx_id} stopped ({reason})")
        connector.tx_id = connector.tx_start = connector.tx_tag = None
        connector.previous_sample = None
        connector.power_w = 0.0
        self.profiles.end_transaction(connector.id)
        await self._settle(connector)

    async def remote_start(
        self, connector: SimConnector, id_tag: str, profile: Mapping[str, Any] | None
    ) -> None:
        """A RemoteStart accepted: start now, or once a car is plugged in (within
        ``ConnectionTimeOut``), under ``profile`` if one came with it."""
        if not connector.plugged:
            self._awaiting[connector.id] = (id_tag, profile)
            await self.status(connector.id, "Preparing")
            await self.clock.sleep(self.config.number("ConnectionTimeOut"))
            if self._awaiting.pop(connector.id, None) is not None:
                self.say(f"no car plugged into connector {connector.id} in time")
                await self._settle(connector)
            return
        await self.start_transaction(connector, id_tag, remote=True)
        if profile is not None and connector.tx_id is not None:
            self.profiles.install(connector.id, profile, connector.tx_id, self.clock.now())
            await self.refresh(connector)

    async def announce_availability(self, connectors: list[SimConnector]) -> None:
        for connector in connectors:
            if connector.tx_id is None:
                await self._settle_idle(connector)
        if all(not c.operative for c in self.connectors.values()):
            await self.status(0, "Unavailable")
        else:
            await self.status(0, "Available")

    async def triggered(self, message: str, connector_id: int | None) -> None:
        """Send what a TriggerMessage asked for."""
        chosen = [c for c in self.connectors.values() if connector_id in (None, 0, c.id)]
        if message == "BootNotification":
            self.boots += 1
            await self.send(self.boot_notification())
        elif message == "Heartbeat":
            await self.send(call.Heartbeat())
        elif message == "StatusNotification":
            if connector_id in (None, 0):
                await self.status(0, "Available")
            for connector in chosen:
                await self.status(connector.id, connector.status)
        elif message == "MeterValues":
            for connector in chosen:
                await self.refresh(connector)
                await self.meter_values(connector, "Trigger")
        elif message == "FirmwareStatusNotification":
            await self.send(call.FirmwareStatusNotification(status="Idle"))
        elif message == "DiagnosticsStatusNotification":
            await self.send(call.DiagnosticsStatusNotification(status="Idle"))
