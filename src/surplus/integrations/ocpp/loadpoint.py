"""One connector of an OCPP 1.6J charge point as the control engine's charger.

``OcppLoadpoint`` turns what the central system knows of the connector into a
``ChargerState`` (``reading``) and carries out the engine's ``ChargerCommand``\\ s
(``apply``) through its ``ChargerHandle``. Charging is enabled and disabled with the current
limit alone: 0 A suspends the car and keeps the transaction, because chargers that are
remote-stopped often stay stuck in Finishing (reference C.6). A plugged car without a
transaction is remote-started when charging is enabled. OCPP 1.6 has no phase switching,
so a phase count other than the configured one is ignored (and said so).

A command that fails raises a ``DeviceError`` and is not retried here: the engine decides
it again next tick.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from statistics import fmean

from surplus.control.state import ChargerCommand
from surplus.domain.errors import UnavailableError
from surplus.domain.readings import ChargerState, ChargerStatus, SessionProgress
from surplus.integrations.ocpp.central import CentralSystem
from surplus.integrations.ocpp.limits import LimitStatus
from surplus.integrations.ocpp.state import (
    ConnectorState,
    Health,
    MeterState,
    Transaction,
)
from surplus.integrations.ocpp.watchdog import assess

__all__ = ["OcppLoadpoint"]

_STATUS: dict[str, ChargerStatus] = {
    "Available": ChargerStatus.DISCONNECTED,
    "Unavailable": ChargerStatus.DISCONNECTED,
    "Reserved": ChargerStatus.DISCONNECTED,
    "Preparing": ChargerStatus.CONNECTED,
    "SuspendedEV": ChargerStatus.CONNECTED,
    "SuspendedEVSE": ChargerStatus.CONNECTED,
    "Finishing": ChargerStatus.CONNECTED,
    "Charging": ChargerStatus.CHARGING,
    "Faulted": ChargerStatus.ERROR,
}
# a car plugged in that a RemoteStartTransaction can start (Finishing often refuses it)
_STARTABLE = frozenset({"Preparing", "SuspendedEV", "SuspendedEVSE"})
_PHASES = ("L1", "L2", "L3")
DRAWING_A = 0.5  # a phase carrying more than this is in use
DEFAULT_CURRENT_A = 6.0  # enabled before any current was given: the IEC 61851 minimum
START_WAIT_S = 5.0  # how long a remote start may take to show its transaction


class OcppLoadpoint:
    """The connector ``connector_id`` of the charger ``charger_id`` on ``cs``; ``phases``
    and ``voltage_v`` are what it is wired for (used while it measures nothing else)."""

    def __init__(
        self,
        cs: CentralSystem,
        charger_id: str,
        *,
        connector_id: int = 1,
        phases: int = 3,
        voltage_v: float = 230.0,
        id_tag: str = "surplus",
        now: Callable[[], datetime],
    ) -> None:
        self._cs = cs
        self.charger_id = charger_id
        self.connector_id = connector_id
        self.phases = phases
        self.voltage_v = voltage_v
        self.id_tag = id_tag
        self._now = now
        self._enabled = False
        self._current_a: float | None = None  # the current last commanded
        self._applied_a: float | None = None  # the limit last applied

    # --- reading ---

    def reading(self) -> ChargerState | None:
        """The connector as the engine sees it; None while the charger never connected."""
        state = self._cs.state(self.charger_id)
        if state is None or state.last_seen is None:
            return None
        connector = state.connector(self.connector_id)
        meter = connector.meter
        status = _STATUS.get(connector.status or "", ChargerStatus.DISCONNECTED)
        charging = status is ChargerStatus.CHARGING
        offered = meter.offered_current_a
        volts = _phase_voltage(meter)
        return ChargerState(
            status=status,
            enabled=self._enabled,
            offered_current_a=offered.value if offered is not None else self._applied_a or 0.0,
            power_w=self._power_w(meter, volts) if charging else 0.0,
            phases=self._phases_drawing(meter) if charging else self.phases,
            at=_data_time(connector, state.last_seen),
            voltage_v=volts,
        )

    def _power_w(self, meter: MeterState, volts: float | None) -> float:
        if meter.power_w is not None:
            return meter.power_w.value
        # a charger measuring current but not power
        amps = sum(meter.current_a[p].value for p in _PHASES if p in meter.current_a)
        return amps * (volts or self.voltage_v)

    def _phases_drawing(self, meter: MeterState) -> int:
        drawing = sum(
            1 for p in _PHASES if p in meter.current_a and meter.current_a[p].value > DRAWING_A
        )
        return drawing or self.phases

    @property
    def health(self) -> Health:
        """ok, stale (silent, not metering during a transaction, or not connected) or
        refused, as the central system's watchdog judges it now."""
        return self._health()[0]

    @property
    def detail(self) -> str:
        """Why the health is what it is; when ok, the connector's status."""
        health, reason = self._health()
        if health is not Health.OK:
            return reason
        state = self._cs.state(self.charger_id)
        connector = None if state is None else state.connectors.get(self.connector_id)
        if connector is None or connector.status is None:
            return f"connector {self.connector_id}: no status yet"
        fault = f" ({connector.error_code})" if connector.status == "Faulted" else ""
        return f"connector {self.connector_id}: {connector.status}{fault}"

    def _health(self) -> tuple[Health, str]:
        state = self._cs.state(self.charger_id)
        if state is None:
            return Health.STALE, f"charger {self.charger_id!r} is not registered"
        return assess(state, self._cs.options(self.charger_id), self._now())

    @property
    def transaction(self) -> Transaction | None:
        """The transaction running on the connector."""
        state = self._cs.state(self.charger_id)
        return None if state is None else state.connector(self.connector_id).transaction

    @property
    def last_transaction(self) -> Transaction | None:
        """The latest transaction that ended on the connector."""
        state = self._cs.state(self.charger_id)
        return None if state is None else state.connector(self.connector_id).last_transaction

    # --- commands ---

    def session(self) -> SessionProgress:
        """A session is the charger's running transaction, with the energy it counted."""
        transaction = self.transaction
        if transaction is None:
            return SessionProgress(active=False)
        return SessionProgress(active=True, energy_wh=transaction.energy_wh)

    async def apply(self, command: ChargerCommand) -> str:
        """Carry out ``command``: "ok", with what else happened after a semicolon.
        ``UnavailableError`` when the charger is not connected or did not apply the limit."""
        notes: list[str] = []
        if command.phases is not None and command.phases != self.phases:
            notes.append(f"{command.phases}-phase charging ignored: no switching over OCPP 1.6")
        if command.enable is False:
            notes += await self._limit(0.0)
            self._enabled = False
            if command.current_a is not None:
                self._current_a = command.current_a
        elif command.enable or (command.current_a is not None and self._enabled):
            amps = command.current_a if command.current_a is not None else self._current_a
            amps = DEFAULT_CURRENT_A if amps is None else amps
            notes += await self._start()
            notes += await self._limit(amps)
            self._enabled, self._current_a = True, amps
        elif command.current_a is not None:
            # disabled: a current alone must not let the car charge
            self._current_a = command.current_a
            notes.append(f"{command.current_a:g} A kept until charging is enabled")
        return "; ".join(["ok", *notes])

    async def _start(self) -> list[str]:
        """Remote-start a plugged car that has no transaction."""
        state = self._cs.state(self.charger_id)
        if state is None or not state.connected:
            raise UnavailableError(f"charger {self.charger_id!r} is not connected")
        connector = state.connector(self.connector_id)
        if connector.transaction is not None or connector.status not in _STARTABLE:
            return []
        handle = self._cs.charger(self.charger_id)
        if not await handle.remote_start(self.id_tag, self.connector_id):
            raise UnavailableError(
                f"charger {self.charger_id!r} refused to start a transaction"
                f" on connector {self.connector_id} ({connector.status})"
            )
        # the limit can take a TxProfile once the transaction is known
        if await self._transaction_started():
            return ["transaction started"]
        return ["remote start accepted, no transaction yet"]

    async def _transaction_started(self) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_WAIT_S
        while loop.time() < deadline:
            if self.transaction is not None:
                return True
            await asyncio.sleep(0.05)
        return False

    async def _limit(self, amps: float) -> list[str]:
        handle = self._cs.charger(self.charger_id)
        result = await handle.set_current_limit(amps=amps, connector_id=self.connector_id)
        if result.status in (LimitStatus.NOT_APPLIED, LimitStatus.REJECTED):
            tried = ", ".join(f"{p} {outcome}" for p, outcome in result.attempts)
            raise UnavailableError(
                f"charger {self.charger_id!r}: limit of {amps:g} A"
                f" {result.status.value.replace('_', ' ')}"
                f" ({tried or 'no charging profile purpose applies'})"
            )
        self._applied_a = amps
        notes = []
        if result.status is LimitStatus.UNVERIFIED:
            notes.append(f"{amps:g} A accepted; the charger cannot show it applied")
        if len(result.attempts) > 1:
            notes.append(f"{amps:g} A applied by {result.purpose}")
        return notes


def _phase_voltage(meter: MeterState) -> float | None:
    """The mean phase voltage; a voltage naming no phase when there is none per phase."""
    values = [meter.voltage_v[p].value for p in _PHASES if p in meter.voltage_v]
    if not values and "total" in meter.voltage_v:
        values = [meter.voltage_v["total"].value]
    return fmean(values) if values else None


def _data_time(connector: ConnectorState, heard: datetime) -> datetime:
    """When the reading was last confirmed, by the times we received it.

    Without a transaction there is nothing to meter, and the charger reports every change
    of status: anything heard from it confirms the reading. During one the reading is as
    fresh as its meter values, its start or its latest status. A status carries the
    charger's clock, which may run ahead (the simulator's by its speed): it counts no later
    than ``heard``, the last message.
    """
    tx = connector.transaction
    if tx is None:
        return heard
    times = [connector.meter.newest, tx.received_at]
    if connector.status_at is not None:
        times.append(min(connector.status_at, heard))
    return max((t for t in times if t is not None), default=heard)
