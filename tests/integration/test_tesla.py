"""The Fleet API client against the simulator over HTTPS: the failure modes a client must
survive (reference E2 items 8-16), the below-5-A rule, usage counters and secrets."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from surplus.domain.errors import (
    AsleepError,
    AuthenticationError,
    RateLimitedError,
    UnavailableError,
)
from surplus.integrations.tesla.client import (
    AppNotRegisteredError,
    FleetDisabledError,
    SigningRequiredError,
)
from surplus.integrations.tesla.tokens import TeslaTokens, TokenSet
from surplus.security.vault import Secret, Vault
from tests.tesla_kit import ENTRY, VIN, fleet


def stored(vault: Vault) -> TokenSet:
    return TokenSet.load(vault.get(ENTRY).reveal())


# --- E2.8: refresh race, lost answer, persisted before use, 24 h grace ---


async def test_concurrent_refreshes_are_serialized_and_persisted(tmp_path: Path) -> None:
    async with fleet(tmp_path) as f:
        f.clock.advance(8 * 3600)  # the access token expired
        before = f.tokens.refreshes
        tokens = await asyncio.gather(*(f.tokens.access_token() for _ in range(5)))
        assert f.tokens.refreshes == before + 1  # one refresh for five callers
        assert all(t == tokens[0] for t in tokens)
        assert stored(f.vault).access == tokens[0]  # in the vault, as used
        await f.client.vehicles()


async def test_lost_refresh_answer_recovers_within_the_grace(tmp_path: Path) -> None:
    async with fleet(tmp_path) as f:
        old = stored(f.vault)
        f.clock.advance(8 * 3600)
        f.sim.faults.add("lose_refresh_answer", times=1)
        with pytest.raises(UnavailableError):
            await f.tokens.access_token()  # Tesla rotated; the answer was lost
        assert stored(f.vault).refresh == old.refresh  # the old one is still what we hold
        await f.client.vehicles()  # the old refresh token is still good for 24 h
        assert stored(f.vault).refresh != old.refresh


async def test_an_old_refresh_token_needs_re_authentication(tmp_path: Path) -> None:
    async with fleet(tmp_path, refresh_grace_s=3600) as f:
        old = stored(f.vault)
        f.clock.advance(8 * 3600)
        await f.tokens.access_token()  # rotates: old is now the previous one
        f.clock.advance(2 * 3600)  # past the (shortened) grace
        other = f.new_tokens()
        f.vault.set(ENTRY, old.dump())  # an old backup restored
        with pytest.raises(AuthenticationError, match="surplus auth tesla"):
            await other.refused(old.access)
        with pytest.raises(AuthenticationError, match="re-authentication"):
            await other.access_token()  # not sent again until the vault changes


async def test_unserialized_refreshes_invalidate_each_other(tmp_path: Path) -> None:
    """Why refreshes are serialized: two holders refreshing the same token leave the first
    one's new refresh token invalid, as Tesla does."""
    async with fleet(tmp_path) as f:
        a, b = f.tokens, f.new_tokens()
        await b.access_token()  # b holds R0 too
        f.clock.advance(8 * 3600)
        a_access = await a.access_token()  # R0 -> R1
        await b.access_token()  # R0 again, within its grace -> R2: R1 is cycled out
        with pytest.raises(AuthenticationError, match="surplus auth tesla"):
            await a.refused(a_access)


# --- E2.9: proactive refresh ---


async def test_access_token_is_refreshed_before_it_expires(tmp_path: Path) -> None:
    async with fleet(tmp_path) as f:
        first = await f.tokens.access_token()
        f.clock.advance(8 * 3600 - 300)  # 5 minutes left: within the margin
        await f.client.vehicles()
        assert await f.tokens.access_token() != first
        assert f.sim.requests["GET /api/1/vehicles"] == 1  # never refused first


async def test_a_refused_token_is_refreshed_once(tmp_path: Path) -> None:
    async with fleet(tmp_path) as f:
        f.sim.faults.add("token_revoked", times=1)  # a 401 without a body
        assert len(await f.client.vehicles()) == 1
        f.sim.faults.add("token_revoked")
        with pytest.raises(AuthenticationError):
            await f.client.vehicles()


# --- E2.10: asleep ---


async def test_asleep_car_is_woken_at_most_three_times_a_minute(tmp_path: Path) -> None:
    async with fleet(tmp_path, wake_delay_s=20.0) as f:
        f.sim.fall_asleep(VIN)
        with pytest.raises(AsleepError):
            await f.client.charge_state(VIN)
        summary = await f.client.wake(VIN)
        assert summary.state == "online"
        assert f.sim.requests["GET /api/1/vehicles/{tag}"] >= 2  # confirmed via the free call
        assert f.sim.billed["wake"] == 1
        await f.client.charge_state(VIN)
        f.client._wake_timeout_s = 0.0
        for _ in range(2):
            f.sim.fall_asleep(VIN)
            with pytest.raises(AsleepError):
                await f.client.wake(VIN)
        with pytest.raises(RateLimitedError):
            await f.client.wake(VIN)  # a fourth within the minute is not sent
        assert f.sim.billed["wake"] == 3


# --- E2.11: result:false and read-back ---


async def test_benign_and_real_failures_and_invalid_limit(tmp_path: Path) -> None:
    async with fleet(tmp_path) as f:
        assert (await f.client.command(VIN, "charge_stop")).reason == "not_charging"
        assert (await f.client.command(VIN, "charge_start")).reason == "disconnected"
        answer = await f.client.command(VIN, "set_charge_limit", {"percent": 40})
        assert answer.result  # an invalid limit "succeeds"
        state = await f.client.charge_state(VIN)
        assert state.charge_limit_soc == 50  # the read-back shows what was applied


async def test_vehicle_adapter_treats_benign_reasons_as_done(tmp_path: Path) -> None:
    from surplus.control.state import ChargerCommand

    async with fleet(tmp_path) as f:
        f.sim.plug_in(VIN)
        v = f.vehicle()
        await v.refresh()
        assert (await v.apply(ChargerCommand("lp", enable=True))).startswith("ok")
        f.sim.unplug(VIN)
        with pytest.raises(UnavailableError, match="disconnected"):
            await v.apply(ChargerCommand("lp", enable=True))


# --- E2.12: signing ---


async def test_signing_required_without_proxy_is_a_clear_instruction(tmp_path: Path) -> None:
    async with fleet(tmp_path, vehicle={"command_signing": "required"}) as f:
        with pytest.raises(SigningRequiredError, match=r"tesla-http-proxy.*proxy_url"):
            await f.client.command(VIN, "charge_stop")


async def test_signing_required_goes_through_the_proxy(tmp_path: Path) -> None:
    async with fleet(tmp_path, proxy=True, vehicle={"command_signing": "required"}) as f:
        f.sim.plug_in(VIN)
        answer = await f.client.command(VIN, "charge_stop")
        assert answer.result
        assert not f.car.charge_on


# --- E2.13: 429, 503/504/540 ---


async def test_reads_back_off_and_retry_after_is_honoured(tmp_path: Path) -> None:
    async with fleet(tmp_path) as f:
        f.sim.faults.add("unavailable_503", times=1)
        f.sim.faults.add("device_540", times=1)
        await f.client.charge_state(VIN)
        assert len(f.sleeps) == 2 and f.sleeps[1] > f.sleeps[0] * 0.3
        for _ in range(57):
            await f.client.charge_state(VIN)
        with pytest.raises(RateLimitedError) as info:
            await f.client.charge_state(VIN)
        assert info.value.retry_after_s is not None and info.value.retry_after_s > 0
        calls = f.sim.requests["GET /api/1/vehicles/{tag}/vehicle_data"]
        with pytest.raises(RateLimitedError):
            await f.client.charge_state(VIN)  # not asked again before Retry-After
        assert f.sim.requests["GET /api/1/vehicles/{tag}/vehicle_data"] == calls
        f.clock.advance(info.value.retry_after_s + 1)
        await f.client.charge_state(VIN)


async def test_a_command_is_never_retried_blindly(tmp_path: Path) -> None:
    async with fleet(tmp_path) as f:
        f.sim.plug_in(VIN)
        f.sim.faults.add("timeout_504", times=1)
        with pytest.raises(UnavailableError):
            await f.client.command(VIN, "charge_stop")
        assert f.sim.requests["POST /api/1/vehicles/{tag}/command/{name}"] == 1
        assert f.sleeps == []


# --- E2.14: billing ---


async def test_billing_cap_degrades_cleanly(tmp_path: Path) -> None:
    async with fleet(tmp_path, billing_cap_usd=0.005) as f:
        for _ in range(3):
            await f.client.charge_state(VIN)
        with pytest.raises(FleetDisabledError, match="Local control goes on"):
            await f.client.charge_state(VIN)
        calls = sum(f.sim.requests.values())
        with pytest.raises(FleetDisabledError):
            await f.client.vehicles()  # nothing more is sent
        assert sum(f.sim.requests.values()) == calls
        v = f.vehicle()
        await v.refresh()
        assert v.health == "refused" and "402" in v.detail


async def test_unregistered_app(tmp_path: Path) -> None:
    async with fleet(tmp_path) as f:
        f.sim.faults.add("unregistered_412")
        with pytest.raises(AppNotRegisteredError, match="register"):
            await f.client.vehicles()


# --- E2.15: region ---


async def test_wrong_region_switches_the_base_url(tmp_path: Path) -> None:
    async with fleet(tmp_path, base="na") as f:
        assert f.client.base_url == f.served.region_urls["na"]
        assert (await f.client.vehicles())[0].vin == VIN
        assert f.client.base_url == f.served.region_urls["eu"]


# --- E2.16: stale site, ignored acknowledgements ---


async def test_site_writes_are_read_back(tmp_path: Path) -> None:
    async with fleet(tmp_path, energy=True) as f:
        site = str(next(iter(f.sim.sites)))
        info = await f.client.set_backup_reserve(site, 35)
        assert info.backup_reserve_percent == 35
        assert (await f.client.set_operation(site, "autonomous")).default_real_mode == "autonomous"
        f.sim.faults.add("ack_ignored", times=1)
        with pytest.raises(UnavailableError, match="acknowledged but reads back"):
            await f.client.set_backup_reserve(site, 50)
        f.sim.faults.add("site_upstream_500", times=1)
        with pytest.raises(UnavailableError, match="500"):
            await f.client.live_status(site)
        f.sim.faults.add("site_stale_404", times=1)
        with pytest.raises(UnavailableError, match="stale"):
            await f.client.site_info(site)
        f.sim.plug_in(VIN)
        live = await f.client.live_status(site)
        assert live.load_power == pytest.approx(800.0 + f.car.power_w())


async def test_vehicle_ack_not_taking_effect_is_caught(tmp_path: Path) -> None:
    from surplus.control.state import ChargerCommand

    async with fleet(tmp_path) as f:
        f.sim.plug_in(VIN)
        v = f.vehicle()
        await v.refresh()
        f.sim.faults.add("ack_ignored", times=1)
        with pytest.raises(UnavailableError, match="acknowledged"):
            await v.apply(ChargerCommand("lp", enable=True, current_a=8))


# --- below 5 A, counters, scopes, content type ---


async def test_below_5a_needs_two_calls(tmp_path: Path) -> None:
    async with fleet(tmp_path) as f:
        f.sim.plug_in(VIN)
        await f.client.command(VIN, "set_charging_amps", {"charging_amps": 3})
        assert f.car.charge_current_request == 16
        await f.client.command(VIN, "set_charging_amps", {"charging_amps": 3})
        assert f.car.charge_current_request == 3
        await f.client.command(VIN, "set_charging_amps", {"charging_amps": 40})
        assert f.car.charge_current_request == 16  # clamped to the max


async def test_usage_counters_and_cost(tmp_path: Path) -> None:
    async with fleet(tmp_path, wake_delay_s=0.0) as f:
        await f.client.vehicles()  # free
        await f.client.charge_state(VIN)
        await f.client.command(VIN, "charge_stop")
        f.sim.fall_asleep(VIN)
        with pytest.raises(AsleepError):
            await f.client.charge_state(VIN)  # a 408 is billed too
        await f.client.wake(VIN)
        usage = f.client.usage[VIN]
        assert (usage.reads, usage.commands, usage.wakes) == (2, 1, 1)
        assert usage.cost_usd == pytest.approx(2 * 0.002 + 0.001 + 0.02)
        assert f.client.total_cost_usd == pytest.approx(f.sim.cost_usd)


async def test_missing_scope_and_content_type(tmp_path: Path) -> None:
    import httpx

    async with fleet(tmp_path, energy=False) as f:
        f.sim.add_site()
        with pytest.raises(AuthenticationError, match="scopes"):
            await f.client.site_info(str(next(iter(f.sim.sites))))
        access = await f.tokens.access_token()
        async with httpx.AsyncClient(verify=f.verify) as http:
            r = await http.post(
                f"{f.served.url}/api/1/vehicles/{VIN}/command/charge_stop",
                content=b"{}",
                headers={"Authorization": f"Bearer {access.reveal()}"},
            )
        assert r.status_code == 406


# --- secrets ---


async def test_tokens_never_appear_in_logs_or_reprs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with fleet(tmp_path) as f:
        confidential = TeslaTokens(
            f.vault,
            ENTRY,
            client_id="app",
            auth_url=f.served.auth_url,
            client_secret=Secret("s3cret-client-Zq9"),
        )
        f.clock.advance(8 * 3600)
        f.sim.faults.add("token_revoked", times=1)
        await f.client.vehicles()
        f.sim.faults.add("billing_402")
        with pytest.raises(FleetDisabledError) as info:
            await f.client.vehicles()
        tokens = stored(f.vault)
        shown = " ".join(
            [
                caplog.text,
                repr(f.tokens),
                repr(confidential),
                repr(f.client),
                repr(tokens),
                str(info.value),
                repr(f.vehicle()),
            ]
        )
        for secret in [*f.sim.tokens_issued, "s3cret-client-Zq9"]:
            assert secret not in shown
        assert tokens.access.reveal() in f.sim.tokens_issued


# --- the authorization-code flow with PKCE (surplus auth tesla) ---


async def test_pkce_flow_with_the_local_redirect_listener(tmp_path: Path) -> None:
    import httpx

    from surplus.integrations.tesla.tokens import (
        authorize_url,
        pkce_pair,
        redirect_listener,
        scopes_for,
    )

    async with fleet(tmp_path) as f:
        fresh = f.new_tokens()
        verifier, challenge = pkce_pair()
        async with redirect_listener() as listener:
            url = authorize_url(
                f.served.auth_url,
                f.sim.client_id,
                listener.redirect_uri,
                scopes_for(False),
                "st4te",
                challenge,
            )
            async with httpx.AsyncClient(verify=f.verify, follow_redirects=True) as browser:
                assert (await browser.get(url)).status_code == 200  # the owner consents
            code = await listener.wait("st4te", 5.0)
            assert code.startswith("EU_")  # the region prefix
            tokens = await fresh.exchange_code(code, verifier, listener.redirect_uri)
        assert "vehicle_charging_cmds" in tokens.scope and "energy_cmds" not in tokens.scope
        assert stored(f.vault).access == tokens.access
        with pytest.raises(AuthenticationError):
            await fresh.exchange_code(code, verifier, listener.redirect_uri)  # single use
