"""A recording process killed with SIGKILL loses at most its last unflushed samples.

A child process records a sample every 20 ms (flushing every 0.2 s) and reports what it
recorded and what each flush made durable; it is killed mid-recording, and the store is
opened again as the restarted service would.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from surplus.store import Store
from surplus.store.timestamps import to_ms
from tests.unit.test_store import assert_buckets, expected_buckets

T0 = datetime(2024, 6, 10, 12, 0, tzinfo=UTC)
STEP = timedelta(milliseconds=20)

CHILD = """
import sys, time
from datetime import UTC, datetime, timedelta

from surplus.store import Store
from surplus.store.timestamps import to_ms

store = Store.open(sys.argv[1], flush_interval_s=0.2)
t0 = datetime(2024, 6, 10, 12, 0, tzinfo=UTC)
reported = None
i = 0
while True:
    at = t0 + i * timedelta(milliseconds=20)
    store.recorder.record("meter", "grid_w", "W", at, float(i))
    print("recorded", to_ms(at), flush=True)
    flushed = store.recorder.flushed_until
    if flushed != reported:
        reported = flushed
        print("flushed", to_ms(flushed), flush=True)
    i += 1
    time.sleep(0.02)
"""


def run_and_kill(path: Path) -> tuple[list[int], list[int]]:
    """Run the recording child until its first flush and about a second more, then SIGKILL
    it; returns the times it recorded and the times its flushes reported, in ms."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    first_flush = threading.Event()

    def read() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            lines.append(line)
            if line.startswith("flushed"):
                first_flush.set()

    reader = threading.Thread(target=read)
    reader.start()
    started = first_flush.wait(10)
    if started:
        time.sleep(1.0)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(5)
    reader.join(5)
    assert child.stderr is not None
    assert started, f"the child never flushed: {child.stderr.read()}"
    assert child.returncode == -signal.SIGKILL
    complete = [line.split() for line in lines if line.endswith("\n")]
    recorded = [int(ms) for kind, ms in complete if kind == "recorded"]
    flushed = [int(ms) for kind, ms in complete if kind == "flushed"]
    return recorded, flushed


def stored_ms(store: Store) -> list[int]:
    samples = store.series.samples("meter", "grid_w", T0, T0 + timedelta(days=1))
    assert [s.value for s in samples] == [float(i) for i in range(len(samples))]
    return [to_ms(s.at) for s in samples]


def test_a_killed_recorder_loses_at_most_its_last_flush_interval(tmp_path: Path) -> None:
    path = tmp_path / "data" / "surplus.db"
    recorded, flushed = run_and_kill(path)
    assert len(flushed) >= 4  # about a second at 0.2 s, at least one flush before that

    (check,) = sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()
    assert check == "ok"

    every = [to_ms(T0 + i * STEP) for i in range(len(recorded) + 1)]
    with Store.open(path, flush_interval_s=3600) as store:
        stored = stored_ms(store)
        # no gap: every sample from the first to the newest stored, and at least every
        # sample the last reported flush covered
        assert stored == every[: len(stored)]
        assert stored[-1] >= max(flushed)
        assert recorded[-1] - stored[-1] <= 1000  # at most the last unflushed second

        # the restarted service goes on with the same series
        resumed = len(stored)
        for i in range(resumed, resumed + 100):
            store.recorder.record("meter", "grid_w", "W", T0 + i * STEP, float(i))
    with Store.open(path, flush_interval_s=3600) as store:
        stored = stored_ms(store)
        assert stored == every[:resumed] + [
            to_ms(T0 + i * STEP) for i in range(resumed, resumed + 100)
        ]
        samples = [(ms, float(i)) for i, ms in enumerate(stored)]
        for step_s in (1, 60, 900, 86_400):
            history = store.series.history("meter", "grid_w", T0, T0 + timedelta(days=1), step_s)
            assert_buckets(history, expected_buckets(samples, step_s))
