"""When the car is away and how much it drives: the plug-in patterns.

- ``commuter``: away on weekdays from 07:30 to 18:00.
- ``home-office``: away on two weekdays (Tuesday and Thursday) from 07:30 to 18:00.
- ``stochastic``: departures, trip lengths and energies drawn from a seeded generator.
- ``home-day``: at home all day; out from 19:00 to 21:00 every evening.
Everything between trips is a plug-in session.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np

PATTERNS = ("commuter", "home-office", "stochastic", "home-day")


@dataclass(frozen=True, slots=True)
class Trip:
    leave: datetime  # UTC
    back: datetime
    energy_wh: float


def _at(day: date, clock: time, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, clock, tzinfo=tz).astimezone(ZoneInfo("UTC"))


def trips(pattern: str, start: datetime, end: datetime, tz: str, seed: int = 7) -> list[Trip]:
    """The trips of ``pattern`` between ``start`` and ``end``."""
    if pattern not in PATTERNS:
        raise ValueError(f"unknown pattern {pattern!r}; choose one of {', '.join(PATTERNS)}")
    zone = ZoneInfo(tz)
    rng = np.random.default_rng(seed)
    out: list[Trip] = []
    day = start.astimezone(zone).date()
    last = end.astimezone(zone).date()
    while day <= last:
        wd = day.weekday()
        if pattern == "commuter" and wd < 5:
            out.append(Trip(_at(day, time(7, 30), zone), _at(day, time(18), zone), 10_000.0))
        elif pattern == "home-office" and wd in (1, 3):
            out.append(Trip(_at(day, time(7, 30), zone), _at(day, time(18), zone), 14_000.0))
        elif pattern == "home-day":
            out.append(Trip(_at(day, time(19), zone), _at(day, time(21), zone), 8_000.0))
        elif pattern == "stochastic" and rng.random() < 0.7:
            leave_h = float(np.clip(rng.normal(8.5, 1.5), 5.0, 15.0))
            hours = float(np.clip(rng.lognormal(np.log(6.0), 0.5), 1.0, 20.0 - leave_h))
            energy = float(np.clip(rng.normal(12_000.0, 5_000.0), 2_000.0, 30_000.0))
            leave = _at(day, time(0), zone) + timedelta(hours=leave_h)
            out.append(Trip(leave, leave + timedelta(hours=hours), energy))
        day += timedelta(days=1)
    return [t for t in out if t.leave >= start and t.back <= end]
