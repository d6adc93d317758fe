"""The whole service against the simulated gateway over HTTPS on 127.0.0.1, one test per
failure mode of the local gateway (reference E2 and the 23.44+ quirks).

Where the gateway fails (an empty 502, a 503 busy, a timeout, a garbled answer, a
rate-limited login, a changed password, a replaced certificate, a reboot) the service keeps
running, the API marks every reading stale and says why, and the readings come back once
the gateway does, without a restart and without a login loop. Where the gateway only
changes (removed endpoints, new enum values, a grid outage) the readings go on and the
service adapts: no write during an outage, no question asked twice of a removed endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from surplus.cli import app
from surplus.config import load_config
from surplus.integrations.powerwall import client as client_module
from surplus.integrations.powerwall import models as m
from surplus.integrations.powerwall.simstate import FIRMWARE
from surplus.integrations.powerwall.simulator import (
    PowerwallSimulator,
    ServedSimulator,
    running_simulator,
)
from surplus.runtime import devices as devices_module
from surplus.runtime.backoff import Backoff
from surplus.runtime.datadir import open_store, open_vault
from surplus.runtime.service import Service

PASSWORD = "Kt4-gateway-Pw"
LOGIN = "POST /api/login/Basic"
POLL_S = 0.2
SITE = ("grid_w", "solar_w", "home_w", "battery_w", "battery_soc_pct")

State = dict[str, Any]


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries within a test's seconds: the production backoff starts at 2 s."""
    monkeypatch.setattr(devices_module, "POLL_BACKOFF", Backoff(0.1, 2.0, 0.4))


def write_config(data_dir: Path, served: ServedSimulator, *, pinned: bool = True) -> Path:
    open_vault(data_dir).set("gateway.password", PASSWORD)
    fingerprint = f'fingerprint = "{served.fingerprint}"\n' if pinned else ""
    path = data_dir / "surplus.toml"
    path.write_text(
        f'[service]\ndata_dir = "{data_dir}"\n\n'
        f'[[devices]]\ntype = "powerwall"\nname = "gateway"\nhost = "{served.url}"\n'
        f'password_secret = "gateway.password"\n{fingerprint}'
        f"poll_interval_s = {POLL_S}\ntimeout_s = 0.5\n"
    )
    return path


@dataclass
class Running:
    """The service under test and the way to look at it through its API."""

    config: Path
    url: str
    http: httpx.AsyncClient
    task: asyncio.Task[None]
    last: State | None = None

    async def state(self) -> State:
        assert not self.task.done(), "the service stopped"
        self.last = (await self.http.get(f"{self.url}/api/v1/state")).json()
        return self.last

    async def until(self, what: str, test: Callable[[State], bool], within_s: float = 10) -> State:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            state = await self.state()
            if test(state):
                return state
            await asyncio.sleep(0.05)
        raise AssertionError(f"not {what} within {within_s} s; last state: {self.last}")

    async def healthy(self) -> State:
        return await self.until("fresh and ok", fresh)

    async def stale(self, status: str, detail: str) -> State:
        def failing(state: State) -> bool:
            gateway = integration(state)
            return (
                gateway["status"] == status
                and detail in gateway["detail"]
                and all(state["site"][key]["stale"] for key in SITE)
            )

        return await self.until(f"stale with {status!r} ({detail!r})", failing)


def integration(state: State) -> dict[str, Any]:
    return next(i for i in state["integrations"] if i["name"] == "gateway")


def fresh(state: State) -> bool:
    site = state["site"]
    return integration(state)["status"] == "ok" and all(
        site[key] is not None and not site[key]["stale"] for key in SITE
    )


@contextlib.asynccontextmanager
async def service(config: Path, recheck_s: float = 0.2) -> AsyncIterator[Running]:
    urls: list[str] = []
    task = asyncio.create_task(
        Service(load_config(config), api_port=0, on_ready=urls.append, recheck_s=recheck_s).run()
    )
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            deadline = time.monotonic() + 10
            while not urls:
                assert time.monotonic() < deadline and not task.done(), "no API"
                await asyncio.sleep(0.02)
            running = Running(config, urls[0], http, task)
            await running.healthy()
            yield running
            await running.state()  # still answering at the end
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def site(
    tmp_path: Path, sim: PowerwallSimulator | None = None, *, pinned: bool = True
) -> AsyncIterator[tuple[ServedSimulator, Running]]:
    async with (
        running_simulator(sim or PowerwallSimulator(PASSWORD)) as served,
        service(write_config(tmp_path, served, pinned=pinned)) as running,
    ):
        yield served, running


@pytest.mark.parametrize(
    ("fault", "detail"),
    [
        # sitemaster stopped, or the gateway updating or rebooting: empty 502s
        pytest.param("sitemaster_stopped", "502 with an empty body", id="empty-502"),
        # 23.44+ firmware: 503 "current config mode is busy"
        pytest.param("busy_503", "busy (503)", id="busy-503"),
        # answers slower than the timeout
        pytest.param("slow", "no answer within", id="timeout"),
        # a firmware mid-update serving a page where JSON was: not understood, not a crash
        pytest.param("garbled", "does not understand", id="garbled-answer"),
    ],
)
async def test_a_failing_gateway_is_stale_until_it_recovers(
    tmp_path: Path, fault: str, detail: str
) -> None:
    sim = PowerwallSimulator(PASSWORD, slow_s=2.0)
    async with site(tmp_path, sim) as (served, running):
        logins = served.sim.requests[LOGIN]
        served.sim.faults.add(fault)
        await running.stale("stale", detail)
        served.sim.faults.discard(fault)
        await running.healthy()
        assert served.sim.requests[LOGIN] == logins  # the session was kept throughout


async def test_session_expired_while_login_is_rate_limited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """403 on an expired session -> one fresh login -> 429: a cool-down, not a login loop."""
    monkeypatch.setattr(client_module, "LOGIN_COOLDOWN_S", 1.5)
    async with site(tmp_path) as (served, running):
        logins = served.sim.requests[LOGIN]
        served.sim.faults.add("token_expired", "login_429")
        await running.stale("rate limited", "429")
        await asyncio.sleep(1.0)  # several polls inside the cool-down
        assert served.sim.requests[LOGIN] == logins + 1
        served.sim.faults.discard("login_429")
        await running.healthy()
        assert served.sim.requests[LOGIN] == logins + 2


async def test_password_changed_on_the_gateway(tmp_path: Path) -> None:
    """403 on the old session -> one fresh login -> 401: needs re-authentication, no further
    login, until the owner stores the new password; then it recovers without a restart."""
    async with site(tmp_path) as (served, running):
        logins = served.sim.requests[LOGIN]
        served.sim.set_password("New-gateway-Pw-2")
        served.sim.faults.add("token_expired")
        await running.stale("needs re-authentication", "refused the password")
        await asyncio.sleep(1.0)
        assert served.sim.requests[LOGIN] == logins + 1
        result = CliRunner().invoke(
            app,
            ["secret", "set", "gateway.password", "--config", str(running.config)],
            input="New-gateway-Pw-2\n",
        )
        assert result.exit_code == 0, result.output
        assert "New-gateway-Pw-2" not in result.output
        await running.healthy()


async def test_certificate_replaced_is_refused_until_re_pinned(tmp_path: Path) -> None:
    """A gateway reset or swapped on the same address presents a new certificate: refused
    before any password is sent, until the owner pins it with ``surplus pin``."""
    first = running_simulator(PowerwallSimulator(PASSWORD))
    old = await first.__aenter__()
    config = write_config(tmp_path, old, pinned=False)
    port = int(old.url.rsplit(":", 1)[1])
    async with service(config) as running:
        with open_store(tmp_path) as store:
            pin = store.pins.get("gateway")
        assert pin is not None and pin.fingerprint == old.fingerprint  # trusted on first use
        await first.__aexit__(None, None, None)
        await running.stale("stale", "cannot reach")
        async with running_simulator(PowerwallSimulator(PASSWORD), port=port) as new:
            await running.stale("needs re-authentication", "not the pinned")
            assert new.sim.requests[LOGIN] == 0
            result = await asyncio.to_thread(
                CliRunner().invoke, app, ["pin", "gateway", "--config", str(config), "--yes"]
            )
            assert result.exit_code == 0, result.output
            assert new.fingerprint in result.output
            await running.healthy()


async def test_gateway_rebooting_is_unreachable_then_back(tmp_path: Path) -> None:
    """A reboot or firmware update: connections refused for a while, then the same gateway
    (same address, same certificate) answers again."""
    first = running_simulator(PowerwallSimulator(PASSWORD))
    old = await first.__aenter__()
    port = int(old.url.rsplit(":", 1)[1])
    async with service(write_config(tmp_path, old)) as running:
        await first.__aexit__(None, None, None)
        await running.stale("stale", "cannot reach")
        again = running_simulator(PowerwallSimulator(PASSWORD), port=port, tls=old.tls)
        async with again as rebooted:
            await running.healthy()
            assert rebooted.sim.requests[LOGIN] == 1


async def test_writes_wait_while_the_grid_is_down(tmp_path: Path) -> None:
    """During an outage the readings go on, but the operation is never changed: the
    engine's command fails (and is logged) until the grid is back and synchronised."""
    sim = PowerwallSimulator(PASSWORD, reconnect_s=1.0)
    sim.operation = sim.operation.model_copy(
        update={"backup_reserve_percent": m.app_to_raw_pct(80.0)}
    )
    sim.faults.add("grid_down")
    async with site(tmp_path, sim) as (served, running):
        await asyncio.sleep(1.0)
        assert fresh(await running.state())
        assert served.sim.requests["POST /api/operation"] == 0
        served.sim.faults.discard("grid_down")
        deadline = time.monotonic() + 10
        while m.raw_to_app_pct(served.sim.operation.backup_reserve_percent) > 20.5:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        assert served.sim.grid_status == m.GridStatus.CONNECTED
        results: list[str] = []
        while not results or results[0] != "ok":  # the write read back, then logged
            assert time.monotonic() < deadline, results
            await asyncio.sleep(0.1)
            with open_store(tmp_path) as store:
                now = datetime.now(UTC)
                entries = store.log.between(now - timedelta(minutes=1), now)
            results = [e.result for e in entries]
    assert any("grid status is SystemIslandedActive" in r for r in results[1:])


async def test_new_grid_states_are_tolerated(tmp_path: Path) -> None:
    """An enum value this client never saw (``SystemWaitForUser``) is carried through as
    it is: readings go on, and it is not taken for a connected grid."""
    async with site(tmp_path) as (served, running):
        served.sim.grid_status = "SystemWaitForUser"
        await asyncio.sleep(3 * POLL_S)
        assert fresh(await running.state())


async def test_a_firmware_update_that_removes_endpoints(tmp_path: Path) -> None:
    """After an update the gateway refuses endpoints it served (here: what a Powerwall 3
    refuses the customer): each is asked once, then remembered as unsupported; the readings
    go on from the endpoints that remain."""
    async with site(tmp_path) as (served, running):
        served.sim.firmware = FIRMWARE["pw3"]
        await asyncio.sleep(5 * POLL_S)
        asked = served.sim.requests["GET /api/system_status"]
        logins = served.sim.requests[LOGIN]
        await asyncio.sleep(5 * POLL_S)
        assert fresh(await running.state())
        assert served.sim.requests["GET /api/system_status"] == asked
        assert served.sim.requests[LOGIN] == logins
