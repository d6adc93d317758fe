"""Charge HQ's push payload: validated, then turned into a site reading and its flags.

    {"apiKey": "…", "tsms": 1718000000000,
     "siteMeters": {"production_kw": 4.2, "net_import_kw": -2.9, "consumption_kw": 1.3,
                    "imported_kwh": 10234.5, "exported_kwh": 8123.4,
                    "battery_discharge_kw": 0.0, "battery_soc": 0.55, "battery_energy_kwh": 7.4}}

Units and signs are Charge HQ's: kW and kWh, ``net_import_kw`` negative on export,
``battery_discharge_kw`` negative while charging, ``battery_soc`` a fraction (0.5 = 50 %).
Unknown keys are ignored, so a script written for Charge HQ works unchanged.
``parse_payload`` raises a ``PayloadError`` naming the field; ``to_reading`` gives the
``PushedReading`` (W and %, the domain's signs, which are Charge HQ's) and its ``Flag``s:

    balance           consumption differs from production + net import + battery discharge by
                      more than 0.05 kW; the reading keeps the values as sent
    soc_percent       battery_soc above 1, so likely a percentage: the reading takes
                      battery_soc / 100 as the fraction (1.0 itself is a full battery)
    watts             a power above 100 kW, likely W sent in a kW field; kept as sent
    future_timestamp  tsms more than 60 s ahead of the receive time
    old_timestamp     tsms more than 15 min behind it
    error             the source reported an error instead of its meters: no reading

Time: a reading is stamped with ``tsms`` when it is given and neither future nor old, else
with the receive time.

Stricter than Charge HQ, which takes any subset of the fields: surplus steers by the grid
power, so the meters need ``net_import_kw`` or ``consumption_kw`` (to derive it from); any
battery field needs ``battery_soc``; and a payload needs ``siteMeters`` or ``error``. A
missing ``consumption_kw`` is derived from the balance, a missing ``production_kw`` is 0.
The battery's capacity is ``battery_energy_kwh / soc`` when both are sent (and the battery is
not nearly empty), else ``default_capacity_wh``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from surplus.domain.readings import BatteryState, MeterReading
from surplus.store.timestamps import from_ms

__all__ = [
    "BALANCE_TOLERANCE_KW",
    "DEFAULT_CAPACITY_WH",
    "Flag",
    "PayloadError",
    "PushPayload",
    "PushedReading",
    "SiteMeters",
    "parse_payload",
    "to_reading",
]

BALANCE_TOLERANCE_KW = 0.05
WATTS_ABOVE_KW = 100.0  # no home reaches this; a W value of an ordinary load does
FUTURE_AFTER = timedelta(seconds=60)
OLD_AFTER = timedelta(minutes=15)
DEFAULT_CAPACITY_WH = 13_500.0  # a Powerwall 2's usable energy
# below this state of charge, energy / soc magnifies the rounding of both too much
_MIN_SOC_FOR_CAPACITY = 0.05
_MAX_TSMS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last a datetime holds
_MAX_ERROR_CHARS = 1_000
_MISSING = "push_missing"  # the type of the errors raised here, their ``field`` in the ctx


class Flag(StrEnum):
    """Something odd about an accepted push; the answer lists them as ``warnings``."""

    BALANCE = "balance"
    SOC_PERCENT = "soc_percent"
    WATTS = "watts"
    FUTURE_TIMESTAMP = "future_timestamp"
    OLD_TIMESTAMP = "old_timestamp"
    ERROR = "error"


class PayloadError(ValueError):
    """A body that is not a push payload; ``field`` is its path (``siteMeters.battery_soc``),
    None for the body as a whole. The message never quotes the body."""

    def __init__(self, field: str | None, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


_WIRE = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False, hide_input_in_errors=True)


class SiteMeters(BaseModel):
    model_config = _WIRE

    production_kw: float | None = None
    net_import_kw: float | None = None  # negative on export
    consumption_kw: float | None = None
    imported_kwh: float | None = None
    exported_kwh: float | None = None
    battery_discharge_kw: float | None = None  # negative while charging
    battery_soc: Annotated[float, Field(ge=0.0, le=100.0)] | None = None  # a fraction
    battery_energy_kwh: float | None = None  # stored now

    def has_battery(self) -> bool:
        return any(
            v is not None
            for v in (self.battery_discharge_kw, self.battery_soc, self.battery_energy_kwh)
        )


class PushPayload(BaseModel):
    """One push. The key (``apiKey``, or the legacy ``siteId``) is never in its repr."""

    model_config = ConfigDict(**_WIRE, populate_by_name=True)

    api_key: str | None = Field(default=None, alias="apiKey", repr=False)
    site_id: str | None = Field(default=None, alias="siteId", repr=False)
    tsms: Annotated[int, Field(ge=0, le=_MAX_TSMS)] | None = None
    error: Annotated[str, Field(max_length=_MAX_ERROR_CHARS)] | None = None
    site_meters: SiteMeters | None = Field(default=None, alias="siteMeters")

    @model_validator(mode="after")
    def _usable(self) -> PushPayload:
        meters = self.site_meters
        if self.error is not None:
            return self
        if meters is None:
            raise _missing("siteMeters", "missing; send the meters, or error if the source failed")
        if meters.net_import_kw is None and meters.consumption_kw is None:
            raise _missing(
                "siteMeters.net_import_kw",
                "missing; surplus needs the grid power (or consumption_kw to derive it)",
            )
        if meters.has_battery() and meters.battery_soc is None:
            raise _missing("siteMeters.battery_soc", "missing; needed with any battery field")
        return self

    def redacted(self) -> dict[str, Any]:
        """The fields that were sent, as JSON, without the key: what is stored."""
        return self.model_dump(
            mode="json", by_alias=True, exclude_unset=True, exclude={"api_key", "site_id"}
        )


def _missing(field: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(_MISSING, message, {"field": field})


@dataclass(frozen=True, slots=True)
class PushedReading:
    """A push as a site reading (a ``runtime.devices.SiteReading``); every part stamped ``at``."""

    grid: MeterReading  # + import, - export
    pv: MeterReading
    load: MeterReading
    battery: BatteryState | None  # None: no battery field was pushed
    at: datetime


def parse_payload(data: object) -> PushPayload:
    """The payload in a decoded JSON body, or a ``PayloadError`` naming the first bad field."""
    if not isinstance(data, dict):
        raise PayloadError(None, "the body must be a JSON object")
    try:
        return PushPayload.model_validate(data)
    except ValidationError as err:
        first = err.errors(include_url=False, include_input=False)[0]
        if first["type"] == _MISSING:
            field = str(first.get("ctx", {}).get("field"))
        else:
            field = ".".join(str(part) for part in first["loc"])
        raise PayloadError(field or None, first["msg"]) from None


def to_reading(
    payload: PushPayload,
    received_at: datetime,
    *,
    default_capacity_wh: float = DEFAULT_CAPACITY_WH,
) -> tuple[PushedReading | None, frozenset[Flag]]:
    """The reading a payload gives (None for an error push) and its flags."""
    flags: set[Flag] = set()
    at = received_at
    if payload.tsms is not None:
        sent = from_ms(payload.tsms)
        if sent - received_at > FUTURE_AFTER:
            flags.add(Flag.FUTURE_TIMESTAMP)
        elif received_at - sent > OLD_AFTER:
            flags.add(Flag.OLD_TIMESTAMP)
        else:
            at = sent
    meters = payload.site_meters
    if payload.error is not None or meters is None:
        return None, frozenset({*flags, Flag.ERROR})

    production_kw = meters.production_kw or 0.0
    battery_kw = meters.battery_discharge_kw or 0.0
    match meters.net_import_kw, meters.consumption_kw:
        case float(grid_kw), None:
            load_kw = production_kw + grid_kw + battery_kw
        case None, float(load_kw):
            grid_kw = load_kw - production_kw - battery_kw
        case float(grid_kw), float(load_kw):
            if abs(load_kw - (production_kw + grid_kw + battery_kw)) > BALANCE_TOLERANCE_KW:
                flags.add(Flag.BALANCE)
        case _:
            raise ValueError("siteMeters needs net_import_kw or consumption_kw")
    powers = (meters.production_kw, meters.net_import_kw, meters.consumption_kw, battery_kw)
    if any(p is not None and abs(p) > WATTS_ABOVE_KW for p in powers):
        flags.add(Flag.WATTS)

    battery = None
    if meters.has_battery():
        fraction = meters.battery_soc or 0.0
        if fraction > 1.0:
            flags.add(Flag.SOC_PERCENT)
            fraction /= 100.0
        capacity_wh = default_capacity_wh
        energy_kwh = meters.battery_energy_kwh
        if energy_kwh is not None and energy_kwh > 0 and fraction >= _MIN_SOC_FOR_CAPACITY:
            capacity_wh = energy_kwh * 1000.0 / fraction
        battery = BatteryState(
            soc_pct=fraction * 100.0,
            power_w=battery_kw * 1000.0,
            capacity_wh=capacity_wh,
            at=at,
        )
    reading = PushedReading(
        grid=MeterReading(grid_kw * 1000.0, at),
        pv=MeterReading(production_kw * 1000.0, at),
        load=MeterReading(load_kw * 1000.0, at),
        battery=battery,
        at=at,
    )
    return reading, frozenset(flags)
