"""The Wallbox client against the simulated cloud over HTTPS: each way the cloud misbehaves
(reference B.6), and the account kept usable: few sign-ins, reads within the budget, writes
only on change and read back."""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta
from pathlib import Path

import pytest

from surplus.domain.errors import (
    AuthenticationError,
    NotSupportedError,
    RateLimitedError,
    UnavailableError,
)
from surplus.integrations.wallbox.client import Write
from surplus.integrations.wallbox.models import parse_status
from surplus.integrations.wallbox.statuses import StatusGroup
from tests.powerwall_kit import T0
from tests.wallbox_kit import (
    CHARGER,
    EMAIL,
    PASSWORD,
    FakeTime,
    client_of,
    cloud,
    new_sim,
    vault_in,
)

STATUS = f"GET /chargers/status/{CHARGER}"
SIGNIN = "GET /users/signin"
REFRESH = "GET /users/refresh-token"


async def test_signs_in_with_basic_and_partner_and_reads_the_status(tmp_path: Path) -> None:
    time = FakeTime()
    sim = new_sim(time)
    async with cloud(sim, tmp_path, time) as (_, client):
        status = await client.status(CHARGER)
    assert status.status_id == 161 and status.group is StatusGroup.READY
    assert status.max_charging_current_a == 32 and status.max_available_current_a == 32
    assert sim.signins == 1 and sim.requests[SIGNIN] == 1


async def test_429_storm_backs_off_exponentially_then_recovers(tmp_path: Path) -> None:
    time = FakeTime()
    sim = new_sim(time)
    async with cloud(sim, tmp_path, time) as (_, client):
        await client.status(CHARGER)
        sim.faults.add("throttle_429")
        with pytest.raises(RateLimitedError) as first:
            await client.status(CHARGER)
        calls = sim.requests[STATUS]
        with pytest.raises(RateLimitedError, match="backing off"):
            await client.status(CHARGER)  # within the backoff: not even sent
        assert sim.requests[STATUS] == calls
        time.advance((first.value.retry_after_s or 0) + 60)
        with pytest.raises(RateLimitedError) as second:
            await client.status(CHARGER)
        assert (second.value.retry_after_s or 0) > (first.value.retry_after_s or 0)
        sim.faults.discard("throttle_429")
        time.advance((second.value.retry_after_s or 0) + 60)
        assert (await client.status(CHARGER)).status_id == 161
    assert sim.signins == 1


async def test_403_under_load_renews_once_then_backs_off_never_signing_in_again(
    tmp_path: Path,
) -> None:
    time = FakeTime()
    sim = new_sim(time)
    async with cloud(sim, tmp_path, time) as (_, client):
        await client.status(CHARGER)
        sim.faults.add("throttle_429", "throttle_403")
        with pytest.raises(RateLimitedError, match="403"):
            await client.status(CHARGER)
        assert sim.requests[REFRESH] == 1  # the one renewal: a refresh, not a sign-in
        sent = sim.requests[STATUS]
        for _ in range(5):
            time.advance(1000)
            with pytest.raises(RateLimitedError):
                await client.status(CHARGER)
        assert sim.requests[STATUS] - sent <= 5  # no renewal and retry again
        sim.faults.discard("throttle_429", "throttle_403")
        time.advance(1000)
        assert (await client.status(CHARGER)).status_id == 161
    assert sim.signins == 1 and sim.evicted == 0


async def test_rejected_refresh_signs_in_once(tmp_path: Path) -> None:
    time = FakeTime()
    sim = new_sim(time)
    async with cloud(sim, tmp_path, time) as (_, client):
        await client.status(CHARGER)
        time.advance(15 * 60)
        sim.faults.add("refresh_revoked")
        assert (await client.status(CHARGER)).status_id == 161
    assert sim.requests[REFRESH] == 1 and sim.signins == 2


async def test_rejected_refresh_then_refused_sign_in_stops_and_asks_the_owner(
    tmp_path: Path,
) -> None:
    time = FakeTime()
    sim = new_sim(time)
    async with cloud(sim, tmp_path, time) as (_, client):
        await client.status(CHARGER)
        time.advance(15 * 60)
        sim.faults.add("refresh_revoked", "signin_refused")
        for _ in range(3):
            with pytest.raises(AuthenticationError, match="needs re-authentication"):
                await client.status(CHARGER)
            time.advance(3600)
        assert sim.requests[SIGNIN] == 2  # the first, and the one refused: no loop
        assert client.needs_reauth is not None
        sim.faults.discard("signin_refused")
        client.reauthenticate()
        assert (await client.status(CHARGER)).status_id == 161
        assert client.needs_reauth is None


async def test_sessions_lost_again_soon_after_a_sign_in_stop_instead_of_looping(
    tmp_path: Path,
) -> None:
    time = FakeTime()
    sim = new_sim(time)
    async with cloud(sim, tmp_path, time) as (_, client):
        await client.status(CHARGER)
        for _ in range(5):
            time.advance(61)
            sim.faults.add("token_expired", "refresh_revoked")
            with contextlib.suppress(AuthenticationError):
                await client.status(CHARGER)
        assert client.needs_reauth is not None
    assert sim.signins == 1
    assert sim.evicted == 0  # the owner's app, signed in before us, kept its session


async def test_refreshes_ahead_of_ttl_with_the_cloud_clock_ahead(tmp_path: Path) -> None:
    time = FakeTime()
    cloud_time = FakeTime(T0 + timedelta(minutes=10))  # the cloud's clock runs 10 min ahead
    sim = new_sim(cloud_time)
    async with cloud(sim, tmp_path, time) as (_, client):
        await client.status(CHARGER)
        for _ in range(8):  # two hours in quarter hours: every access token used to its end
            time.advance(14 * 60 + 10)
            cloud_time.advance(14 * 60 + 10)
            await client.status(CHARGER)
    assert sim.signins == 1
    assert sim.requests[REFRESH] == 8
    assert sim.requests[STATUS] == 9  # no call was refused with a dead token


async def test_endpoint_churn_says_the_api_moved(tmp_path: Path) -> None:
    time = FakeTime()
    sim = new_sim(time)
    async with cloud(sim, tmp_path, time) as (_, client):
        sim.faults.add("moved")
        with pytest.raises(NotSupportedError, match="API moved"):
            await client.status(CHARGER)
        sim.faults.discard("moved")
        with pytest.raises(NotSupportedError, match="not on the account"):
            await client.status(999)


async def test_signin_route_gone_falls_back_to_the_legacy_token(tmp_path: Path) -> None:
    time = FakeTime()
    sim = new_sim(time)
    # the user host pointed at the charger API: users/signin is not routed there (404)
    async with (
        cloud(sim, tmp_path, time) as (served, _),
        client_of(served, tmp_path, time, user_url=served.api_url) as client,
    ):
        assert (await client.status(CHARGER)).status_id == 161
    assert sim.requests["GET /auth/token/user"] == 1


async def test_offline_charger_is_not_acted_on(tmp_path: Path) -> None:
    time = FakeTime()
    sim = new_sim(time)
    async with cloud(sim, tmp_path, time) as (_, client):
        sim.faults.add("status_504")
        with pytest.raises(UnavailableError, match="504"):
            await client.status(CHARGER)
        sim.faults.discard("status_504")
        sim.status_override = 163
        status = await client.status(CHARGER)
        assert status.offline
        with pytest.raises(UnavailableError, match="not acting on stale state"):
            await client.set_max_current(CHARGER, 10)
        sim.status_override = 166
        assert (await client.status(CHARGER)).group is StatusGroup.UPDATING
    assert sim.requests[f"PUT /v2/charger/{CHARGER}"] == 0


async def test_write_applied_later_is_read_back(tmp_path: Path) -> None:
    time = FakeTime()
    sim = new_sim(time, apply_delay_s=5.0)
    async with cloud(sim, tmp_path, time) as (_, client):
        await client.status(CHARGER)
        assert await client.set_max_current(CHARGER, 16) is Write.APPLIED
        assert sim.applied["maxChargingCurrent"] == 16
        assert client.last_status(CHARGER).max_charging_current_a == 16  # type: ignore[union-attr]
        assert await client.set_max_current(CHARGER, 16) is Write.UNCHANGED
        assert await client.set_max_current(CHARGER, 99) is Write.APPLIED  # clamped to 32
        assert await client.set_max_current(CHARGER, 2) is Write.APPLIED  # clamped to 6
        assert sim.applied["maxChargingCurrent"] == 6
    assert sim.requests[f"PUT /v2/charger/{CHARGER}"] == 3


async def test_write_accepted_but_not_applied_is_reported(tmp_path: Path) -> None:
    time = FakeTime()
    sim = new_sim(time)
    async with cloud(sim, tmp_path, time, confirm_timeout_s=180) as (_, client):
        await client.status(CHARGER)
        sim.faults.add("ignore_writes")
        with pytest.raises(UnavailableError, match="did not apply it"):
            await client.set_max_current(CHARGER, 10)
        assert client.unapplied(CHARGER) == ["a limit of 10 A"]
        assert sim.requests[STATUS] <= 5  # the read-back stayed within the budget


async def test_a_write_applied_after_its_timeout_is_no_longer_unapplied(tmp_path: Path) -> None:
    """The charger takes longer than the confirm timeout: the write counts as unapplied
    until a read shows it applied after all."""
    time = FakeTime()
    sim = new_sim(time, apply_delay_s=300.0)
    async with cloud(sim, tmp_path, time, confirm_timeout_s=120) as (_, client):
        await client.status(CHARGER)
        with pytest.raises(UnavailableError, match="did not apply it"):
            await client.set_max_current(CHARGER, 10)
        assert client.unapplied(CHARGER) == ["a limit of 10 A"]
        time.advance(300.0)
        assert (await client.status(CHARGER)).max_charging_current_a == 10
        assert client.unapplied(CHARGER) == []


async def test_unsent_write_is_checked_by_later_reads(tmp_path: Path) -> None:
    time = FakeTime()
    sim = new_sim(time)
    async with cloud(sim, tmp_path, time) as (_, client):
        await client.status(CHARGER)
        assert await client.set_locked(CHARGER, True, confirm=False) is Write.SENT
        assert await client.set_locked(CHARGER, True, confirm=False) is Write.SENT  # coalesced
        assert client.pending(CHARGER) == ["the lock"]
        status = await client.status(CHARGER)
        assert status.locked and status.status_id == 209
        assert client.pending(CHARGER) == []
    assert sim.requests[f"PUT /v2/charger/{CHARGER}"] == 1


async def test_unknown_codes_nulls_and_amperes_read_as_such(tmp_path: Path) -> None:
    time = FakeTime()
    sim = new_sim(time)
    async with cloud(sim, tmp_path, time) as (_, client):
        sim.status_override = 777
        sim.faults.add("nulls")
        status = await client.status(CHARGER)
    assert status.group is StatusGroup.UNKNOWN and status.label == "Unknown"
    assert status.charging_power_w is None and status.added_energy_wh is None
    bare = parse_status(1, {"status_id": 194, "max_available_power": 32, "charging_power": 7.2}, T0)
    assert bare.max_available_current_a == 32  # amperes, whatever the name says
    assert bare.charging_power_w == pytest.approx(7200)


async def test_sso_account_is_told_apart_and_never_retried(tmp_path: Path) -> None:
    time = FakeTime()
    sim = new_sim(time)
    sim.faults.add("signin_refused")
    async with cloud(sim, tmp_path, time) as (_, client):
        for _ in range(3):
            with pytest.raises(AuthenticationError, match="Google"):
                await client.status(CHARGER)
            time.advance(3600)
    assert sim.requests[SIGNIN] == 1


async def test_wrong_password_asks_for_re_authentication(tmp_path: Path) -> None:
    time = FakeTime()
    sim = new_sim(time)
    async with cloud(sim, tmp_path, time, password="wrong") as (_, client):
        with pytest.raises(AuthenticationError, match="check the email and the password"):
            await client.status(CHARGER)
        assert client.needs_reauth is not None


async def test_reads_keep_to_the_budget(tmp_path: Path) -> None:
    time = FakeTime()
    sim = new_sim(time, read_limit=1)  # the cloud as measured in 2025: one GET a minute
    async with cloud(sim, tmp_path, time) as (_, client):
        for _ in range(10):
            await client.status(CHARGER)
    assert time.slept >= 9 * 60
    assert sim.requests[STATUS] == 10  # none refused


async def test_a_faster_budget_when_configured(tmp_path: Path) -> None:
    time = FakeTime()
    sim = new_sim(time)
    async with cloud(sim, tmp_path, time, reads_per_minute=3) as (_, client):
        for _ in range(7):
            await client.status(CHARGER)
    assert 115 <= time.slept <= 125


async def test_session_cap_is_never_hit_and_a_restart_reuses_the_session(
    tmp_path: Path,
) -> None:
    time = FakeTime()
    sim = new_sim(time, session_cap=2)
    vault = vault_in(tmp_path)
    async with cloud(sim, tmp_path, time, vault=vault, token_entry="wb.tokens") as (served, c):
        for _ in range(4 * 24):  # a day at a read every 15 minutes
            await c.status(CHARGER)
            time.advance(15 * 60)
        async with client_of(served, tmp_path, time, vault=vault, token_entry="wb.tokens") as c2:
            await c2.status(CHARGER)
    assert sim.signins == 1 and sim.evicted == 0


async def test_session_history_pages_in_kwh(tmp_path: Path) -> None:
    time = FakeTime()
    sim = new_sim(time)
    for day in range(5):
        start = T0 - timedelta(days=5 - day)
        sim.add_session(start, start + timedelta(hours=2), 8361 + day)
    async with cloud(sim, tmp_path, time) as (_, client):
        client.page_size = 2
        records = await client.sessions(CHARGER, T0 - timedelta(days=4), T0)
        assert [round(r.energy_kwh, 3) for r in records] == [8.362, 8.363, 8.364, 8.365]
        assert records[0].end == records[0].start + timedelta(hours=2)
        # the newer route gone (an unknown group): the older sessions/stats
        older = await client.sessions(CHARGER, T0 - timedelta(days=9), T0, group_id=999)
        assert len(older) == 5
    pages = sim.requests[f"GET /v4/groups/{sim.group_id}/charger-charging-sessions"]
    assert pages == 2 and sim.requests["GET /v4/sessions/stats"] == 3


async def test_secrets_never_in_logs_or_reprs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    time = FakeTime()
    sim = new_sim(time)
    vault = vault_in(tmp_path)
    async with cloud(sim, tmp_path, time, vault=vault, token_entry="wb.tokens") as (_, client):
        await client.status(CHARGER)
        time.advance(15 * 60)
        await client.status(CHARGER)
        sim.faults.add("throttle_429")
        with pytest.raises(RateLimitedError) as err:
            await client.status(CHARGER)
        shown = " ".join([caplog.text, repr(client), str(err.value), repr(client._tokens)])
    assert sim.tokens_issued
    for secret in [PASSWORD, EMAIL, *sim.tokens_issued]:
        assert secret not in shown
