"""Benchmarks of the day-ahead plan: one 96-slot site LP (a car and a home battery).

Both benchmarks assert that the solve is sane (the car's target is met, the energy balance
holds) so that a broken or trivially empty solve cannot pass as a fast one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from numpy.typing import NDArray
from pytest_benchmark.fixture import BenchmarkFixture

from surplus.control.lp import BatteryModel, EvModel, LpResult, SiteLp, solve
from surplus.control.planner import make_plan
from surplus.control.settings import (
    BatteryPolicy,
    ChargerSettings,
    LoadpointSettings,
    Mode,
    PlanTarget,
    SiteSettings,
)
from surplus.control.state import Plan
from surplus.domain.readings import (
    BatteryState,
    ChargerState,
    ChargerStatus,
    Forecast,
    LoadpointSnapshot,
    MeterReading,
    SiteSnapshot,
    VehicleState,
)
from surplus.domain.tariff import Rates

F64 = NDArray[np.float64]
N = 96
DT_H = 0.25
START = datetime(2024, 6, 10, 12, 0, tzinfo=UTC)  # noon: the plan runs to noon tomorrow
HOUR = (12.0 + np.arange(N) * DT_H) % 24.0  # UTC hour of day of each slot
DEADLINE_SLOT = int((24 + 7 - 12) / DT_H)  # 07:00 tomorrow
CAR_START_WH = 0.3 * 60_000
CAR_GOAL_WH = 0.8 * 60_000
CAR_MAX_W = 16 * 3 * 230.0


def pv_w() -> F64:
    """A clear-sky bell: 06:00-20:00, 6 kW at 13:00."""
    x = (HOUR - 13.0) / 7.0
    return np.asarray(6000.0 * np.where(np.abs(x) < 1.0, np.cos(x * np.pi / 2.0) ** 2, 0.0))


def load_w() -> F64:
    """400 W base, up to 900 W with a morning and an evening bump."""
    morning = np.exp(-(((HOUR - 7.5) / 1.0) ** 2))
    evening = np.exp(-(((HOUR - 19.0) / 1.5) ** 2))
    return np.asarray(400.0 + 500.0 * np.maximum(morning, evening))


def import_prices() -> F64:
    """Day-ahead-like: cheap at night, a dip at midday, a peak from 17:00 to 21:00."""
    base = 0.24 + 0.04 * np.cos((HOUR - 3.0) / 24.0 * 2 * np.pi)  # night low, day higher
    midday = -0.06 * np.exp(-(((HOUR - 13.0) / 2.0) ** 2))
    peak = 0.18 * np.exp(-(((HOUR - 19.0) / 1.5) ** 2))
    return np.asarray(base + midday + peak)


def site_lp() -> SiteLp:
    required = np.zeros(N)
    required[DEADLINE_SLOT - 1] = CAR_GOAL_WH
    max_w = np.where(np.arange(N) < DEADLINE_SLOT, CAR_MAX_W, 0.0)
    car = EvModel(
        name="car",
        max_w=max_w,
        energy_wh=CAR_START_WH,
        capacity_wh=60_000.0,
        efficiency=0.9,
        required_wh=required,
        terminal_split_wh=CAR_GOAL_WH,
        terminal_hi_eur_per_kwh=0.1,
    )
    eta = float(np.sqrt(0.9))
    battery = BatteryModel(
        capacity_wh=10_000,
        soc_wh=4_000,
        min_wh=500,
        max_charge_w=5_000,
        max_discharge_w=5_000,
        efficiency_charge=eta,
        efficiency_discharge=eta,
        wear_eur_per_kwh=0.02,
        terminal_eur_per_kwh=0.2 * eta,
    )
    prices = import_prices()
    return SiteLp(
        dt_h=DT_H,
        pv_w=pv_w(),
        load_w=load_w(),
        import_eur_per_kwh=prices,
        export_eur_per_kwh=np.full(N, 0.07),
        battery=battery,
        evs=[car],
        max_import_w=17_250.0,
    )


def check_lp(lp: SiteLp, result: LpResult) -> None:
    assert result.unmet_wh["car"] == pytest.approx(0.0, abs=1e-3)
    assert result.ev_energy_wh["car"][DEADLINE_SLOT - 1] >= CAR_GOAL_WH - 1e-3
    assert result.ev_w["car"][DEADLINE_SLOT:].max() == pytest.approx(0.0, abs=1e-6)
    batt = lp.battery
    assert batt is not None
    assert result.battery_soc_wh.min() >= batt.min_wh - 1e-6
    assert result.battery_soc_wh.max() <= batt.capacity_wh + 1e-6
    balance = (
        result.grid_import_w
        - result.grid_export_w
        - result.battery_charge_w
        + result.battery_discharge_w
        - result.ev_w["car"]
        - (lp.load_w - lp.pv_w)
    )
    np.testing.assert_allclose(balance, 0.0, atol=1e-5)
    # in the evening peak the grid feeds at most the house, never the car or the battery
    peak = (HOUR >= 17) & (HOUR < 21)
    assert (result.grid_import_w[peak] <= lp.load_w[peak] + 1e-6).all()


def test_bench_site_lp_day_ahead(benchmark: BenchmarkFixture) -> None:
    lp = site_lp()
    result = benchmark(solve, lp)
    check_lp(lp, result)


def plan_inputs() -> tuple[SiteSnapshot, SiteSettings, Rates]:
    prices = import_prices()
    rates = Rates(START, prices, np.full(N, 0.07))
    lp = LoadpointSettings(
        name="car",
        mode=Mode.PLAN,
        charger=ChargerSettings(min_current_a=6, max_current_a=16, phases=3),
        plan=PlanTarget(deadline=START + timedelta(hours=19), soc_pct=80),
        charge_efficiency=0.9,
    )
    settings = SiteSettings(
        loadpoints=[lp],
        battery=BatteryPolicy(round_trip_efficiency=0.9, min_soc_pct=5, controllable=True),
        site_max_current_a=25,
    )
    snapshot = SiteSnapshot(
        at=START,
        grid=MeterReading(-2000.0, START),
        pv=MeterReading(5500.0, START),
        battery=BatteryState(40.0, -1000.0, 10_000.0, START),
        loadpoints={
            "car": LoadpointSnapshot(
                ChargerState(ChargerStatus.CONNECTED, False, 6.0, 0.0, 3, START),
                VehicleState(30.0, 60_000.0, START),
            )
        },
        forecast=Forecast(START, 900, pv_w(), load_w()),
        rates=rates,
    )
    return snapshot, settings, rates


def check_plan(plan: Plan) -> None:
    energy = plan.ev_energy_wh["car"]
    assert energy[DEADLINE_SLOT - 1] >= CAR_GOAL_WH - 1.0
    assert plan.ev_w["car"][DEADLINE_SLOT:].max() == pytest.approx(0.0, abs=1e-6)
    assert len(plan.grid_import_w) == N
    assert np.isfinite(plan.cost_eur)


def test_bench_make_plan_end_to_end(benchmark: BenchmarkFixture) -> None:
    snapshot, settings, rates = plan_inputs()
    plan = benchmark(make_plan, snapshot, settings, rates, START)
    check_plan(plan)
