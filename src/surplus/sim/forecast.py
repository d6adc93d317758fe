"""Forecasts of solar and load, the two kinds a real installation has.

``Forecaster`` is made from the past only (persistence): the clear-sky production of the
coming slots times a clear-sky index, which blends what the last hour showed (fading over
about two hours) with yesterday's and the last two weeks' daily index. Load, in both
kinds: the mean of the same time of day over the last seven days.

``WeatherForecaster`` stands in for the weather-service forecast owners feed evcc or Home
Assistant (Solcast, Forecast.Solar, Open-Meteo): a weather model sees tomorrow's clouds,
the past does not. The replayed weather is a typical year, for which no archived forecast
exists, so one is emulated the way forecast studies do: the replayed clear-sky index
smoothed over three hours (a weather model does not place single clouds), times errors
drawn once per seeded replay: a lognormal factor (median 1) per day and lead time (sigma
``DAY_SIGMA``: 0.35 for today, growing to 0.65 three days ahead, roughly the day-ahead
skill published for single sites) and an hourly one (sigma 0.25, correlated over about
three hours). The next two hours blend in the nowcast of the persistence forecast. It is a
forecast, never the replayed truth: on ``nl-2024`` its day-ahead daily energy is off by
about a quarter on average, the persistence forecast's by over 40 %
(``tests/unit/test_sim_forecast.py`` holds both between bounds).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
from numpy.typing import NDArray

from surplus.domain.readings import Forecast
from surplus.domain.tariff import SLOT_S, SLOTS_PER_DAY

F64 = NDArray[np.float64]


def _slot_means(values: F64, per_slot: int) -> F64:
    n = len(values) // per_slot
    out: F64 = values[: n * per_slot].reshape(n, per_slot).mean(axis=1)
    return out


class Forecaster:
    """Forecasts per 15-minute slot for a replay whose truth it is given but peeks not into."""

    def __init__(
        self, start: datetime, step_s: int, pv_w: F64, clear_sky_w: F64, load_w: F64
    ) -> None:
        self.start = start
        self.per_slot = max(1, SLOT_S // step_s)
        self.pv = _slot_means(pv_w, self.per_slot)
        self.cs = _slot_means(np.maximum(clear_sky_w, 1e-9), self.per_slot)
        self.load = _slot_means(load_w, self.per_slot)
        days = len(self.pv) // SLOTS_PER_DAY + 1
        pad = days * SLOTS_PER_DAY - len(self.pv)
        pv_days = np.pad(self.pv, (0, pad)).reshape(days, SLOTS_PER_DAY).sum(axis=1)
        cs_days = np.pad(self.cs, (0, pad)).reshape(days, SLOTS_PER_DAY).sum(axis=1)
        self.k_day = np.clip(pv_days / np.maximum(cs_days, 1.0), 0.05, 1.2)

    def at(self, step: int, horizon_slots: int = 4 * SLOTS_PER_DAY) -> Forecast:
        """The forecast known at replay step ``step`` for the slots from the current one on."""
        s = step // self.per_slot
        j = np.arange(horizon_slots)
        idx = np.minimum(s + j, len(self.cs) - 1)
        pv = np.minimum(self.cs[idx] * self._index(s, j, idx), self.cs[idx])
        slot_start = self.start + timedelta(seconds=s * SLOT_S)
        return Forecast(slot_start, SLOT_S, pv, self._load(s, j))

    def _nowcast(self, s: int, j: NDArray[np.int64]) -> F64:
        """The clear-sky index of the coming slots from the past: the last hour's, fading
        into the daily index of yesterday and the last two weeks."""
        d = s // SLOTS_PER_DAY
        if d >= 1:
            k_base = 0.5 * self.k_day[d - 1] + 0.5 * float(np.mean(self.k_day[max(0, d - 14) : d]))
        else:
            k_base = 0.6
        lo = max(0, s - 4)
        seen_cs = float(self.cs[lo:s].sum())
        k_now = float(self.pv[lo:s].sum()) / seen_cs if seen_cs > 400.0 else k_base
        weight = _fade(j)
        out: F64 = weight * k_now + (1.0 - weight) * k_base
        return out

    def _index(self, s: int, j: NDArray[np.int64], idx: NDArray[np.int64]) -> F64:
        return self._nowcast(s, j)

    def _load(self, s: int, j: NDArray[np.int64]) -> F64:
        load = np.zeros(len(j))
        count = np.zeros(len(j))
        for m in range(1, 8):
            past = s + j - SLOTS_PER_DAY * m
            ok = (past >= 0) & (past < s)
            load[ok] += self.load[past[ok]]
            count[ok] += 1
        fallback = float(self.load[:s].mean()) if s > 0 else 400.0
        out: F64 = np.where(count > 0, load / np.maximum(count, 1), fallback)
        return out


def _fade(j: NDArray[np.int64]) -> F64:
    """Weight of the nowcast in slot ``j`` from now: about two hours."""
    out: F64 = np.exp(-j / 8.0)
    return out


DAY_SIGMA = (0.35, 0.45, 0.55, 0.65)  # today, tomorrow, ...: the daily factor's spread
HOUR_SIGMA = 0.25
HOUR_CORRELATION_SLOTS = 12.0
SMOOTH_SLOTS = 12  # three hours


class WeatherForecaster(Forecaster):
    """An emulated weather-service solar forecast (see the module docstring)."""

    def __init__(
        self,
        start: datetime,
        step_s: int,
        pv_w: F64,
        clear_sky_w: F64,
        load_w: F64,
        seed: int = 2024,
    ) -> None:
        super().__init__(start, step_s, pv_w, clear_sky_w, load_w)
        rng = np.random.default_rng(seed)
        kernel = np.ones(SMOOTH_SLOTS) / SMOOTH_SLOTS
        pv_sm = np.convolve(self.pv, kernel, mode="same")
        cs_sm = np.convolve(self.cs, kernel, mode="same")
        self.k_smooth = np.clip(pv_sm / np.maximum(cs_sm, 1.0), 0.0, 1.2)
        days = len(self.k_day)
        sigma = np.array(DAY_SIGMA)
        z = rng.standard_normal((days, len(DAY_SIGMA)))
        self.day_factor = np.exp(sigma * z)  # [target day, lead in days]
        rho = float(np.exp(-1.0 / HOUR_CORRELATION_SLOTS))
        shocks = rng.standard_normal(len(self.pv)) * np.sqrt(1.0 - rho**2)
        hourly = np.zeros(len(self.pv))
        for i in range(1, len(hourly)):
            hourly[i] = rho * hourly[i - 1] + shocks[i]
        self.hour_factor = np.exp(HOUR_SIGMA * hourly)

    def _index(self, s: int, j: NDArray[np.int64], idx: NDArray[np.int64]) -> F64:
        day = idx // SLOTS_PER_DAY
        lead = np.clip(day - s // SLOTS_PER_DAY, 0, len(DAY_SIGMA) - 1)
        model = self.k_smooth[idx] * self.day_factor[day, lead] * self.hour_factor[idx]
        weight = _fade(j)
        out: F64 = weight * self._nowcast(s, j) + (1.0 - weight) * model
        return out
