"""Per-charger settings of the central system: how strictly to read it, what to ask of it at
connect, how to limit its current and when to call it stale."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["MEASURANDS", "PURPOSES", "ChargerOptions", "Purpose"]

Purpose = Literal["TxDefaultProfile", "TxProfile", "ChargePointMaxProfile"]

# evcc's default first; a purpose that proved to work moves to the front for that charger
PURPOSES: tuple[Purpose, ...] = ("TxDefaultProfile", "TxProfile", "ChargePointMaxProfile")

# what set_current_limit verifies with, and what an energy manager reads
MEASURANDS = (
    "Energy.Active.Import.Register",
    "Power.Active.Import",
    "Current.Import",
    "Current.Offered",
    "Power.Offered",
    "Voltage",
    "SoC",
)


@dataclass(frozen=True, slots=True)
class ChargerOptions:
    """``lenient``: messages that break the OCPP schema are handled anyway (and counted), for
    chargers known to send them. ``autodetect``: read the configuration at connect, one key
    at a time; off for chargers that reboot when asked (ABB). ``measurands``: put into
    ``MeterValuesSampledData`` at connect when some are missing (empty: leave it alone).

    ``rate_unit`` and ``max_stack_level`` override what autodetection finds (else "A" or "W"
    as ``ChargingScheduleAllowedChargingRateUnit`` allows, and ``ChargeProfileMaxStackLevel``,
    or 1). ``phases`` and ``voltage_v`` convert amperes to watts when the charger measures no
    voltage. An offered current at ``max_current_a`` counts as applying any higher limit.

    A charger is stale when silent for ``stale_after_s`` (default 2.5 heartbeat intervals),
    or during a transaction without meter values for ``meter_stale_after_s`` (default three
    ``MeterValueSampleInterval``\\ s).
    """

    lenient: bool = False
    autodetect: bool = True
    measurands: tuple[str, ...] = MEASURANDS
    heartbeat_interval_s: int = 60
    boot_status: Literal["Accepted", "Pending", "Rejected"] = "Accepted"
    purposes: tuple[Purpose, ...] = PURPOSES
    rate_unit: Literal["A", "W"] | None = None
    max_stack_level: int | None = None
    phases: int = 3
    voltage_v: float = 230.0
    max_current_a: float = 32.0
    verify_timeout_s: float = 10.0
    verify_settle_s: float = 3.0
    stale_after_s: float | None = None
    meter_stale_after_s: float | None = None
    boot_grace_s: float = 5.0
