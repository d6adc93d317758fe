"""The closed loop in the running service: a simulated OCPP wallbox connects to the service's
central system, a simulated Powerwall site around it; in solar mode the charging current
follows the surplus, and the session is kept in the store with its energy and solar share.

The engine's contactor timers and command budget are shortened to fractions of a second,
so that a test sees in seconds what takes minutes at home.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from surplus.config import load_config
from surplus.integrations.ocpp.chargepoint_sim import SimulatedChargePoint
from surplus.integrations.powerwall.simulator import PowerwallSimulator, running_simulator
from surplus.runtime.datadir import open_store, open_vault
from surplus.runtime.service import Service
from surplus.sim.devices import ElectricVehicle, HomeBattery

PASSWORD = "Loop-gateway-Pw-5"
HOUSE_W = 500.0
VOLTS = 230.0


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _config(tmp_path: Path, gateway: str, fingerprint: str, ocpp_port: int) -> Path:
    open_vault(tmp_path).set("gateway.password", PASSWORD)
    path = tmp_path / "surplus.toml"
    path.write_text(
        f'[service]\ndata_dir = "{tmp_path}"\n\n'
        f'[ocpp]\nhost = "127.0.0.1"\nprofile1_port = {ocpp_port}\n\n'
        f'[[devices]]\ntype = "powerwall"\nname = "gateway"\nhost = "{gateway}"\n'
        f'password_secret = "gateway.password"\nfingerprint = "{fingerprint}"\n'
        "poll_interval_s = 0.3\n\n"
        '[[devices]]\ntype = "ocpp"\nname = "wallbox"\nphases = 1\n\n'
        '[[loadpoints]]\nname = "carport"\nmode = "solar"\ncharger_device = "wallbox"\n'
        "[loadpoints.charger]\nphases = 1\nmin_current_a = 6\nmax_current_a = 16\n"
        "[loadpoints.contactor]\nstart_delay_s = 0.5\nstop_delay_s = 1\nmin_on_s = 1\n"
        "min_off_s = 1\n"
        "[loadpoints.budget]\nmin_interval_s = 0.3\n"
    )
    return path


async def _until(
    http: httpx.AsyncClient, url: str, what: str, test: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        last = (await http.get(f"{url}/api/v1/state")).json()["loadpoints"][0]
        if test(last):
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"not {what} within 20 s: {last}")


async def test_the_charging_current_follows_the_surplus_and_the_session_is_kept(
    tmp_path: Path,
) -> None:
    solar = {"w": 2_500.0}
    wallbox: list[SimulatedChargePoint] = []

    def house_w(_: datetime) -> float:
        return HOUSE_W + (wallbox[0].power_w() if wallbox else 0.0)

    battery = HomeBattery(energy_wh=13_500.0)  # full: the surplus is the car's
    site = PowerwallSimulator(
        PASSWORD, solar_w=lambda _: solar["w"], load_w=house_w, battery=battery
    )
    ocpp_port = _free_port()
    async with running_simulator(site) as gateway:
        config = _config(tmp_path, gateway.url, gateway.fingerprint, ocpp_port)
        with open_store(tmp_path) as store:
            key = store.chargers.add("wallbox")
        urls: list[str] = []
        service = asyncio.create_task(
            Service(load_config(config), api_port=0, on_ready=urls.append).run()
        )
        charger = SimulatedChargePoint(
            "wallbox",
            f"ws://127.0.0.1:{ocpp_port}/ocpp",
            key=key,
            phases=1,
            max_current_a=16.0,
            speed=20.0,
            car=lambda: ElectricVehicle(capacity_wh=60_000.0, energy_wh=20_000.0),
        )
        wallbox.append(charger)
        running: asyncio.Task[None] | None = None
        try:
            async with httpx.AsyncClient(timeout=5) as http:
                deadline = time.monotonic() + 10
                while not urls:
                    assert time.monotonic() < deadline and not service.done()
                    await asyncio.sleep(0.05)
                running = asyncio.create_task(charger.run())
                await charger.wait_connected(10)
                await charger.plug_in()
                # (2500 - 500) W of surplus on one phase: 8 A
                first = await _until(
                    http,
                    urls[0],
                    "charging from the surplus",
                    lambda lp: lp["charger_status"] == "charging" and lp["setpoint_a"] == 8.0,
                )
                assert first["offered_current_a"] == 8.0
                assert first["reason"].startswith("charging 8 A")
                solar["w"] = 3_500.0  # more sun: (3500 - 500) / 230 = 13 A
                more = await _until(
                    http, urls[0], "following the sun up", lambda lp: lp["setpoint_a"] == 13.0
                )
                assert more["power_w"] is not None
                await _until(
                    http,
                    urls[0],
                    "drawing the new current",
                    lambda lp: lp["power_w"] == 13.0 * VOLTS,
                )
                await asyncio.sleep(1.5)  # some energy in the session
                await charger.unplug()
                await _until(
                    http,
                    urls[0],
                    "unplugged",
                    lambda lp: lp["charger_status"] == "disconnected" and lp["session_wh"] is None,
                )
        finally:
            charger.drop()  # a simulator cancelled mid-run may keep its socket
            if running is not None:
                running.cancel()
            service.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await service
    with open_store(tmp_path) as store:
        now = datetime.now(UTC)
        (session,) = store.sessions.between(now - timedelta(hours=1), now + timedelta(hours=1))
        decisions = store.log.between(now - timedelta(hours=1), now + timedelta(hours=1))
    assert session.end is not None and session.loadpoint == "carport"
    assert session.energy.total_wh > 10  # 3 kW for a few simulated seconds
    assert session.energy.solar_share is not None and session.energy.solar_share > 0.9
    currents = [e.command.get("current_a") for e in decisions if e.loadpoint == "carport"]
    assert 8.0 in currents and 13.0 in currents
