"""Household base load for the benchmark: the BDEW H25 standard load profile.

``demandlib.bdew.H25`` gives the 2025 BDEW household profile (with its dynamisation over
the year) on a 15-minute *local* time index; weekdays, Saturdays and Sundays differ, public
holidays are not marked. It is built here per local calendar year, scaled so that each
calendar year integrates to ``annual_kwh``, and held onto a UTC simulation index.
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt
import pandas as pd
from demandlib.bdew import H25

__all__ = ["h25_load_w"]

_QUARTER_NS = 15 * 60 * 1_000_000_000


def _ns(index: pd.DatetimeIndex) -> npt.NDArray[np.int64]:
    """Nanoseconds since the epoch (UTC if tz-aware, wall clock if naive)."""
    values: npt.NDArray[np.int64] = (
        index.as_unit("ns").to_numpy(dtype="datetime64[ns]").view(np.int64)
    )
    return values


@functools.lru_cache(maxsize=16)
def _year_profile(year: int, tz: str) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """UTC start (ns) of each local quarter hour of ``year`` and its load per unit (1/h).

    The values integrate to 1 over the year (sum × 0.25 h = 1).
    """
    quarters = pd.date_range(
        pd.Timestamp(year=year, month=1, day=1, tz=tz),
        pd.Timestamp(year=year + 1, month=1, day=1, tz=tz),
        freq="15min",
        inclusive="left",
    )
    profile = np.asarray(H25(quarters).to_numpy(dtype=float), dtype=np.float64)
    if profile.size != quarters.size or not np.isfinite(profile).all():
        raise RuntimeError(f"demandlib H25 gave an incomplete profile for {year} in {tz}")
    per_unit: npt.NDArray[np.float64] = profile / (profile.sum() * 0.25)
    starts = _ns(quarters)
    return starts, per_unit


def h25_load_w(
    index: pd.DatetimeIndex, tz: str, annual_kwh: float = 4000.0
) -> npt.NDArray[np.float64]:
    """Household load in W on a tz-aware ``index`` (15-minute, 1-minute or any step).

    Each step takes the value of the local quarter hour it starts in (held, as the profile
    defines a constant power per quarter hour). ``tz`` is the household's IANA time zone,
    which decides weekdays and hours; each local calendar year integrates to
    ``annual_kwh``.
    """
    if index.tz is None:
        raise ValueError("h25_load_w needs a tz-aware index")
    if len(index) == 0:
        return np.zeros(0)
    local = index.tz_convert(tz)
    years = range(int(local.year.min()), int(local.year.max()) + 1)
    parts = [_year_profile(year, tz) for year in years]
    starts = np.concatenate([part[0] for part in parts])
    per_unit = np.concatenate([part[1] for part in parts])
    target = _ns(index)
    slot = np.searchsorted(starts, target, side="right") - 1
    if (slot < 0).any() or (target - starts[np.maximum(slot, 0)] >= _QUARTER_NS).any():
        raise ValueError("index falls outside the local years it was built for")
    load: npt.NDArray[np.float64] = per_unit[slot] * annual_kwh * 1000.0
    return load
