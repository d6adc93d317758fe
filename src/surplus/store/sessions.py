"""Charging sessions: when a car charged, how much, from where, and at what cost.

A session is open from its start until closed; a loadpoint has at most one open session
(a unique index), so after a restart ``open`` finds the running session and continues it.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from surplus.domain.errors import StoreError
from surplus.store.db import Database
from surplus.store.timestamps import from_ms, to_ms


@dataclass(frozen=True, slots=True)
class EnergySplit:
    """Energy by source, with its cost; sessions and their increments are both one.

    ``sum(splits, EnergySplit())`` totals several.
    """

    solar_wh: float = 0.0
    battery_wh: float = 0.0
    grid_wh: float = 0.0
    cost_eur: float = 0.0  # may be negative: some hours pay for taking energy

    def __post_init__(self) -> None:
        energies = (self.solar_wh, self.battery_wh, self.grid_wh)
        if not all(math.isfinite(wh) and wh >= 0 for wh in energies):
            raise ValueError(f"energies must be finite and not negative: {self}")
        if not math.isfinite(self.cost_eur):
            raise ValueError(f"cost must be finite: {self}")

    @property
    def total_wh(self) -> float:
        return self.solar_wh + self.battery_wh + self.grid_wh

    @property
    def solar_share(self) -> float | None:
        """The share of the energy that came from solar; ``None`` without energy."""
        total = self.total_wh
        return self.solar_wh / total if total > 0 else None

    def __add__(self, other: EnergySplit) -> EnergySplit:
        return EnergySplit(
            self.solar_wh + other.solar_wh,
            self.battery_wh + other.battery_wh,
            self.grid_wh + other.grid_wh,
            self.cost_eur + other.cost_eur,
        )


@dataclass(frozen=True, slots=True)
class Session:
    id: int
    loadpoint: str
    start: datetime
    last_at: datetime  # the latest energy increment (the start before the first)
    end: datetime | None  # None while open
    energy: EnergySplit


_COLUMNS = "id, loadpoint, start_ms, last_ms, end_ms, solar_wh, battery_wh, grid_wh, cost_eur"


class Sessions:
    def __init__(self, db: Database) -> None:
        self._db = db

    def open(self, loadpoint: str, start: datetime) -> Session:
        """The open session of ``loadpoint``, or else a new one from ``start``."""
        start_ms = to_ms(start, "start")
        with self._db.write() as connection:
            row = connection.execute(
                f"SELECT {_COLUMNS} FROM charging_session WHERE loadpoint = ? AND end_ms IS NULL",
                (loadpoint,),
            ).fetchone()
            if row is None:
                row = connection.execute(
                    "INSERT INTO charging_session (loadpoint, start_ms, last_ms) VALUES (?, ?, ?)"
                    f" RETURNING {_COLUMNS}",
                    (loadpoint, start_ms, start_ms),
                ).fetchone()
        return _session(row)

    def current(self, loadpoint: str) -> Session | None:
        """The open session of ``loadpoint``, if there is one."""
        with self._db.read() as connection:
            row = connection.execute(
                f"SELECT {_COLUMNS} FROM charging_session WHERE loadpoint = ? AND end_ms IS NULL",
                (loadpoint,),
            ).fetchone()
        return None if row is None else _session(row)

    def add(self, session_id: int, at: datetime, increment: EnergySplit) -> Session:
        """Add the energy charged up to ``at`` to an open session."""
        at_ms = to_ms(at)
        with self._db.write() as connection:
            self._open_session(connection, session_id)
            row = connection.execute(
                "UPDATE charging_session SET solar_wh = solar_wh + ?, battery_wh = battery_wh + ?,"
                " grid_wh = grid_wh + ?, cost_eur = cost_eur + ?, last_ms = max(last_ms, ?)"
                f" WHERE id = ? RETURNING {_COLUMNS}",
                (
                    increment.solar_wh,
                    increment.battery_wh,
                    increment.grid_wh,
                    increment.cost_eur,
                    at_ms,
                    session_id,
                ),
            ).fetchone()
        return _session(row)

    def close(self, session_id: int, end: datetime) -> Session:
        """End an open session at ``end``."""
        end_ms = to_ms(end, "end")
        with self._db.write() as connection:
            session = self._open_session(connection, session_id)
            if end < session.start:
                raise ValueError(f"session {session_id} cannot end at {end}, before its start")
            row = connection.execute(
                f"UPDATE charging_session SET end_ms = ? WHERE id = ? RETURNING {_COLUMNS}",
                (end_ms, session_id),
            ).fetchone()
        return _session(row)

    def between(self, start: datetime, end: datetime) -> list[Session]:
        """The sessions overlapping ``[start, end)`` or starting in it, oldest first."""
        lo, hi = to_ms(start, "start"), to_ms(end, "end")
        with self._db.read() as connection:
            rows = connection.execute(
                f"SELECT {_COLUMNS} FROM charging_session WHERE start_ms < ?"
                " AND (end_ms IS NULL OR end_ms > ? OR start_ms >= ?) ORDER BY start_ms, id",
                (hi, lo, lo),
            ).fetchall()
        return [_session(row) for row in rows]

    def _open_session(self, connection: sqlite3.Connection, session_id: int) -> Session:
        row = connection.execute(
            f"SELECT {_COLUMNS} FROM charging_session WHERE id = ?", (session_id,)
        ).fetchone()
        if row is None:
            raise StoreError(self._db.path, f"no charging session {session_id}")
        session = _session(row)
        if session.end is not None:
            raise StoreError(self._db.path, f"charging session {session_id} is closed")
        return session


def _session(row: Sequence[Any]) -> Session:
    session_id, loadpoint, start_ms, last_ms, end_ms, solar, battery, grid, cost = row
    return Session(
        session_id,
        loadpoint,
        from_ms(start_ms),
        from_ms(last_ms),
        None if end_ms is None else from_ms(end_ms),
        # RETURNING hands back the values before the REAL columns' conversion
        EnergySplit(float(solar), float(battery), float(grid), float(cost)),
    )
