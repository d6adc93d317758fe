"""The benchmark's figures, booked the same way for every strategy and for the optimum.

Attribution of solar to the car ("direct PV"): in each step solar first covers the
household, what is left goes to the car, then to the battery, then to the grid. So a car
charged from a battery that solar filled earlier counts as battery energy, not solar.
Battery throughput is the energy discharged. Costs use the import price for every kWh
bought and the export price for every kWh sold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]

FIGURES = (
    "solar_share",
    "solar_share_ratio",
    "net_cost",
    "gross_import_cost",
    "cost_gap_closure",
    "export_kwh",
    "battery_throughput_kwh",
    "starts",
    "starts_per_session",
    "worst_day_starts",
    "commands_per_day",
    "unmet_kwh",
    "ev_kwh",
    "wall_s",
)


@dataclass(frozen=True, slots=True)
class Figures:
    """One strategy's result on one track and pattern (names as in ``--json``)."""

    solar_share: float
    net_cost: float
    gross_import_cost: float
    export_kwh: float
    battery_throughput_kwh: float
    starts: int
    starts_per_session: float
    worst_day_starts: int
    commands_per_day: float
    unmet_kwh: float
    ev_kwh: float
    wall_s: float
    solar_share_ratio: float = float("nan")
    cost_gap_closure: float = float("nan")

    def as_dict(self) -> dict[str, float]:
        raw = asdict(self)
        return {name: float(raw[name]) for name in FIGURES}


def book(
    *,
    step_s: int,
    pv_w: F64,
    load_w: F64,
    ev_w: F64,
    battery_w: F64,
    grid_w: F64,
    import_eur_per_kwh: F64,
    export_eur_per_kwh: F64,
    starts: int,
    sessions: int,
    worst_day_starts: int,
    commands: int,
    unmet_wh: float,
    wall_s: float,
) -> Figures:
    """Figures from per-step flows (W) and the counts the flows do not hold."""
    kwh = step_s / 3600.0 / 1000.0
    solar_left = np.maximum(pv_w - load_w, 0.0)
    ev_kwh = float(ev_w.sum() * kwh)
    ev_solar = float(np.minimum(ev_w, solar_left).sum() * kwh)
    imported = np.maximum(grid_w, 0.0)
    exported = np.maximum(-grid_w, 0.0)
    gross = float((imported * import_eur_per_kwh).sum() * kwh)
    earned = float((exported * export_eur_per_kwh).sum() * kwh)
    days = len(pv_w) * step_s / 86_400.0
    return Figures(
        solar_share=ev_solar / ev_kwh if ev_kwh > 0 else 0.0,
        net_cost=gross - earned,
        gross_import_cost=gross,
        export_kwh=float(exported.sum() * kwh),
        battery_throughput_kwh=float(np.maximum(battery_w, 0.0).sum() * kwh),
        starts=starts,
        starts_per_session=starts / sessions if sessions else 0.0,
        worst_day_starts=worst_day_starts,
        commands_per_day=commands / days if days else 0.0,
        unmet_kwh=unmet_wh / 1000.0,
        ev_kwh=ev_kwh,
        wall_s=wall_s,
    )
