"""Retention pruning on a schedule: at once when started, then every interval, logged."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from surplus.config import ServiceConfig
from surplus.runtime.maintenance import prune_periodically
from surplus.runtime.service import Service
from surplus.store import Point, Store

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
DAY = timedelta(days=1)


def _record(store: Store, *ages: timedelta) -> None:
    store.series.write(Point("meter", "grid_w", "W", NOW - age, 1.0) for age in ages)


def _raw(store: Store) -> list[datetime]:
    return [s.at for s in store.series.samples("meter", "grid_w", NOW - 30 * DAY, NOW + DAY)]


def _pruned(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "retention pruning" in r.getMessage()]


async def _until(done: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


async def test_pruning_runs_at_once_then_every_interval(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="surplus.runtime.maintenance")
    with Store.open(tmp_path / "surplus.db") as store:
        _record(store, 10 * DAY, 9 * DAY, 6 * DAY, DAY)
        times = [NOW, NOW + 2 * DAY]  # the raw horizon is 7 days

        def clock() -> datetime:
            return times.pop(0) if len(times) > 1 else times[0]

        task = asyncio.create_task(prune_periodically(store, clock, 0.2))
        try:
            await _until(lambda: len(_pruned(caplog)) >= 1)
            assert _raw(store) == [NOW - 6 * DAY, NOW - DAY]
            await _until(lambda: len(_pruned(caplog)) >= 2)
            assert _raw(store) == [NOW - DAY]
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    first, second = _pruned(caplog)[:2]
    assert "deleted 2 rows" in first and "deleted 1 rows" in second


async def test_the_service_prunes_its_store_when_it_starts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="surplus.runtime.maintenance")
    with Store.open(tmp_path / "surplus.db") as store:
        _record(store, 8 * DAY, DAY)
    urls: list[str] = []
    service = Service(
        ServiceConfig(), now=lambda: NOW, data_dir=tmp_path, api_port=0, on_ready=urls.append
    )  # the default interval: an hour, so only the pruning at start can run here
    task = asyncio.create_task(service.run())
    try:
        await _until(lambda: bool(urls and _pruned(caplog)) or task.done())
        assert not task.done()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert _pruned(caplog) == [f"retention pruning deleted 1 rows from {tmp_path / 'surplus.db'}"]
    with Store.open(tmp_path / "surplus.db") as store:
        assert _raw(store) == [NOW - DAY]


def test_push_messages_are_kept_for_30_days(tmp_path: Path) -> None:
    from surplus.runtime.maintenance import prune

    with Store.open(tmp_path / "surplus.db") as store:
        for age in (31 * DAY, 29 * DAY):
            store.push_messages.append(
                "inverter", NOW - age, tsms=None, payload={}, flags=(), status=200
            )
        assert prune(store, NOW) == 1
        assert [m.received_at for m in store.push_messages.recent("inverter")] == [NOW - 29 * DAY]
