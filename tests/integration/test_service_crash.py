"""A service killed with SIGKILL mid-recording and started again keeps and continues its history.

``surplus demo --data <dir>`` runs in a subprocess until it has recorded a few rounds; the
test snapshots the store read-only (everything in it was flushed), kills the demo with
SIGKILL, checks the file, starts the demo again on the same directory and lets it record on.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx

from tests.integration.output import Followed

SERIES = [
    ("gateway", quantity)
    for quantity in ("battery_soc_pct", "battery_w", "grid_w", "load_w", "solar_w")
]
Samples = dict[tuple[str, str], list[tuple[int, float]]]


@contextmanager
def _demo(data: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``surplus demo`` on ``data`` with its API's base URL, killed at the end if still running."""
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "surplus.cli", "demo", "--port", "0", "--speed", "60"),
            *("--data", str(data)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = Followed(proc.stdout).wait_for("state:", timeout_s=15)
        assert url.startswith("http://127.0.0.1:")
        yield proc, url.removesuffix("/state")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def _stored(db: Path) -> Samples:
    """Every raw sample of the store, per series, oldest first; read-only."""
    with closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as connection:
        rows = connection.execute(
            "SELECT device, quantity, ts_ms, value FROM sample JOIN series ON id = series_id"
            " ORDER BY device, quantity, ts_ms"
        ).fetchall()
    stored: Samples = {}
    for device, quantity, ts_ms, value in rows:
        stored.setdefault((device, quantity), []).append((ts_ms, value))
    return stored


def _wait_for(done: Callable[[], bool], what: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _reading(api: str) -> bool:
    state = httpx.get(f"{api}/state", timeout=5).json()
    return state["site"]["grid_w"] is not None


def _z(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def _ms(text: str) -> int:
    return round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def _integrity(db: Path) -> str:
    with closing(sqlite3.connect(db)) as connection:
        (check,) = connection.execute("PRAGMA integrity_check").fetchone()
    return str(check)


def test_a_killed_service_keeps_its_history_and_continues_it(tmp_path: Path) -> None:
    db = tmp_path / "surplus.db"
    with _demo(tmp_path) as (proc, api):
        _wait_for(lambda: _reading(api), "a reading")
        # a few rounds of polling, each flushed within a second
        _wait_for(
            lambda: db.exists() and all(len(_stored(db).get(s, [])) >= 3 for s in SERIES),
            "three recorded rounds",
        )
        before = _stored(db)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL

    assert _integrity(db) == "ok"
    after_kill = _stored(db)
    assert sorted(after_kill) == SERIES
    for series in SERIES:
        # everything flushed before the kill is still there, in order, with its value
        assert after_kill[series][: len(before[series])] == before[series], series

    with _demo(tmp_path) as (proc, api):
        _wait_for(lambda: _reading(api), "a reading after the restart")
        newest = {series: after_kill[series][-1][0] for series in SERIES}
        _wait_for(
            lambda: all(
                sum(ts > newest[s] for ts, _ in _stored(db).get(s, [])) >= 2 for s in SERIES
            ),
            "two rounds recorded after the restart",
        )
        # the restarted API serves the one history, from before the kill to after it
        grid = ("gateway", "grid_w")
        first, to = after_kill[grid][0][0], round(time.time() * 1000) + 60_000
        query = f"series=gateway.grid_w&from={_z(first)}&to={_z(to)}&step=1"
        buckets = httpx.get(f"{api}/history?{query}", timeout=5).json()["buckets"]
        starts = [_ms(b["start"]) for b in buckets]
        assert starts[0] == first // 1000 * 1000 and starts[-1] > newest[grid], starts
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0

    assert _integrity(db) == "ok"
    final = _stored(db)
    assert sorted(final) == SERIES  # the same series continued, no new one beside them
    for series in SERIES:
        n = len(after_kill[series])
        kept, resumed = final[series][:n], final[series][n:]
        assert kept == after_kill[series], series
        assert len(resumed) >= 2 and resumed[0][0] > newest[series], series
        times = [ts for ts, _ in final[series]]
        assert times == sorted(set(times)), series  # strictly increasing: no duplicates
