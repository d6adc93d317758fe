"""The perfect-foresight optimum: one LP over the whole replay, with the truth.

It knows every price, every sunbeam and every trip in advance and may charge the car and
the battery at any power (an LP relaxation: no minimum current, no contactor): no
controller can do better, so it is the yardstick for cost-gap closure and solar share.
It is the same LP the planner solves (``control.lp``), given a year instead of a day.
"""

from __future__ import annotations

import time
from math import sqrt

import numpy as np

from surplus.bench.accounting import Figures, book
from surplus.control.lp import BatteryModel, EvModel, SiteLp, solve
from surplus.sim.world import LOADPOINT, World


def optimum(world: World, use_targets: bool, max_charge_w: float = 16 * 3 * 230.0) -> Figures:
    """Solve the whole replay of ``world`` (before it is stepped) and book the result."""
    t0 = time.perf_counter()
    n = world.n
    target = world.target_soc_pct / 100.0 * world.ev.capacity_wh
    required = np.zeros(n)
    if use_targets:
        for s in world.sessions:
            if s.depart < n:
                required[s.depart - 1] = target
    b = world.battery
    eta = sqrt(b.efficiency_charge * b.efficiency_discharge)
    lp = SiteLp(
        dt_h=world.step_s / 3600.0,
        pv_w=world.pv,
        load_w=world.load,
        import_eur_per_kwh=world.imp,
        export_eur_per_kwh=world.exp,
        battery=BatteryModel(
            capacity_wh=b.capacity_wh,
            soc_wh=b.energy_wh,
            min_wh=b.min_soc_pct / 100.0 * b.capacity_wh,
            max_charge_w=b.max_charge_w,
            max_discharge_w=b.max_discharge_w,
            efficiency_charge=eta,
            efficiency_discharge=eta,
        ),
        evs=[
            EvModel(
                name=LOADPOINT,
                max_w=np.where(world.plugged, max_charge_w, 0.0),
                energy_wh=world.ev.energy_wh,
                capacity_wh=world.ev.capacity_wh,
                efficiency=world.ev.efficiency,
                drain_wh=world.drain,
                required_wh=required if use_targets else None,
            )
        ],
    )
    res = solve(lp)
    ev_w = res.ev_w[LOADPOINT]
    battery_w = res.battery_discharge_w - res.battery_charge_w
    grid_w = res.grid_import_w - res.grid_export_w
    charging = ev_w > 1.0
    rising = charging[1:] & ~charging[:-1]
    starts = int(charging[0]) + int(rising.sum())
    per_day = max(1, 86_400 // world.step_s)
    days = np.flatnonzero(np.concatenate([[charging[0]], rising])) // per_day
    worst = int(np.bincount(days).max()) if len(days) else 0
    changes = int(np.count_nonzero(np.abs(np.diff(ev_w)) > 100.0))
    return book(
        step_s=world.step_s,
        pv_w=world.pv,
        load_w=world.load,
        ev_w=ev_w,
        battery_w=battery_w,
        grid_w=grid_w,
        import_eur_per_kwh=world.imp,
        export_eur_per_kwh=world.exp,
        starts=starts,
        sessions=len(world.sessions),
        worst_day_starts=worst,
        commands=changes,
        unmet_wh=res.unmet_wh[LOADPOINT],
        wall_s=time.perf_counter() - t0,
    )
