"""The control loop's stop for a charge nobody asked for, and its place in the budget."""

from __future__ import annotations

from datetime import UTC, datetime

from surplus.control.state import ChargerCommand, ControlState, Decision, LoadpointState
from surplus.domain.readings import ChargerState, ChargerStatus, LoadpointSnapshot, SiteSnapshot
from surplus.runtime.loop import _stopping_unasked_charges

NOW = datetime(2026, 6, 10, 7, 30, tzinfo=UTC)


def _snapshot(status: ChargerStatus, enabled: bool) -> SiteSnapshot:
    power = 3680.0 if status is ChargerStatus.CHARGING else 0.0
    charger = ChargerState(status, enabled, 16.0, power, 1, NOW)
    loadpoints = {"carport": LoadpointSnapshot(charger)}
    return SiteSnapshot(NOW, None, None, None, loadpoints)


def _decision(state: LoadpointState) -> Decision:
    return Decision((), ControlState({"carport": state}), {})


def test_a_car_charging_by_itself_is_stopped_and_the_stop_counted() -> None:
    decision = _stopping_unasked_charges(
        _decision(LoadpointState(connected=True, session_commands=2)),
        _snapshot(ChargerStatus.CHARGING, enabled=False),
    )
    assert decision.commands == (ChargerCommand("carport", enable=False),)
    assert decision.state.loadpoints["carport"].session_commands == 3


def test_a_charge_the_engine_runs_or_an_idle_charger_is_left_alone() -> None:
    running = _decision(LoadpointState(on=True, connected=True))
    assert _stopping_unasked_charges(running, _snapshot(ChargerStatus.CHARGING, False)) is running
    idle = _decision(LoadpointState(connected=True))
    assert _stopping_unasked_charges(idle, _snapshot(ChargerStatus.CONNECTED, False)) is idle
