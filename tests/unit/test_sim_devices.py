"""Tests of ``HomeBattery.dispatch``: the battery power each mode gives for a site deficit."""

from __future__ import annotations

import pytest

from surplus.control.state import BatteryMode
from surplus.sim.devices import HomeBattery

DT_S = 900.0  # one 15-minute step
DT_H = DT_S / 3600.0
M = BatteryMode


def _half_full(**kw: float) -> HomeBattery:
    """A battery at 50 %: its energy and room never bind within one step, only its powers."""
    return HomeBattery(**kw)


@pytest.mark.parametrize(
    ("mode", "deficit_w", "power_w", "expected_w"),
    [
        # normal: self-consumption, power_w is ignored
        pytest.param(M.NORMAL, 1_200.0, 0.0, 1_200.0, id="normal-deficit-covered"),
        pytest.param(M.NORMAL, 1_200.0, 3_000.0, 1_200.0, id="normal-ignores-power"),
        pytest.param(M.NORMAL, 7_000.0, 0.0, 5_000.0, id="normal-deficit-above-max-discharge"),
        pytest.param(M.NORMAL, -800.0, 0.0, -800.0, id="normal-surplus-stored"),
        pytest.param(M.NORMAL, -7_000.0, 0.0, -5_000.0, id="normal-surplus-above-max-charge"),
        pytest.param(M.NORMAL, 0.0, 0.0, 0.0, id="normal-balanced"),
        # hold: never discharges, still stores surplus
        pytest.param(M.HOLD, 1_200.0, 0.0, 0.0, id="hold-deficit-not-covered"),
        pytest.param(M.HOLD, 1_200.0, 3_000.0, 0.0, id="hold-ignores-power"),
        pytest.param(M.HOLD, -800.0, 0.0, -800.0, id="hold-surplus-stored"),
        pytest.param(M.HOLD, -7_000.0, 0.0, -5_000.0, id="hold-surplus-above-max-charge"),
        # idle: nothing either way
        pytest.param(M.IDLE, 1_200.0, 0.0, 0.0, id="idle-deficit"),
        pytest.param(M.IDLE, -800.0, 0.0, 0.0, id="idle-surplus"),
        pytest.param(M.IDLE, 1_200.0, 3_000.0, 0.0, id="idle-ignores-power"),
        # charge: max(power, surplus), within the max charge
        pytest.param(M.CHARGE, 1_000.0, 2_000.0, -2_000.0, id="charge-from-grid-under-deficit"),
        pytest.param(M.CHARGE, 0.0, 2_000.0, -2_000.0, id="charge-from-grid-balanced"),
        pytest.param(M.CHARGE, -1_000.0, 2_000.0, -2_000.0, id="charge-power-above-surplus"),
        pytest.param(M.CHARGE, -3_000.0, 2_000.0, -3_000.0, id="charge-surplus-above-power"),
        pytest.param(M.CHARGE, 0.0, 8_000.0, -5_000.0, id="charge-power-above-max-charge"),
        pytest.param(M.CHARGE, -7_000.0, 0.0, -5_000.0, id="charge-surplus-above-max-charge"),
        pytest.param(M.CHARGE, 1_000.0, 0.0, 0.0, id="charge-nothing-asked-under-deficit"),
        # discharge: max(power, deficit), within the max discharge
        pytest.param(M.DISCHARGE, 0.0, 2_000.0, 2_000.0, id="discharge-exports-balanced"),
        pytest.param(M.DISCHARGE, -1_000.0, 2_000.0, 2_000.0, id="discharge-exports-over-surplus"),
        pytest.param(M.DISCHARGE, 1_000.0, 2_000.0, 2_000.0, id="discharge-power-above-deficit"),
        pytest.param(M.DISCHARGE, 3_000.0, 2_000.0, 3_000.0, id="discharge-deficit-above-power"),
        pytest.param(M.DISCHARGE, 0.0, 8_000.0, 5_000.0, id="discharge-power-above-max"),
        pytest.param(M.DISCHARGE, 7_000.0, 1_000.0, 5_000.0, id="discharge-deficit-above-max"),
    ],
)
def test_dispatch_by_mode(
    mode: BatteryMode, deficit_w: float, power_w: float, expected_w: float
) -> None:
    battery = _half_full()
    assert battery.dispatch(deficit_w, mode, power_w, DT_S) == pytest.approx(expected_w)


@pytest.mark.parametrize(
    ("mode", "power_w", "expected_w"),
    [
        pytest.param(M.CHARGE, 4_000.0, -3_000.0, id="charge-uses-max-charge"),
        pytest.param(M.DISCHARGE, 4_000.0, 2_500.0, id="discharge-uses-max-discharge"),
    ],
)
def test_dispatch_charge_and_discharge_limits_are_not_swapped(
    mode: BatteryMode, power_w: float, expected_w: float
) -> None:
    battery = _half_full(max_charge_w=3_000.0, max_discharge_w=2_500.0)
    assert battery.dispatch(0.0, mode, power_w, DT_S) == pytest.approx(expected_w)


EMPTY = HomeBattery().min_soc_pct / 100.0 * HomeBattery().capacity_wh  # the floor, in Wh


@pytest.mark.parametrize(
    ("energy_wh", "mode", "deficit_w", "power_w"),
    [
        pytest.param(EMPTY, M.NORMAL, 1_000.0, 0.0, id="at-floor-normal"),
        pytest.param(EMPTY, M.DISCHARGE, 0.0, 2_000.0, id="at-floor-discharge"),
        pytest.param(EMPTY, M.DISCHARGE, 3_000.0, 2_000.0, id="at-floor-discharge-under-deficit"),
        pytest.param(EMPTY / 2, M.NORMAL, 1_000.0, 0.0, id="below-floor-normal"),
        pytest.param(0.0, M.DISCHARGE, 0.0, 2_000.0, id="flat-discharge"),
    ],
)
def test_empty_battery_cannot_discharge(
    energy_wh: float, mode: BatteryMode, deficit_w: float, power_w: float
) -> None:
    battery = HomeBattery(energy_wh=energy_wh)
    assert battery.dispatch(deficit_w, mode, power_w, DT_S) == 0.0


@pytest.mark.parametrize(
    ("mode", "deficit_w", "power_w"),
    [
        pytest.param(M.NORMAL, -1_000.0, 0.0, id="normal"),
        pytest.param(M.HOLD, -1_000.0, 0.0, id="hold"),
        pytest.param(M.CHARGE, 0.0, 2_000.0, id="charge-from-grid"),
        pytest.param(M.CHARGE, -3_000.0, 0.0, id="charge-from-surplus"),
    ],
)
def test_full_battery_cannot_charge(mode: BatteryMode, deficit_w: float, power_w: float) -> None:
    battery = HomeBattery(energy_wh=HomeBattery().capacity_wh)
    assert battery.dispatch(deficit_w, mode, power_w, DT_S) == 0.0


@pytest.mark.parametrize(
    ("mode", "deficit_w", "power_w"),
    [
        pytest.param(M.NORMAL, 3_000.0, 0.0, id="normal"),
        pytest.param(M.DISCHARGE, 0.0, 3_000.0, id="discharge"),
    ],
)
def test_discharge_is_limited_to_the_energy_above_the_floor(
    mode: BatteryMode, deficit_w: float, power_w: float
) -> None:
    above_wh = 100.0
    battery = HomeBattery(energy_wh=EMPTY + above_wh)
    power = battery.dispatch(deficit_w, mode, power_w, DT_S)
    assert power == pytest.approx(above_wh * battery.efficiency_discharge / DT_H)  # 380 W
    battery.apply(power, DT_S)
    assert battery.energy_wh == pytest.approx(EMPTY)  # drained exactly to the floor


@pytest.mark.parametrize(
    ("mode", "deficit_w", "power_w"),
    [
        pytest.param(M.NORMAL, -3_000.0, 0.0, id="normal"),
        pytest.param(M.HOLD, -3_000.0, 0.0, id="hold"),
        pytest.param(M.CHARGE, 0.0, 3_000.0, id="charge"),
    ],
)
def test_charge_is_limited_to_the_room_left(
    mode: BatteryMode, deficit_w: float, power_w: float
) -> None:
    room_wh = 100.0
    battery = HomeBattery(energy_wh=HomeBattery().capacity_wh - room_wh)
    power = battery.dispatch(deficit_w, mode, power_w, DT_S)
    assert power == pytest.approx(-room_wh / (battery.efficiency_charge * DT_H))  # -421 W
    battery.apply(power, DT_S)
    assert battery.energy_wh == pytest.approx(battery.capacity_wh)  # filled exactly


def test_room_and_energy_limits_scale_with_the_step() -> None:
    # 100 Wh above the floor is 380 W over 15 minutes but would be 5.7 kW over one minute,
    # so over one minute the max discharge binds instead
    battery = HomeBattery(energy_wh=EMPTY + 100.0)
    assert battery.dispatch(0.0, M.DISCHARGE, 8_000.0, 60.0) == pytest.approx(5_000.0)
    assert battery.dispatch(0.0, M.DISCHARGE, 8_000.0, DT_S) == pytest.approx(380.0)
