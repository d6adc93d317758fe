"""The Wallbox status codes (``status_id`` / ``status``): their labels and groups.

The table is the one Home Assistant and the ``wallbox`` library share; any other code is
``UNKNOWN``. Codes 0 and 163 mean the charger lost the cloud (offline), not "no car".
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["CAR_CONNECTED", "STATUS_CODES", "StatusGroup", "group_of", "label_of"]


class StatusGroup(StrEnum):
    DISCONNECTED = "disconnected"
    ERROR = "error"
    READY = "ready"
    WAITING = "waiting"
    LOCKED = "locked"
    UPDATING = "updating"
    SCHEDULED = "scheduled"
    PAUSED = "paused"
    CHARGING = "charging"
    DISCHARGING = "discharging"
    UNKNOWN = "unknown"


G = StatusGroup
STATUS_CODES: dict[int, tuple[str, StatusGroup]] = {
    0: ("Disconnected", G.DISCONNECTED),
    163: ("Disconnected", G.DISCONNECTED),
    14: ("Error", G.ERROR),
    15: ("Error", G.ERROR),
    161: ("Ready", G.READY),
    162: ("Ready", G.READY),
    164: ("Waiting", G.WAITING),
    165: ("Locked", G.LOCKED),
    209: ("Locked", G.LOCKED),
    210: ("Locked, car connected", G.LOCKED),
    166: ("Updating", G.UPDATING),
    177: ("Scheduled", G.SCHEDULED),
    179: ("Scheduled", G.SCHEDULED),
    178: ("Paused", G.PAUSED),
    182: ("Paused", G.PAUSED),
    180: ("Waiting for car demand", G.WAITING),
    181: ("Waiting for car demand", G.WAITING),
    183: ("Waiting in queue by Power Sharing", G.WAITING),
    184: ("Waiting in queue by Power Sharing", G.WAITING),
    185: ("Waiting in queue by Power Boost", G.WAITING),
    186: ("Waiting in queue by Power Boost", G.WAITING),
    187: ("Waiting: MID failed", G.WAITING),
    188: ("Waiting: MID safety margin exceeded", G.WAITING),
    189: ("Waiting in queue by Eco-Smart", G.WAITING),
    193: ("Charging", G.CHARGING),
    194: ("Charging", G.CHARGING),
    195: ("Charging", G.CHARGING),
    196: ("Discharging", G.DISCHARGING),
}

# the codes that say a car is plugged in (165 "Locked" says nothing about the cable)
CAR_CONNECTED = frozenset(
    code
    for code, (_, group) in STATUS_CODES.items()
    if group in (G.WAITING, G.SCHEDULED, G.PAUSED, G.CHARGING, G.DISCHARGING)
) | {210}


def group_of(code: int | None) -> StatusGroup:
    if code is None:
        return G.UNKNOWN
    return STATUS_CODES.get(code, ("Unknown", G.UNKNOWN))[1]


def label_of(code: int | None) -> str:
    if code is None:
        return "Unknown"
    return STATUS_CODES.get(code, ("Unknown", G.UNKNOWN))[0]
