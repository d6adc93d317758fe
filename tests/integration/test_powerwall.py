"""The Powerwall client against the simulated gateway over real HTTPS on 127.0.0.1.

One test per failure mode a client of the local gateway must survive (reference E2), the
guarded write, certificate pinning, the public ``tesla_powerwall`` library as a second
client of the simulator, and secrets that never show.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
import subprocess
import sys
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import pytest

from surplus.domain.errors import (
    AuthenticationError,
    DeviceError,
    NotSupportedError,
    RateLimitedError,
    UnavailableError,
)
from surplus.integrations.powerwall import models as m
from surplus.integrations.powerwall.client import (
    CertificateMismatchError,
    GatewayBusyError,
    PowerwallClient,
)
from surplus.integrations.powerwall.simulator import (
    PowerwallSimulator,
    ServedSimulator,
    running_simulator,
)
from surplus.security.vault import Secret
from tests import powerwall_kit as kit
from tests.powerwall_kit import LOGIN, MonoClock, SimClock

PASSWORD = "Zq7-secret-Pw"


def gateway(
    sim: PowerwallSimulator | None = None, **client_kwargs: Any
) -> AbstractAsyncContextManager[tuple[ServedSimulator, PowerwallClient]]:
    return kit.gateway(sim or PowerwallSimulator(PASSWORD), PASSWORD, **client_kwargs)


# --- the simulator's own doors ---


async def test_faults_can_be_injected_over_http() -> None:
    async with (
        running_simulator() as served,
        httpx.AsyncClient(base_url=served.url, verify=False) as http,
    ):
        answer = await http.post("/sim/faults", json={"add": ["busy_503", "grid_down"]})
        assert answer.json() == {"active": ["busy_503", "grid_down"]}
        assert "grid_down" in served.sim.faults
        bad = await http.post("/sim/faults", json={"add": ["no_such_fault"]})
        assert bad.status_code == 400
        await http.post("/sim/faults", json={"remove": ["busy_503"]})
        assert (await http.get("/sim/faults")).json() == {"active": ["grid_down"]}


def test_serve_runs_until_interrupted() -> None:
    code = (
        "from surplus.integrations.powerwall.simulator import serve\n"
        "serve(port=0, ready=lambda s: print(s.url, s.fingerprint, flush=True))\n"
    )
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        url, _fingerprint = child.stdout.readline().split()
        status = httpx.get(f"{url}/api/status", verify=False, timeout=5)
        assert status.json()["device_type"] == "teg"
        child.send_signal(signal.SIGINT)
        assert child.wait(timeout=10) == 0


# --- reads and pinning ---


async def test_reads_every_endpoint_with_consistent_physics() -> None:
    clock = SimClock()
    sim = PowerwallSimulator(PASSWORD, solar_w=1_000.0, load_w=7_000.0, clock=clock)
    async with gateway(sim) as (_, client):
        status = await client.status()
        assert status.firmware == "21.44.1"
        assert status.device_type == "teg"

        agg = await client.aggregates()
        assert agg.solar.instant_power == 1_000.0
        assert agg.load.instant_power == 7_000.0
        assert agg.battery.instant_power == 5_000.0  # discharging at its limit
        assert agg.site.instant_power == pytest.approx(
            agg.load.instant_power - agg.solar.instant_power - agg.battery.instant_power
        )
        assert agg.site.instant_power == pytest.approx(1_000.0)  # importing the rest

        system = await client.system_status()
        raw = 100 * system.nominal_energy_remaining / system.nominal_full_pack_energy
        assert await client.soe_pct() == pytest.approx(m.raw_to_app_pct(raw))
        assert system.battery_blocks[0].p_out == 5_000.0
        grid = await client.grid_status()
        assert grid.grid_status == m.GridStatus.CONNECTED
        op = await client.operation()
        assert op.real_mode == "self_consumption"
        assert op.backup_reserve_percent == pytest.approx(24.0)  # app 20 %, raw scale
        assert (await client.sitemaster()).running

        before_soe = await client.soe_pct()
        clock.advance(1_800)  # half an hour at 5 kW out of a 13.5 kWh pack
        after = await client.aggregates()
        drop_app_pct = 5_000 * 0.5 / 0.95 / 13_500 * 100 / 0.95
        assert await client.soe_pct() == pytest.approx(before_soe - drop_app_pct, abs=0.01)
        assert after.battery.energy_exported - agg.battery.energy_exported == pytest.approx(2_500)
        assert after.site.energy_imported - agg.site.energy_imported == pytest.approx(500)
        assert after.load.energy_imported - agg.load.energy_imported == pytest.approx(3_500)


async def test_trust_on_first_use_records_the_fingerprint() -> None:
    async with (
        running_simulator(PowerwallSimulator(PASSWORD)) as served,
        PowerwallClient(served.url, Secret(PASSWORD)) as client,
    ):
        assert client.fingerprint is None
        await client.aggregates()
        assert client.fingerprint == served.fingerprint


async def test_a_wrong_pinned_fingerprint_is_refused_before_login() -> None:
    async with running_simulator(PowerwallSimulator(PASSWORD)) as served:
        wrong = "ab" * 32
        async with PowerwallClient(served.url, Secret(PASSWORD), wrong) as client:
            with pytest.raises(CertificateMismatchError, match="surplus pin") as caught:
                await client.aggregates()
        assert isinstance(caught.value, AuthenticationError)
        assert caught.value.presented == served.fingerprint
        assert served.sim.requests[LOGIN] == 0


async def test_a_certificate_rotated_mid_session_is_refused() -> None:
    async with running_simulator(PowerwallSimulator(PASSWORD)) as first:
        client = PowerwallClient(first.url, Secret(PASSWORD))
        await client.aggregates()
        port = int(first.url.rsplit(":", 1)[1])
    async with running_simulator(PowerwallSimulator(PASSWORD), port=port) as second:
        assert second.fingerprint != first.fingerprint
        with pytest.raises(CertificateMismatchError):
            await client.aggregates()
        assert second.sim.requests[LOGIN] == 0
    await client.aclose()


async def test_unknown_sni_names_are_rejected_like_a_gateway() -> None:
    async with running_simulator() as served:
        port = int(served.url.rsplit(":", 1)[1])
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="teg")
        writer.close()
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="evil.lan")


# --- failure modes (reference E2) ---


async def test_bad_password_is_an_authentication_error() -> None:
    async with running_simulator(PowerwallSimulator("the-right-one")) as served:
        async with PowerwallClient(served.url, Secret(PASSWORD), served.fingerprint) as client:
            with pytest.raises(AuthenticationError, match="401"):
                await client.aggregates()
        assert served.sim.requests[LOGIN] == 1


async def test_stale_session_gets_one_fresh_login() -> None:
    async with gateway() as (served, client):
        await client.aggregates()
        served.sim.faults.add("token_expired")
        await client.aggregates()
        assert served.sim.requests[LOGIN] == 2
        assert served.sim.requests["GET /api/meters/aggregates"] == 3  # one 403 in between


async def test_refused_after_a_fresh_login_raises_instead_of_looping() -> None:
    async with gateway(PowerwallSimulator(PASSWORD, token_ttl_s=0.0)) as (served, client):
        with pytest.raises(AuthenticationError, match="fresh login"):
            await client.aggregates()
        assert served.sim.requests[LOGIN] == 2


async def test_login_429_starts_a_cool_down_without_a_login_loop() -> None:
    mono = MonoClock()
    async with gateway(clock=mono) as (served, client):
        served.sim.faults.add("login_429")
        with pytest.raises(RateLimitedError) as first:
            await client.aggregates()
        assert first.value.retry_after_s == 300
        mono.t += 120
        for _ in range(3):
            with pytest.raises(RateLimitedError) as again:
                await client.aggregates()
            assert again.value.retry_after_s == pytest.approx(180)
        assert served.sim.requests[LOGIN] == 1

        served.sim.faults.discard("login_429")
        mono.t += 181
        await client.aggregates()
        assert served.sim.requests[LOGIN] == 2


async def test_sitemaster_stopped_is_stale_data_until_it_runs_again() -> None:
    async with gateway() as (served, client):
        await client.aggregates()
        served.sim.faults.add("sitemaster_stopped")
        for read in (client.aggregates, client.soe_pct, client.grid_status, client.system_status):
            with pytest.raises(UnavailableError, match="sitemaster is not running"):
                await read()
        assert not (await client.sitemaster()).running
        served.sim.faults.discard("sitemaster_stopped")
        await client.aggregates()
        assert served.sim.requests[LOGIN] == 1


async def test_busy_gateway_is_unavailable_with_a_retry_hint() -> None:
    async with gateway() as (served, client):
        served.sim.faults.add("busy_503")
        with pytest.raises(GatewayBusyError, match="busy") as caught:
            await client.aggregates()
        assert isinstance(caught.value, UnavailableError)
        assert caught.value.retry_after_s == 60
        served.sim.faults.discard("busy_503")
        await client.aggregates()


async def test_slow_answers_time_out_as_unavailable() -> None:
    sim = PowerwallSimulator(PASSWORD, slow_s=0.5)
    async with gateway(sim, timeout_s=0.2) as (served, client):
        await client.aggregates()
        served.sim.faults.add("slow")
        with pytest.raises(UnavailableError, match="no answer within"):
            await client.aggregates()
        served.sim.faults.discard("slow")
        await client.aggregates()


async def test_an_unreachable_gateway_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with PowerwallClient(f"https://127.0.0.1:{port}", Secret(PASSWORD)) as client:
        with pytest.raises(UnavailableError, match="cannot reach"):
            await client.status()


async def test_writes_are_refused_until_the_grid_is_back_and_synced() -> None:
    clock = SimClock()
    sim = PowerwallSimulator(PASSWORD, clock=clock, reconnect_s=30.0)
    async with gateway(sim) as (served, client):
        served.sim.faults.add("grid_down")
        with pytest.raises(UnavailableError, match="SystemIslandedActive"):
            await client.set_operation("backup", 50)
        agg = await client.aggregates()
        assert agg.site.instant_power == pytest.approx(0.0)  # an island: nothing to the grid

        served.sim.faults.discard("grid_down")
        with pytest.raises(UnavailableError, match="SystemTransitionToGrid"):
            await client.set_operation("backup", 50)
        assert served.sim.requests["POST /api/operation"] == 0

        clock.advance(31)
        await client.set_operation("backup", 50)
        assert served.sim.operation.real_mode == "backup"


async def test_autonomous_is_not_supported_locally_on_this_firmware() -> None:
    async with gateway() as (served, client):
        with pytest.raises(NotSupportedError, match="autonomous cannot be set locally"):
            await client.set_operation("autonomous", 20)
        assert served.sim.operation.real_mode == "self_consumption"
        assert served.sim.sitemaster_up


async def test_old_firmware_stopping_sitemaster_on_login_is_restarted() -> None:
    async with gateway(PowerwallSimulator(PASSWORD, firmware="1.45")) as (served, client):
        assert served.sim.firmware.stops_sitemaster
        agg = await client.aggregates()
        assert agg.battery.instant_power < 0  # charging from the default solar surplus
        assert served.sim.requests["GET /api/sitemaster/run"] == 1


# --- the guarded write ---


async def test_a_write_is_staged_committed_and_read_back() -> None:
    async with gateway() as (served, client):
        result = await client.set_operation("backup", 50)
        assert result.real_mode == "backup"
        assert result.backup_reserve_percent == pytest.approx(52.5)
        assert served.sim.operation == result
        assert served.sim.requests["GET /api/config/completed"] == 1
        assert served.sim.sitemaster_up


async def test_a_failed_commit_still_leaves_sitemaster_running() -> None:
    async with gateway(PowerwallSimulator(PASSWORD, firmware="1.45")) as (served, client):
        await client.aggregates()
        served.sim.faults.add("commit_fails")
        with pytest.raises(UnavailableError, match="500"):
            await client.set_operation("backup", 50)
        assert served.sim.sitemaster_up  # the staged write stopped it; the client ran it again
        assert served.sim.operation.real_mode == "self_consumption"
        await client.aggregates()


async def test_a_change_that_never_takes_effect_is_reported() -> None:
    async with gateway() as (served, client):
        served.sim.faults.add("commit_ignored")
        with pytest.raises(UnavailableError, match="did not take effect after 3 attempts"):
            await client.set_operation("backup", 50)
        assert served.sim.requests["POST /api/operation"] == 3


# --- the public library as a second client ---


async def test_the_public_tesla_powerwall_library_reads_the_simulator() -> None:
    from tesla_powerwall import GridStatus, OperationMode, Powerwall

    sim = PowerwallSimulator(PASSWORD, solar_w=500, load_w=2_500)
    async with (
        running_simulator(sim) as served,
        Powerwall(served.url, timeout=5, verify_ssl=False) as pw,
    ):
        await pw.login(PASSWORD)
        meters = await pw.get_meters()
        assert meters.solar.instant_power == 500
        assert meters.battery.instant_power == 2_000
        assert meters.site.instant_power == pytest.approx(0.0)
        assert await pw.get_charge() == pytest.approx(50.0, abs=0.01)  # raw: 6750 of 13500 Wh
        assert await pw.get_grid_status() == GridStatus.CONNECTED
        assert await pw.get_operation_mode() == OperationMode.SELF_CONSUMPTION


# --- secrets ---


async def test_password_and_tokens_never_show(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    sim = PowerwallSimulator(PASSWORD, firmware="1.45")
    async with gateway(sim) as (served, client):
        await client.aggregates()
        served.sim.faults.add("token_expired")
        await client.set_operation("backup", 30)
        for fault in ("busy_503", "sitemaster_stopped", "commit_fails"):
            served.sim.faults.add(fault)
            try:
                await client.set_operation("self_consumption", 40)
            except DeviceError as e:
                errors.append(e)
            served.sim.faults.discard(fault)
        await client.logout()
        served.sim.faults.add("login_429")
        try:
            await client.aggregates()
        except DeviceError as e:
            errors.append(e)
        text = [caplog.text, repr(client), *map(str, errors), *map(repr, errors)]
        text += [str(e.__cause__) for e in errors if e.__cause__]
    async with running_simulator(PowerwallSimulator("another-password")) as other:
        async with PowerwallClient(other.url, Secret(PASSWORD)) as client:
            with pytest.raises(AuthenticationError) as refused:
                await client.aggregates()
        text.append(str(refused.value))
    assert len(errors) == 4
    assert len(sim.tokens_issued) >= 2
    secrets = [PASSWORD, *sim.tokens_issued, *other.sim.tokens_issued]
    leaks = [(s, t) for s in secrets for t in text if s in t]
    assert not leaks
