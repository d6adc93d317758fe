"""Powerwall wire models, the reserve scale, and the simulated gateway's state without HTTP."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from surplus.integrations.powerwall import models as m
from surplus.integrations.powerwall.simstate import PowerwallSimulator, SimError
from surplus.sim.devices import HomeBattery

T0 = datetime(2024, 6, 10, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("raw", "app"), [(5.0, 0.0), (24.0, 20.0), (52.5, 50.0), (100.0, 100.0)])
def test_reserve_scale_both_ways(raw: float, app: float) -> None:
    assert m.raw_to_app_pct(raw) == pytest.approx(app)
    assert m.app_to_raw_pct(app) == pytest.approx(raw)


def test_reserve_scale_clips_to_0_100() -> None:
    assert m.raw_to_app_pct(2.0) == 0.0
    assert m.raw_to_app_pct(101.0) == 100.0
    assert m.app_to_raw_pct(120.0) == 100.0


def test_parsing_is_tolerant_of_firmware_variants() -> None:
    old = m.Operation.model_validate({"mode": "backup", "backup_reserve_percent": 24})
    assert old.real_mode == "backup"
    grid = m.GridStatusResponse.model_validate({"grid_status": "SystemSomethingNew", "x": 1})
    assert grid.grid_status == "SystemSomethingNew"
    assert m.Status(version="23.44.0 eb113390").firmware == "23.44.0"


def test_secrets_stay_out_of_model_reprs() -> None:
    request = m.LoginRequest(username="customer", password="pw-Secret-1")
    response = m.LoginResponse(token="tok-Secret-2")
    assert "pw-Secret-1" not in repr(request)
    assert "tok-Secret-2" not in repr(response)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def test_operation_writes_take_effect_only_when_committed() -> None:
    sim = PowerwallSimulator()
    sim.stage_operation(m.OperationWrite(real_mode="backup", backup_reserve_percent=52.5))
    assert sim.operation.real_mode == "self_consumption"
    sim.commit()
    assert (sim.operation.real_mode, sim.operation.backup_reserve_percent) == ("backup", 52.5)
    sim.faults.add("commit_ignored")
    sim.stage_operation(m.OperationWrite(real_mode="self_consumption"))
    sim.commit()
    assert sim.operation.real_mode == "backup"


def test_autonomous_is_rejected_by_21_44_only() -> None:
    with pytest.raises(SimError) as caught:
        PowerwallSimulator().stage_operation(m.OperationWrite(real_mode="autonomous"))
    assert caught.value.status == 500
    assert caught.value.body is not None
    assert caught.value.body.error.startswith("RealMode must be either")
    PowerwallSimulator(firmware="1.45").stage_operation(m.OperationWrite(real_mode="autonomous"))


def test_islanding_mode_drives_the_grid_transitions() -> None:
    clock = Clock()
    sim = PowerwallSimulator(clock=clock, reconnect_s=10.0)
    sim.request_island(m.IslandMode.OFF_GRID)
    assert sim.grid().grid_status == m.GridStatus.ISLANDED
    sim.request_island(m.IslandMode.ON_GRID)
    assert sim.grid().grid_status == m.GridStatus.TRANSITION_TO_GRID
    clock.now += timedelta(seconds=11)
    assert sim.grid().grid_status == m.GridStatus.CONNECTED


def test_a_day_of_physics_keeps_the_balance_and_the_counters_rising() -> None:
    clock = Clock()

    def solar(t: datetime) -> float:  # a clear day's bell, 0 at night
        hour = (t - T0).total_seconds() / 3600 % 24
        return max(0.0, 6_000.0 * math.sin(math.pi * (hour - 6) / 12))

    sim = PowerwallSimulator(solar_w=solar, load_w=900.0, clock=clock)
    last = sim.aggregates()
    for _ in range(48):
        clock.now += timedelta(minutes=30)
        agg = sim.aggregates()
        balance = agg.load.instant_power - agg.solar.instant_power - agg.battery.instant_power
        assert agg.site.instant_power == pytest.approx(balance)
        for name in ("site", "battery", "load", "solar"):
            now_meter, before = getattr(agg, name), getattr(last, name)
            assert now_meter.energy_imported >= before.energy_imported
            assert now_meter.energy_exported >= before.energy_exported
        soe = sim.soe().percentage
        status = sim.system_status()
        assert soe == pytest.approx(100 * status.nominal_energy_remaining / 13_500)
        assert soe >= sim.operation.backup_reserve_percent - 1.0  # the night stops at the reserve
        last = agg
    assert last.site.energy_exported > 0  # the full battery let the noon surplus go out


def test_backup_mode_holds_and_an_island_uses_the_reserve() -> None:
    sim = PowerwallSimulator(
        solar_w=0.0,
        load_w=2_000.0,
        battery=HomeBattery(energy_wh=0.5 * 13_500),
        real_mode="backup",
    )
    assert sim.aggregates().battery.instant_power == 0.0
    sim.faults.add("grid_down")
    agg = sim.aggregates()
    assert agg.battery.instant_power == 2_000.0
    assert agg.site.instant_power == 0.0


def test_logins_are_rate_limited_in_a_window_and_check_user_and_password() -> None:
    clock = Clock()
    sim = PowerwallSimulator("pw", clock=clock, login_limit=2, login_window_s=60.0)
    with pytest.raises(SimError) as wrong_user:
        sim.login(m.LoginRequest(username="installer", password="pw"))
    assert wrong_user.value.status == 401
    sim.login(m.LoginRequest(username="customer", password="pw"))
    with pytest.raises(SimError) as limited:
        sim.login(m.LoginRequest(username="customer", password="pw"))
    assert limited.value.status == 429
    clock.now += timedelta(seconds=61)
    token = sim.login(m.LoginRequest(username="customer", password="pw")).token
    sim.authorize(token)
    sim.logout(token)
    with pytest.raises(SimError):
        sim.authorize(token)
