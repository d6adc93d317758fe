"""Firmware profiles of the simulated gateway and what the client and the adapter make of them,
over real HTTPS on 127.0.0.1: vitals present or removed (21.44, 23.44), busy bursts and
stricter login limits (23.44), a Powerwall 3 without a portal, plain HTTP redirected, a
password lockout, and the client's negative cache of endpoints a gateway does not offer.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest

from surplus.control.state import BatteryMode
from surplus.domain.errors import AuthenticationError, NotSupportedError
from surplus.integrations.powerwall import models as m
from surplus.integrations.powerwall.adapter import PowerwallAdapter
from surplus.integrations.powerwall.client import GatewayBusyError, PowerwallClient
from surplus.integrations.powerwall.simstate import FIRMWARE, Firmware
from surplus.integrations.powerwall.simulator import (
    PowerwallSimulator,
    ServedSimulator,
    running_simulator,
)
from surplus.security.vault import Secret
from tests import powerwall_kit as kit
from tests.powerwall_kit import LOGIN, MonoClock, SimClock

PASSWORD = "Profile-pw-8812"
AGGREGATES = "/api/meters/aggregates"
SYSTEM_STATUS = "GET /api/system_status"
FORBIDDEN = {
    "code": 403,
    "error": "Unable to GET to resource",
    "message": "User does not have adequate access rights",
}
BUSY = {
    "code": 503,
    "error": "current config mode is busy",
    "message": "current config mode is busy",
}


def gateway(
    sim: PowerwallSimulator, **client_kwargs: Any
) -> AbstractAsyncContextManager[tuple[ServedSimulator, PowerwallClient]]:
    return kit.gateway(sim, PASSWORD, **client_kwargs)


@asynccontextmanager
async def raw(sim: PowerwallSimulator) -> AsyncIterator[tuple[ServedSimulator, httpx.AsyncClient]]:
    """A served simulator and a plain httpx client that checks no certificate."""
    async with (
        running_simulator(sim) as served,
        httpx.AsyncClient(base_url=served.url, verify=False) as http,
    ):
        yield served, http


async def login(http: httpx.AsyncClient, password: str = PASSWORD) -> httpx.Response:
    return await http.post("/api/login/Basic", json={"username": "customer", "password": password})


def bearer(answer: httpx.Response) -> dict[str, str]:
    return {"Authorization": f"Bearer {answer.json()['token']}"}


# --- vitals: present up to 21.x, removed in 23.44 ---


@pytest.mark.parametrize("firmware", ["21.44", "1.45"])
async def test_vitals_are_a_protobuf_before_23_44(firmware: str) -> None:
    async with gateway(PowerwallSimulator(PASSWORD, firmware=firmware)) as (_, client):
        vitals = await client.vitals()
    assert vitals.startswith(b"\x0a")  # field 1, length-delimited
    async with raw(PowerwallSimulator(PASSWORD, firmware=firmware)) as (_, http):
        refused = await http.get("/api/devices/vitals")
        answer = await http.get("/api/devices/vitals", headers=bearer(await login(http)))
    assert refused.status_code == 403
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/octet-stream"
    assert answer.content == vitals


async def test_vitals_are_gone_on_23_44_and_asked_for_once() -> None:
    sim = PowerwallSimulator(PASSWORD, firmware="23.44", busy_rate=0.0)
    async with raw(sim) as (_, http):
        unauthenticated = await http.get("/api/devices/vitals")  # not routed: no auth check
    assert unauthenticated.status_code == 404
    assert unauthenticated.json()["code"] == 404

    sim = PowerwallSimulator(PASSWORD, firmware="23.44", busy_rate=0.0)
    async with gateway(sim) as (served, client):
        for _ in range(3):
            with pytest.raises(NotSupportedError, match="404"):
                await client.vitals()
        assert (await client.status()).version == "23.44.0 eb113390"
    assert served.sim.requests["GET /api/devices/vitals"] == 1


# --- 23.44: busy bursts and stricter login throttling ---


async def _busy_pattern(seed: int) -> list[int]:
    sim = PowerwallSimulator(PASSWORD, firmware="23.44", busy_rate=0.2, busy_seed=seed)
    async with raw(sim) as (_, http):
        headers = bearer(await login(http))
        answers = [await http.get(AGGREGATES, headers=headers) for _ in range(30)]
    assert all(a.json() == BUSY for a in answers if a.status_code == 503)
    return [a.status_code for a in answers]


async def test_23_44_answers_seeded_bursts_of_busy_and_the_client_says_so() -> None:
    pattern = await _busy_pattern(seed=7)
    assert set(pattern) == {200, 503}
    runs = "".join("b" if s == 503 else "." for s in pattern).split(".")
    assert all(len(run) >= 3 for run in runs[:-1] if run)  # a burst is 3 answers in a row
    assert await _busy_pattern(seed=7) == pattern

    sim = PowerwallSimulator(PASSWORD, firmware="23.44", busy_rate=0.2, busy_seed=7)
    async with gateway(sim) as (served, client):
        outcomes = []
        for _ in range(15):
            try:
                await client.aggregates()
                outcomes.append("ok")
            except GatewayBusyError as e:
                assert e.retry_after_s == 60
                outcomes.append("busy")
    assert set(outcomes) == {"ok", "busy"}
    assert served.sim.requests[LOGIN] == 1  # busy is not a refused session


@pytest.mark.parametrize(("firmware", "allowed"), [("23.44", 3), ("21.44", 6)])
async def test_23_44_rate_limits_logins_harder(firmware: str, allowed: int) -> None:
    async with raw(PowerwallSimulator(PASSWORD, firmware=firmware)) as (_, http):
        answers = [await login(http) for _ in range(6)]
    assert [a.status_code for a in answers] == [200] * allowed + [429] * (6 - allowed)
    for limited in answers[allowed:]:
        assert limited.json()["error"] == "Api Limit reached for this endpoint"
        assert "set-cookie" not in limited.headers


# --- a Powerwall 3 ---


async def test_pw3_has_no_portal_and_grants_the_customer_only_three_reads() -> None:
    async with raw(PowerwallSimulator(PASSWORD, firmware="pw3")) as (_, http):
        assert (await http.get("/api/status")).status_code == 404
        din = await http.get("/tedapi/din")
        assert (din.status_code, din.json()) == (403, FORBIDDEN)

        headers = bearer(await login(http))
        for path in (AGGREGATES, "/api/system_status/soe", "/api/system_status/grid_status"):
            assert (await http.get(path, headers=headers)).status_code == 200
        for path in (
            "/api/system_status",
            "/api/operation",
            "/api/sitemaster",
            "/api/config/completed",
            "/api/devices/vitals",
        ):
            refused = await http.get(path, headers=headers)
            assert (refused.status_code, refused.json()) == (403, FORBIDDEN), path
        write = await http.post("/api/operation", json={"real_mode": "backup"}, headers=headers)
        assert write.status_code == 403


@pytest.mark.parametrize("firmware", ["21.44", "23.44", "1.45"])
async def test_a_powerwall_2_answers_its_din_as_text(firmware: str) -> None:
    async with raw(PowerwallSimulator(PASSWORD, firmware=firmware)) as (served, http):
        answer = await http.get("/tedapi/din")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert answer.text == served.sim.status().din


async def test_the_client_takes_a_pw3_refusal_as_not_supported_without_a_login_loop() -> None:
    async with gateway(PowerwallSimulator(PASSWORD, firmware="pw3")) as (served, client):
        with pytest.raises(NotSupportedError, match="404"):
            await client.status()
        with pytest.raises(NotSupportedError, match=r"refused \(403\) right after a fresh login"):
            await client.system_status()
        for _ in range(3):
            with pytest.raises(NotSupportedError):
                await client.status()
            with pytest.raises(NotSupportedError, match="not asking again"):
                await client.system_status()
        await client.aggregates()
    requests = served.sim.requests
    assert requests["GET /api/status"] == 1
    assert requests[SYSTEM_STATUS] == 2  # refused, a fresh login, refused again: then never
    assert requests[LOGIN] == 2


async def test_the_adapter_reads_a_pw3_site_with_default_limits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = SimClock()
    sim = PowerwallSimulator(PASSWORD, firmware="pw3", solar_w=1_000.0, load_w=7_000.0, clock=clock)
    async with gateway(sim) as (served, client):
        adapter = PowerwallAdapter(client, "pw3", now=clock, max_age_s=5.0)
        reading = await adapter.read_site()
        for _ in range(3):
            clock.advance(10.0)
            await adapter.read_battery()
    assert reading.grid.power_w == pytest.approx(1_000.0)
    assert reading.pv.power_w == pytest.approx(1_000.0)
    assert reading.load.power_w == pytest.approx(7_000.0)
    assert reading.battery.power_w == pytest.approx(5_000.0)
    assert reading.battery.soc_pct == pytest.approx((50.0 - 5.0) / 0.95)
    assert reading.battery.capacity_wh == 13_500.0
    assert (reading.battery.max_charge_w, reading.battery.max_discharge_w) == (5_000.0, 5_000.0)
    assert reading.grid_status == m.GridStatus.CONNECTED
    requests = served.sim.requests
    assert requests[f"GET {AGGREGATES}"] == 4
    assert requests[SYSTEM_STATUS] == 2  # the first read only: refused, fresh login, refused
    assert requests["GET /api/system_status/grid_status"] == 4
    assert requests[LOGIN] == 2
    degraded = [
        r for r in caplog.records if r.levelno == logging.WARNING and r.name.endswith("adapter")
    ]
    assert len(degraded) == 1
    assert "no system status" in degraded[0].getMessage()


async def test_the_adapter_cannot_steer_a_pw3_and_points_to_the_fleet_api() -> None:
    clock = SimClock()
    sim = PowerwallSimulator(PASSWORD, firmware="pw3", clock=clock)
    async with gateway(sim) as (served, client):
        adapter = PowerwallAdapter(client, "pw3", now=clock)
        for _ in range(2):
            with pytest.raises(NotSupportedError, match="refused on this gateway") as caught:
                await adapter.set_battery_mode(BatteryMode.CHARGE)
            assert "Fleet API" in str(caught.value)
    assert served.sim.requests["GET /api/operation"] == 2  # then remembered
    assert served.sim.requests["POST /api/operation"] == 0
    assert served.sim.requests[LOGIN] == 2


# --- the client's negative cache ---


async def test_a_remembered_refusal_is_asked_again_once_it_expires() -> None:
    mono = MonoClock()
    sim = PowerwallSimulator(PASSWORD, firmware="pw3")
    async with gateway(sim, clock=mono, unsupported_ttl_s=600.0) as (served, client):
        with pytest.raises(NotSupportedError):
            await client.status()
        mono.t += 599.0
        with pytest.raises(NotSupportedError, match="another 1 s"):
            await client.status()
        assert served.sim.requests["GET /api/status"] == 1

        mono.t += 1.0
        served.sim.firmware = FIRMWARE["21.44"]  # updated: the portal is back
        assert (await client.status()).firmware == "21.44.1"
        assert served.sim.requests["GET /api/status"] == 2


async def test_essential_telemetry_is_never_remembered_as_missing() -> None:
    no_meters = Firmware(
        "23.44.0 eb113390",
        rejects_autonomous=True,
        stops_sitemaster=False,
        removed=frozenset({AGGREGATES}),
    )
    async with gateway(PowerwallSimulator(PASSWORD, firmware=no_meters)) as (served, client):
        for _ in range(2):
            with pytest.raises(NotSupportedError, match="404"):
                await client.aggregates()
    assert served.sim.requests[f"GET {AGGREGATES}"] == 2


# --- transport and lockout ---


async def test_plain_http_is_redirected_to_https() -> None:
    async with running_simulator(PowerwallSimulator(PASSWORD), http_port=0) as served:
        assert served.http_url is not None
        assert served.http_url.startswith("http://127.0.0.1:")
        async with httpx.AsyncClient(verify=False) as http:
            moved = await http.get(f"{served.http_url}/api/status?x=1")
            followed = await http.get(f"{served.http_url}/api/status", follow_redirects=True)
    assert moved.status_code == 301
    assert moved.headers["location"] == f"{served.url}/api/status?x=1"
    assert followed.json()["version"] == "21.44.1 c58c2df3"
    assert served.sim.requests["GET /api/status"] == 1


async def test_without_an_http_port_there_is_no_plain_http() -> None:
    async with running_simulator(PowerwallSimulator(PASSWORD)) as served:
        assert served.http_url is None


async def test_a_lockout_refuses_the_right_password_until_the_toggle() -> None:
    async with raw(PowerwallSimulator(PASSWORD, lockout_after=3)) as (served, http):
        for password in ("wrong", "wrong", PASSWORD, "wrong", "wrong"):
            await login(http, password)
        assert not served.sim.locked  # a success starts the count again
        assert (await login(http, "wrong")).status_code == 401
        locked = await login(http)
        assert locked.status_code == 401
        assert locked.json() == {"code": 401, "error": "bad credentials", "message": "Login Error"}
        assert served.sim.locked

        toggled = await http.post("/sim/toggle")
        assert toggled.json() == {"locked": False}
        assert (await login(http)).status_code == 200

    async with gateway(PowerwallSimulator(PASSWORD, lockout_after=1)) as (served, client):
        served.sim.locked = True
        with pytest.raises(AuthenticationError, match="401"):
            await client.aggregates()
        served.sim.toggle_reset()
        # a refused password is never sent again by the same client: no road to a lockout
        with pytest.raises(AuthenticationError, match="not logging in again"):
            await client.aggregates()
        assert served.sim.requests["POST /api/login/Basic"] == 1
        # the owner set the password again: the service builds a new client
        async with PowerwallClient(served.url, Secret(PASSWORD), served.fingerprint) as fresh:
            await fresh.aggregates()
