"""Time series per (device, quantity): raw samples, their rollups, history and retention.

A sample is keyed by its series and its time in milliseconds, so writing it again (a replay
after a crash) changes nothing: the first value written for a time stays. Rollups at 1 minute,
15 minutes and 1 day (count, sum, min, max, last per bucket) are kept by triggers as samples
are inserted (``schema.py``), and each level is pruned at its own age. Buckets start at
multiples of their width since the epoch, so days are UTC days.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from surplus.domain.errors import StoreError
from surplus.store.db import Database
from surplus.store.schema import LEVELS_S
from surplus.store.timestamps import from_ms, to_ms

RAW = 0  # the level of raw samples, at poll resolution

_MS = timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class Retention:
    """How long each level is kept; ``None`` keeps it forever.

    A coarser level is kept at least as long as a finer one, so the rollups of every raw
    sample still stored are there too.
    """

    raw: timedelta | None = timedelta(days=7)
    minute: timedelta | None = timedelta(days=35)
    quarter_hour: timedelta | None = timedelta(days=3 * 365)
    day: timedelta | None = None

    def __post_init__(self) -> None:
        kept = [keep for keep in self.by_level().values() if keep is not None]
        if any(keep <= timedelta(0) for keep in kept):
            raise ValueError(f"retention must be positive: {self}")
        forever = [keep is None for keep in self.by_level().values()]
        if kept != sorted(kept) or forever != sorted(forever):
            raise ValueError(f"retention must not shrink from a finer to a coarser level: {self}")

    def by_level(self) -> dict[int, timedelta | None]:
        """Retention per level: ``RAW`` and the rollup widths in seconds."""
        keeps = (self.raw, self.minute, self.quarter_hour, self.day)
        return dict(zip((RAW, *LEVELS_S), keeps, strict=True))


@dataclass(frozen=True, slots=True)
class Point:
    """A sample to write, with the unit of its series (``"W"``, ``"Wh"``, ``"%"``)."""

    device: str
    quantity: str
    unit: str
    at: datetime
    value: float

    def __post_init__(self) -> None:
        to_ms(self.at)  # refuses a naive time
        if not (self.device and self.quantity and self.unit):
            raise ValueError(f"device, quantity and unit must not be empty: {self}")
        if not math.isfinite(self.value):
            raise ValueError(f"{self.device}/{self.quantity} at {self.at}: value {self.value}")


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    device: str
    quantity: str
    unit: str


@dataclass(frozen=True, slots=True)
class Sample:
    at: datetime
    value: float


@dataclass(frozen=True, slots=True)
class Bucket:
    """One step of history: the samples in ``[start, start + step)``."""

    start: datetime
    mean: float
    min: float
    max: float
    last: float  # the value of the newest sample
    count: int


def level_for(step_s: int) -> int:
    """The level history reads for ``step_s``: ``RAW`` under a minute, else the coarsest
    rollup whose width divides the step (so its buckets never straddle two steps).
    """
    if step_s < 1:
        raise ValueError(f"step_s must be at least 1, not {step_s}")
    if step_s < 60:
        return RAW
    if step_s % 60:
        raise ValueError(f"step_s must be under 60 or whole minutes, not {step_s}")
    return max(level for level in LEVELS_S if step_s % level == 0)


# Each source yields rows shaped like a rollup bucket; a raw sample is a bucket of one.
_RAW_ROWS = """
    SELECT ts_ms AS at_ms, 1 AS n, value AS total, value AS low, value AS high,
        ts_ms AS last_ms, value AS last_value
    FROM sample WHERE series_id = :series AND ts_ms >= :lo AND ts_ms < :hi
"""
_ROLLUP_ROWS = """
    SELECT bucket_ms AS at_ms, n, total, low, high, last_ms, last_value
    FROM rollup
    WHERE series_id = :series AND step_s = :level AND bucket_ms >= :lo AND bucket_ms < :hi
"""
_HISTORY = """
SELECT start_ms, sum(total) / sum(n), min(low), max(high), max(bucket_last), sum(n)
FROM (
    SELECT start_ms, n, total, low, high,
        first_value(last_value) OVER (PARTITION BY start_ms ORDER BY last_ms DESC) AS bucket_last
    FROM (
        SELECT at_ms - ((at_ms % :step) + :step) % :step AS start_ms,
            n, total, low, high, last_ms, last_value
        FROM ({rows})
    )
)
GROUP BY start_ms
ORDER BY start_ms
"""


class Series:
    """All series of one database."""

    def __init__(self, db: Database, retention: Retention | None = None) -> None:
        self._db = db
        self.retention = retention or Retention()
        # (device, quantity) -> (id, unit), for the series seen so far
        self._known: dict[tuple[str, str], tuple[int, str]] = {}

    @property
    def path(self) -> Path:
        return self._db.path

    def catalogue(self) -> list[SeriesInfo]:
        """Every series, ordered by device and quantity."""
        with self._db.read() as connection:
            rows = connection.execute(
                "SELECT device, quantity, unit FROM series ORDER BY device, quantity"
            ).fetchall()
        return [SeriesInfo(*row) for row in rows]

    def unit(self, device: str, quantity: str) -> str | None:
        """The unit of a series, ``None`` if it has never been written."""
        found = self._find(device, quantity)
        return None if found is None else found[1]

    def write(self, points: Iterable[Point]) -> int:
        """Store ``points`` in one transaction; returns how many were new (not replays).

        A point older than what ``prune`` already removed is ignored: the rollups hold it.
        """
        known = dict(self._known)
        with self._db.write() as connection:
            rows = [
                (self._id_for_writing(connection, known, point), to_ms(point.at), point.value)
                for point in points
            ]
            written = connection.executemany(
                "INSERT OR IGNORE INTO sample (series_id, ts_ms, value) VALUES (?, ?, ?)", rows
            ).rowcount
        self._known = known  # only what was committed
        return written

    def samples(self, device: str, quantity: str, start: datetime, end: datetime) -> list[Sample]:
        """The raw samples in ``[start, end)``, oldest first."""
        lo, hi = to_ms(start, "start"), to_ms(end, "end")
        found = self._find(device, quantity)
        if found is None:
            return []
        with self._db.read() as connection:
            rows = connection.execute(
                "SELECT ts_ms, value FROM sample WHERE series_id = ? AND ts_ms >= ? AND ts_ms < ?"
                " ORDER BY ts_ms",
                (found[0], lo, hi),
            ).fetchall()
        return [Sample(from_ms(ts), value) for ts, value in rows]

    def history(
        self, device: str, quantity: str, start: datetime, end: datetime, step_s: int
    ) -> list[Bucket]:
        """Buckets of ``step_s`` seconds covering ``[start, end)``, oldest first.

        Read from the level ``level_for(step_s)``. Buckets are whole (the first may begin
        before ``start``, the last end after ``end``); a bucket without samples, or whose
        level has been pruned, is absent. ``mean`` is the mean of the samples.
        """
        level = level_for(step_s)
        step_ms = step_s * 1000
        lo = to_ms(start, "start") // step_ms * step_ms
        hi = -(-to_ms(end, "end") // step_ms) * step_ms
        found = self._find(device, quantity)
        if found is None:
            return []
        sql = _HISTORY.format(rows=_RAW_ROWS if level == RAW else _ROLLUP_ROWS)
        parameters = {"series": found[0], "level": level, "lo": lo, "hi": hi, "step": step_ms}
        with self._db.read() as connection:
            rows = connection.execute(sql, parameters).fetchall()
        return [
            Bucket(from_ms(at), mean, low, high, last, n) for at, mean, low, high, last, n in rows
        ]

    def latest(self, device: str, quantity: str) -> Sample | None:
        """The newest sample of a series, even once its raw samples are pruned."""
        found = self._find(device, quantity)
        if found is None:
            return None
        # the newest daily bucket holds the newest sample, and days are kept longest
        with self._db.read() as connection:
            row = connection.execute(
                "SELECT last_ms, last_value FROM rollup WHERE series_id = ? AND step_s = ?"
                " ORDER BY bucket_ms DESC LIMIT 1",
                (found[0], LEVELS_S[-1]),
            ).fetchone()
        return None if row is None else Sample(from_ms(row[0]), row[1])

    def prune(self, now: datetime) -> int:
        """Delete what each level keeps no longer at ``now``; returns the rows deleted.

        A sample or bucket goes when its time (the bucket's start) is older than
        ``now - retention``. ``now`` must be the real time: samples older than the raw
        horizon are ignored from then on.
        """
        now_ms = to_ms(now, "now")
        deleted = 0
        with self._db.write() as connection:
            ids = [row[0] for row in connection.execute("SELECT id FROM series")]
            for level, keep in self.retention.by_level().items():
                if keep is None:
                    continue
                horizon = now_ms - keep // _MS
                # per series, so each delete is a range of the primary key
                if level == RAW:
                    deleted += connection.executemany(
                        "DELETE FROM sample WHERE series_id = ? AND ts_ms < ?",
                        [(series, horizon) for series in ids],
                    ).rowcount
                    connection.execute(
                        "UPDATE series"
                        " SET pruned_before_ms = max(coalesce(pruned_before_ms, ?1), ?1)",
                        (horizon,),
                    )
                else:
                    deleted += connection.executemany(
                        "DELETE FROM rollup WHERE series_id = ? AND step_s = ? AND bucket_ms < ?",
                        [(series, level, horizon) for series in ids],
                    ).rowcount
        return deleted

    def _find(self, device: str, quantity: str) -> tuple[int, str] | None:
        found = self._known.get((device, quantity))
        if found is None:
            with self._db.read() as connection:
                row = connection.execute(
                    "SELECT id, unit FROM series WHERE device = ? AND quantity = ?",
                    (device, quantity),
                ).fetchone()
            if row is not None:
                found = self._known[device, quantity] = (row[0], row[1])
        return found

    def _id_for_writing(
        self,
        connection: sqlite3.Connection,
        known: dict[tuple[str, str], tuple[int, str]],
        point: Point,
    ) -> int:
        key = (point.device, point.quantity)
        if key not in known:
            connection.execute(
                "INSERT INTO series (device, quantity, unit) VALUES (?, ?, ?)"
                " ON CONFLICT (device, quantity) DO NOTHING",
                (*key, point.unit),
            )
            known[key] = connection.execute(
                "SELECT id, unit FROM series WHERE device = ? AND quantity = ?", key
            ).fetchone()
        series, unit = known[key]
        if unit != point.unit:
            raise StoreError(
                self._db.path,
                f"series {point.device}/{point.quantity} is recorded in {unit!r}, "
                f"not {point.unit!r}",
            )
        return series
