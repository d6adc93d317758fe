"""The car's habits: trips learned from plug-in states, and planned for."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np

from surplus.control.planner import make_plan
from surplus.control.trips import Trip, TripLog
from surplus.domain.tariff import Rates
from tests.unit.test_control_planner import plan_site, plan_snapshot

DAY = datetime(2024, 6, 10, 0, 0, tzinfo=UTC)
H = timedelta(hours=1)


def watch(days: int, start: datetime = DAY) -> TripLog:
    """A commuter watched every 15 minutes: away 07:00-17:00, using 10 kWh a day."""
    log = TripLog()
    energy = 48_000.0
    t = start
    while t < start + timedelta(days=days):
        hour = (t - t.replace(hour=0, minute=0)).total_seconds() / 3600
        away = 7 <= hour < 17
        if not away and hour == 17:
            energy -= 10_000.0
        if not away and hour == 1:
            energy = 48_000.0  # charged overnight
        log = log.observe(not away, None if away else energy, t)
        t += timedelta(minutes=15)
    return log


def test_a_trip_is_learned_with_its_times_and_energy() -> None:
    log = watch(2)
    assert [(t.left, t.back, t.used_wh) for t in log.trips] == [
        (DAY + 7 * H, DAY + 17 * H, 10_000.0),
        (DAY + timedelta(days=1) + 7 * H, DAY + timedelta(days=1) + 17 * H, 10_000.0),
    ]


def test_nothing_is_foreseen_before_a_whole_week_is_watched() -> None:
    log = watch(5)
    assert log.expected(DAY + timedelta(days=5), DAY + timedelta(days=9)) == []


def test_last_weeks_trips_are_expected_a_week_on() -> None:
    log = watch(8)
    now = DAY + timedelta(days=8)
    ahead = log.expected(now, now + timedelta(days=2))
    assert [(t.left, t.back, t.used_wh) for t in ahead] == [
        (now + 7 * H, now + 17 * H, 10_000.0),
        (now + timedelta(days=1) + 7 * H, now + timedelta(days=1) + 17 * H, 10_000.0),
    ]
    # only the last eight days are kept
    assert min(t.left for t in log.trips) >= now - timedelta(days=8)


def test_a_cheap_night_buys_for_tomorrows_trip_too() -> None:
    """Tonight at 0.10, tomorrow night at 0.40: knowing the car leaves again tomorrow, the
    plan buys more than tonight's departure needs; without the habits it buys just that."""
    prices = np.full(192, 0.30)
    prices[:28] = 0.10  # tonight, until the 07:00 departure
    prices[96:124] = 0.40  # tomorrow night
    rates = Rates(DAY, prices, np.zeros(192))
    log = TripLog(
        trips=tuple(
            Trip(DAY - timedelta(days=7 - d) + 7 * H, DAY - timedelta(days=7 - d) + 17 * H, 10e3)
            for d in range(4)
        ),
        watched_since=DAY - timedelta(days=8),
    )
    snap = plan_snapshot(rates, car_soc=30.0)
    site = plan_site(target_soc=80.0, deadline_h=7.0)
    bought = {
        name: float(make_plan(snap, site, rates, DAY, trips=trips).ev_grid_w["car"].sum()) / 4000
        for name, trips in (("habits", {"car": log}), ("none", None))
    }
    needed_kwh = (0.81 * 60 - 0.30 * 60) / 0.9  # the goal, with its 1 % margin
    assert abs(bought["none"] - needed_kwh) < 0.1
    assert bought["habits"] > needed_kwh + 8.0


def test_one_top_up_per_stay() -> None:
    """Once a planned charge ran in a stay, later trips are not planned again until the car
    has been away and back (the flag the engine sets is cleared on return)."""
    log = replace(watch(8), topped_up=True)
    now = DAY + timedelta(days=8)
    assert log.observe(True, 40_000.0, now).topped_up
    away = log.observe(False, None, now + H)
    assert away.observe(True, 30_000.0, now + 2 * H).topped_up is False
