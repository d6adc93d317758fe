"""The decision log: every command sent, why, and what came of it.

Entries are written at once (not buffered): they are few and the reason they exist is to be
there after a crash.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from surplus.store.db import Database
from surplus.store.timestamps import from_ms, to_ms


@dataclass(frozen=True, slots=True)
class LogEntry:
    id: int
    at: datetime
    loadpoint: str | None  # None: a site-wide command (the home battery)
    command: dict[str, object]  # as decoded from JSON: tuples come back as lists
    reason: str
    result: str


class DecisionLog:
    def __init__(self, db: Database) -> None:
        self._db = db

    def append(
        self,
        at: datetime,
        loadpoint: str | None,
        command: Mapping[str, object],
        reason: str,
        result: str,
    ) -> LogEntry:
        """Log one command; ``command`` must be JSON-serialisable (finite numbers only)."""
        at_ms = to_ms(at)
        text = json.dumps(dict(command), sort_keys=True, allow_nan=False, separators=(",", ":"))
        with self._db.write() as connection:
            entry_id: int = connection.execute(
                "INSERT INTO decision (ts_ms, loadpoint, command, reason, result)"
                " VALUES (?, ?, ?, ?, ?) RETURNING id",
                (at_ms, loadpoint, text, reason, result),
            ).fetchone()[0]
        return LogEntry(entry_id, from_ms(at_ms), loadpoint, json.loads(text), reason, result)

    def between(self, start: datetime, end: datetime, limit: int = 100) -> list[LogEntry]:
        """The entries in ``[start, end)``, newest first, at most ``limit``."""
        lo, hi = to_ms(start, "start"), to_ms(end, "end")
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        with self._db.read() as connection:
            rows = connection.execute(
                "SELECT id, ts_ms, loadpoint, command, reason, result FROM decision"
                " WHERE ts_ms >= ? AND ts_ms < ? ORDER BY ts_ms DESC, id DESC LIMIT ?",
                (lo, hi, limit),
            ).fetchall()
        return [
            LogEntry(entry_id, from_ms(ts), loadpoint, json.loads(command), reason, result)
            for entry_id, ts, loadpoint, command, reason, result in rows
        ]
