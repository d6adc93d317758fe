"""The site-wide linear programme: when to import, export, charge and discharge.

One formulation serves twice: the planner solves it over the known price horizon with
forecasts (and values what is left in the batteries at the end), and the benchmark solves
it once over a whole year with the truth (the physical limit no controller can beat).

Per slot t (length ``dt_h``), in watts: grid import and export, battery charge and
discharge, and each car's charging power; energies in Wh at the end of each slot. The
balance ``import - export - charge + discharge - sum(ev) = load - pv`` holds every slot.
Requirements (a car's energy at a departure) are soft, with a steep penalty per missing
kWh, so an impossible request still yields the best plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import highspy
import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from surplus.domain.errors import SurplusError

F64 = NDArray[np.float64]
UNMET_PENALTY_EUR_PER_KWH = 5.0


@dataclass(frozen=True, slots=True)
class BatteryModel:
    capacity_wh: float
    soc_wh: float  # at the start
    min_wh: float
    max_charge_w: float
    max_discharge_w: float
    efficiency_charge: float = 0.95
    efficiency_discharge: float = 0.95
    wear_eur_per_kwh: float = 0.0
    grid_charge: bool = True  # may it charge from the grid
    terminal_eur_per_kwh: float = 0.0  # value of energy left at the end


@dataclass(frozen=True, slots=True)
class EvModel:
    name: str
    max_w: F64  # per slot; 0 where the car is away
    energy_wh: float  # in the car at the start
    capacity_wh: float  # the most the car may hold (its limit)
    efficiency: float = 0.9
    drain_wh: F64 | None = None  # energy driven away during each slot
    required_wh: F64 | None = None  # at least this much at the end of each slot (0 = none)
    # value of energy left at the end: the first ``terminal_split_wh`` at ``terminal_lo``,
    # the rest at ``terminal_hi`` (concave, so the LP fills the first part first)
    terminal_split_wh: float = 0.0
    terminal_lo_eur_per_kwh: float = 0.0
    terminal_hi_eur_per_kwh: float = 0.0


@dataclass(frozen=True, slots=True)
class SiteLp:
    dt_h: float
    pv_w: F64
    load_w: F64
    import_eur_per_kwh: F64
    export_eur_per_kwh: F64
    battery: BatteryModel | None
    evs: Sequence[EvModel] = field(default_factory=tuple)
    max_import_w: float = 17_250.0
    export_only_pv: bool = True


@dataclass(frozen=True, slots=True)
class LpResult:
    grid_import_w: F64
    grid_export_w: F64
    battery_charge_w: F64
    battery_discharge_w: F64
    battery_soc_wh: F64
    ev_w: dict[str, F64]
    ev_energy_wh: dict[str, F64]
    unmet_wh: dict[str, float]
    cost_eur: float  # grid cost over the horizon (no terminal values, no penalties)


class _Columns:
    """Allocates blocks of LP columns with bounds and costs."""

    def __init__(self) -> None:
        self.lower: list[F64] = []
        self.upper: list[F64] = []
        self.cost: list[F64] = []
        self.n = 0

    def add(self, lower: F64 | float, upper: F64 | float, cost: F64 | float, size: int) -> int:
        start = self.n
        self.lower.append(np.broadcast_to(np.asarray(lower, dtype=float), (size,)).copy())
        self.upper.append(np.broadcast_to(np.asarray(upper, dtype=float), (size,)).copy())
        self.cost.append(np.broadcast_to(np.asarray(cost, dtype=float), (size,)).copy())
        self.n += size
        return start


class _Rows:
    """Collects sparse rows as triplets."""

    def __init__(self) -> None:
        self.r: list[NDArray[np.int64]] = []
        self.c: list[NDArray[np.int64]] = []
        self.v: list[F64] = []
        self.lower: list[F64] = []
        self.upper: list[F64] = []
        self.n = 0

    def block(self, lower: F64, upper: F64) -> int:
        start = self.n
        self.lower.append(np.asarray(lower, dtype=float))
        self.upper.append(np.asarray(upper, dtype=float))
        self.n += len(self.lower[-1])
        return start

    def coef(self, rows: NDArray[np.int64], cols: NDArray[np.int64], vals: F64 | float) -> None:
        self.r.append(rows)
        self.c.append(cols)
        self.v.append(np.broadcast_to(np.asarray(vals, dtype=float), rows.shape).copy())


def solve(lp: SiteLp) -> LpResult:
    """Solve ``lp`` with HiGHS; raise SurplusError if it has no solution."""
    t_n = len(lp.pv_w)
    dt = lp.dt_h
    t = np.arange(t_n, dtype=np.int64)
    cols = _Columns()
    rows = _Rows()
    k_eur = dt / 1000.0  # W in one slot -> kWh

    exp_upper = lp.pv_w if lp.export_only_pv else np.full(t_n, lp.max_import_w)
    c_imp = cols.add(0.0, lp.max_import_w, lp.import_eur_per_kwh * k_eur, t_n)
    c_exp = cols.add(0.0, np.maximum(exp_upper, 0.0), -lp.export_eur_per_kwh * k_eur, t_n)

    bal = rows.block(lp.load_w - lp.pv_w, lp.load_w - lp.pv_w)
    rows.coef(bal + t, c_imp + t, 1.0)
    rows.coef(bal + t, c_exp + t, -1.0)

    batt = lp.battery
    if batt is not None:
        wear = batt.wear_eur_per_kwh * k_eur
        c_ch = cols.add(0.0, batt.max_charge_w, wear, t_n)
        c_dis = cols.add(0.0, batt.max_discharge_w, wear, t_n)
        soc_cost = np.zeros(t_n)
        soc_cost[-1] = -batt.terminal_eur_per_kwh / 1000.0
        c_soc = cols.add(batt.min_wh, batt.capacity_wh, soc_cost, t_n)
        rows.coef(bal + t, c_ch + t, -1.0)
        rows.coef(bal + t, c_dis + t, 1.0)
        first = np.zeros(t_n)
        first[0] = min(max(batt.soc_wh, batt.min_wh), batt.capacity_wh)
        dyn = rows.block(first, first)
        rows.coef(dyn + t, c_soc + t, 1.0)
        rows.coef(dyn + t[1:], c_soc + t[:-1], -1.0)
        rows.coef(dyn + t, c_ch + t, -batt.efficiency_charge * dt)
        rows.coef(dyn + t, c_dis + t, dt / batt.efficiency_discharge)
        if not batt.grid_charge:
            # charging only from what PV has left after the load: charge <= max(pv - load, 0)
            lim = np.maximum(lp.pv_w - lp.load_w, 0.0)
            row = rows.block(np.full(t_n, -np.inf), lim)
            rows.coef(row + t, c_ch + t, 1.0)

    ev_cols: list[tuple[EvModel, int, int, NDArray[np.int64], int]] = []
    for ev in lp.evs:
        c_p = cols.add(0.0, np.maximum(ev.max_w, 0.0), 0.0, t_n)
        req = np.zeros(t_n) if ev.required_wh is None else ev.required_wh
        req_slots = np.flatnonzero(req > 0)
        c_e = cols.add(0.0, ev.capacity_wh, 0.0, t_n)
        c_unmet = cols.add(0.0, np.inf, UNMET_PENALTY_EUR_PER_KWH / 1000.0, len(req_slots))
        rows.coef(bal + t, c_p + t, -1.0)
        drain = np.zeros(t_n) if ev.drain_wh is None else ev.drain_wh
        rhs = -drain.astype(float)
        rhs[0] += min(ev.energy_wh, ev.capacity_wh)
        dyn = rows.block(rhs, rhs)
        rows.coef(dyn + t, c_e + t, 1.0)
        rows.coef(dyn + t[1:], c_e + t[:-1], -1.0)
        rows.coef(dyn + t, c_p + t, -ev.efficiency * dt)
        if len(req_slots):
            r = rows.block(req[req_slots], np.full(len(req_slots), np.inf))
            idx = np.arange(len(req_slots), dtype=np.int64)
            rows.coef(r + idx, c_e + req_slots, 1.0)
            rows.coef(r + idx, c_unmet + idx, 1.0)
        if ev.terminal_lo_eur_per_kwh or ev.terminal_hi_eur_per_kwh:
            split = max(ev.terminal_split_wh, 0.0)
            c_lo = cols.add(0.0, split, -ev.terminal_lo_eur_per_kwh / 1000.0, 1)
            c_hi = cols.add(0.0, np.inf, -ev.terminal_hi_eur_per_kwh / 1000.0, 1)
            r = rows.block(np.zeros(1), np.full(1, np.inf))
            one = np.zeros(1, dtype=np.int64)
            rows.coef(r + one, c_e + t_n - 1 + one, 1.0)
            rows.coef(r + one, c_lo + one, -1.0)
            rows.coef(r + one, c_hi + one, -1.0)
        ev_cols.append((ev, c_p, c_e, req_slots, c_unmet))

    x = _run(cols, rows)
    imp = x[c_imp : c_imp + t_n]
    exp = x[c_exp : c_exp + t_n]
    zeros = np.zeros(t_n)
    if batt is not None:
        ch, dis, soc = x[c_ch : c_ch + t_n], x[c_dis : c_dis + t_n], x[c_soc : c_soc + t_n]
    else:
        ch, dis, soc = zeros, zeros, zeros
    cost = float(np.sum(imp * lp.import_eur_per_kwh - exp * lp.export_eur_per_kwh) * k_eur)
    return LpResult(
        grid_import_w=imp,
        grid_export_w=exp,
        battery_charge_w=ch,
        battery_discharge_w=dis,
        battery_soc_wh=soc,
        ev_w={ev.name: x[c_p : c_p + t_n] for ev, c_p, _, _, _ in ev_cols},
        ev_energy_wh={ev.name: x[c_e : c_e + t_n] for ev, _, c_e, _, _ in ev_cols},
        unmet_wh={ev.name: float(np.sum(x[c_u : c_u + len(rs)])) for ev, _, _, rs, c_u in ev_cols},
        cost_eur=cost,
    )


def _run(cols: _Columns, rows: _Rows) -> F64:
    n = cols.n
    matrix = sp.csc_matrix(
        (np.concatenate(rows.v), (np.concatenate(rows.r), np.concatenate(rows.c))),
        shape=(rows.n, n),
    )
    model = highspy.HighsLp()
    model.num_col_ = n
    model.num_row_ = rows.n
    model.col_cost_ = np.concatenate(cols.cost)
    model.col_lower_ = np.concatenate(cols.lower)
    model.col_upper_ = np.concatenate(cols.upper)
    model.row_lower_ = np.concatenate(rows.lower)
    model.row_upper_ = np.concatenate(rows.upper)
    model.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    model.a_matrix_.start_ = matrix.indptr
    model.a_matrix_.index_ = matrix.indices
    model.a_matrix_.value_ = matrix.data
    h = highspy.Highs()  # type: ignore[no-untyped-call]
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", 1)
    h.passModel(model)
    h.run()
    status = h.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        raise SurplusError(f"site plan has no solution: {h.modelStatusToString(status)}")
    return np.asarray(h.getSolution().col_value, dtype=float)
