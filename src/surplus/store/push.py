"""Push keys and pushed messages: who may push readings to surplus, and what they pushed.

A key is 32 random bytes (url-safe base64), shown once by ``PushKeys.create`` and kept only as
its SHA-256: guessing a preimage of that hash is as hard as guessing the key itself, so a slow
password hash would add nothing. A source has at most one valid key. Each push looks its key
up here, so a revoked key is refused at once, even by a running service.

Messages are written at once, like the decision log. Their payload never holds a key: the
top-level ``apiKey`` (and the legacy ``siteId``, which is the key on the old route) are
dropped before it is stored, whatever the caller passed.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from surplus.store.db import Database
from surplus.store.timestamps import from_ms, to_ms

__all__ = ["KEY_BYTES", "KEY_FIELDS", "PushKey", "PushKeys", "PushMessage", "PushMessages"]

KEY_BYTES = 32
KEY_FIELDS = ("apiKey", "siteId")


@dataclass(frozen=True, slots=True)
class PushKey:
    """A source's key, without the key: when it was made and, maybe, revoked."""

    source: str
    created_at: datetime
    revoked_at: datetime | None  # None: still valid


@dataclass(frozen=True, slots=True)
class PushMessage:
    id: int
    source: str
    received_at: datetime
    tsms: int | None
    payload: dict[str, object]
    flags: frozenset[str]
    status: int


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class PushKeys:
    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, source: str, at: datetime) -> str:
        """A new key for ``source``, returned once and stored only hashed; a ``ValueError``
        if ``source`` already has a valid one."""
        if not source:
            raise ValueError("a push key needs a source name")
        at_ms = to_ms(at)
        key = secrets.token_urlsafe(KEY_BYTES)
        with self._db.write() as connection:
            valid = connection.execute(
                "SELECT 1 FROM push_key WHERE source = ? AND revoked_ms IS NULL", (source,)
            ).fetchone()
            if valid is not None:
                raise ValueError(f"{source!r} already has a valid push key; revoke it first")
            connection.execute(
                "INSERT INTO push_key (source, key_sha256, created_ms) VALUES (?, ?, ?)",
                (source, _digest(key), at_ms),
            )
        return key

    def source_of(self, key: str) -> str | None:
        """The source whose valid key ``key`` is; None for an unknown or revoked key."""
        if not key:
            return None
        with self._db.read() as connection:
            row = connection.execute(
                "SELECT source FROM push_key WHERE key_sha256 = ? AND revoked_ms IS NULL",
                (_digest(key),),
            ).fetchone()
        return None if row is None else str(row[0])

    def list(self) -> tuple[PushKey, ...]:
        """Every key ever made, revoked ones too, oldest first."""
        with self._db.read() as connection:
            rows = connection.execute(
                "SELECT source, created_ms, revoked_ms FROM push_key ORDER BY created_ms, id"
            ).fetchall()
        return tuple(
            PushKey(source, from_ms(created), None if revoked is None else from_ms(revoked))
            for source, created, revoked in rows
        )

    def revoke(self, source: str, at: datetime) -> bool:
        """Revoke ``source``'s valid key; False if it has none."""
        at_ms = to_ms(at)
        with self._db.write() as connection:
            revoked = connection.execute(
                "UPDATE push_key SET revoked_ms = ? WHERE source = ? AND revoked_ms IS NULL",
                (at_ms, source),
            ).rowcount
        return revoked > 0


class PushMessages:
    def __init__(self, db: Database) -> None:
        self._db = db

    def append(
        self,
        source: str,
        received_at: datetime,
        *,
        tsms: int | None,
        payload: Mapping[str, object],
        flags: Iterable[str],
        status: int,
    ) -> PushMessage:
        """Store one push; ``payload`` must be JSON-serialisable (finite numbers only)."""
        received_ms = to_ms(received_at, "received_at")
        kept = {k: v for k, v in payload.items() if k not in KEY_FIELDS}
        text = json.dumps(kept, sort_keys=True, allow_nan=False, separators=(",", ":"))
        flag_set = frozenset(flags)
        flag_text = json.dumps(sorted(flag_set))
        with self._db.write() as connection:
            message_id: int = connection.execute(
                "INSERT INTO push_message (source, received_ms, tsms, payload, flags, status)"
                " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (source, received_ms, tsms, text, flag_text, status),
            ).fetchone()[0]
        return PushMessage(
            message_id, source, from_ms(received_ms), tsms, json.loads(text), flag_set, status
        )

    def recent(self, source: str, limit: int = 100) -> list[PushMessage]:
        """``source``'s latest messages, newest first, at most ``limit``."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        with self._db.read() as connection:
            rows = connection.execute(
                "SELECT id, received_ms, tsms, payload, flags, status FROM push_message"
                " WHERE source = ? ORDER BY received_ms DESC, id DESC LIMIT ?",
                (source, limit),
            ).fetchall()
        return [
            PushMessage(
                message_id,
                source,
                from_ms(received),
                tsms,
                json.loads(payload),
                frozenset(json.loads(flags)),
                status,
            )
            for message_id, received, tsms, payload, flags, status in rows
        ]

    def prune(self, before: datetime) -> int:
        """Delete the messages received before ``before``; how many went."""
        before_ms = to_ms(before, "before")
        with self._db.write() as connection:
            deleted: int = connection.execute(
                "DELETE FROM push_message WHERE received_ms < ?", (before_ms,)
            ).rowcount
        return deleted
