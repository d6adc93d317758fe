"""The store's SQLite file: refusing what is not ours, pragmas, migrations, transactions.

Journaling is WAL with ``synchronous=NORMAL``: a committed transaction is in the WAL file
before COMMIT returns, so a crash or kill -9 of the process loses nothing committed, and the
next open replays the WAL (or drops a half-written transaction). Only a power cut or a
kernel crash can lose the latest commits, never corrupting the file; ``synchronous="FULL"``
closes that gap too, at one fsync per commit.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from surplus.domain.errors import StoreError
from surplus.store.schema import APPLICATION_ID, MIGRATIONS

Synchronous = Literal["NORMAL", "FULL"]

_HEADER = b"SQLite format 3\x00"


class Database:
    """One connection, shared by the store's parts and threads: one transaction at a time."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._connection = connection
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls,
        path: Path | str,
        *,
        synchronous: Synchronous = "NORMAL",
        busy_timeout_s: float = 5.0,
        migrations: Sequence[Sequence[str]] = MIGRATIONS,
    ) -> Database:
        """Open (or create) the database at ``path`` and bring its schema up to date."""
        path = Path(path)
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        _refuse_foreign_file(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(
                path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as e:
            raise StoreError(path, f"cannot open the database: {e}") from e
        try:
            # checked before any pragma that writes: a refused file stays byte-identical
            _refuse_foreign_schema(path, connection, len(migrations))
            mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(path, f"cannot use WAL journaling here (got {mode!r})")
            connection.execute(f"PRAGMA synchronous = {synchronous}")
            # before foreign keys are on: a migration may rebuild a referenced table
            _migrate(path, connection, migrations)
            connection.execute("PRAGMA foreign_keys = ON")
        except BaseException as e:
            connection.close()
            if isinstance(e, sqlite3.Error):
                raise StoreError(path, str(e)) from e
            raise
        return cls(path, connection)

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: committed when the block ends, rolled back if it raises."""
        with self._transaction("BEGIN IMMEDIATE") as connection:
            yield connection

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: one consistent snapshot for the block."""
        with self._transaction("BEGIN") as connection:
            yield connection

    def close(self) -> None:
        with self._lock:
            try:
                self._connection.close()
            except sqlite3.Error as e:
                raise StoreError(self.path, str(e)) from e

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            connection = self._connection
            try:
                connection.execute(begin)
                try:
                    yield connection
                    connection.execute("COMMIT")
                except BaseException:
                    if connection.in_transaction:
                        connection.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                raise StoreError(self.path, str(e)) from e


def _refuse_foreign_file(path: Path) -> None:
    try:
        with path.open("rb") as f:
            header = f.read(len(_HEADER))
    except FileNotFoundError:
        return
    except OSError as e:
        raise StoreError(path, f"cannot read the database: {e}") from e
    # an empty file is an empty database to SQLite
    if header and header != _HEADER:
        raise StoreError(path, "is not a SQLite database; left untouched")


def _refuse_foreign_schema(path: Path, connection: sqlite3.Connection, known: int) -> None:
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    application = connection.execute("PRAGMA application_id").fetchone()[0]
    if version == 0:
        if connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise StoreError(path, "is another application's SQLite database; left untouched")
    elif application != APPLICATION_ID:
        raise StoreError(path, "is another application's SQLite database; left untouched")
    if version > known:
        raise StoreError(
            path,
            f"has schema version {version}, newer than this surplus knows ({known}); "
            "upgrade surplus to open it",
        )


def _migrate(
    path: Path, connection: sqlite3.Connection, migrations: Sequence[Sequence[str]]
) -> None:
    current = connection.execute("PRAGMA user_version").fetchone()[0]
    for version in range(current + 1, len(migrations) + 1):
        connection.execute("BEGIN IMMEDIATE")
        try:
            # another process opening the same file may have migrated meanwhile
            if connection.execute("PRAGMA user_version").fetchone()[0] < version:
                for statement in migrations[version - 1]:
                    connection.execute(statement)
                if connection.execute("PRAGMA foreign_key_check").fetchone() is not None:
                    raise StoreError(path, f"migration {version} broke a foreign key")
                if version == 1:
                    connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                connection.execute(f"PRAGMA user_version = {version}")
            connection.execute("COMMIT")
        except BaseException as e:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            if isinstance(e, sqlite3.Error):
                raise StoreError(path, f"migration {version} failed: {e}") from e
            raise
