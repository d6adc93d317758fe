"""The embedded store: one SQLite file holding what surplus saw, did and charged.

``Store.open(path)`` gives ``.series`` (time series, rollups, history, retention),
``.recorder`` (what each poll calls), ``.log`` (the decision log), ``.sessions``
(charging sessions), ``.pins`` (certificates trusted on first use), ``.push_keys`` and
``.push_messages`` (who may push readings, and what they pushed), and ``.chargers`` (the
OCPP charge points allowed to connect). A crash or kill -9 loses at most the recorder's
last unflushed interval; opening the file again continues the same history. Every datetime
in the API is timezone-aware; a naive one is refused.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from surplus.store.chargers import ChargerEntry, ChargerRegistry
from surplus.store.db import Database, Synchronous
from surplus.store.log import DecisionLog, LogEntry
from surplus.store.pins import Pin, Pins
from surplus.store.push import PushKey, PushKeys, PushMessage, PushMessages
from surplus.store.recorder import Recorder
from surplus.store.series import (
    RAW,
    Bucket,
    Point,
    Retention,
    Sample,
    Series,
    SeriesInfo,
    level_for,
)
from surplus.store.sessions import EnergySplit, Session, Sessions

__all__ = [
    "RAW",
    "Bucket",
    "ChargerEntry",
    "ChargerRegistry",
    "DecisionLog",
    "EnergySplit",
    "LogEntry",
    "Pin",
    "Pins",
    "Point",
    "PushKey",
    "PushKeys",
    "PushMessage",
    "PushMessages",
    "Recorder",
    "Retention",
    "Sample",
    "Series",
    "SeriesInfo",
    "Session",
    "Sessions",
    "Store",
    "level_for",
]


class Store:
    def __init__(
        self, db: Database, series: Series, recorder: Recorder, log: DecisionLog, sessions: Sessions
    ) -> None:
        self._db = db
        self.series = series
        self.recorder = recorder
        self.log = log
        self.sessions = sessions
        self.pins = Pins(db)
        self.push_keys = PushKeys(db)
        self.push_messages = PushMessages(db)
        self.chargers = ChargerRegistry(db)

    @classmethod
    def open(
        cls,
        path: Path | str,
        *,
        retention: Retention | None = None,
        flush_interval_s: float = 1.0,
        synchronous: Synchronous = "NORMAL",
    ) -> Store:
        """Open or create the store at ``path`` (and its directory), migrating its schema."""
        db = Database.open(path, synchronous=synchronous)
        series = Series(db, retention)
        try:
            recorder = Recorder(series, flush_interval_s)
        except BaseException:
            db.close()
            raise
        return cls(db, series, recorder, DecisionLog(db), Sessions(db))

    @property
    def path(self) -> Path:
        return self._db.path

    def close(self) -> None:
        """Flush the recorder and close the file."""
        try:
            self.recorder.close()
        finally:
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
