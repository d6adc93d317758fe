"""What the central system knows of each charge point, for the rest of surplus to read.

``ChargePointState`` per charger: connected or not (and on which security profile), its
boot information, each connector's status, transaction and latest meter values (each with
the charger's timestamp and the time it arrived), the configuration read at connect and its
health: ``ok``, ``stale`` (silent for too long) or ``refused`` (its last attempt to connect
was turned away). ``CentralSystem.state(id)`` hands out copies.

Meter values only move forward: a sample older than the one held (out of order, replayed,
or a late closing sample) never replaces it. A transaction's energy is the register minus
its start, and survives registers that restart at zero every session (Grizzl-E).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from surplus.integrations.ocpp.meter import Sample

__all__ = [
    "AppliedLimit",
    "BootInfo",
    "ChargePointState",
    "ConnectorState",
    "Health",
    "Measured",
    "MeterState",
    "Transaction",
]


class Health(StrEnum):
    OK = "ok"
    STALE = "stale"
    REFUSED = "refused"


@dataclass(slots=True)
class Measured:
    """A value with the charger's time for it (``at``) and when it reached us."""

    value: float
    at: datetime
    received_at: datetime


@dataclass(slots=True)
class MeterState:
    """The latest value of each measurand. Current and voltage are per phase (L1, L2, L3),
    under ``total`` when the charger names no phase; ``others`` holds every other measurand,
    keyed ``measurand`` or ``measurand/phase``."""

    energy_wh: Measured | None = None  # the Energy.Active.Import.Register, as reported
    power_w: Measured | None = None
    current_a: dict[str, Measured] = field(default_factory=dict)
    voltage_v: dict[str, Measured] = field(default_factory=dict)
    offered_current_a: Measured | None = None
    offered_power_w: Measured | None = None
    soc_pct: Measured | None = None
    temperature_c: Measured | None = None
    others: dict[str, Measured] = field(default_factory=dict)

    def apply(self, samples: Iterable[Sample], received_at: datetime) -> None:
        phased_power: dict[datetime, float] = defaultdict(float)
        total_power = False
        for s in samples:
            fresh = Measured(s.value, s.at, received_at)
            m = s.measurand
            if m == "Energy.Active.Import.Register" and s.phase is None:
                self.energy_wh = _newer(self.energy_wh, fresh)
            elif m == "Power.Active.Import" and s.phase is None:
                self.power_w = _newer(self.power_w, fresh)
                total_power = True
            elif m == "Current.Import":
                _keep(self.current_a, s.phase or "total", fresh)
            elif m == "Voltage":
                _keep(self.voltage_v, s.phase or "total", fresh)
            elif m == "Current.Offered":
                self.offered_current_a = _newer(self.offered_current_a, fresh)
            elif m == "Power.Offered":
                self.offered_power_w = _newer(self.offered_power_w, fresh)
            elif m == "SoC":
                self.soc_pct = _newer(self.soc_pct, fresh)
            elif m == "Temperature" and s.phase is None:
                self.temperature_c = _newer(self.temperature_c, fresh)
            else:
                if m == "Power.Active.Import":
                    phased_power[s.at] += s.value
                _keep(self.others, m if s.phase is None else f"{m}/{s.phase}", fresh)
        if not total_power:
            # a charger reporting power per phase only: its total is their sum
            for at, watts in phased_power.items():
                self.power_w = _newer(self.power_w, Measured(watts, at, received_at))

    @property
    def newest(self) -> datetime | None:
        """When the newest value arrived."""
        values = [
            self.energy_wh,
            self.power_w,
            self.offered_current_a,
            self.offered_power_w,
            self.soc_pct,
            self.temperature_c,
            *self.current_a.values(),
            *self.voltage_v.values(),
            *self.others.values(),
        ]
        times = [v.received_at for v in values if v is not None]
        return max(times) if times else None


def _newer(held: Measured | None, fresh: Measured) -> Measured:
    return fresh if held is None or fresh.at >= held.at else held


def _keep(values: dict[str, Measured], key: str, fresh: Measured) -> None:
    values[key] = _newer(values.get(key), fresh)


@dataclass(slots=True)
class Transaction:
    """A charging transaction. ``adopted``: learnt from a MeterValues or StopTransaction
    naming an id we did not issue (or forgot in a restart), so its start is unknown."""

    id: int
    connector_id: int
    id_tag: str | None
    started_at: datetime | None
    meter_start_wh: float | None
    adopted: bool = False
    energy_wh: float = 0.0  # charged so far (register resets accounted for)
    stopped_at: datetime | None = None
    meter_stop_wh: float | None = None
    stop_reason: str | None = None
    received_at: datetime | None = None  # when we learnt of it
    _base_wh: float | None = field(default=None, repr=False)
    _offset_wh: float = field(default=0.0, repr=False)

    def account(self, register_wh: float) -> None:
        """Take a register reading into the transaction's energy."""
        start = self.meter_start_wh
        if self._base_wh is None:
            if start is None:  # adopted: counted from the first reading we see
                self._base_wh = register_wh
            else:  # a register below the start restarted at zero for this session
                self._base_wh = start if register_wh >= start else 0.0
        elif register_wh < self._base_wh:
            self._offset_wh = self.energy_wh
            self._base_wh = 0.0
        self.energy_wh = max(self.energy_wh, self._offset_wh + register_wh - self._base_wh)


@dataclass(slots=True)
class ConnectorState:
    id: int
    status: str | None = None  # Available, Preparing, Charging, ... as last reported
    error_code: str | None = None
    info: str | None = None
    status_at: datetime | None = None
    transaction: Transaction | None = None  # the running one
    last_transaction: Transaction | None = None  # the latest that ended
    meter: MeterState = field(default_factory=MeterState)


@dataclass(slots=True)
class BootInfo:
    vendor: str
    model: str
    serial: str | None
    firmware: str | None
    meter_type: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class AppliedLimit:
    """The latest limit set through ``set_current_limit`` and how it was checked."""

    limit: float
    unit: str  # "A" or "W"
    purpose: str
    verified_by: str | None  # current_offered, power_offered, composite_schedule; None: unverified
    at: datetime


@dataclass(slots=True)
class ChargePointState:
    id: str
    connected: bool = False
    security_profile: int | None = None
    connected_at: datetime | None = None
    disconnected_at: datetime | None = None
    boot: BootInfo | None = None
    registration: str | None = None  # the BootNotification answer: Accepted, Pending, ...
    connectors: dict[int, ConnectorState] = field(default_factory=dict)
    configuration: dict[str, str | None] = field(default_factory=dict)
    last_seen: datetime | None = None  # the last message of any kind
    last_heartbeat: datetime | None = None
    health: Health = Health.OK
    health_reason: str = ""
    refused_at: datetime | None = None
    refused_reason: str | None = None
    limit: AppliedLimit | None = None
    meter_values: int = 0  # MeterValues messages received
    schema_violations: int = 0
    unreadable_frames: int = 0  # not JSON, or not an OCPP message
    unreadable_values: int = 0  # sampled values that could not be read

    def connector(self, connector_id: int) -> ConnectorState:
        found = self.connectors.get(connector_id)
        if found is None:
            found = self.connectors[connector_id] = ConnectorState(connector_id)
        return found

    def transaction(self, transaction_id: int) -> tuple[ConnectorState, Transaction] | None:
        """The connector and the running or latest transaction with this id, if known."""
        for connector in self.connectors.values():
            for tx in (connector.transaction, connector.last_transaction):
                if tx is not None and tx.id == transaction_id:
                    return connector, tx
        return None
