"""``surplus demo --charger tesla`` and ``--charger wallbox`` in a subprocess, over a sunny
afternoon run fast: the car charges from the sun through the cloud charger, its current
moves with the surplus, the evening's unplugging ends a session that the store keeps, and
the session's API calls stay within the target of 10 commands and 1 wake."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from surplus.store import Store
from tests.integration.output import Followed

SPEED = 120.0  # 15:00 to the 19:00 unplugging simulated in 2 minutes
START = "15:00"
WITHIN_S = 4 * 3600 / SPEED + 60


def _loadpoint(url: str) -> dict[str, Any]:
    (loadpoint,) = httpx.get(url, timeout=5).json()["loadpoints"]
    assert isinstance(loadpoint, dict)
    return loadpoint


@pytest.mark.parametrize("charger", ["tesla", "wallbox"])
def test_a_cloud_charger_charges_from_the_sun_within_its_command_target(
    tmp_path: Path, charger: str
) -> None:
    command = [sys.executable, "-m", "surplus.cli", "demo", "--charger", charger]
    options = ["--speed", f"{SPEED:g}", "--start", START, "--port", "0", "--data", str(tmp_path)]
    proc = subprocess.Popen(
        [*command, *options, "--log-level", "info"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    out = Followed(proc.stdout)
    began = datetime.now(UTC)
    currents: set[float] = set()
    try:
        url = out.wait_for("state:", timeout_s=30)
        started, charged = time.monotonic(), False
        while True:  # until the 19:00 unplugging, once the car has charged
            loadpoint = _loadpoint(url)
            if loadpoint["charger_status"] == "charging":
                charged = True
                currents.add(loadpoint["setpoint_a"])
            elif charged and loadpoint["charger_status"] == "disconnected":
                shown = httpx.get(url.replace("/state", "/sessions"), timeout=5).json()
                break
            assert time.monotonic() - started < WITHIN_S, (loadpoint, out.lines[-20:])
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = "".join(out.read_to_end(5))
    assert len(currents) >= 2, currents  # the current followed the surplus
    with Store.open(tmp_path / "surplus.db") as store:
        (session,) = store.sessions.between(began, datetime.now(UTC) + timedelta(minutes=1))
    assert session.end is not None
    (listed,) = shown["sessions"]  # the API lists it as the store keeps it
    assert listed["id"] == session.id and listed["end"] == session.end.isoformat()
    assert listed["energy_wh"] == pytest.approx(session.energy.total_wh, abs=0.1)
    energy = session.energy
    assert energy.total_wh > 1000.0
    # from the sun, or from the home battery carrying it between two hourly changes
    assert energy.solar_wh > 0.5 * energy.total_wh and energy.grid_wh < 0.1 * energy.total_wh
    api = loadpoint["session_api"]
    assert api["commands"] <= 10 and api["wakes"] <= 1, api
    assert f"session ended after {api['reads']} reads, {api['commands']} commands" in log
    assert "429" not in log and "rate limit" not in log.lower()
