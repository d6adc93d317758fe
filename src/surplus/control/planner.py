"""Planning: what to buy from the grid, and when, to reach each target at least cost.

``make_plan`` builds the site LP (``lp.py``) from the solar and load *forecasts* in the
snapshot (never the truth), for the home battery and every car in ``plan`` mode: it buys
only what solar is not expected to cover, in the cheapest slots before the deadline, and
tells the battery when to hold, charge from the grid, carry the house or sell. It plans
over the published prices and on to a car's deadline, or over four days when the car's
later trips are foreseen from its habits (``trips.py``), with the prices expected past the
published ones (``prices.py``). A car charging now keeps its block when moving it would
save next to nothing (a stop and a restart cost a contactor start). What lies beyond is
valued, not planned: energy left in a battery or a car is worth what it is expected to
save later. ``cheapest_slots`` is the simpler rule other products
use (full power in the cheapest slots, PV ignored); the benchmark's evcc-like baseline
uses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from math import sqrt

import numpy as np
from numpy.typing import NDArray

from surplus.control.lp import BatteryModel, EvModel, SiteLp, solve
from surplus.control.prices import PriceMemory, expected_rates
from surplus.control.settings import LoadpointSettings, Mode, PlannerSettings, SiteSettings
from surplus.control.state import Plan
from surplus.control.trips import Trip, TripLog
from surplus.domain.errors import SurplusError
from surplus.domain.readings import BatteryState, ChargerStatus, SiteSnapshot
from surplus.domain.tariff import SLOT, SLOT_S, Rates

F64 = NDArray[np.float64]
MIN_BLOCK_WH = 8000.0
RUNNING_SLACK = 0.02


def max_power_w(lp: LoadpointSettings, voltage_v: float) -> float:
    phases = 1 if lp.charger.phases == 1 else 3
    return lp.charger.max_current_a * voltage_v * phases


def vehicle_energy_wh(snapshot: SiteSnapshot, lp: LoadpointSettings) -> tuple[float, float] | None:
    """(energy now, capacity) of the car on ``lp``, when its state is known."""
    view = snapshot.loadpoints.get(lp.name)
    if view is None or view.vehicle is None:
        return None
    cap = view.vehicle.capacity_wh or lp.vehicle_capacity_wh
    return view.vehicle.soc_pct / 100.0 * cap, cap


def target_wh(lp: LoadpointSettings, energy_wh: float, capacity_wh: float) -> float:
    assert lp.plan is not None
    if lp.plan.soc_pct is not None:
        return lp.plan.soc_pct / 100.0 * capacity_wh
    return energy_wh + (lp.plan.energy_wh or 0.0)


def plan_key(snapshot: SiteSnapshot, settings: SiteSettings) -> tuple[object, ...]:
    """What a plan depends on besides time: which cars are plugged in, and their targets."""
    key: list[object] = []
    for lp in settings.loadpoints:
        view = snapshot.loadpoints.get(lp.name)
        plugged = view is not None and view.charger.status != "disconnected"
        key.append((lp.name, lp.mode, plugged, lp.plan))
    return tuple(key)


def _per_slot(values: F64, offset_s: float, step_s: float, n: int) -> F64:
    """A forecast with one value per ``step_s`` (starting ``offset_s`` before the first
    slot) read for ``n`` 15-minute slots; its ends stretch to cover the horizon."""
    arr = np.asarray(values, dtype=float)
    if len(arr) == 0:
        return np.zeros(n)
    idx = np.floor((offset_s + np.arange(n) * SLOT_S) / step_s).astype(np.int64)
    out: F64 = arr[np.clip(idx, 0, len(arr) - 1)]
    return out


def _battery_model(state: BatteryState, settings: SiteSettings, rates: Rates) -> BatteryModel:
    policy = settings.battery
    eta = sqrt(policy.round_trip_efficiency)
    return BatteryModel(
        capacity_wh=state.capacity_wh,
        soc_wh=state.soc_pct / 100.0 * state.capacity_wh,
        min_wh=policy.min_soc_pct / 100.0 * state.capacity_wh,
        max_charge_w=state.max_charge_w,
        max_discharge_w=state.max_discharge_w,
        efficiency_charge=eta,
        efficiency_discharge=eta,
        wear_eur_per_kwh=policy.wear_eur_per_kwh,
        grid_charge=policy.controllable,
        terminal_eur_per_kwh=float(
            np.quantile(rates.import_eur_per_kwh, settings.planner.battery_value_quantile)
        )
        * eta,
    )


def _later_trips(
    trips: list[Trip], deadline: datetime, start: datetime, goal: float, ev: EvModel
) -> bool:
    """Plan the trips expected after the owner's departure into ``ev`` (in place): the car
    is back when the departing trip is expected to end, away for every later trip, and
    leaves each time with ``goal``. False when the departing trip is not foreseen."""
    n = len(ev.max_w)
    current = next((t for t in trips if abs(t.left - deadline) <= timedelta(hours=1)), None)
    if current is None or ev.drain_wh is None or ev.required_wh is None:
        return False

    def slot(at: datetime) -> int:
        return int((at - start).total_seconds() // SLOT_S)

    back = slot(current.back)
    if back >= n:
        return False
    ev.max_w[back:] = float(ev.max_w.max())
    ev.drain_wh[max(back - 1, 0)] += current.used_wh
    for trip in trips:
        first, end = slot(trip.left), slot(trip.back)
        if trip.left <= current.left or first >= n:
            continue
        if first > 0:
            ev.required_wh[first - 1] = max(ev.required_wh[first - 1], goal)
        ev.max_w[first : min(end, n)] = 0.0
        if end < n:
            ev.drain_wh[max(end - 1, 0)] += trip.used_wh
    return True


def _ev_model(
    lp: LoadpointSettings,
    snapshot: SiteSnapshot,
    rates: Rates,
    voltage_v: float,
    planner: PlannerSettings,
    trips: list[Trip],
) -> tuple[EvModel, int, bool] | None:
    """The car on ``lp`` for the LP, the slot it must be ready by, and whether its later
    trips are planned too."""
    known = vehicle_energy_wh(snapshot, lp)
    if lp.plan is None or known is None:
        return None
    energy, capacity = known
    n = len(rates)
    p_max = max_power_w(lp, voltage_v)
    # a little above the target: rounding, taper and losses must not leave it short
    margin = 0.01 * capacity
    goal = min(target_wh(lp, energy, capacity) + margin, lp.limit_soc_pct / 100.0 * capacity)
    limit = max(lp.limit_soc_pct / 100.0 * capacity, goal)
    deadline_slot = int((lp.plan.deadline - rates.start).total_seconds() // SLOT_S)
    max_w = np.full(n, p_max)
    required = np.zeros(n)
    cheap = float(np.quantile(rates.import_eur_per_kwh, planner.ev_value_quantile))
    if deadline_slot <= 0:
        return None
    if deadline_slot <= n:
        max_w[deadline_slot:] = 0.0
        required[deadline_slot - 1] = goal
        lo = 0.0
    else:
        after_h = (deadline_slot - n) * SLOT_S / 3600.0
        reachable_later = p_max * lp.charge_efficiency * after_h * 0.7
        required[-1] = max(0.0, goal - reachable_later)
        lo = cheap
    hi = planner.ev_surplus_value_factor * cheap
    ev = EvModel(
        name=lp.name,
        max_w=max_w,
        energy_wh=energy,
        capacity_wh=limit,
        efficiency=lp.charge_efficiency,
        drain_wh=np.zeros(n),
        required_wh=required,
        terminal_split_wh=goal,
        terminal_lo_eur_per_kwh=lo,
        terminal_hi_eur_per_kwh=hi,
    )
    habits = deadline_slot <= n and _later_trips(trips, lp.plan.deadline, rates.start, goal, ev)
    return ev, min(deadline_slot, n), habits


def horizon_slots(settings: SiteSettings, rates: Rates, habits: bool) -> int:
    """How far to plan: the published prices, and on to the latest planned deadline (within
    the planner's horizon), so that solar expected before a deadline is counted on; the
    whole horizon when the cars' later trips are foreseen.
    """
    n = len(rates)
    cap = int(settings.planner.horizon_s // SLOT_S)
    for lp in settings.loadpoints:
        if lp.mode == Mode.PLAN and lp.plan is not None:
            due = int(np.ceil((lp.plan.deadline - rates.start).total_seconds() / SLOT_S))
            n = max(n, cap if habits else min(cap, due))
    return n


def make_plan(
    snapshot: SiteSnapshot,
    settings: SiteSettings,
    known: Rates,
    now: datetime,
    voltage_v: float = 230.0,
    trips: Mapping[str, TripLog] | None = None,
    prices: PriceMemory | None = None,
) -> Plan:
    """Plan the site from the snapshot's forecast and state, over the published prices
    ``known`` and, up to a car's deadline (or the horizon, when its later trips are
    foreseen from ``trips``), the prices expected after them.
    """
    cap = known.start + timedelta(seconds=settings.planner.horizon_s)
    # later trips are planned for once a car is back; one top-up for them per stay
    expected = {
        lp.name: log.expected(now, cap)
        for lp in settings.loadpoints
        if trips and (log := trips.get(lp.name)) is not None and not log.topped_up
    }
    try:
        return _plan(snapshot, settings, known, now, voltage_v, expected, prices)
    except SurplusError:
        # foreseen trips a car cannot make (say, a drain the soft targets leave uncovered):
        # plan without them
        return _plan(snapshot, settings, known, now, voltage_v, {}, prices)


def _plan(
    snapshot: SiteSnapshot,
    settings: SiteSettings,
    known: Rates,
    now: datetime,
    voltage_v: float,
    expected: dict[str, list[Trip]],
    prices: PriceMemory | None,
) -> Plan:
    habits = any(expected.values())
    rates = expected_rates(known, horizon_slots(settings, known, habits), prices)
    n = len(rates)
    forecast = snapshot.forecast
    if forecast is not None:
        offset_s = (rates.start - forecast.start).total_seconds()
        pv = _per_slot(forecast.pv_w, offset_s, forecast.step_s, n)
        load = _per_slot(forecast.load_w, offset_s, forecast.step_s, n)
    else:
        home = snapshot.home_w() or 0.0
        pv = np.zeros(n)
        load = np.full(n, max(home, 0.0))
    cars = [
        car
        for lp in settings.loadpoints
        if lp.mode == Mode.PLAN
        and (
            car := _ev_model(
                lp, snapshot, rates, voltage_v, settings.planner, expected.get(lp.name, [])
            )
        )
        is not None
    ]
    evs = [ev for ev, _, _ in cars]
    battery = (
        _battery_model(snapshot.battery, settings, rates) if snapshot.battery is not None else None
    )
    site = SiteLp(
        dt_h=SLOT_S / 3600.0,
        pv_w=pv,
        load_w=load,
        import_eur_per_kwh=rates.import_eur_per_kwh,
        export_eur_per_kwh=rates.export_eur_per_kwh,
        battery=battery,
        evs=evs,
        max_import_w=settings.site_max_current_a * voltage_v * 3,
    )
    result = solve(site)
    solar = np.maximum(pv - load, 0.0)
    grid_blocks = {
        ev.name: _block(
            result.ev_w[ev.name],
            solar,
            rates.import_eur_per_kwh,
            ev,
            due,
            habits,
            running=_charging(snapshot, ev.name),
        )
        for ev, due, habits in cars
    }
    ev_sum = sum((w for w in result.ev_w.values()), np.zeros(n))
    return Plan(
        start=rates.start,
        made_at=now,
        rates_end=known.end,
        ev_w=result.ev_w,
        ev_grid_w=grid_blocks,
        ev_energy_wh={
            ev.name: ev.energy_wh
            + np.cumsum(np.minimum(result.ev_w[ev.name], solar) + grid_blocks[ev.name])
            * ev.efficiency
            * SLOT_S
            / 3600.0
            for ev in evs
        },
        grid_import_w=result.grid_import_w,
        battery_charge_w=result.battery_charge_w,
        battery_discharge_w=result.battery_discharge_w,
        battery_soc_wh=result.battery_soc_wh,
        deficit_w=load + ev_sum - pv,
        solar_w=solar,
        key=plan_key(snapshot, settings),
        cost_eur=result.cost_eur,
    )


def _charging(snapshot: SiteSnapshot, name: str) -> bool:
    view = snapshot.loadpoints.get(name)
    return view is not None and view.charger.status == ChargerStatus.CHARGING


def _block(
    ev_w: F64,
    solar_w: F64,
    prices: F64,
    ev: EvModel,
    due: int,
    habits: bool,
    running: bool = False,
) -> F64:
    """The LP's non-solar energy for a car before its departure (slot ``due``) as one
    block at full power, in the cheapest contiguous window where the LP charged at all (a
    contactor is spared the LP's scattered slots, and the price is nearly the same: night
    prices move slowly). A car charging now goes on at once when that costs at most
    ``RUNNING_SLACK`` more than the cheapest window: a stop and a restart cost a start.
    """
    dt_h = SLOT_S / 3600.0
    beyond = np.maximum(ev_w - solar_w, 0.0)
    beyond[due:] = 0.0
    energy = float(beyond.sum()) * dt_h
    from_sun = float(np.minimum(ev_w[:due], solar_w[:due]).sum()) * dt_h * ev.efficiency
    short = max(0.0, ev.terminal_split_wh - ev.energy_wh - from_sun) / ev.efficiency
    if not habits:
        # with no later trips foreseen, bought (or drawn from the battery) only up to the
        # goal: above it, room is left for sun
        energy = min(energy, short)
    elif short <= 0 and energy < MIN_BLOCK_WH:
        energy = 0.0  # a top-up for later trips is not worth a start when it is this small
    out = np.zeros(len(ev_w))
    active = np.flatnonzero(beyond > 1.0)
    if energy <= 0 or not len(active):
        return out
    power = float(np.max(ev.max_w))
    length = max(1, int(np.ceil(energy / (power * dt_h) - 1e-9)))
    first, last = int(active[0]), int(active[-1]) + 1
    usable = ev.max_w > 0
    best, best_cost = first, float("inf")
    for start in range(first, max(first, last - length) + 1):
        window = slice(start, start + length)
        if start + length > len(ev_w) or not usable[window].all():
            continue
        cost = float(prices[window].sum())
        if cost <= best_cost:  # ties go to the later window
            best, best_cost = start, cost
    now = slice(0, length)
    if (
        running
        and length <= len(ev_w)
        and usable[now].all()
        and float(prices[now].sum()) <= best_cost * (1.0 + RUNNING_SLACK)
    ):
        best = 0
    out[best : best + length] = power
    out[best + length - 1] = energy / dt_h - power * (length - 1)
    return out


def cheapest_slots(
    rates: Rates, now: datetime, deadline: datetime, energy_wh: float, power_w: float
) -> NDArray[np.bool_]:
    """Slots of ``rates`` in which to charge at ``power_w`` to add ``energy_wh`` by
    ``deadline``: the cheapest ones (ties to the later slot), PV ignored.

    Slots past the known prices cannot be picked; when too few are known or left, every
    slot from now on is taken (charging at once is the best left).
    """
    n = len(rates)
    chosen = np.zeros(n, dtype=bool)
    if energy_wh <= 0 or power_w <= 0:
        return chosen
    first = max(0, rates.slot_index(now))
    last = min(n, int((deadline - rates.start) / SLOT))
    if last <= first:
        return chosen
    needed = int(np.ceil(energy_wh / (power_w * SLOT_S / 3600.0)))
    window = np.arange(first, last)
    prices = rates.import_eur_per_kwh[window]
    order = np.lexsort((-window, prices))  # by price, later first on ties
    chosen[window[order[:needed]]] = True
    return chosen


def slot_of(plan: Plan, now: datetime) -> int | None:
    """The plan's slot index for ``now``, or None outside it."""
    i = int((now - plan.start).total_seconds() // SLOT_S)
    n = len(plan.grid_import_w)
    return i if 0 <= i < n else None


def stale_plan(
    plan: Plan | None, snapshot: SiteSnapshot, settings: SiteSettings, rates: Rates, now: datetime
) -> str | None:
    """Why the plan must be made again, or None if it still holds."""
    if plan is None:
        return "no plan yet"
    if rates.end > plan.rates_end:
        return "new prices published"
    if plan.key != plan_key(snapshot, settings):
        return "cars or targets changed"
    if now - plan.made_at >= timedelta(seconds=settings.planner.replan_interval_s):
        return "periodic re-plan"
    i = slot_of(plan, now)
    if i is None or i >= len(plan.grid_import_w) - 1:
        return "plan ran out"
    if i > 0:
        dev = settings.planner.replan_deviation_wh
        if snapshot.battery is not None:
            soc_wh = snapshot.battery.soc_pct / 100.0 * snapshot.battery.capacity_wh
            if abs(soc_wh - plan.battery_soc_wh[i - 1]) > dev:
                return "home battery off plan"
        for lp in settings.loadpoints:
            known = vehicle_energy_wh(snapshot, lp)
            planned = plan.ev_energy_wh.get(lp.name)
            if known is not None and planned is not None and abs(known[0] - planned[i - 1]) > dev:
                return f"{lp.name} off plan"
    return None
