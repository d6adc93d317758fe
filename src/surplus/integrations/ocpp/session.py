"""One charge point's connection to the central system: the OCPP 1.6 messages it sends.

A ``Session`` answers BootNotification, Heartbeat, StatusNotification, Authorize,
StartTransaction, StopTransaction and MeterValues into the charger's ``ChargePointState``,
and is the channel ``ChargerHandle`` calls through (the library keeps to one outstanding
CALL; the charger's CALLs are still answered while ours waits).

Handlers are idempotent: a replayed StartTransaction gets the id it got before, and a
replayed MeterValues or StopTransaction changes nothing (keyed by charger, transaction and
timestamp). A transaction id we never issued, or forgot in a restart, is adopted, and
StopTransaction is always answered, or the charger retries it forever. A charger that sent
no BootNotification on this connection is asked for one (and for its connector statuses)
after a grace period; its configuration is then read one key at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from datetime import UTC, datetime
from typing import Any

from surplus.integrations.ocpp._lib import ChargePoint, after, call, call_result, on, schema_problem
from surplus.integrations.ocpp.meter import Sample, parse_meter_values, parse_number, parse_time
from surplus.integrations.ocpp.options import ChargerOptions, Purpose
from surplus.integrations.ocpp.state import BootInfo, ChargePointState, ConnectorState, Transaction

__all__ = ["ChargerMemory", "Session", "TransactionIds"]

log = logging.getLogger(__name__)
# the library logs every frame at INFO: hundreds a second from a fleet of chargers
wire_log = logging.getLogger("surplus.ocpp.wire")
wire_log.setLevel(logging.WARNING)

# the actions a charger sends; only these are checked against the schema here
_FROM_CHARGER = frozenset(
    {
        "Authorize",
        "BootNotification",
        "DataTransfer",
        "DiagnosticsStatusNotification",
        "FirmwareStatusNotification",
        "Heartbeat",
        "MeterValues",
        "StartTransaction",
        "StatusNotification",
        "StopTransaction",
    }
)
CONFIG_KEYS = (
    "ChargingScheduleAllowedChargingRateUnit",
    "ChargeProfileMaxStackLevel",
    "NumberOfConnectors",
    "SupportedFeatureProfiles",
    "HeartbeatInterval",
    "MeterValueSampleInterval",
    "MeterValuesSampledData",
    "MeterValuesSampledDataMaxLength",
    "AuthorizeRemoteTxRequests",
    "StopTransactionOnEVSideDisconnect",
)
_SEEN_MAX = 4096


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_ACCEPTED = {"status": "Accepted"}


class TransactionIds:
    """Transaction ids for the whole central system: counting up from the start's epoch
    second, so ids after a restart do not collide with those before it."""

    def __init__(self) -> None:
        self._next = itertools.count(int(time.time()))

    def __call__(self) -> int:
        return next(self._next)


class ChargerMemory:
    """What the central system remembers of a charger across its connections: the messages
    already handled and the profiles set on it."""

    def __init__(self) -> None:
        self._seen: OrderedDict[Hashable, object] = OrderedDict()
        self.preferred_purpose: Purpose | None = None
        self.profiles: dict[Purpose, tuple[int, int]] = {}  # purpose -> (profile id, connector)

    def recall(self, key: Hashable) -> object | None:
        return self._seen.get(key)

    def remember(self, key: Hashable, value: object = True) -> None:
        self._seen[key] = value
        self._seen.move_to_end(key)
        while len(self._seen) > _SEEN_MAX:
            self._seen.popitem(last=False)


class Session(ChargePoint):
    def __init__(
        self,
        charger_id: str,
        connection: Any,
        *,
        state: ChargePointState,
        memory: ChargerMemory,
        options: ChargerOptions,
        transaction_ids: Callable[[], int],
        response_timeout_s: float,
    ) -> None:
        super().__init__(charger_id, connection, response_timeout_s, wire_log)
        self.state = state
        self.memory = memory
        self.options = options
        self._transaction_ids = transaction_ids
        self.metered = asyncio.Condition()  # notified on every MeterValues
        self._booted = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._configured = False
        if options.lenient:
            for route in self.route_map.values():
                route["_skip_schema_validation"] = True

    @property
    def lenient(self) -> bool:
        return self.options.lenient

    async def run(self) -> None:
        """Serve the connection until it closes."""
        self._spawn(self._settle())
        try:
            await self.start()
        finally:
            for task in self._tasks:
                task.cancel()

    def abort(self) -> None:
        """Drop the connection at once, without a closing handshake (a charger gone silent)."""
        self._connection.transport.abort()

    def _spawn(self, job: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def route_message(self, raw_msg: str) -> None:
        self.state.last_seen = _now()
        try:
            message = json.loads(raw_msg)
        except ValueError:
            self.state.unreadable_frames += 1
            log.warning("%s sent a frame that is not JSON (%d characters)", self.id, len(raw_msg))
            return
        if not isinstance(message, list) or not message or message[0] not in (2, 3, 4):
            self.state.unreadable_frames += 1
            log.warning("%s sent a frame that is not an OCPP message", self.id)
            return
        if message[0] == 2 and len(message) == 4 and message[2] in _FROM_CHARGER:
            problem = schema_problem(message[2], message[3])
            if problem is not None:
                self.state.schema_violations += 1
                handling = "handled anyway (lenient)" if self.lenient else "refused"
                log.warning(
                    "%s: %s breaks the schema (%s); %s", self.id, message[2], problem, handling
                )
        await super().route_message(raw_msg)

    # --- at connect ---

    async def _settle(self) -> None:
        try:
            await asyncio.wait_for(self._booted.wait(), self.options.boot_grace_s)
        except TimeoutError:
            # a charger that reconnects without booting again (as it should) or never boots
            if self.state.boot is None:
                await self._trigger("BootNotification")
            await self._trigger("StatusNotification")
        await self._configure()

    async def _trigger(self, message: str) -> None:
        with contextlib.suppress(Exception):
            await self.call(call.TriggerMessage(requested_message=message), suppress=True)

    async def _configure(self) -> None:
        if self._configured or not self.options.autodetect or self.state.registration == "Rejected":
            return
        self._configured = True
        try:
            for key in CONFIG_KEYS:
                # one key per request: some chargers reboot when asked for all (ABB)
                answer = await self.call(call.GetConfiguration(key=[key]), suppress=True)
                for entry in getattr(answer, "configuration_key", None) or []:
                    if isinstance(entry, dict) and isinstance(entry.get("key"), str):
                        value = entry.get("value")
                        self.state.configuration[entry["key"]] = (
                            None if value is None else str(value)
                        )
            await self._ask_for_measurands()
        except (TimeoutError, OSError) as e:
            log.warning("%s: reading its configuration failed (%s)", self.id, e or "timeout")
        except Exception as e:  # a closed connection, a malformed answer: never fatal here
            log.warning("%s: reading its configuration failed (%s)", self.id, type(e).__name__)

    async def _ask_for_measurands(self) -> None:
        wanted = list(self.options.measurands)
        current = self.state.configuration.get("MeterValuesSampledData")
        if not wanted or current is None:
            return
        have = [m.strip() for m in current.split(",") if m.strip()]
        if all(m in have for m in wanted):
            return
        merged = have + [m for m in wanted if m not in have]
        limit = parse_number(self.state.configuration.get("MeterValuesSampledDataMaxLength"))
        if limit is not None and limit[0] >= 1:
            merged = merged[: int(limit[0])]
        value = ",".join(merged)
        answer = await self.call(
            call.ChangeConfiguration(key="MeterValuesSampledData", value=value), suppress=True
        )
        if getattr(answer, "status", None) == "Accepted":
            self.state.configuration["MeterValuesSampledData"] = value

    # --- the charger's messages ---

    @on("BootNotification")
    def on_boot_notification(
        self,
        charge_point_vendor: object = None,
        charge_point_model: object = None,
        charge_point_serial_number: object = None,
        charge_box_serial_number: object = None,
        firmware_version: object = None,
        meter_type: object = None,
        **_: object,
    ) -> Any:
        serial = charge_point_serial_number or charge_box_serial_number
        self.state.boot = BootInfo(
            str(charge_point_vendor or ""),
            str(charge_point_model or ""),
            None if serial is None else str(serial),
            None if firmware_version is None else str(firmware_version),
            None if meter_type is None else str(meter_type),
            _now(),
        )
        status = self.options.boot_status
        self.state.registration = status
        return call_result.BootNotification(
            current_time=_iso(_now()), interval=self.options.heartbeat_interval_s, status=status
        )

    @after("BootNotification")
    def after_boot_notification(self, **_: object) -> None:
        self._booted.set()

    @on("Heartbeat")
    def on_heartbeat(self, **_: object) -> Any:
        self.state.last_heartbeat = _now()
        return call_result.Heartbeat(current_time=_iso(_now()))

    @on("StatusNotification")
    def on_status_notification(
        self,
        connector_id: object = 0,
        error_code: object = None,
        status: object = None,
        info: object = None,
        timestamp: object = None,
        **_: object,
    ) -> Any:
        received = _now()
        connector = self.state.connector(_int(connector_id))
        at = parse_time(timestamp, received)
        # a replayed or late status must not undo a newer one
        if connector.status_at is None or at >= connector.status_at:
            connector.status = None if status is None else str(status).strip()
            connector.error_code = None if error_code is None else str(error_code)
            connector.info = None if info is None else str(info)
            connector.status_at = at
        return call_result.StatusNotification()

    @on("Authorize")
    def on_authorize(self, id_tag: object = None, **_: object) -> Any:
        return call_result.Authorize(id_tag_info=_ACCEPTED)

    @on("StartTransaction")
    def on_start_transaction(
        self,
        connector_id: object = 1,
        id_tag: object = None,
        meter_start: object = None,
        timestamp: object = None,
        **_: object,
    ) -> Any:
        key = ("start", connector_id, id_tag, meter_start, timestamp)
        known = self.memory.recall(key)
        if isinstance(known, int):
            return call_result.StartTransaction(transaction_id=known, id_tag_info=_ACCEPTED)
        transaction_id = self._transaction_ids()
        self.memory.remember(key, transaction_id)
        connector = self.state.connector(_int(connector_id, 1))
        start = parse_number(meter_start)
        _begin(
            connector,
            Transaction(
                transaction_id,
                connector.id,
                None if id_tag is None else str(id_tag),
                parse_time(timestamp, _now()),
                None if start is None else start[0],
            ),
        )
        return call_result.StartTransaction(transaction_id=transaction_id, id_tag_info=_ACCEPTED)

    @on("StopTransaction")
    def on_stop_transaction(
        self,
        transaction_id: object = None,
        meter_stop: object = None,
        timestamp: object = None,
        reason: object = None,
        transaction_data: object = None,
        **_: object,
    ) -> Any:
        received = _now()
        tx_id = _int(transaction_id, -1)
        found = self.state.transaction(tx_id)
        if found is None:
            connector = self.state.connector(self._sole_connector())
            tx = Transaction(tx_id, connector.id, None, None, None, adopted=True)
            log.info("%s: adopted unknown transaction %s at its stop", self.id, tx_id)
        else:
            connector, tx = found
        if transaction_data is not None:
            self._meter(connector, tx, transaction_data, received)
        stop = parse_number(meter_stop)
        if tx.stopped_at is None:
            tx.stopped_at = parse_time(timestamp, received)
            tx.meter_stop_wh = None if stop is None else stop[0]
            tx.stop_reason = None if reason is None else str(reason)
            if stop is not None:
                tx.account(stop[0])
            if connector.transaction is tx:
                connector.transaction = None
            connector.last_transaction = tx
        return call_result.StopTransaction(id_tag_info=_ACCEPTED)

    @on("MeterValues")
    async def on_meter_values(
        self,
        connector_id: object = 0,
        meter_value: object = None,
        transaction_id: object = None,
        **_: object,
    ) -> Any:
        received = _now()
        self.state.meter_values += 1
        connector = self.state.connector(_int(connector_id))
        tx: Transaction | None = None
        if transaction_id is not None:
            tx_id = _int(transaction_id, -1)
            found = self.state.transaction(tx_id)
            if found is None:
                tx = Transaction(tx_id, connector.id, None, None, None, adopted=True)
                _begin(connector, tx)
                log.info("%s: adopted unknown transaction %s from its meter values", self.id, tx_id)
            else:
                tx = found[1]
        self._meter(connector, tx, meter_value, received)
        async with self.metered:
            self.metered.notify_all()
        return call_result.MeterValues()

    def _meter(
        self,
        connector: ConnectorState,
        tx: Transaction | None,
        meter_value: object,
        received: datetime,
    ) -> None:
        fresh = []
        for entry in meter_value if isinstance(meter_value, list) else []:
            key = ("meter", connector.id, None if tx is None else tx.id, _stamp(entry))
            if self.memory.recall(key) is None:
                self.memory.remember(key)
                fresh.append(entry)
        samples, unreadable = parse_meter_values(fresh, received)
        self.state.unreadable_values += unreadable
        connector.meter.apply(samples, received)
        if tx is not None:
            for s in sorted(_registers(samples), key=lambda s: s.at):
                tx.account(s.value)

    def _sole_connector(self) -> int:
        ids = [c for c in self.state.connectors if c > 0]
        return ids[0] if len(ids) == 1 else 0


def _begin(connector: ConnectorState, tx: Transaction) -> None:
    tx.received_at = _now()
    if connector.transaction is not None and connector.transaction.id != tx.id:
        # the charger has moved on without telling us the old one stopped
        connector.last_transaction = connector.transaction
    connector.transaction = tx


def _registers(samples: list[Sample]) -> list[Sample]:
    return [
        s for s in samples if s.measurand == "Energy.Active.Import.Register" and s.phase is None
    ]


def _stamp(entry: object) -> str:
    # the timestamp with the values: chargers that split one sample time over several
    # messages (one per measurand) are not replays
    return json.dumps(entry, sort_keys=True, default=str)


def _int(value: object, default: int = 0) -> int:
    number = parse_number(value)
    return default if number is None else int(number[0])
