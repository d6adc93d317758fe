"""From a power budget to what a charger understands: phases and a current.

Currents are rounded *down* to the charger's resolution (whole amps or 0.1 A) and clamped
to [min, max]; the voltage comes from the charger's reading when it has one.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from math import ceil, floor

from surplus.control.hysteresis import started, starts_left
from surplus.control.settings import ChargerSettings, ContactorSettings
from surplus.control.state import LoadpointState
from surplus.domain.readings import ChargerState


def voltage(reading: ChargerState | None, cfg: ChargerSettings) -> float:
    measured = reading.voltage_v if reading is not None else None
    if measured is not None and 180.0 <= measured <= 270.0:
        return float(measured)
    return cfg.voltage_v


def power_w(current_a: float, phases: int, volts: float) -> float:
    return current_a * phases * volts


def current_a(
    budget_w: float, phases: int, volts: float, cfg: ChargerSettings, up: bool = False
) -> float:
    """The current for ``budget_w``, on the charger's resolution, within [min, max].

    Rounded down (never more than the surplus), or ``up`` where an amount of energy must
    be delivered (a planned grid slot).
    """
    res = cfg.resolution_a
    raw = budget_w / (phases * volts)
    steps = ceil(raw / res - 1e-9) if up else floor(raw / res + 1e-9)
    rounded = round(steps * res, 1)
    return min(max(rounded, cfg.min_current_a), cfg.max_current_a)


def lowest_phases(cfg: ChargerSettings) -> int:
    return 1 if cfg.phases in (1, "auto") else 3


def highest_phases(cfg: ChargerSettings) -> int:
    return 1 if cfg.phases == 1 else 3


def choose_phases(
    budget_w: float,
    state: LoadpointState,
    cfg: ChargerSettings,
    contactor: ContactorSettings,
    volts: float,
    now: datetime,
    force_max: bool = False,
) -> tuple[int, LoadpointState, str]:
    """Phases to use; with automatic switching a change must persist and be spaced out."""
    if cfg.phases != "auto":
        return cfg.phases, state, ""
    three_min = power_w(cfg.min_current_a, 3, volts)
    # hysteresis: up to 3p only with a margin, back to 1p only when 3p cannot run at all
    margin = cfg.deadband_w if state.phases == 1 else 0.0
    want = 3 if force_max or budget_w >= three_min + margin else 1
    if want == state.phases:
        return want, replace(state, phase_want=None, phase_since=None), ""
    if not state.on:
        return want, replace(state, phase_want=None, phase_since=None, phases=want), ""
    since = state.phase_since if state.phase_want == want and state.phase_since else now
    waited = (now - since).total_seconds()
    last = state.phase_switched_at
    spaced = last is None or (now - last).total_seconds() >= contactor.phase_switch_delay_s
    if not (force_max or contactor.switch_under_load):
        return state.phases, replace(state, phase_want=None, phase_since=None), ""
    if starts_left(state, contactor, now) <= 0:
        return state.phases, state, f"{want}p wanted, but the daily start budget is used up"
    if (force_max or waited >= contactor.phase_switch_delay_s) and spaced:
        # a switch under load opens and closes the contactor: it counts as a start
        switched = replace(
            started(state, now),
            switched_at=state.switched_at,
            phases=want,
            phase_want=None,
            phase_since=None,
            phase_switched_at=now,
        )
        return want, switched, f"switching to {want}p"
    pending = replace(state, phase_want=want, phase_since=since)
    left = max(0.0, contactor.phase_switch_delay_s - waited)
    return state.phases, pending, f"{want}p wanted, {int(left)}s of phase delay left"
