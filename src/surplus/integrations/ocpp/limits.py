"""The arithmetic of a current limit: which unit a charger takes, the profile that carries
it, the order purposes are tried in and whether what the charger offers shows it applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from surplus.integrations.ocpp.options import ChargerOptions, Purpose

__all__ = [
    "LimitResult",
    "LimitStatus",
    "allowed_units",
    "applies",
    "charging_profile",
    "convert",
    "purpose_order",
]

Unit = Literal["A", "W"]

# the profile ids surplus uses, as lbbrhzn/ocpp does: one per purpose (and connector)
_PROFILE_BASE: dict[Purpose, int] = {
    "ChargePointMaxProfile": 1000,
    "TxDefaultProfile": 2000,
    "TxProfile": 3000,
}


class LimitStatus(StrEnum):
    APPLIED = "applied"  # accepted and seen applied
    UNVERIFIED = "unverified"  # accepted; the charger gives no way to check it
    NOT_APPLIED = "not_applied"  # accepted, never applied, by every purpose tried
    REJECTED = "rejected"  # no purpose was accepted


@dataclass(frozen=True, slots=True)
class LimitResult:
    """``attempts``: (purpose, outcome) in the order tried; ``purpose``: the one that holds."""

    status: LimitStatus
    limit: float
    unit: Unit
    purpose: Purpose | None
    verified_by: str | None
    attempts: tuple[tuple[Purpose, str], ...]

    @property
    def applied(self) -> bool:
        return self.status is LimitStatus.APPLIED


def allowed_units(configured: str | None) -> set[Unit]:
    """The units of ``ChargingScheduleAllowedChargingRateUnit``, spelt properly ("Current",
    "Power") or not ("A", "W"); both when the charger does not say."""
    units: set[Unit] = set()
    for part in (configured or "").replace(";", ",").split(","):
        word = part.strip().lower()
        if word in ("current", "a", "amps", "ampere"):
            units.add("A")
        elif word in ("power", "w", "watts", "watt"):
            units.add("W")
    return units or {"A", "W"}


def convert(value: float, given: Unit, wanted: Unit, phases: int, voltage_v: float) -> float:
    if given == wanted:
        return value
    factor = phases * voltage_v
    return value * factor if wanted == "W" else value / factor


def one_decimal(value: float) -> float:
    """A profile limit takes at most one decimal."""
    return float(round(max(value, 0.0), 1))


def purpose_order(
    options: ChargerOptions, preferred: Purpose | None, in_transaction: bool
) -> list[Purpose]:
    order = list(options.purposes)
    if preferred in order:
        order.remove(preferred)
        order.insert(0, preferred)
    return [p for p in order if p != "TxProfile" or in_transaction]


def profile_id(purpose: Purpose, connector_id: int) -> int:
    base = _PROFILE_BASE[purpose]
    return base if purpose == "ChargePointMaxProfile" else base + connector_id


def charging_profile(
    purpose: Purpose,
    connector_id: int,
    limit: float,
    unit: Unit,
    stack_level: int,
    transaction_id: int | None,
    number_phases: int | None = None,
) -> dict[str, Any]:
    """A Relative profile with one period from now on (snake_case, as the library sends)."""
    period: dict[str, Any] = {"start_period": 0, "limit": one_decimal(limit)}
    if number_phases is not None:
        period["number_phases"] = number_phases
    profile: dict[str, Any] = {
        "charging_profile_id": profile_id(purpose, connector_id),
        "stack_level": stack_level,
        "charging_profile_purpose": purpose,
        "charging_profile_kind": "Relative",
        "charging_schedule": {"charging_rate_unit": unit, "charging_schedule_period": [period]},
    }
    if purpose == "TxProfile":
        profile["transaction_id"] = transaction_id
    return profile


def applies(offered: float, target: float, ceiling: float | None) -> bool:
    """Whether an offered value shows ``target`` applied; at ``ceiling`` (the charger's own
    maximum) any higher target counts as applied."""
    tolerance = max(0.5, 0.03 * target)
    expected = target if ceiling is None else min(target, ceiling)
    return abs(offered - expected) <= max(tolerance, 0.03 * expected)


def composite_limit(answer: Any) -> tuple[float, Unit] | None:
    """The limit now of a GetCompositeSchedule answer, if it gives one."""
    if getattr(answer, "status", None) != "Accepted":
        return None
    schedule = getattr(answer, "charging_schedule", None)
    if not isinstance(schedule, dict):
        return None
    unit = schedule.get("charging_rate_unit")
    periods: Sequence[Any] = schedule.get("charging_schedule_period") or []
    current = [p for p in periods if isinstance(p, dict) and float(p.get("start_period", 0)) <= 0]
    if unit not in ("A", "W") or not current:
        return None
    return float(current[-1]["limit"]), unit
