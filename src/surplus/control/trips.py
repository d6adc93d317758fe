"""The car's habits, learned from what the engine sees: when it leaves, when it comes back
and how much energy each absence used.

Last week predicts the coming days: a trip that began on some weekday and hour is expected
again a week later, with the same length and energy. The planner plans those departures
too, so it can fill the car on a cheap or sunny day for the days ahead instead of buying
every night. Nothing is predicted until a whole week has been watched.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

WEEK = timedelta(days=7)
KEEP = timedelta(days=8)


@dataclass(frozen=True, slots=True)
class Trip:
    """An absence of the car: unplugged at ``left``, back at ``back``."""

    left: datetime
    back: datetime
    used_wh: float  # energy on leaving minus energy on return


@dataclass(frozen=True, slots=True)
class TripLog:
    """The trips of the last days, and the one under way."""

    trips: tuple[Trip, ...] = ()
    watched_since: datetime | None = None
    away_since: datetime | None = None  # unplugged since (a trip under way)
    left_with_wh: float | None = None  # energy in the car when it left
    last_wh: float | None = None  # last energy seen while plugged in
    topped_up: bool = False  # a top-up for later trips was bought since the car came back

    def observe(self, plugged: bool, energy_wh: float | None, now: datetime) -> TripLog:
        """The log after one more look at the loadpoint."""
        watched = self.watched_since or now
        if not plugged:
            if self.away_since is None:
                return replace(
                    self, watched_since=watched, away_since=now, left_with_wh=self.last_wh
                )
            return self if self.watched_since else replace(self, watched_since=watched)
        last = energy_wh if energy_wh is not None else self.last_wh
        if self.away_since is None:
            return replace(self, watched_since=watched, last_wh=last)
        trips = tuple(t for t in self.trips if now - t.left <= KEEP)
        if self.left_with_wh is not None and energy_wh is not None:
            trips += (Trip(self.away_since, now, max(0.0, self.left_with_wh - energy_wh)),)
        return TripLog(trips, watched, None, None, last, False)

    def expected(self, start: datetime, end: datetime) -> list[Trip]:
        """Trips expected to begin in [start, end): last week's, one week on. None until a
        whole week before ``start`` has been watched."""
        if self.watched_since is None or start - WEEK < self.watched_since:
            return []
        ahead = [Trip(t.left + WEEK, t.back + WEEK, t.used_wh) for t in self.trips]
        return sorted((t for t in ahead if start <= t.left < end), key=lambda t: t.left)
