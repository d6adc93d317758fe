"""The Envoy client, adapter and token keeper against the simulated gateway and cloud over
real HTTPS on 127.0.0.1.

One test per thing a client of the local API must survive (reference A.7): tokens from the
cloud (both routes, MFA), sessions and their silent renewal, refused tokens, the cloud down,
role gating of the meter stream, every data endpoint, optional endpoints that go away, boot,
the nightly outage, certificate pinning, old firmware over plain HTTP, and secrets that never
show.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from surplus.config import load_config
from surplus.domain.errors import (
    AuthenticationError,
    NotSupportedError,
    UnavailableError,
)
from surplus.integrations.envoy import models as m
from surplus.integrations.envoy.adapter import EnvoyAdapter
from surplus.integrations.envoy.client import CertificateMismatchError, EnvoyClient
from surplus.integrations.envoy.cloud import MfaRequiredError
from surplus.integrations.envoy.simstate import VALID_TOKEN_PAGE, EnvoySimulator
from surplus.integrations.envoy.simtokens import TokenAuthority
from surplus.integrations.envoy.simulator import running_simulator
from surplus.integrations.envoy.tokens import INSTALLER, OWNER, EnvoyTokens
from surplus.runtime.datadir import open_vault
from surplus.runtime.service import Service
from surplus.security.vault import Secret
from surplus.sim.devices import HomeBattery
from surplus.store import Store
from tests.envoy_kit import EMAIL, PASSWORD, SimClock, cloud_of, gateway, new_sim, vault_in

CHECK = "GET /auth/check_jwt"
PRODUCTION = "GET /production.json"
STREAM = "GET /stream/meter"


# --- the simulator's own doors ---


async def test_faults_and_reboot_over_http() -> None:
    async with (
        running_simulator(new_sim()) as served,
        httpx.AsyncClient(base_url=served.url, verify=False) as http,
    ):
        answer = await http.post("/sim/faults", json={"add": ["cloud_down", "zeros"]})
        assert answer.json() == {"active": ["cloud_down", "zeros"]}
        assert (await http.post("/sim/faults", json={"add": ["meltdown"]})).status_code == 400
        await http.post("/sim/faults", json={"remove": ["zeros"]})
        assert (await http.get("/sim/faults")).json() == {"active": ["cloud_down"]}
        await http.post("/sim/reboot")
        assert served.sim.booting
        info = await http.get("/info")  # answers while the rest is starting
        assert info.headers["content-type"].startswith("text/xml")
        assert m.parse_info(info.content).serial == served.sim.serial


async def test_check_jwt_answers_like_a_gateway() -> None:
    sim = new_sim()
    async with (
        running_simulator(sim) as served,
        httpx.AsyncClient(base_url=served.url, verify=False) as http,
    ):
        ok = await http.get(
            "/auth/check_jwt", headers={"Authorization": f"Bearer {sim.issue_token()}"}
        )
        assert ok.status_code == 200
        assert ok.text == VALID_TOKEN_PAGE
        assert ok.cookies.get("sessionId")
        assert (await http.get("/ivp/meters")).status_code == 200  # the cookie is enough

        forged = TokenAuthority().issue(
            serial=sim.serial, role=OWNER, username=EMAIL, now=sim.clock()
        )
        bad = await http.post("/auth/check_jwt", headers={"Authorization": f"Bearer {forged}"})
        assert bad.status_code == 401
        assert "401 Authorization Required" in bad.text
        assert sim.refusals == ["signed by another key"]


def old_token(sim: EnvoySimulator, days_left: int) -> str:
    """An owner token issued so long ago that ``days_left`` days of its year remain."""
    return sim.authority.issue(
        serial=sim.serial,
        role=OWNER,
        username=EMAIL,
        now=sim.clock() - timedelta(days=365 - days_left),
    )


# --- tokens from the cloud ---


async def test_token_from_the_cloud_by_the_newer_route(tmp_path: Path) -> None:
    sim = new_sim()
    async with running_simulator(sim) as served:
        token, claims = await cloud_of(served, tmp_path).fetch_token(sim.serial)
        async with EnvoyClient(served.url, None, served.fingerprint) as client:
            assert (await client.check_token(token)).role == OWNER
    assert sim.cloud.requests == ["login", "tokens"]
    assert claims.role == OWNER
    assert claims.audience == sim.serial
    assert claims.expires_at - sim.clock() == timedelta(days=365)


async def test_token_from_the_cloud_by_the_older_route(tmp_path: Path) -> None:
    sim = new_sim()
    sim.faults.add("tokens_route_gone")
    async with running_simulator(sim) as served:
        token, claims = await cloud_of(served, tmp_path).fetch_token(sim.serial)
        async with EnvoyClient(served.url, None, served.fingerprint) as client:
            assert (await client.check_token(token)).audience == sim.serial
    assert sim.cloud.requests == ["login", "tokens", "entrez-auth-token"]
    assert claims.role == OWNER


async def test_mfa_account_and_wrong_password_are_refused_clearly(tmp_path: Path) -> None:
    sim = new_sim()
    sim.cloud.add_account("mfa@example.com", PASSWORD, mfa=True, serials={sim.serial})
    async with running_simulator(sim) as served:
        cloud = cloud_of(served, tmp_path)
        cloud.email = "mfa@example.com"
        with pytest.raises(MfaRequiredError, match="multi-factor") as mfa:
            await cloud.fetch_token(sim.serial)
        assert "--token-stdin" in str(mfa.value)
        with pytest.raises(AuthenticationError, match="refused the login"):
            await cloud_of(served, tmp_path, password="wrong").fetch_token(sim.serial)
    assert sim.cloud.tokens_issued == 0


# --- sessions ---


async def test_session_cookie_is_used_and_renewed_silently_after_idle_expiry() -> None:
    clock = SimClock()
    sim = new_sim(clock)
    async with gateway(sim) as (_, client, _tokens):
        await client.production()
        await client.meters()
        assert sim.requests[CHECK] == 1  # one check, then the session cookie

        clock.advance(11 * 60)  # a session ends after 10 idle minutes
        await client.production()
        assert sim.requests[CHECK] == 2
        sim.faults.add("session_expired")
        await client.meters()
        assert sim.requests[CHECK] == 3
    assert sim.cloud.requests == []  # no new token was needed


async def test_refused_token_is_renewed_from_the_cloud_and_stored(tmp_path: Path) -> None:
    sim = new_sim()
    forged = TokenAuthority().issue(serial=sim.serial, role=OWNER, username=EMAIL, now=sim.clock())
    vault = vault_in(tmp_path)
    async with gateway(sim, token=forged, directory=tmp_path, vault=vault) as (_, client, tokens):
        production = await client.production()
        assert production.measured(m.NET) is not None
        assert tokens.token is not None
        assert tokens.token.reveal() != forged
    assert sim.cloud.requests == ["login", "tokens"]
    assert vault.get("gw.token") == tokens.token
    assert sim.requests[CHECK] == 2  # the old token once, the new one once


async def test_cloud_down_keeps_the_old_token_and_asks_no_more(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sim = new_sim()
    forged = TokenAuthority().issue(serial=sim.serial, role=OWNER, username=EMAIL, now=sim.clock())
    sim.faults.add("cloud_down")
    vault = vault_in(tmp_path)
    async with gateway(sim, token=forged, directory=tmp_path, vault=vault) as (_, client, tokens):
        with pytest.raises(AuthenticationError, match="surplus auth envoy") as first:
            await client.production()
        assert "did not help" in str(first.value)
        with pytest.raises(AuthenticationError):
            await client.production()  # no login loop: nothing is sent again
    assert tokens.token == Secret(forged)
    assert vault.get("gw.token") == Secret(forged)
    assert sim.requests[CHECK] == 1
    assert sim.cloud.requests == ["login"]
    assert "keeping the old one" in caplog.text


async def test_token_for_another_gateway_is_refused() -> None:
    sim = new_sim()
    other = sim.authority.issue(serial="999999999999", role=OWNER, username=EMAIL, now=sim.clock())
    async with gateway(sim, token=other) as (_, client, _tokens):
        with pytest.raises(AuthenticationError, match="999999999999"):
            await client.production()
    assert sim.refusals == ["for gateway 999999999999"]


async def test_token_near_its_end_is_renewed_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sim = new_sim()
    short = old_token(sim, days_left=10)
    async with gateway(sim, token=short, directory=tmp_path) as (_, client, tokens):
        await client.production()
        claims = tokens.claims
        assert claims is not None
        assert claims.expires_at - sim.clock() == timedelta(days=365)
    assert "ends in 10 days; renewing it from Enlighten" in caplog.text
    assert sim.requests[CHECK] == 1  # the new token went to the gateway; the old one never


async def test_token_near_its_end_is_kept_while_the_cloud_is_down(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sim = new_sim()
    short = old_token(sim, days_left=10)
    sim.faults.add("cloud_down")
    async with gateway(sim, token=short, directory=tmp_path) as (_, client, tokens):
        await client.production()
        await client.production()
        assert tokens.token == Secret(short)
    assert sim.cloud.requests == ["login"]  # once, not at every read
    assert "keeping the old one" in caplog.text


# --- live data: stream or poll, never both ---


async def test_installer_token_reads_the_stream_and_polls_no_more() -> None:
    sim = new_sim(solar_w=4_000.0, load_w=1_500.0)
    async with gateway(sim, role=INSTALLER) as (_, client, _tokens):
        adapter = EnvoyAdapter(client, "gw", now=sim.clock)
        first = await adapter.read_site()
        assert adapter.streaming
        for _ in range(3):
            reading = await adapter.read_site()
            await asyncio.sleep(0.06)
        assert sim.requests[PRODUCTION] == 1  # only the first read polled
        assert sim.requests[STREAM] == 1
    for r in (first, reading):
        assert r.pv.power_w == pytest.approx(4_000.0)
        assert r.grid.power_w == pytest.approx(-2_500.0)  # exporting
        assert r.load.power_w == pytest.approx(1_500.0)
        assert r.battery is None


async def test_owner_token_is_refused_the_stream_and_polls() -> None:
    sim = new_sim(solar_w=500.0, load_w=2_000.0)
    async with gateway(sim, role=OWNER) as (_, client, _tokens):
        adapter = EnvoyAdapter(client, "gw", now=sim.clock)
        readings = [await adapter.read_site() for _ in range(4)]
        assert not adapter.streaming
        assert sim.requests[PRODUCTION] == 4
        assert sim.requests[STREAM] == 2  # refused, checked again, refused: remembered
    assert all(r.grid.power_w == pytest.approx(1_500.0) for r in readings)
    assert any("may not read /stream/meter" in why for why in sim.refusals)


# --- the data ---


async def test_every_endpoint_reads_consistently() -> None:
    clock = SimClock()
    battery = HomeBattery()
    sim = new_sim(clock, solar_w=1_000.0, load_w=4_000.0, battery=battery, phases=3)
    async with gateway(sim) as (_, client, _tokens):
        p = await client.production()
        prod, net, total = (p.measured(k) for k in (m.PRODUCTION, m.NET, m.TOTAL))
        assert prod is not None and net is not None and total is not None
        assert p.production[0].type == m.INVERTERS
        assert p.production[0].activeCount == 12
        assert net.wNow == pytest.approx(total.wNow - prod.wNow)
        assert net.wNow == pytest.approx(4_000 - 1_000 - 3_000)  # the battery gives 3 kW
        assert total.lines is not None and len(total.lines) == 3
        assert sum(line.wNow for line in total.lines) == pytest.approx(total.wNow)

        meters = {c.eid: c for c in await client.meters()}
        readings = await client.meter_readings()
        assert {r.eid for r in readings} == set(meters)
        by_type = {meters[r.eid].measurementType: r for r in readings}
        assert by_type[m.NET].activePower == pytest.approx(net.wNow)
        assert by_type[m.PRODUCTION].activePower == pytest.approx(1_000.0)
        assert len(by_type[m.NET].channels) == 3

        groups = await client.inventory()
        assert groups[0].type == m.ENCHARGE
        assert groups[0].devices[0].encharge_capacity == battery.capacity_wh
        power = await client.battery_power()
        assert power.devices[0].real_power_mw == pytest.approx(3_000_000)
        assert (await client.secctrl()).ENC_agg_soc == round(battery.soc_pct)

        v1 = await client.api_v1_production()
        assert v1.wattsNow == 1_000
        inverters = await client.inverters()
        assert sum(i.lastReportWatts for i in inverters) == pytest.approx(1_000, abs=12)

        before = prod.whLifetime
        clock.advance(3_600)
        later = (await client.production()).measured(m.PRODUCTION)
        assert later is not None
        assert later.whLifetime == pytest.approx(before + 1_000.0)

        live = await client.livedata()
        assert live.connection.sc_stream == "disabled"
        sim.set_livedata(True)
        live = await client.livedata()
        assert live.meters.pv.agg_p_mw == 1_000_000  # milliwatts
        assert live.meters.pv.watts == pytest.approx(1_000.0)


async def test_whtoday_resets_late_after_midnight() -> None:
    clock = SimClock()
    clock.now = datetime(2024, 6, 10, 23, 0, tzinfo=UTC)
    sim = new_sim(clock, solar_w=600.0, tz=UTC, today_reset_s=1800)
    async with gateway(sim) as (_, client, _tokens):

        async def today() -> float:
            entry = (await client.production()).measured(m.PRODUCTION)
            assert entry is not None and entry.whToday is not None
            return entry.whToday

        clock.advance(3_600 + 10 * 60)  # 00:10: not yet reset
        assert await today() == pytest.approx(700.0)
        clock.advance(30 * 60)  # 00:40: reset at 00:30
        assert await today() == pytest.approx(100.0)
        lifetime = (await client.production()).measured(m.PRODUCTION)
        assert lifetime is not None and lifetime.whLifetime == pytest.approx(1_000.0)
        assert lifetime.whLastSevenDays == pytest.approx(900.0)


async def test_firmware_8_3_5433_total_equals_net_and_is_repaired() -> None:
    sim = new_sim(firmware="D8.3.5433", solar_w=3_000.0, load_w=1_000.0)
    async with gateway(sim) as (_, client, _tokens):
        p = await client.production()
        total, net = p.measured(m.TOTAL), p.measured(m.NET)
        assert total is not None and net is not None
        assert total.wNow == net.wNow == pytest.approx(-2_000.0)
        reading = await EnvoyAdapter(client, "gw", use_stream=False).read_site()
    assert reading.load.power_w == pytest.approx(1_000.0)


async def test_optional_endpoints_are_probed_once_then_left_alone() -> None:
    sim = new_sim()  # no battery: the inventory is []
    sim.faults.add("error_body")
    async with gateway(sim) as (_, client, _tokens):
        for _ in range(2):
            with pytest.raises(NotSupportedError, match="error"):
                await client.meters()
        sim.faults.discard("error_body")
        sim.faults.add("role_401")
        for _ in range(2):
            with pytest.raises(NotSupportedError, match="401"):
                await client.livedata()
        sim.faults.discard("role_401")
        adapter = EnvoyAdapter(client, "gw", use_stream=False)
        readings = [await adapter.read_site() for _ in range(3)]
    assert sim.requests["GET /ivp/meters"] == 1
    assert sim.requests["GET /ivp/livedata/status"] == 2  # refused, checked again, refused
    assert sim.requests["GET /ivp/ensemble/inventory"] == 1  # [] once
    assert all(r.battery is None for r in readings)


async def test_battery_readings_go_away_but_the_meters_carry_on() -> None:
    sim = new_sim(battery=HomeBattery(max_discharge_w=1_500.0), solar_w=0.0, load_w=2_000.0)
    async with gateway(sim) as (_, client, _tokens):
        adapter = EnvoyAdapter(client, "gw", use_stream=False)
        with_battery = await adapter.read_site()
        sim.faults.add("error_body")
        without = [await adapter.read_site() for _ in range(2)]
    assert with_battery.battery is not None
    assert with_battery.battery.power_w == pytest.approx(1_500.0)
    assert with_battery.grid.power_w == pytest.approx(500.0)
    assert with_battery.load.power_w == pytest.approx(2_000.0)  # total-consumption + battery
    assert all(r.battery is None for r in without)
    assert sim.requests["GET /ivp/ensemble/secctrl"] == 2


async def test_boot_503_then_zeros_are_not_passed_on() -> None:
    clock = SimClock()
    sim = new_sim(clock, boot_s=60.0, zeros_s=60.0)
    async with gateway(sim) as (_, client, _tokens):
        adapter = EnvoyAdapter(client, "gw", use_stream=False, now=clock)
        await adapter.read_site()
        sim.reboot()
        with pytest.raises(UnavailableError, match="503"):
            await adapter.read_site()
        clock.advance(90)
        with pytest.raises(UnavailableError, match="all zeros"):
            await adapter.read_site()
        clock.advance(60)
        reading = await adapter.read_site()
    assert reading.pv.power_w == pytest.approx(3_000.0)


async def test_nightly_outage_is_unavailable_then_over() -> None:
    clock = SimClock()
    clock.now = datetime(2024, 6, 10, 23, 0, tzinfo=UTC)
    sim = new_sim(clock, outage_start=time(23, 5), outage_s=600.0, tz=UTC)
    async with gateway(sim) as (_, client, _tokens):
        adapter = EnvoyAdapter(client, "gw", use_stream=False, now=clock)
        await adapter.read_site()
        clock.advance(6 * 60)
        with pytest.raises(UnavailableError):
            await adapter.read_site()
        clock.advance(10 * 60)
        assert (await adapter.read_site()).grid.power_w == pytest.approx(-1_800.0)


async def test_a_slow_gateway_is_unavailable_past_the_timeout() -> None:
    sim = new_sim(latency_s=(0.3, 0.4))
    sim.faults.add("slow")
    async with gateway(sim, timeout_s=0.15) as (_, client, _tokens):
        with pytest.raises(UnavailableError, match="no answer within"):
            await client.info()
        sim.latency_s = (0.01, 0.02)
        assert (await client.info()).serial == sim.serial


# --- certificates and old firmware ---


async def test_certificate_trusted_on_first_use_then_pinned() -> None:
    sim = new_sim()
    async with gateway(sim, pin=False) as (served, client, _tokens):
        assert client.fingerprint is None
        await client.info()
        assert client.fingerprint == served.fingerprint


async def test_other_certificate_is_refused_before_the_token_is_sent() -> None:
    sim = new_sim()
    wrong = "ab:" * 31 + "ab"
    async with running_simulator(sim) as served:
        tokens = EnvoyTokens(Secret(sim.issue_token()), now=sim.clock)
        async with EnvoyClient(served.url, tokens, wrong) as client:
            with pytest.raises(CertificateMismatchError, match="surplus pin") as refused:
                await client.production()
    assert refused.value.presented == served.fingerprint
    assert sim.requests[CHECK] == 0
    assert sum(sim.requests.values()) == 0


async def test_old_firmware_over_plain_http_without_token() -> None:
    sim = new_sim(firmware="R5.0.62")
    async with running_simulator(sim) as served:
        assert served.url.startswith("http://")
        assert served.fingerprint is None
        async with EnvoyClient(served.url, None) as client:
            info = await client.info()
            assert (info.firmware, info.web_tokens) == ("5.0.62", False)
            assert (client.firmware, client.url) == ("5.0.62", served.url)
            adapter = EnvoyAdapter(client, "old", use_stream=False)
            reading = await adapter.read_site()
            inverters = await client.inverters()  # Digest: envoy / the serial's last six
            with pytest.raises(NotSupportedError):
                await anext(aiter(client.meter_stream()))
            assert client.fingerprint is None
        async with httpx.AsyncClient() as http:
            bare = await http.get(f"{served.url}/api/v1/production/inverters")
    assert bare.status_code == 401
    assert bare.headers["www-authenticate"].startswith("Digest ")
    assert reading.grid.power_w == pytest.approx(-1_800.0)
    assert len(inverters) == 12
    assert sim.requests[CHECK] == 0


# --- secrets ---


async def test_secrets_never_show(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sim = new_sim()
    forged = TokenAuthority().issue(serial=sim.serial, role=OWNER, username=EMAIL, now=sim.clock())
    vault = vault_in(tmp_path)
    async with gateway(sim, token=forged, directory=tmp_path, vault=vault) as (
        served,
        client,
        tokens,
    ):
        await client.production()  # refused, renewed from the cloud
        shown = [repr(client), repr(tokens), repr(tokens.claims), repr(vault)]
        lone = EnvoyTokens(Secret(forged), entry="gw.token", now=sim.clock)
        async with EnvoyClient(served.url, lone, served.fingerprint) as other:
            with pytest.raises(AuthenticationError) as refused:
                await other.production()  # refused, and no cloud to renew it
        shown.append(str(refused.value))
    renewed = tokens.token
    assert renewed is not None
    text = caplog.text + "\n".join(shown)
    for secret in (forged, renewed.reveal(), PASSWORD):
        assert secret not in text
        assert secret.split(".")[-1] not in text  # not even a token's signature
    assert not re.search(r"sessionId=[0-9a-f]{8}", caplog.text)
    assert "gw.token" in str(refused.value)  # where the token is kept, not what it is


# --- in the service ---


async def test_the_service_polls_an_envoy_and_waits_for_a_new_token(tmp_path: Path) -> None:
    sim = new_sim(lambda: datetime.now(UTC), battery=HomeBattery(), solar_w=2_000.0, load_w=800.0)
    forged = TokenAuthority().issue(serial=sim.serial, role=OWNER, username=EMAIL, now=sim.clock())
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    vault = open_vault(data_dir)
    vault.set("gw.token", forged)
    async with running_simulator(sim) as served:
        config = tmp_path / "surplus.toml"
        config.write_text(
            f'[service]\ndata_dir = "{data_dir}"\n\n[[devices]]\ntype = "envoy"\nname = "gw"\n'
            f'host = "{served.url}"\ntoken_secret = "gw.token"\npoll_interval_s = 0.2\n'
        )
        urls: list[str] = []
        service = Service(load_config(config), api_port=0, on_ready=urls.append, recheck_s=0.1)
        task = asyncio.create_task(service.run())
        try:
            async with httpx.AsyncClient(timeout=5) as http:
                state = await _state_when(http, urls, task, "needs re-authentication")
                assert "surplus auth envoy" in state["integrations"][0]["detail"]
                vault.set("gw.token", sim.issue_token(INSTALLER))  # as surplus auth envoy does
                state = await _state_when(http, urls, task, "ok", site=True)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    site = {key: value["value"] for key, value in state["site"].items() if key != "source"}
    assert site["solar_w"] == pytest.approx(2_000.0)
    assert site["battery_w"] == pytest.approx(-1_200.0)  # charging with the surplus
    assert site["grid_w"] == pytest.approx(0.0)
    assert site["home_w"] == pytest.approx(800.0)
    assert forged not in json.dumps(state)
    with Store.open(data_dir / "surplus.db") as store:
        pin = store.pins.get("gw")
    assert pin is not None and pin.fingerprint == served.fingerprint


async def _state_when(
    http: httpx.AsyncClient,
    urls: list[str],
    task: asyncio.Task[None],
    status: str,
    *,
    site: bool = False,
) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        assert asyncio.get_running_loop().time() < deadline and not task.done()
        if urls:
            state: dict[str, Any] = (await http.get(f"{urls[0]}/api/v1/state")).json()
            ready = not site or state["site"]["battery_soc_pct"] is not None
            if state["integrations"][0]["status"] == status and ready:
                return state
        await asyncio.sleep(0.05)
