"""The registry of OCPP charge points allowed to connect to surplus's central system.

Each charge point has an id (its OCPP chargePointId) and an authorization key (security
profiles 1 and 2: the password of HTTP Basic). The key is made here, handed out once and
kept only as its SHA-256 hash: the key is 20 random bytes, so a plain hash cannot be
reversed by guessing. A removed charge point is revoked, not deleted: its row records when.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from surplus.security.vault import Secret
from surplus.store.db import Database
from surplus.store.timestamps import from_ms, to_ms

__all__ = ["ChargerEntry", "ChargerRegistry", "KeyCheck", "valid_charger_id"]

KEY_BYTES = 20  # the whitepaper's AuthorizationKey: 16-20 bytes, up to 40 hex digits

# printable, no slash (the id is a URL path segment), at most 48 characters
_ID = re.compile(r"[^\x00-\x1f\x7f/]{1,48}")


def valid_charger_id(charger_id: str) -> bool:
    return bool(_ID.fullmatch(charger_id)) and charger_id.strip() == charger_id


class KeyCheck(StrEnum):
    """What the registry says about an id and a key."""

    OK = "ok"
    UNKNOWN = "unknown"
    REVOKED = "revoked"
    WRONG_KEY = "wrong_key"


@dataclass(frozen=True, slots=True)
class ChargerEntry:
    id: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ChargerRegistry:
    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, charger_id: str, at: datetime | None = None) -> Secret:
        """Register ``charger_id`` (again, if it was revoked) with a new key, returned once."""
        if not valid_charger_id(charger_id):
            raise ValueError(
                f"invalid charger id {charger_id!r}: 1-48 printable characters, no '/',"
                " no leading or trailing blanks"
            )
        key = secrets.token_hex(KEY_BYTES)
        at_ms = to_ms(at or datetime.now(UTC))
        with self._db.write() as connection:
            row = connection.execute(
                "SELECT revoked_ms FROM ocpp_charger WHERE id = ?", (charger_id,)
            ).fetchone()
            if row is not None and row[0] is None:
                raise ValueError(f"charger {charger_id!r} is already registered")
            connection.execute(
                "INSERT INTO ocpp_charger (id, key_sha256, created_ms, revoked_ms)"
                " VALUES (?, ?, ?, NULL) ON CONFLICT (id) DO UPDATE SET"
                " key_sha256 = excluded.key_sha256, created_ms = excluded.created_ms,"
                " revoked_ms = NULL",
                (charger_id, _digest(key), at_ms),
            )
        return Secret(key)

    def get(self, charger_id: str) -> ChargerEntry | None:
        with self._db.read() as connection:
            row = connection.execute(
                "SELECT created_ms, revoked_ms FROM ocpp_charger WHERE id = ?", (charger_id,)
            ).fetchone()
        return None if row is None else _entry(charger_id, row[0], row[1])

    def list(self) -> list[ChargerEntry]:
        """Every charge point ever registered, revoked ones included, by id."""
        with self._db.read() as connection:
            rows = connection.execute(
                "SELECT id, created_ms, revoked_ms FROM ocpp_charger ORDER BY id"
            ).fetchall()
        return [_entry(*row) for row in rows]

    def check_key(self, charger_id: str, key: str | Secret) -> KeyCheck:
        plain = key.reveal() if isinstance(key, Secret) else key
        with self._db.read() as connection:
            row = connection.execute(
                "SELECT key_sha256, revoked_ms FROM ocpp_charger WHERE id = ?", (charger_id,)
            ).fetchone()
        if row is None:
            return KeyCheck.UNKNOWN
        if row[1] is not None:
            return KeyCheck.REVOKED
        if not hmac.compare_digest(row[0], _digest(plain)):
            return KeyCheck.WRONG_KEY
        return KeyCheck.OK

    def revoke(self, charger_id: str, at: datetime | None = None) -> ChargerEntry:
        """Refuse ``charger_id`` from now on; KeyError if it is not registered."""
        at_ms = to_ms(at or datetime.now(UTC))
        with self._db.write() as connection:
            changed = connection.execute(
                "UPDATE ocpp_charger SET revoked_ms = ? WHERE id = ? AND revoked_ms IS NULL",
                (at_ms, charger_id),
            ).rowcount
        entry = self.get(charger_id)
        if not changed or entry is None:
            raise KeyError(charger_id)
        return entry


def _entry(charger_id: str, created_ms: int, revoked_ms: int | None) -> ChargerEntry:
    return ChargerEntry(
        charger_id, from_ms(created_ms), None if revoked_ms is None else from_ms(revoked_ms)
    )
