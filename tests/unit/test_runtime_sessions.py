"""The session tracker: sessions opened and closed from ticks, their energy split and priced."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from surplus.domain.tariff import Rates
from surplus.runtime.sessions import SessionTracker
from surplus.store import EnergySplit, Session, Store

T0 = datetime(2024, 6, 10, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
LP = "garage"
SUNNY = {"ev_w": 6000.0, "pv_w": 8000.0, "home_w": 1000.0, "battery_w": 0.0}
# Slots of 15 minutes from T0: 0.10, then 0.30, then 0.20 EUR/kWh.
RATES = Rates(T0, np.array([0.10, 0.30, 0.20]), np.zeros(3))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "surplus.db") as store:
        yield store


def tick(
    tracker: SessionTracker,
    at: datetime,
    energy_wh: float | None,
    *,
    charging: bool = True,
    rates: Rates | None = None,
    flows: dict[str, float] = SUNNY,
) -> Session | None:
    return tracker.observe(
        LP,
        at,
        charging_session=charging,
        session_energy_wh=energy_wh,
        rates=rates,
        **flows,
    )


def energy(session: Session | None) -> EnergySplit:
    assert session is not None
    return session.energy


def approx(split: EnergySplit) -> tuple[float, ...]:
    return pytest.approx((split.solar_wh, split.battery_wh, split.grid_wh, split.cost_eur))


def test_a_session_opens_with_charging_and_closes_when_it_ends(store: Store) -> None:
    tracker = SessionTracker(store.sessions)
    assert tick(tracker, T0, None, charging=False) is None
    opened = tick(tracker, T0 + MIN, 0.0)
    assert opened is not None and opened.start == T0 + MIN and opened.end is None
    assert opened.energy == EnergySplit()
    running = tick(tracker, T0 + 2 * MIN, 100.0)
    assert running is not None and running.id == opened.id
    assert running.energy == EnergySplit(solar_wh=100.0)
    closed = tick(tracker, T0 + 3 * MIN, 250.0, charging=False)  # the last increment counts
    assert closed is not None and closed.id == opened.id and closed.end == T0 + 3 * MIN
    assert closed.energy == EnergySplit(solar_wh=250.0)
    assert closed.energy.solar_share == 1.0
    assert tick(tracker, T0 + 4 * MIN, None, charging=False) is None
    assert store.sessions.current(LP) is None
    assert [s.id for s in store.sessions.between(T0, T0 + 10 * MIN)] == [opened.id]


@pytest.mark.parametrize(
    ("flows", "expected"),
    [
        # pv - home covers the car: all solar
        ({"ev_w": 6000.0, "pv_w": 8000.0, "home_w": 1000.0, "battery_w": 0.0}, (1.0, 0.0, 0.0)),
        # half of the car from the solar left after the house, half from the grid
        ({"ev_w": 6000.0, "pv_w": 4000.0, "home_w": 1000.0, "battery_w": 0.0}, (0.5, 0.0, 0.5)),
        # the solar surplus charges the battery: the car's rest is grid energy
        ({"ev_w": 6000.0, "pv_w": 4000.0, "home_w": 1000.0, "battery_w": -2000.0}, (0.5, 0, 0.5)),
        # the battery covers the house's 1 kW beyond solar, its other 3 kW go to the car
        ({"ev_w": 6000.0, "pv_w": 1000.0, "home_w": 2000.0, "battery_w": 4000.0}, (0, 0.5, 0.5)),
        # solar and the battery together
        (
            {"ev_w": 6000.0, "pv_w": 3000.0, "home_w": 1000.0, "battery_w": 1500.0},
            (2 / 6, 0.25, 5 / 12),
        ),
        # the battery's discharge all goes to the house
        ({"ev_w": 6000.0, "pv_w": 0.0, "home_w": 2000.0, "battery_w": 1500.0}, (0.0, 0.0, 1.0)),
        # energy moved while the charger said 0 W: grid
        ({"ev_w": 0.0, "pv_w": 8000.0, "home_w": 1000.0, "battery_w": 0.0}, (0.0, 0.0, 1.0)),
    ],
)
def test_each_increment_is_split_by_the_flows_of_its_tick(
    store: Store, flows: dict[str, float], expected: tuple[float, float, float]
) -> None:
    tracker = SessionTracker(store.sessions)
    tick(tracker, T0, 0.0, flows=flows)
    split = energy(tick(tracker, T0 + MIN, 1200.0, flows=flows))
    solar, battery, grid = expected
    assert approx(split) == (1200.0 * solar, 1200.0 * battery, 1200.0 * grid, 0.0)


def test_grid_energy_costs_the_import_price_of_the_ticks_slot(store: Store) -> None:
    tracker = SessionTracker(store.sessions)
    half_solar = {"ev_w": 6000.0, "pv_w": 4000.0, "home_w": 1000.0, "battery_w": 0.0}
    tick(tracker, T0 + 14 * MIN, 0.0, rates=RATES, flows=half_solar)
    # 1 kWh up to 12:16, in the second slot: 0.5 kWh from the grid at 0.30
    split = energy(tick(tracker, T0 + 16 * MIN, 1000.0, rates=RATES, flows=half_solar))
    assert approx(split) == (500.0, 0.0, 500.0, 0.15)
    # past the known prices, and without a tariff, grid energy costs nothing
    split = energy(tick(tracker, T0 + 50 * MIN, 2000.0, rates=RATES, flows=half_solar))
    assert approx(split) == (1000.0, 0.0, 1000.0, 0.15)
    split = energy(tick(tracker, T0 + 51 * MIN, 3000.0, rates=None, flows=half_solar))
    assert approx(split) == (1500.0, 0.0, 1500.0, 0.15)
    closed = tick(tracker, T0 + 52 * MIN, 3000.0, charging=False)
    assert closed is not None and closed.energy.solar_share == pytest.approx(0.5)


def test_a_drop_of_the_chargers_count_is_a_new_base_not_negative_energy(store: Store) -> None:
    tracker = SessionTracker(store.sessions)
    counts = [0.0, 1000.0, 200.0, 500.0]  # the charger restarted between the 2nd and the 3rd
    for minute, count in enumerate(counts):
        session = tick(tracker, T0 + minute * MIN, count)
    assert energy(session) == EnergySplit(solar_wh=1300.0)


def test_without_the_chargers_count_the_cars_power_is_integrated(store: Store) -> None:
    tracker = SessionTracker(store.sessions)
    tick(tracker, T0, None)
    tick(tracker, T0 + MIN, None)  # 6 kW for a minute: 100 Wh
    session = tick(tracker, T0 + 2 * MIN, None, flows={**SUNNY, "ev_w": 3000.0})
    assert approx(energy(session)) == (150.0, 0.0, 0.0, 0.0)


def test_a_gap_in_the_ticks_counts_at_most_five_minutes(store: Store) -> None:
    tracker = SessionTracker(store.sessions)
    tick(tracker, T0, None)
    tick(tracker, T0 + MIN, None)
    session = tick(tracker, T0 + 61 * MIN, None)  # an hour without ticks: 5 minutes counted
    assert approx(energy(session)) == (600.0, 0.0, 0.0, 0.0)


def test_after_a_restart_the_open_session_continues_without_double_counting(
    tmp_path: Path,
) -> None:
    path = tmp_path / "surplus.db"
    with Store.open(path) as store:
        tracker = SessionTracker(store.sessions)
        opened = tick(tracker, T0, 0.0)
        tick(tracker, T0 + MIN, 1000.0)
    with Store.open(path) as store:
        tracker = SessionTracker(store.sessions)
        # what was charged while the service was down is not known to have been solar
        again = tick(tracker, T0 + 10 * MIN, 4000.0)
        assert again is not None and opened is not None and again.id == opened.id
        assert again.start == T0 and again.energy == EnergySplit(solar_wh=1000.0)
        tick(tracker, T0 + 11 * MIN, 4500.0)
        closed = tick(tracker, T0 + 12 * MIN, 5000.0, charging=False)
        assert closed is not None and closed.id == opened.id
        assert closed.energy == EnergySplit(solar_wh=2000.0)
        assert len(store.sessions.between(T0, T0 + 20 * MIN)) == 1


def test_a_session_that_ended_while_the_service_was_down_is_closed_at_its_last_tick(
    store: Store,
) -> None:
    tracker = SessionTracker(store.sessions)
    opened = tick(tracker, T0, 0.0)
    tick(tracker, T0 + MIN, 1000.0)
    tick(tracker, T0 + 2 * MIN, 1000.0)
    restarted = SessionTracker(store.sessions)
    closed = tick(restarted, T0 + 60 * MIN, None, charging=False)
    assert closed is not None and opened is not None and closed.id == opened.id
    assert closed.end == T0 + 2 * MIN and closed.energy == EnergySplit(solar_wh=1000.0)
    assert tick(restarted, T0 + 61 * MIN, None, charging=False) is None
    assert store.sessions.current(LP) is None


def test_a_store_error_is_logged_and_the_next_tick_recovers(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = SessionTracker(store.sessions)
    opened = tick(tracker, T0, 0.0)
    assert opened is not None
    store.sessions.close(opened.id, T0 + MIN)  # behind the tracker's back
    with caplog.at_level(logging.WARNING, logger="surplus.runtime.sessions"):
        assert tick(tracker, T0 + 2 * MIN, 100.0) is None
    assert "charging session" in caplog.text and "is closed" in caplog.text
    reopened = tick(tracker, T0 + 3 * MIN, 200.0)
    assert reopened is not None and reopened.id != opened.id
    assert energy(tick(tracker, T0 + 4 * MIN, 300.0)) == EnergySplit(solar_wh=100.0)


def test_a_rise_reported_with_the_car_at_rest_is_split_as_the_last_drawing_tick(
    store: Store,
) -> None:
    """A cloud charger's count can rise in the read that finds the charge over: that
    energy was drawn while the car charged, from the sun here, not from the grid."""
    tracker = SessionTracker(store.sessions)
    tick(tracker, T0, 0.0)
    tick(tracker, T0 + MIN, 100.0)
    at_rest = {**SUNNY, "ev_w": 0.0}
    later = tick(tracker, T0 + 2 * MIN, 160.0, flows=at_rest)
    assert energy(later) == EnergySplit(solar_wh=160.0)
    # the next session does not inherit those shares: a rise at rest before any drawing
    # tick of its own is grid energy
    tick(tracker, T0 + 3 * MIN, 160.0, charging=False, flows=at_rest)
    tick(tracker, T0 + 4 * MIN, 0.0, flows=at_rest)
    first = tick(tracker, T0 + 5 * MIN, 50.0, flows=at_rest)
    assert energy(first) == EnergySplit(grid_wh=50.0)
