"""The public ``wallbox`` library (what Home Assistant uses) signs in to our simulator and
reads a charger's status: the simulator speaks the cloud's dialect. The library's base URLs
are instance attributes, pointed at the simulator; its certificate is trusted through
``REQUESTS_CA_BUNDLE``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from surplus.integrations.wallbox.simulator import running_simulator
from tests.wallbox_kit import CHARGER, EMAIL, PASSWORD, FakeTime, new_sim

wallbox = pytest.importorskip("wallbox")


async def test_library_signs_in_and_reads_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = new_sim(FakeTime())
    sim.plug_in()
    async with running_simulator(sim) as served:
        ca = tmp_path / "ca.pem"
        ca.write_bytes(served.ca_pem)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))
        client = wallbox.Wallbox(EMAIL, PASSWORD, requestGetTimeout=5)
        client.authUrl = served.user_url + "/"
        client.baseUrl = served.api_url + "/"

        def use() -> tuple[list[int], dict[str, object]]:
            client.authenticate()
            return client.getChargersList(), client.getChargerStatus(CHARGER)

        chargers, status = await asyncio.to_thread(use)
    assert chargers == [CHARGER]
    assert status["status_id"] == 181  # waiting for car demand, just plugged in
    assert sim.signins == 1 and sim.requests["GET /users/signin"] == 1
