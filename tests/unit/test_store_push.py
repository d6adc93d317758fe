"""The store's push keys (shown once, kept hashed, revocable) and pushed messages."""

from __future__ import annotations

import base64
import hashlib
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from surplus.store import PushKey, Store
from surplus.store.db import Database
from surplus.store.schema import MIGRATIONS, SCHEMA_VERSION

T0 = datetime(2024, 6, 10, 12, 0, tzinfo=UTC)
S = timedelta(seconds=1)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "surplus.db", flush_interval_s=3600.0)


def test_a_key_is_32_random_url_safe_bytes_and_finds_its_source(store: Store) -> None:
    with store:
        key = store.push_keys.create("pv-script", T0)
        other = store.push_keys.create("second", T0)
        assert len(base64.urlsafe_b64decode(key + "=")) == 32
        assert key != other
        assert store.push_keys.source_of(key) == "pv-script"
        assert store.push_keys.source_of(other) == "second"
        assert store.push_keys.source_of(key[:-1]) is None
        assert store.push_keys.source_of("") is None


def test_the_key_is_stored_only_as_its_sha256(tmp_path: Path, store: Store) -> None:
    with store:
        key = store.push_keys.create("pv-script", T0)
        store.push_messages.append(
            "pv-script", T0, tsms=None, payload={"apiKey": key}, flags=(), status=200
        )
    connection = sqlite3.connect(store.path)
    digest = connection.execute("SELECT key_sha256 FROM push_key").fetchone()[0]
    connection.close()
    assert digest == hashlib.sha256(key.encode()).digest()
    files = list(tmp_path.iterdir())
    assert files
    for file in files:
        assert key.encode() not in file.read_bytes()


def test_one_valid_key_per_source_until_it_is_revoked(store: Store) -> None:
    with store:
        first = store.push_keys.create("pv-script", T0)
        with pytest.raises(ValueError, match="already has a valid push key"):
            store.push_keys.create("pv-script", T0 + S)
        assert store.push_keys.revoke("pv-script", T0 + 2 * S)
        assert store.push_keys.source_of(first) is None
        assert not store.push_keys.revoke("pv-script", T0 + 3 * S)
        second = store.push_keys.create("pv-script", T0 + 4 * S)
        assert store.push_keys.source_of(second) == "pv-script"
        assert store.push_keys.source_of(first) is None
        assert store.push_keys.list() == (
            PushKey("pv-script", T0, T0 + 2 * S),
            PushKey("pv-script", T0 + 4 * S, None),
        )


def test_listing_shows_no_key(store: Store) -> None:
    with store:
        key = store.push_keys.create("pv-script", T0)
        assert key not in repr(store.push_keys.list())
        with pytest.raises(ValueError, match="source name"):
            store.push_keys.create("", T0)
        assert not store.push_keys.revoke("nobody", T0)


def test_messages_are_kept_without_the_key_newest_first(store: Store) -> None:
    payload = {"apiKey": "secret-a", "siteId": "secret-b", "siteMeters": {"net_import_kw": 1.5}}
    with store:
        first = store.push_messages.append(
            "pv-script", T0, tsms=123, payload=payload, flags=["balance"], status=200
        )
        assert first.payload == {"siteMeters": {"net_import_kw": 1.5}}
        store.push_messages.append(
            "pv-script", T0 + 30 * S, tsms=None, payload={"error": "x"}, flags=[], status=200
        )
        store.push_messages.append(
            "other", T0 + 60 * S, tsms=None, payload={"error": "y"}, flags=[], status=200
        )
        recent = store.push_messages.recent("pv-script")
        assert [m.received_at for m in recent] == [T0 + 30 * S, T0]
        assert recent[1] == first
        assert recent[1].flags == frozenset({"balance"})
        assert recent[1].tsms == 123
        assert store.push_messages.recent("pv-script", 1) == recent[:1]
        assert store.push_messages.recent("nobody") == []
        with pytest.raises(ValueError, match="limit"):
            store.push_messages.recent("pv-script", 0)
        with pytest.raises(ValueError, match="timezone-aware"):
            store.push_messages.append(
                "x", datetime(2024, 1, 1), tsms=None, payload={}, flags=(), status=200
            )


def test_keys_and_messages_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "surplus.db"
    with Store.open(path) as store:
        key = store.push_keys.create("pv-script", T0)
        store.push_messages.append("pv-script", T0, tsms=None, payload={}, flags=[], status=200)
    with Store.open(path) as store:
        assert store.push_keys.source_of(key) == "pv-script"
        assert len(store.push_messages.recent("pv-script")) == 1


def test_the_migration_upgrades_a_store_of_the_previous_version(tmp_path: Path) -> None:
    path = tmp_path / "surplus.db"
    push = next(i for i, m in enumerate(MIGRATIONS) if any("push_key" in sql for sql in m))
    db = Database.open(path, migrations=MIGRATIONS[:push])
    with db.write() as connection:
        connection.execute("INSERT INTO device_pin VALUES ('gateway', 'AB:CD', 0)")
    db.close()

    with Store.open(path) as store:
        assert store.pins.get("gateway") is not None
        key = store.push_keys.create("pv-script", T0)
        assert store.push_keys.source_of(key) == "pv-script"
        assert store.push_messages.recent("pv-script") == []
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    connection.close()
