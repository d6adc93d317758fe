"""Tests of ``allocate`` with ``Demand.lean_w``: how much of the battery allowance each may use."""

from __future__ import annotations

import pytest

from surplus.control.allocate import Demand, allocate

MIN_W = 1_400.0  # one phase at 6 A, roughly
MAX_W = 11_000.0
INF = float("inf")


def _car(name: str = "a", *, running: bool = True, lean_w: float = INF) -> Demand:
    return Demand(name, priority=1, min_w=MIN_W, max_w=MAX_W, running=running, lean_w=lean_w)


@pytest.mark.parametrize(
    ("available_w", "allowance_w", "lean_w", "expected_w"),
    [
        pytest.param(1_000.0, 2_000.0, 400.0, MIN_W, id="lean-just-enough"),
        pytest.param(1_000.0, 2_000.0, 399.0, 0.0, id="lean-one-watt-short"),
        pytest.param(1_000.0, 2_000.0, 0.0, 0.0, id="no-lean"),
        pytest.param(1_000.0, 2_000.0, 1_000.0, MIN_W, id="lean-above-need"),
        pytest.param(1_000.0, 300.0, 5_000.0, 0.0, id="lean-capped-by-allowance"),
        pytest.param(0.0, 2_000.0, 1_000.0, 0.0, id="nothing-available-lean-too-small"),
        pytest.param(0.0, 2_000.0, MIN_W, MIN_W, id="all-from-battery-within-lean"),
        pytest.param(MIN_W, 0.0, 0.0, MIN_W, id="surplus-enough-no-lean-needed"),
    ],
)
def test_running_demand_leans_only_up_to_its_lean_w(
    available_w: float, allowance_w: float, lean_w: float, expected_w: float
) -> None:
    grants = allocate(available_w, [_car(lean_w=lean_w)], allowance_w=allowance_w)
    assert grants == {"a": pytest.approx(expected_w)}


@pytest.mark.parametrize(
    "lean_w",
    [
        pytest.param(INF, id="default-inf"),
        pytest.param(5_000.0, id="large"),
        pytest.param(400.0, id="exactly-the-gap"),
        pytest.param(0.0, id="zero"),
    ],
)
def test_idle_demand_never_leans(lean_w: float) -> None:
    idle = _car(running=False, lean_w=lean_w)
    # 400 W short of its minimum with 2 kW of allowance: a running one would start
    assert allocate(1_000.0, [idle], allowance_w=2_000.0) == {"a": 0.0}
    # it does start on surplus alone
    assert allocate(MIN_W, [idle], allowance_w=2_000.0) == {"a": MIN_W}


def test_default_lean_w_is_unbounded() -> None:
    assert Demand("a", 1, MIN_W, MAX_W).lean_w == INF


@pytest.mark.parametrize(
    ("available_w", "allowance_w", "expected_w"),
    [
        pytest.param(0.0, MIN_W, MIN_W, id="whole-minimum-from-battery"),
        pytest.param(0.0, MIN_W - 1.0, 0.0, id="allowance-one-watt-short"),
        pytest.param(500.0, 900.0, MIN_W, id="surplus-plus-whole-allowance"),
        pytest.param(500.0, 899.0, 0.0, id="surplus-plus-allowance-short"),
    ],
)
def test_default_lean_w_leans_up_to_the_whole_allowance(
    available_w: float, allowance_w: float, expected_w: float
) -> None:
    car = Demand("a", 1, MIN_W, MAX_W, running=True)
    assert allocate(available_w, [car], allowance_w=allowance_w) == {"a": expected_w}


def test_leaning_grants_only_the_minimum() -> None:
    # what comes from the battery starts the charge; nothing beyond the minimum is shared
    grants = allocate(1_000.0, [_car()], allowance_w=5_000.0)
    assert grants == {"a": MIN_W}


def test_two_running_demands_share_one_allowance() -> None:
    # 2 kW of allowance: the first leans 1.4 kW, the 0.6 kW left cannot start the second
    grants = allocate(0.0, [_car("a"), _car("b")], allowance_w=2_000.0)
    assert grants == {"a": MIN_W, "b": 0.0}


def test_what_one_demand_may_not_lean_stays_for_the_other() -> None:
    # "a" comes first but may not lean: the whole allowance is left for "b"
    grants = allocate(0.0, [_car("a", lean_w=0.0), _car("b")], allowance_w=2_000.0)
    assert grants == {"a": 0.0, "b": MIN_W}


def test_an_idle_demand_leaves_the_allowance_to_a_running_one() -> None:
    # the idle one is listed first but cannot lean, so it does not use up the allowance
    grants = allocate(0.0, [_car("a", running=False), _car("b")], allowance_w=2_000.0)
    assert grants == {"a": 0.0, "b": MIN_W}


def test_a_limited_lean_leaves_the_rest_of_the_allowance() -> None:
    # "a" covers its minimum with 1 kW surplus and leans 400 W (its lean_w is 500 W): with
    # 400 W of allowance nothing is left for "b"; with more, "b" starts on what is left
    a = _car("a", lean_w=500.0)
    b = Demand("b", priority=0, min_w=600.0, max_w=MAX_W, running=True)
    assert allocate(1_000.0, [a, b], allowance_w=400.0) == {"a": MIN_W, "b": 0.0}
    assert allocate(1_000.0, [a, b], allowance_w=400.0 + 5_000.0)["b"] > 0.0


def test_what_one_charge_leans_is_counted_once() -> None:
    """Two running charges of 1.4 kW on no surplus: a 2.8 kW allowance carries both."""
    a = Demand("a", 1, 1400.0, 11_000.0, running=True)
    b = Demand("b", 1, 1400.0, 11_000.0, running=True)
    assert allocate(0.0, [a, b], allowance_w=2800.0) == {"a": 1400.0, "b": 1400.0}
    assert allocate(0.0, [a, b], allowance_w=2799.0) == {"a": 1400.0, "b": 0.0}
