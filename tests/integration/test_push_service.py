"""The push API in the running service: a shell script using only ``curl``, written the
way Charge HQ's documentation tells owners to, pushes to surplus instead (only the URL
changed) and its values appear in ``/api/v1/state``; a silent source goes stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from surplus.cli import app
from surplus.config import load_config
from surplus.runtime.service import Service

# As Charge HQ's push API page shows it: JSON with the key in the body, powers in kW.
CHARGE_HQ_SCRIPT = """#!/bin/sh
# Push my inverter's readings to the Push API (every minute, from cron)
curl -s -X POST "$PUSH_URL" \\
  -H "Content-Type: application/json" \\
  -d '{
    "apiKey": "'"$API_KEY"'",
    "siteMeters": {
      "production_kw": 4.2,
      "net_import_kw": -2.9,
      "consumption_kw": 1.3,
      "imported_kwh": 10234.5,
      "exported_kwh": 8123.4
    }
  }'
"""

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")


async def _state(http: httpx.AsyncClient, url: str) -> dict[str, Any]:
    answer: dict[str, Any] = (await http.get(f"{url}/api/v1/state")).json()
    return answer


async def test_a_charge_hq_curl_script_feeds_the_state(tmp_path: Path) -> None:
    config = tmp_path / "surplus.toml"
    config.write_text(
        f'[service]\ndata_dir = "{tmp_path}"\n\n'
        '[[devices]]\ntype = "push"\nname = "inverter"\nstale_after_s = 2.0\n'
    )
    made = CliRunner().invoke(app, ["push-key", "create", "inverter", "--config", str(config)])
    assert made.exit_code == 0, made.output
    key = made.stdout.strip()
    script = tmp_path / "push.sh"
    script.write_text(CHARGE_HQ_SCRIPT)
    script.chmod(0o700)

    urls: list[str] = []
    task = asyncio.create_task(Service(load_config(config), api_port=0, on_ready=urls.append).run())
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            deadline = time.monotonic() + 10
            while not urls:
                assert time.monotonic() < deadline and not task.done()
                await asyncio.sleep(0.02)
            before = await _state(http, urls[0])
            assert before["site"]["solar_w"] is None
            assert before["integrations"][0]["status"] == "starting"

            env = {**os.environ, "PUSH_URL": f"{urls[0]}/api/public/push-solar-data"}
            env["API_KEY"] = key
            pushed = await asyncio.to_thread(
                subprocess.run, [str(script)], env=env, capture_output=True, text=True
            )
            assert pushed.returncode == 0, pushed.stderr
            assert '"success":true' in pushed.stdout.replace(" ", "")

            state = await _state(http, urls[0])
            site = state["site"]
            assert site["source"] == "inverter"
            assert site["solar_w"]["value"] == pytest.approx(4200.0)
            assert site["grid_w"]["value"] == pytest.approx(-2900.0)
            assert site["home_w"]["value"] == pytest.approx(1300.0)
            assert site["battery_w"] is None  # the script sent no battery
            assert not site["solar_w"]["stale"]
            assert state["integrations"][0]["status"] == "ok"

            deadline = time.monotonic() + 10
            while (await _state(http, urls[0]))["integrations"][0]["status"] != "stale":
                assert time.monotonic() < deadline, "a silent source never went stale"
                await asyncio.sleep(0.2)
            stale = await _state(http, urls[0])
            assert "no push for" in stale["integrations"][0]["detail"]
            assert stale["site"]["solar_w"]["stale"]

            again = await asyncio.to_thread(
                subprocess.run, [str(script)], env=env, capture_output=True, text=True
            )
            assert '"too soon' in again.stdout  # Charge HQ's 30 s floor, kept by surplus
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for path in tmp_path.iterdir():  # the store, its WAL, the vault: never the key itself
        assert key.encode() not in path.read_bytes(), path
