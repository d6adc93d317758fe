"""Tests of ``PriceMemory`` (usual prices) and ``expected_rates`` (prices past the published)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from numpy.typing import NDArray

from surplus.control.prices import (
    MEMORY_DAYS,
    REPEAT_WEIGHT,
    USUAL_AFTER_DAYS,
    PriceMemory,
    expected_rates,
)
from surplus.domain.tariff import SLOT, SLOTS_PER_DAY, Rates

F64 = NDArray[np.float64]
MIDNIGHT = datetime(2024, 6, 10, tzinfo=UTC)  # the start of a UTC day
SLOTS = np.arange(SLOTS_PER_DAY, dtype=float)


def _import_day(level: float) -> F64:
    """A day of import prices: ``level`` plus a ramp, so every slot of the day differs."""
    return level + 0.001 * SLOTS


def _export_day(level: float) -> F64:
    """A day of export prices, shaped unlike the import ones."""
    return level - 0.0005 * SLOTS


def _days(levels: list[float], start: datetime = MIDNIGHT) -> Rates:
    """Whole days of prices from ``start``, one level per day."""
    imp = np.concatenate([_import_day(v) for v in levels])
    exp = np.concatenate([_export_day(v / 2) for v in levels])
    return Rates(start, imp, exp)


def _slice(rates: Rates, first: int, last: int) -> Rates:
    """Slots ``first`` to ``last`` (exclusive) of ``rates``, as published on their own."""
    return Rates(
        rates.start + SLOT * first,
        rates.import_eur_per_kwh[first:last],
        rates.export_eur_per_kwh[first:last],
    )


def _assert_same(a: PriceMemory, b: PriceMemory) -> None:
    np.testing.assert_allclose(a.import_eur_per_kwh, b.import_eur_per_kwh, rtol=0, atol=1e-12)
    np.testing.assert_allclose(a.export_eur_per_kwh, b.export_eur_per_kwh, rtol=0, atol=1e-12)
    assert a.days == b.days
    assert a.seen_until == b.seen_until


# --- PriceMemory.fold --------------------------------------------------------------------


def test_fold_tracks_the_end_of_the_published_slots() -> None:
    rates = _days([0.2, 0.3])
    memory = PriceMemory().fold(rates)
    assert memory.seen_until == rates.end == MIDNIGHT + 2 * SLOTS_PER_DAY * SLOT
    later = memory.fold(_days([0.4], start=rates.end))
    assert later.seen_until == rates.end + SLOTS_PER_DAY * SLOT


def test_fold_of_the_same_rates_twice_changes_nothing() -> None:
    rates = _days([0.2, 0.3, 0.25])
    once = PriceMemory().fold(rates)
    twice = once.fold(rates)
    _assert_same(twice, once)


def test_fold_of_rates_already_seen_returns_the_memory_itself() -> None:
    rates = _days([0.2, 0.3])
    memory = PriceMemory().fold(rates)
    assert memory.fold(_slice(rates, 0, SLOTS_PER_DAY)) is memory


def test_fold_of_overlapping_rates_adds_only_the_new_slots() -> None:
    rates = _days([0.1, 0.4, 0.2, 0.5])
    # days 0-1 first, then days 1-3: day 1 is published twice and must count once
    step = PriceMemory().fold(_slice(rates, 0, 2 * SLOTS_PER_DAY))
    step = step.fold(_slice(rates, SLOTS_PER_DAY, 4 * SLOTS_PER_DAY))
    _assert_same(step, PriceMemory().fold(rates))
    # day 1 counted twice would drag the mean of slot 0 toward 0.4: (0.1+0.4+0.4+0.2+0.5)/5
    assert step.import_eur_per_kwh[0] == pytest.approx((0.1 + 0.4 + 0.2 + 0.5) / 4)


@pytest.mark.parametrize(
    "chunk",
    [
        pytest.param(1, id="slot by slot"),
        pytest.param(7, id="odd chunks across midnight"),
        pytest.param(SLOTS_PER_DAY, id="day by day"),
    ],
)
def test_fold_in_pieces_equals_fold_at_once(chunk: int) -> None:
    rates = _days([0.1, 0.4, 0.2])
    memory = PriceMemory()
    for first in range(0, len(rates), chunk):
        memory = memory.fold(_slice(rates, first, min(first + chunk, len(rates))))
    _assert_same(memory, PriceMemory().fold(rates))


@pytest.mark.parametrize(
    ("slots", "days"),
    [
        pytest.param(0, 0.0, id="nothing"),
        pytest.param(SLOTS_PER_DAY - 1, 0.0, id="one slot short of a day"),
        pytest.param(SLOTS_PER_DAY, 1.0, id="one day"),
        pytest.param(2 * SLOTS_PER_DAY, 2.0, id="two days"),
        pytest.param(3 * SLOTS_PER_DAY + 10, 3.0, id="three days and a bit"),
    ],
)
def test_fold_counts_the_days(slots: int, days: float) -> None:
    rates = _days([0.2] * 4)
    assert PriceMemory().fold(_slice(rates, 0, slots)).days == days


def test_fold_averages_the_first_days_plainly() -> None:
    levels = [0.1, 0.5, 0.3]
    memory = PriceMemory().fold(_days(levels))
    np.testing.assert_allclose(memory.import_eur_per_kwh, _import_day(float(np.mean(levels))))
    np.testing.assert_allclose(memory.export_eur_per_kwh, _export_day(float(np.mean(levels)) / 2))


# --- PriceMemory.usual -------------------------------------------------------------------


def test_usual_is_none_before_enough_days() -> None:
    need = int(USUAL_AFTER_DAYS)
    rates = _days([0.2] * need)
    short = PriceMemory().fold(_slice(rates, 0, len(rates) - 1))
    assert short.usual() is None
    assert PriceMemory().usual() is None
    assert PriceMemory().fold(rates).usual() is not None


@pytest.mark.parametrize(
    "extra_days",
    [pytest.param(0, id="exactly enough days"), pytest.param(5, id="more days")],
)
def test_usual_of_identical_days_is_that_days_profile(extra_days: int) -> None:
    memory = PriceMemory().fold(_days([0.25] * (int(USUAL_AFTER_DAYS) + extra_days)))
    usual = memory.usual()
    assert usual is not None
    np.testing.assert_allclose(usual[0], _import_day(0.25))
    np.testing.assert_allclose(usual[1], _export_day(0.125))


@pytest.mark.parametrize(
    "days_after",
    [
        pytest.param(1, id="one day after the change"),
        pytest.param(7, id="a week after"),
        pytest.param(int(MEMORY_DAYS), id="one time constant after"),
        pytest.param(3 * int(MEMORY_DAYS), id="three time constants after"),
    ],
)
def test_usual_moves_toward_new_prices_as_an_exponential_average(days_after: int) -> None:
    old, new = 0.10, 0.40
    # the first MEMORY_DAYS days are a plain mean (of equal days: ``old``), then each day
    # weighs 1 / MEMORY_DAYS
    memory = PriceMemory().fold(_days([old] * int(MEMORY_DAYS) + [new] * days_after))
    usual = memory.usual()
    assert usual is not None
    left = (1.0 - 1.0 / MEMORY_DAYS) ** days_after  # the part of the old prices still in
    level = new + (old - new) * left
    np.testing.assert_allclose(usual[0], _import_day(level))
    np.testing.assert_allclose(usual[1], _export_day(level / 2))
    assert old < level < new


# --- expected_rates ----------------------------------------------------------------------


def _memory(imp: F64, exp: F64, days: float = USUAL_AFTER_DAYS) -> PriceMemory:
    return PriceMemory(imp, exp, np.full(SLOTS_PER_DAY, days), MIDNIGHT)


USUAL_IMP = 0.5 - 0.002 * SLOTS  # a usual profile unlike any published day
USUAL_EXP = 0.02 + 0.001 * SLOTS


@pytest.mark.parametrize(
    ("published", "slots"),
    [
        pytest.param(2 * SLOTS_PER_DAY, 2 * SLOTS_PER_DAY, id="exactly what is published"),
        pytest.param(2 * SLOTS_PER_DAY, 10, id="fewer than published"),
        pytest.param(2 * SLOTS_PER_DAY, 0, id="no slots"),
        pytest.param(0, 3 * SLOTS_PER_DAY, id="nothing published"),
    ],
)
def test_expected_rates_returns_the_input_when_nothing_to_add(published: int, slots: int) -> None:
    rates = _slice(_days([0.2, 0.3]), 0, published)
    assert expected_rates(rates, slots) is rates
    assert expected_rates(rates, slots, _memory(USUAL_IMP, USUAL_EXP)) is rates


@pytest.mark.parametrize(
    "memory",
    [
        pytest.param(None, id="no memory"),
        pytest.param(_memory(USUAL_IMP, USUAL_EXP, days=USUAL_AFTER_DAYS - 1), id="too young"),
    ],
)
def test_expected_rates_without_usual_repeat_the_last_published_day(
    memory: PriceMemory | None,
) -> None:
    rates = _days([0.1, 0.3])  # day 1 (the last) differs from day 0
    out = expected_rates(rates, 5 * SLOTS_PER_DAY + 10, memory)
    assert out.start == rates.start
    assert len(out) == 5 * SLOTS_PER_DAY + 10
    assert len(out.export_eur_per_kwh) == len(out)
    np.testing.assert_array_equal(out.import_eur_per_kwh[: len(rates)], rates.import_eur_per_kwh)
    np.testing.assert_array_equal(out.export_eur_per_kwh[: len(rates)], rates.export_eur_per_kwh)
    tail_imp = out.import_eur_per_kwh[len(rates) :]
    tail_exp = out.export_eur_per_kwh[len(rates) :]
    reps = int(np.ceil(len(tail_imp) / SLOTS_PER_DAY))
    np.testing.assert_allclose(tail_imp, np.tile(_import_day(0.3), reps)[: len(tail_imp)])
    np.testing.assert_allclose(tail_exp, np.tile(_export_day(0.15), reps)[: len(tail_exp)])


def test_expected_rates_repeat_the_last_day_from_any_slot() -> None:
    # published from 06:00 to 06:00 two days on: the last published day is [06:00, 06:00)
    rates = _slice(_days([0.1, 0.3, 0.5]), 24, 24 + 2 * SLOTS_PER_DAY)
    out = expected_rates(rates, len(rates) + SLOTS_PER_DAY)
    last_day = rates.import_eur_per_kwh[-SLOTS_PER_DAY:]
    np.testing.assert_allclose(out.import_eur_per_kwh[len(rates) :], last_day)


def test_expected_rates_past_less_than_a_day_fall_back_to_the_mean() -> None:
    half = SLOTS_PER_DAY // 2
    rates = _slice(_days([0.2]), 0, half)  # only the first half of a day
    out = expected_rates(rates, 3 * half)
    # half a day on: the same time yesterday was never published
    mean = float(np.mean(rates.import_eur_per_kwh))
    np.testing.assert_allclose(out.import_eur_per_kwh[half : 2 * half], mean)
    # a day on: the same time yesterday was published
    np.testing.assert_allclose(out.import_eur_per_kwh[2 * half :], rates.import_eur_per_kwh)


@pytest.mark.parametrize(
    ("days_ahead", "weight"),
    [
        pytest.param(1, REPEAT_WEIGHT, id="day 1 ahead"),
        pytest.param(2, REPEAT_WEIGHT**2, id="day 2 ahead"),
        pytest.param(3, REPEAT_WEIGHT**3, id="day 3 ahead"),
    ],
)
def test_expected_rates_blend_the_last_day_into_the_usual(days_ahead: int, weight: float) -> None:
    rates = _days([0.1, 0.3])
    out = expected_rates(rates, len(rates) + 3 * SLOTS_PER_DAY, _memory(USUAL_IMP, USUAL_EXP))
    first = len(rates) + (days_ahead - 1) * SLOTS_PER_DAY
    day = slice(first, first + SLOTS_PER_DAY)
    np.testing.assert_allclose(
        out.import_eur_per_kwh[day], weight * _import_day(0.3) + (1 - weight) * USUAL_IMP
    )
    np.testing.assert_allclose(
        out.export_eur_per_kwh[day], weight * _export_day(0.15) + (1 - weight) * USUAL_EXP
    )


@pytest.mark.parametrize(
    "start",
    [
        pytest.param(datetime(2024, 6, 10, 6, 0, tzinfo=UTC), id="06:00 UTC"),
        pytest.param(datetime(2024, 6, 10, 13, 45, tzinfo=UTC), id="13:45 UTC"),
        pytest.param(
            datetime(2024, 6, 11, tzinfo=ZoneInfo("Europe/Amsterdam")),
            id="local midnight = 22:00 UTC",
        ),
    ],
)
def test_expected_rates_take_the_usual_at_the_same_utc_slot_of_day(start: datetime) -> None:
    n = SLOTS_PER_DAY + 20  # a day and a bit, not ending at midnight either
    rates = Rates(start, 0.3 + 0.001 * np.arange(n), 0.1 - 0.0005 * np.arange(n))
    out = expected_rates(rates, n + 2 * SLOTS_PER_DAY, _memory(USUAL_IMP, USUAL_EXP))
    utc = start.astimezone(UTC)
    first_slot = (utc.hour * 60 + utc.minute) // 15
    for k in (n, n + 1, n + 37, n + SLOTS_PER_DAY - 1, n + SLOTS_PER_DAY, len(out) - 1):
        days_ahead = (k - n) // SLOTS_PER_DAY + 1
        w = REPEAT_WEIGHT**days_ahead
        src = k - days_ahead * SLOTS_PER_DAY
        of_day = (first_slot + k) % SLOTS_PER_DAY
        assert out.import_eur_per_kwh[k] == pytest.approx(
            w * rates.import_eur_per_kwh[src] + (1 - w) * USUAL_IMP[of_day]
        ), k
        assert out.export_eur_per_kwh[k] == pytest.approx(
            w * rates.export_eur_per_kwh[src] + (1 - w) * USUAL_EXP[of_day]
        ), k


def test_a_memory_started_at_noon_is_not_biased_by_its_partial_first_day() -> None:
    start = datetime(2024, 6, 10, 12, tzinfo=UTC)
    n = 8 * SLOTS_PER_DAY
    memory = PriceMemory().fold(Rates(start, np.full(n, 0.3), np.full(n, 0.1)))
    usual = memory.usual()
    assert usual is not None
    assert usual[0] == pytest.approx(np.full(SLOTS_PER_DAY, 0.3))
    assert usual[1] == pytest.approx(np.full(SLOTS_PER_DAY, 0.1))
    assert memory.days == 8.0
