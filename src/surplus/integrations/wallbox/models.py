"""What the Wallbox cloud answers, read leniently: a charger's status and its sessions.

Units are normalised here: ``charging_power`` (kW) becomes W, ``added_energy`` (kWh) Wh,
a session's ``energy`` (Wh) kWh; ``max_available_power`` is taken for what it is, amperes.
A field that is missing, null or of the wrong type reads as None.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from surplus.integrations.wallbox.statuses import CAR_CONNECTED, StatusGroup, group_of, label_of

__all__ = ["ChargingSessionRecord", "WallboxStatus", "parse_session", "parse_status"]


@dataclass(frozen=True, slots=True)
class WallboxStatus:
    """One charger as ``chargers/status/{id}`` described it at ``read_at``."""

    charger_id: int
    status_id: int | None
    name: str | None
    charging_power_w: float | None
    added_energy_wh: float | None
    max_charging_current_a: int | None
    max_available_current_a: int | None
    locked: bool | None
    last_sync: datetime | None
    read_at: datetime

    @property
    def group(self) -> StatusGroup:
        return group_of(self.status_id)

    @property
    def label(self) -> str:
        return label_of(self.status_id)

    @property
    def car_connected(self) -> bool:
        return self.status_id in CAR_CONNECTED

    @property
    def offline(self) -> bool:
        """The charger lost the cloud or is updating: what it says is not current."""
        return self.group in (StatusGroup.DISCONNECTED, StatusGroup.UPDATING)


@dataclass(frozen=True, slots=True)
class ChargingSessionRecord:
    """One charging session from the history; energy in kWh."""

    id: str
    charger_id: int | None
    start: datetime
    end: datetime | None
    energy_kwh: float
    charging_time_s: float | None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _whole(value: Any) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


def _sync_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def parse_status(charger_id: int, body: Any, read_at: datetime) -> WallboxStatus:
    """The status in a ``chargers/status/{id}`` answer; ``ValueError`` when it is not one."""
    if not isinstance(body, dict):
        raise ValueError("the status is not a JSON object")
    config = body.get("config_data")
    config = config if isinstance(config, dict) else {}
    power_kw = _number(body.get("charging_power"))
    energy_kwh = _number(body.get("added_energy"))
    locked = _whole(config.get("locked"))
    available = _whole(config.get("max_available_current"))
    return WallboxStatus(
        charger_id=charger_id,
        status_id=_whole(body.get("status_id")),
        name=body.get("name") if isinstance(body.get("name"), str) else None,
        charging_power_w=None if power_kw is None else power_kw * 1000,
        added_energy_wh=None if energy_kwh is None else energy_kwh * 1000,
        max_charging_current_a=_whole(config.get("max_charging_current")),
        max_available_current_a=(
            available if available is not None else _whole(body.get("max_available_power"))
        ),
        locked=None if locked is None else bool(locked),
        last_sync=_sync_time(body.get("last_sync")),
        read_at=read_at,
    )


def parse_session(item: Any) -> ChargingSessionRecord | None:
    """One JSON:API session item; None when it is not one."""
    attrs = item.get("attributes") if isinstance(item, dict) else None
    if not isinstance(attrs, dict):
        return None
    start, energy_wh = _number(attrs.get("start_time")), _number(attrs.get("energy"))
    if start is None or energy_wh is None:
        return None
    end = _number(attrs.get("end_time"))
    return ChargingSessionRecord(
        id=str(attrs.get("id") or item.get("id")),
        charger_id=_whole(attrs.get("charger_id")),
        start=datetime.fromtimestamp(start, UTC),
        end=None if end is None else datetime.fromtimestamp(end, UTC),
        energy_kwh=energy_wh / 1000,
        charging_time_s=_number(attrs.get("charging_time")),
    )
