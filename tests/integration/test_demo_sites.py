"""``surplus demo --site envoy`` and ``--site push`` in a subprocess: within 30 s the state
shows the simulated site's live solar and consumption, and Ctrl-C stops it cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from surplus.runtime.datadir import open_vault
from tests.integration.output import Followed


def _live(state: dict[str, Any], device: str) -> bool:
    (integration,) = state["integrations"]
    site = state["site"]
    return (integration["name"], integration["status"]) == (device, "ok") and all(
        site[key] is not None and not site[key]["stale"] for key in ("solar_w", "home_w")
    )


@pytest.mark.parametrize(
    ("site", "device", "kind"), [("envoy", "envoy", "envoy"), ("push", "inverter", "push")]
)
def test_demo_site_shows_live_solar_and_consumption(
    tmp_path: Path, site: str, device: str, kind: str
) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "surplus.cli",
            "demo",
            "--site",
            site,
            "--port",
            "0",
            "--data",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    out = Followed(proc.stdout)
    try:
        url = out.wait_for("state:", timeout_s=30)
        started = time.monotonic()
        while not _live(state := httpx.get(url, timeout=5).json(), device):
            assert time.monotonic() - started < 30, state
            time.sleep(0.2)
        assert state["site"]["source"] == device
        assert state["integrations"][0]["type"] == kind
        assert state["site"]["solar_w"]["value"] >= 0 and state["site"]["home_w"]["value"] > 0
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert out.read_to_end(5)[-1].strip() == "stopped"
    vault = open_vault(tmp_path)
    for name in vault.names():  # the Envoy's token and Enlighten password
        secret = vault.get(name).reveal().encode()
        assert all(secret not in path.read_bytes() for path in tmp_path.iterdir())


def test_demo_with_an_ocpp_charger_drives_it(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "surplus.cli", "demo", "--charger", "ocpp"]
    proc = subprocess.Popen(
        [*command, "--port", "0", "--data", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    out = Followed(proc.stdout)
    try:
        url = out.wait_for("state:", timeout_s=30)
        started = time.monotonic()
        while True:
            state = httpx.get(url, timeout=5).json()
            (loadpoint,) = state["loadpoints"]
            health = {i["name"]: i["status"] for i in state["integrations"]}
            if loadpoint["charger_status"] is not None and health.get("wallbox") == "ok":
                break
            assert time.monotonic() - started < 30, state
            time.sleep(0.2)
        # a car is plugged in by day (simulated local time): either way the loop reports it
        assert loadpoint["charger_status"] in ("disconnected", "connected", "charging")
        assert loadpoint["reason"] and not loadpoint["reason"].startswith("not controlled")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
