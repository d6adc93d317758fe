"""The embedded store: schema and refusals, series and rollups, retention, log, sessions."""

from __future__ import annotations

import math
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from surplus.domain.errors import StoreError
from surplus.store import (
    RAW,
    Bucket,
    EnergySplit,
    Point,
    Retention,
    Sample,
    SeriesInfo,
    Store,
    level_for,
)
from surplus.store.db import Database
from surplus.store.schema import APPLICATION_ID, LEVELS_S, SCHEMA_VERSION
from surplus.store.timestamps import from_ms, to_ms

T0 = datetime(2024, 6, 10, 12, 0, tzinfo=UTC)
S = timedelta(seconds=1)
DAY = timedelta(days=1)
NEVER = 3600.0  # a flush interval no test waits for: flushes are explicit


def open_store(path: Path, retention: Retention | None = None) -> Store:
    return Store.open(path, retention=retention, flush_interval_s=NEVER)


def expected_buckets(samples: Iterable[tuple[int, float]], step_s: int) -> list[Bucket]:
    """History computed directly from (time in ms, value) pairs."""
    groups: dict[int, list[tuple[int, float]]] = {}
    for ts, value in samples:
        groups.setdefault(ts // (step_s * 1000) * step_s * 1000, []).append((ts, value))
    return [
        Bucket(
            start=from_ms(start),
            mean=math.fsum(v for _, v in group) / len(group),
            min=min(v for _, v in group),
            max=max(v for _, v in group),
            last=max(group)[1],
            count=len(group),
        )
        for start, group in sorted(groups.items())
    ]


def assert_buckets(actual: list[Bucket], expected: list[Bucket]) -> None:
    assert [(b.start, b.min, b.max, b.last, b.count) for b in actual] == [
        (b.start, b.min, b.max, b.last, b.count) for b in expected
    ]
    assert [b.mean for b in actual] == pytest.approx([b.mean for b in expected], rel=1e-9, abs=1e-6)


def record_all(store: Store, samples: Iterable[tuple[datetime, float]]) -> None:
    for at, value in samples:
        store.recorder.record("powerwall", "battery_w", "W", at, value)
    store.recorder.flush()


def history(store: Store, start: datetime, end: datetime, step_s: int) -> list[Bucket]:
    return store.series.history("powerwall", "battery_w", start, end, step_s)


# --- the file: migrations and refusals ---


def test_a_new_store_is_created_with_its_directory_at_the_current_schema(tmp_path: Path) -> None:
    path = tmp_path / "var" / "lib" / "surplus.db"
    with open_store(path) as store:
        assert store.path == path
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert connection.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    levels = connection.execute("SELECT step_s FROM rollup_level ORDER BY step_s").fetchall()
    assert tuple(level for (level,) in levels) == LEVELS_S
    connection.close()


def test_reopening_migrates_nothing_and_keeps_the_data(tmp_path: Path) -> None:
    path = tmp_path / "surplus.db"
    with open_store(path) as store:
        record_all(store, [(T0, 1.0)])
    for _ in range(2):
        with open_store(path) as store:
            assert store.series.latest("powerwall", "battery_w") == Sample(T0, 1.0)
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_each_migration_is_one_transaction_with_its_version(tmp_path: Path) -> None:
    path = tmp_path / "surplus.db"
    first = ("CREATE TABLE a (x INTEGER)",)
    broken = ("CREATE TABLE b (x INTEGER)", "INSERT INTO nowhere VALUES (1)")
    second = ("CREATE TABLE b (x INTEGER)", "INSERT INTO b VALUES (2)")
    Database.open(path, migrations=[first]).close()
    with pytest.raises(StoreError, match="migration 2 failed") as refused:
        Database.open(path, migrations=[first, broken])
    assert refused.value.path == str(path)
    db = Database.open(path, migrations=[first])  # still at version 1, without table b
    with db.read() as connection:
        names = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        assert [name for (name,) in names] == ["a"]
    db.close()
    db = Database.open(path, migrations=[first, second])
    with db.read() as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == 2
        assert connection.execute("SELECT x FROM b").fetchall() == [(2,)]
    db.close()


def test_synchronous_is_normal_unless_full_is_asked(tmp_path: Path) -> None:
    for synchronous, level in (("NORMAL", 1), ("FULL", 2)):  # the levels' numbers
        db = Database.open(tmp_path / "surplus.db", synchronous=synchronous)
        with db.read() as connection:
            assert connection.execute("PRAGMA synchronous").fetchone()[0] == level
            assert connection.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        db.close()


def test_a_store_from_a_newer_surplus_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "surplus.db"
    with open_store(path) as store:
        record_all(store, [(T0, 1.0)])
    connection = sqlite3.connect(path)
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="newer") as refused:
        open_store(path)
    assert str(path) in str(refused.value)
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    "content", [b"timestamp,price\n2024-01-01,12.5\n" * 20, b"x", b"SQLite format 2\x00" * 8]
)
def test_a_file_that_is_not_a_database_is_refused_and_left_untouched(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "prices.csv"
    path.write_bytes(content)
    with pytest.raises(StoreError, match="not a SQLite database") as refused:
        open_store(path)
    assert str(path) in str(refused.value)
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prices.csv"]


def test_another_applications_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "home-assistant.db"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE states (entity_id TEXT, state TEXT)")
    connection.commit()
    connection.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="another application"):
        open_store(path)
    assert path.read_bytes() == before


def test_naive_datetimes_are_refused(tmp_path: Path) -> None:
    naive = datetime(2024, 6, 10, 12, 0)
    with open_store(tmp_path / "surplus.db") as store:
        calls: list[Callable[[], object]] = [
            lambda: store.recorder.record("powerwall", "battery_w", "W", naive, 1.0),
            lambda: store.series.history("powerwall", "battery_w", naive, T0, 60),
            lambda: store.series.samples("powerwall", "battery_w", T0, naive),
            lambda: store.series.prune(naive),
            lambda: store.log.append(naive, "garage", {}, "test", "ok"),
            lambda: store.log.between(naive, T0),
            lambda: store.sessions.open("garage", naive),
            lambda: store.sessions.between(T0, naive),
        ]
        for call in calls:
            with pytest.raises(ValueError, match="timezone-aware"):
                call()


def test_other_zones_are_converted_to_utc(tmp_path: Path) -> None:
    cest = T0.astimezone(ZoneInfo("Europe/Amsterdam"))
    with open_store(tmp_path / "surplus.db") as store:
        record_all(store, [(cest, 5.0)])
        latest = store.series.latest("powerwall", "battery_w")
    assert latest is not None
    assert latest == Sample(T0, 5.0)
    assert latest.at.tzinfo is UTC


# --- series ---


def test_a_replayed_sample_is_stored_and_counted_once(tmp_path: Path) -> None:
    points = [Point("powerwall", "battery_w", "W", T0 + i * S, float(i)) for i in range(10)]
    with open_store(tmp_path / "surplus.db") as store:
        assert store.series.write(points) == 10
        assert store.series.write(points) == 0
        # the first value written for a time stays
        assert store.series.write([Point("powerwall", "battery_w", "W", T0, 99.0)]) == 0
        record_all(store, [(T0 + 5 * S, 99.0), (T0 + 10 * S, 10.0)])
        samples = store.series.samples("powerwall", "battery_w", T0, T0 + DAY)
        assert samples == [Sample(T0 + i * S, float(i)) for i in range(11)]
        for step_s in (1, 60, 900, 86_400):
            expected = [(to_ms(s.at), s.value) for s in samples]
            assert_buckets(history(store, T0, T0 + DAY, step_s), expected_buckets(expected, step_s))


def test_a_series_keeps_its_unit(tmp_path: Path) -> None:
    with open_store(tmp_path / "surplus.db") as store:
        store.recorder.record("powerwall", "battery_w", "W", T0, 1.0)
        with pytest.raises(StoreError, match="recorded in 'W', not 'kW'"):
            store.recorder.record("powerwall", "battery_w", "kW", T0 + S, 1.0)
        store.recorder.flush()
        with pytest.raises(StoreError, match="recorded in 'W', not 'kW'"):
            store.series.write([Point("powerwall", "battery_w", "kW", T0 + S, 1.0)])
        store.recorder.record("powerwall", "soc_pct", "%", T0, 50.0)
        store.recorder.flush()
        assert store.series.catalogue() == [
            SeriesInfo("powerwall", "battery_w", "W"),
            SeriesInfo("powerwall", "soc_pct", "%"),
        ]
    with open_store(tmp_path / "surplus.db") as store:  # also known after a restart
        with pytest.raises(StoreError, match="recorded in 'W', not 'kW'"):
            store.recorder.record("powerwall", "battery_w", "kW", T0 + S, 1.0)
        assert store.series.unit("powerwall", "soc_pct") == "%"
        assert store.series.unit("powerwall", "nothing") is None


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_value_that_is_not_finite_is_refused(tmp_path: Path, value: float) -> None:
    with open_store(tmp_path / "surplus.db") as store, pytest.raises(ValueError, match="value"):
        store.recorder.record("powerwall", "battery_w", "W", T0, value)


offsets_ms = st.one_of(
    st.integers(0, 600_000),  # dense: several samples per minute
    st.integers(0, 3 * 86_400_000),  # sparse: over three days
)
values = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=40, deadline=None)
@given(
    base=st.sampled_from([T0, datetime(1969, 12, 31, 23, 0, tzinfo=UTC)]),  # before the epoch
    samples=st.dictionaries(offsets_ms, values, min_size=1, max_size=120),
    cuts=st.lists(st.integers(0, 120), max_size=4),
    replays=st.lists(st.integers(0, 119), max_size=30),
)
def test_rollups_equal_a_direct_computation(
    base: datetime, samples: dict[int, float], cuts: list[int], replays: list[int]
) -> None:
    items = [(base + timedelta(milliseconds=offset), value) for offset, value in samples.items()]
    bounds = sorted({0, len(items), *(cut % len(items) for cut in cuts)})
    with tempfile.TemporaryDirectory() as directory, open_store(Path(directory) / "s.db") as store:
        for lo, hi in pairwise(bounds):
            # each flush also replays samples of this or earlier flushes
            replayed = [items[i % len(items)] for i in replays if i % len(items) < hi]
            record_all(store, [*items[lo:hi], *replayed])
        expected = [(to_ms(at), value) for at, value in items]
        for step_s in LEVELS_S:
            actual = history(store, base - DAY, base + 4 * DAY, step_s)
            assert_buckets(actual, expected_buckets(expected, step_s))


@pytest.mark.parametrize(
    ("step_s", "level"),
    [
        (1, RAW),
        (59, RAW),
        (60, 60),
        (120, 60),
        (900, 900),
        (1800, 900),
        (3600, 900),
        (86_400, 86_400),
        (7 * 86_400, 86_400),
    ],
)
def test_history_reads_the_coarsest_level_that_divides_the_step(step_s: int, level: int) -> None:
    assert level_for(step_s) == level


@pytest.mark.parametrize("step_s", [0, -60, 90, 1000])
def test_a_step_that_no_level_divides_is_refused(step_s: int) -> None:
    with pytest.raises(ValueError, match="step_s"):
        level_for(step_s)


def test_history_rebuckets_its_level_to_the_step(tmp_path: Path) -> None:
    start = T0 + 7 * S  # 5-second samples over 3 hours, not aligned to the buckets
    samples = [(start + 5 * i * S, math.sin(i / 50) * 3000 + i % 7) for i in range(3 * 720)]
    expected = [(to_ms(at), value) for at, value in samples]
    with open_store(tmp_path / "surplus.db") as store:
        record_all(store, samples)
        end = start + 3 * 3600 * S
        quarter_hours = history(store, start, end, 900)
        assert_buckets(quarter_hours, expected_buckets(expected, 900))
        assert len(quarter_hours) == 13 and quarter_hours[0].start == T0
        assert_buckets(history(store, start, end, 1800), expected_buckets(expected, 1800))
        assert_buckets(history(store, start, end, 300), expected_buckets(expected, 300))
        assert_buckets(history(store, start, end, 20), expected_buckets(expected, 20))
        # whole buckets overlapping the range, at every level
        window = history(store, T0 + 16 * 60 * S, T0 + 44 * 60 * S, 900)
        assert window == quarter_hours[1:3]
        first_20_s = history(store, start, start + 10 * S, 20)
        assert [b.count for b in first_20_s] == [3]
        assert history(store, T0 + 12 * 3600 * S, T0 + 13 * 3600 * S, 900) == []
        assert store.series.history("powerwall", "nothing", start, end, 900) == []


def test_history_reads_the_rollups_after_the_raw_samples_are_pruned(tmp_path: Path) -> None:
    samples = [(T0 + 5 * i * S, float(i)) for i in range(360)]
    with open_store(tmp_path / "surplus.db") as store:
        record_all(store, samples)
        store.series.prune(T0 + 8 * DAY)
        assert history(store, T0, T0 + DAY, 30) == []
        minutes = history(store, T0, T0 + DAY, 60)
        assert_buckets(minutes, expected_buckets([(to_ms(t), v) for t, v in samples], 60))
        assert store.series.latest("powerwall", "battery_w") == Sample(*samples[-1])


# --- retention ---


def test_prune_removes_each_level_at_its_age_and_nothing_younger(tmp_path: Path) -> None:
    now = datetime(2024, 6, 10, tzinfo=UTC)
    ms = timedelta(milliseconds=1)
    ages = [
        7 * DAY + ms,  # raw: pruned
        7 * DAY,  # raw: kept, exactly at the horizon
        35 * DAY + ms,  # 1 minute: its bucket starts a minute earlier: pruned
        35 * DAY,  # kept
        3 * 365 * DAY + 60 * S,  # 15 minutes: pruned
        3 * 365 * DAY,  # kept
        20 * 365 * DAY,  # daily: kept forever
    ]
    points = [Point("meter", "grid_w", "W", now - age, float(i)) for i, age in enumerate(ages)]

    def kept(store: Store, level: int) -> set[float]:
        if level == RAW:
            found = store.series.samples("meter", "grid_w", now - 30 * 365 * DAY, now)
            return {s.value for s in found}
        buckets = store.series.history("meter", "grid_w", now - 30 * 365 * DAY, now, level)
        return {b.last for b in buckets}

    with open_store(tmp_path / "surplus.db") as store:
        store.series.write(points)
        assert store.series.prune(now) == 6 + 4 + 2
        assert kept(store, RAW) == {1.0}
        assert kept(store, 60) == {0.0, 1.0, 3.0}
        assert kept(store, 900) == {0.0, 1.0, 2.0, 3.0, 5.0}
        assert kept(store, 86_400) == set(range(7))
        assert store.series.prune(now) == 0
        # a replayed sample older than the raw horizon is not counted again
        assert store.series.write(points[:1]) == 0
        recent = store.series.history("meter", "grid_w", now - 8 * DAY, now, 900)
        assert [b.count for b in recent] == [1, 1]


def test_retention_is_configurable(tmp_path: Path) -> None:
    retention = Retention(raw=DAY, minute=2 * DAY, quarter_hour=3 * DAY, day=4 * DAY)
    now = datetime(2024, 6, 10, tzinfo=UTC)
    points = [Point("meter", "grid_w", "W", now - d * DAY - S, float(d)) for d in range(5)]
    with open_store(tmp_path / "surplus.db", retention=retention) as store:
        store.series.write(points)
        store.series.prune(now)
        for level, kept in ((60, 2), (900, 3), (86_400, 4)):  # day 4's bucket starts on day 5
            assert len(store.series.history("meter", "grid_w", now - 9 * DAY, now, level)) == kept
        assert len(store.series.samples("meter", "grid_w", now - 9 * DAY, now)) == 1


@pytest.mark.parametrize(
    "retention",
    [
        {"raw": timedelta(days=40)},
        {"minute": None},
        {"day": timedelta(days=365)},
        {"raw": timedelta(0)},
    ],
)
def test_retention_never_shrinks_toward_coarser_levels(retention: dict[str, timedelta]) -> None:
    with pytest.raises(ValueError, match="retention"):
        Retention(**retention)


def test_latest_is_the_newest_sample(tmp_path: Path) -> None:
    with open_store(tmp_path / "surplus.db") as store:
        assert store.series.latest("powerwall", "battery_w") is None
        record_all(store, [(T0 + 2 * S, 2.0), (T0 + DAY, 3.0), (T0, 1.0)])
        assert store.series.latest("powerwall", "battery_w") == Sample(T0 + DAY, 3.0)


# --- the recorder ---


def test_the_recorder_flushes_in_the_background_and_on_close(tmp_path: Path) -> None:
    path = tmp_path / "surplus.db"
    store = Store.open(path, flush_interval_s=0.05)
    store.recorder.record("powerwall", "battery_w", "W", T0, 1.0)
    for _ in range(200):
        if store.recorder.flushed_until is not None:
            break
        time.sleep(0.01)
    assert store.recorder.flushed_until == T0
    assert store.series.samples("powerwall", "battery_w", T0, T0 + S) == [Sample(T0, 1.0)]
    store.recorder.record("powerwall", "battery_w", "W", T0 + S, 2.0)
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.recorder.record("powerwall", "battery_w", "W", T0 + 2 * S, 3.0)
    with open_store(path) as store:
        assert store.series.latest("powerwall", "battery_w") == Sample(T0 + S, 2.0)


# --- the decision log ---


def test_the_decision_log_reads_back_newest_first(tmp_path: Path) -> None:
    with open_store(tmp_path / "surplus.db") as store:
        first = store.log.append(
            T0, "garage", {"enable": True, "current_a": 6.0, "phases": 3}, "surplus 4.3 kW", "ok"
        )
        store.log.append(T0 + 60 * S, None, {"mode": "hold"}, "cheap hour ahead", "ok")
        store.log.append(T0 + 60 * S, "garage", {"current_a": 8.0}, "more surplus", "timeout")
        store.log.append(T0 + 120 * S, "garage", {"enable": False}, "no surplus", "ok")
    with open_store(tmp_path / "surplus.db") as store:
        entries = store.log.between(T0, T0 + 120 * S)
        assert [e.reason for e in entries] == ["more surplus", "cheap hour ahead", "surplus 4.3 kW"]
        assert entries[-1] == first
        assert first.command == {"current_a": 6.0, "enable": True, "phases": 3}
        assert first.loadpoint == "garage" and first.at == T0 and first.result == "ok"
        assert entries[1].loadpoint is None
        assert [e.reason for e in store.log.between(T0, T0 + DAY, limit=2)] == [
            "no surplus",
            "more surplus",
        ]
        assert store.log.between(T0 + S, T0 + 60 * S) == []
        with pytest.raises(ValueError):
            store.log.append(T0, "garage", {"current_a": math.nan}, "broken", "not sent")


# --- charging sessions ---


def test_a_charging_session_adds_up_its_energy_and_cost(tmp_path: Path) -> None:
    with open_store(tmp_path / "surplus.db") as store:
        session = store.sessions.open("garage", T0)
        assert session.end is None and session.energy == EnergySplit()
        assert session.energy.solar_share is None
        store.sessions.add(session.id, T0 + 60 * S, EnergySplit(solar_wh=300.0, cost_eur=0.0))
        store.sessions.add(
            session.id, T0 + 120 * S, EnergySplit(solar_wh=100.0, grid_wh=300.0, cost_eur=0.09)
        )
        session = store.sessions.add(
            session.id, T0 + 180 * S, EnergySplit(battery_wh=200.0, cost_eur=-0.01)
        )
        energy = session.energy
        assert (energy.solar_wh, energy.battery_wh, energy.grid_wh) == (400.0, 200.0, 300.0)
        assert energy.cost_eur == pytest.approx(0.08)
        assert session.energy.total_wh == 900.0
        assert session.energy.solar_share == pytest.approx(400 / 900)
        assert session.last_at == T0 + 180 * S
        closed = store.sessions.close(session.id, T0 + 200 * S)
        assert closed.end == T0 + 200 * S
        assert closed.energy == session.energy
        with pytest.raises(StoreError, match="closed"):
            store.sessions.add(session.id, T0 + 300 * S, EnergySplit(grid_wh=1.0))
        with pytest.raises(StoreError, match="closed"):
            store.sessions.close(session.id, T0 + 300 * S)
        with pytest.raises(StoreError, match="no charging session"):
            store.sessions.add(999, T0, EnergySplit())
        assert store.sessions.current("garage") is None


def test_an_open_session_is_continued_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "surplus.db"
    with open_store(path) as store:
        session = store.sessions.open("garage", T0)
        store.sessions.add(session.id, T0 + 60 * S, EnergySplit(solar_wh=500.0))
        assert store.sessions.open("garage", T0 + 90 * S).id == session.id
    with open_store(path) as store:
        again = store.sessions.open("garage", T0 + 3600 * S)  # the service starts again
        assert again.id == session.id and again.start == T0
        again = store.sessions.add(again.id, T0 + 3660 * S, EnergySplit(grid_wh=500.0))
        assert again.energy.solar_share == 0.5
        store.sessions.close(again.id, T0 + 3700 * S)
        assert len(store.sessions.between(T0, T0 + DAY)) == 1
        other = store.sessions.open("garage", T0 + DAY)
        assert other.id != session.id


def test_sessions_are_listed_by_overlap_with_totals(tmp_path: Path) -> None:
    with open_store(tmp_path / "surplus.db") as store:
        for day, loadpoint in ((0, "garage"), (1, "garage"), (1, "street"), (3, "garage")):
            session = store.sessions.open(loadpoint, T0 + day * DAY)
            store.sessions.add(
                session.id, T0 + day * DAY, EnergySplit(solar_wh=1000.0 * day, grid_wh=1000.0)
            )
            if day < 3:
                store.sessions.close(session.id, T0 + day * DAY + 3600 * S)
        listed = store.sessions.between(T0 + 1800 * S, T0 + 2 * DAY)
        assert [(s.loadpoint, s.start) for s in listed] == [
            ("garage", T0),
            ("garage", T0 + DAY),
            ("street", T0 + DAY),
        ]
        total = sum((s.energy for s in listed), EnergySplit())
        assert total == EnergySplit(solar_wh=2000.0, grid_wh=3000.0)
        assert total.solar_share == 0.4
        assert [s.end for s in store.sessions.between(T0 + 2 * DAY, T0 + 30 * DAY)] == [None]
        running = store.sessions.current("garage")
        assert running is not None and running.start == T0 + 3 * DAY
        with pytest.raises(ValueError, match="before its start"):
            store.sessions.close(running.id, T0)


@pytest.mark.parametrize(
    "split", [{"solar_wh": -1.0}, {"grid_wh": math.nan}, {"cost_eur": math.inf}]
)
def test_an_impossible_energy_increment_is_refused(split: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        EnergySplit(**split)
