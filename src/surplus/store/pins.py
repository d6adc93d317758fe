"""Certificate pins: the fingerprint trusted for each device whose config names none.

A device met for the first time is trusted on first use and its fingerprint kept here, so
a restart pins the same certificate; ``surplus pin`` replaces it after the owner has
checked the new one. Written at once, like the decision log: there are a handful.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from surplus.store.db import Database
from surplus.store.timestamps import from_ms, to_ms


@dataclass(frozen=True, slots=True)
class Pin:
    device: str
    fingerprint: str
    pinned_at: datetime


class Pins:
    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, device: str) -> Pin | None:
        with self._db.read() as connection:
            row = connection.execute(
                "SELECT fingerprint, pinned_ms FROM device_pin WHERE device = ?", (device,)
            ).fetchone()
        return None if row is None else Pin(device, row[0], from_ms(row[1]))

    def set(self, device: str, fingerprint: str, at: datetime) -> Pin:
        """Pin ``fingerprint`` for ``device``, replacing any earlier pin."""
        at_ms = to_ms(at)
        with self._db.write() as connection:
            connection.execute(
                "INSERT INTO device_pin (device, fingerprint, pinned_ms) VALUES (?, ?, ?)"
                " ON CONFLICT (device) DO UPDATE SET fingerprint = excluded.fingerprint,"
                " pinned_ms = excluded.pinned_ms",
                (device, fingerprint, at_ms),
            )
        return Pin(device, fingerprint, from_ms(at_ms))
