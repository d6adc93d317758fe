"""The owner's fixed time-of-use tariff, the config's ``[tariff]`` table, priced into the
engine's 15-minute ``Rates``.

A base price holds outside every period; each ``[[tariff.periods]]`` entry overrides it from
a local wall-clock time to another, on some days of the week. A period whose ``from`` is
later than its ``to`` runs over midnight, and its ``days`` are the days it starts on: a
Friday night 22:00-06:00 ends on Saturday morning. Slots are priced by the local time of
their start in the tariff's zone, so a 23- or 25-hour day has 92 or 100 slots.
"""

from __future__ import annotations

import math
import os
import re
from datetime import UTC, datetime
from typing import Annotated, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from numpy.typing import NDArray
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from surplus.domain.tariff import SLOT, SLOT_S, SLOTS_PER_DAY, Rates, floor_slot

__all__ = ["Day", "TariffPeriod", "TimeOfUseTariff"]

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = get_args(Day)
SLOT_MIN = SLOT_S // 60
SLOTS_PER_WEEK = 7 * SLOTS_PER_DAY

_HHMM = re.compile(r"(\d{2}):(\d{2})")


def _wall_clock(value: object) -> int:
    """A local wall-clock time "HH:MM" on a slot boundary, as minutes after midnight."""
    found = _HHMM.fullmatch(value) if isinstance(value, str) else None
    if found is None:
        raise PydanticCustomError("wall_clock", 'must be a time "HH:MM", such as "06:00"')
    minutes = int(found[1]) * 60 + int(found[2])
    if int(found[2]) >= 60 or minutes > 24 * 60:
        raise PydanticCustomError("wall_clock", "must be a time from 00:00 to 24:00")
    if minutes % SLOT_MIN:
        raise PydanticCustomError(
            "wall_clock",
            "must be on a quarter hour (:00, :15, :30 or :45): prices change per 15-minute slot",
        )
    return minutes


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


WallClock = Annotated[int, PlainValidator(_wall_clock), PlainSerializer(_hhmm)]


def _zone(value: object) -> ZoneInfo:
    if isinstance(value, ZoneInfo):
        return value
    if not isinstance(value, str):
        raise PydanticCustomError("time_zone", "must be an IANA time zone name, such as UTC")
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise PydanticCustomError(
            "time_zone", "unknown time zone; give an IANA name such as Europe/Amsterdam"
        ) from None


def _local_zone() -> ZoneInfo:
    """The machine's time zone: ``$TZ`` when it names one, else ``/etc/localtime``, else UTC.

    Not ``datetime.now().astimezone()``: that gives today's fixed offset, which is wrong for
    the other half of the year.
    """
    link = os.path.realpath("/etc/localtime")
    keys = [os.environ.get("TZ", "").removeprefix(":"), link.partition("/zoneinfo/")[2]]
    for key in filter(None, keys):
        try:
            return ZoneInfo(key)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    try:
        with open("/etc/localtime", "rb") as file:
            return ZoneInfo.from_file(file, key="localtime")
    except (OSError, ValueError):
        return ZoneInfo("UTC")


Zone = Annotated[ZoneInfo, PlainValidator(_zone), PlainSerializer(str)]
Price = Annotated[float, Field(allow_inf_nan=False)]  # negative allowed: dynamic prices go there


class TariffPeriod(BaseModel):
    """``[[tariff.periods]]``: a price from ``from`` to ``to`` (local time) on ``days``."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    from_: WallClock = Field(alias="from")  # minutes after local midnight, inclusive
    to: WallClock  # exclusive; 24 * 60 is midnight at the end of the day
    import_eur_per_kwh: Price
    export_eur_per_kwh: Price | None = None  # None: the tariff's export price
    days: tuple[Day, ...] = DAYS  # the days the period starts on

    @field_validator("from_")
    @classmethod
    def _starts_within_the_day(cls, value: int) -> int:
        if value == 24 * 60:
            raise PydanticCustomError("wall_clock", "24:00 only ends a period; start at 00:00")
        return value

    @field_validator("to")
    @classmethod
    def _differs_from_from(cls, value: int, info: ValidationInfo) -> int:
        if value == info.data.get("from_"):
            raise PydanticCustomError(
                "wall_clock", 'must differ from "from"; a whole day is 00:00 to 24:00'
            )
        return value

    @field_validator("days")
    @classmethod
    def _some_day(cls, value: tuple[Day, ...]) -> tuple[Day, ...]:
        if not value:
            raise PydanticCustomError(
                "days_empty", "give at least one day, or leave days out for every day"
            )
        return value

    def week_slots(self) -> NDArray[np.bool_]:
        """Which 15-minute slots of the local week (Monday 00:00 first) the period covers."""
        covered = np.zeros(SLOTS_PER_WEEK, dtype=bool)
        first, end = self.from_ // SLOT_MIN, self.to // SLOT_MIN
        for day in {DAYS.index(d) for d in self.days}:
            start = day * SLOTS_PER_DAY
            if first < end:
                covered[start + first : start + end] = True
            else:
                covered[start + first : start + SLOTS_PER_DAY] = True
                after_midnight = (day + 1) % 7 * SLOTS_PER_DAY
                covered[after_midnight : after_midnight + end] = True
        return covered


class TimeOfUseTariff(BaseModel):
    """``[tariff]``: a base price, and periods of the week at other prices."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    timezone: Zone = Field(default_factory=_local_zone)
    import_eur_per_kwh: Price  # outside every period
    export_eur_per_kwh: Price = 0.0
    periods: list[TariffPeriod] = Field(default_factory=list)

    @model_validator(mode="after")
    def _no_overlap(self) -> TimeOfUseTariff:
        slots = [period.week_slots() for period in self.periods]
        details: list[InitErrorDetails] = []
        for j, later in enumerate(slots):
            for i, earlier in enumerate(slots[:j]):
                both = np.flatnonzero(earlier & later)
                if len(both):
                    day, slot = divmod(int(both[0]), SLOTS_PER_DAY)
                    message = (
                        f"overlaps periods[{i}]: both cover {DAYS[day]} {_hhmm(slot * SLOT_MIN)}"
                    )
                    error = PydanticCustomError("period_overlap", message)
                    details.append({"type": error, "loc": ("periods", j), "input": None})
                    break
        if details:
            # a ValidationError, not a ValueError: it carries each period's own key path
            raise ValidationError.from_exception_data(type(self).__name__, details)
        return self

    def known_rates(self, now: datetime, horizon_h: float = 36.0) -> Rates:
        """The prices of the slots from the one holding ``now`` (aware) for ``horizon_h``
        hours, each priced by the local time its slot starts at: by the period covering that
        time (periods never overlap), else by the base price."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        if not (math.isfinite(horizon_h) and horizon_h > 0):
            raise ValueError("horizon_h must be a positive number of hours")
        start = floor_slot(now.astimezone(UTC))
        count = math.ceil(horizon_h * 3600 / SLOT_S)
        imp, exp = self._week_prices()
        week_slot = np.array([self._week_slot(start + SLOT * i) for i in range(count)])
        return Rates(start, imp[week_slot], exp[week_slot])

    def _week_prices(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Import and export price per slot of the local week."""
        imp = np.full(SLOTS_PER_WEEK, self.import_eur_per_kwh)
        exp = np.full(SLOTS_PER_WEEK, self.export_eur_per_kwh)
        for period in self.periods:
            covered = period.week_slots()
            imp[covered] = period.import_eur_per_kwh
            if period.export_eur_per_kwh is not None:
                exp[covered] = period.export_eur_per_kwh
        return imp, exp

    def _week_slot(self, at: datetime) -> int:
        local = at.astimezone(self.timezone)
        minute = local.hour * 60 + local.minute
        return local.weekday() * SLOTS_PER_DAY + minute // SLOT_MIN
