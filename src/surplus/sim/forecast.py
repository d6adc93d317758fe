"""Forecasts made the way a real installation makes them: from the past only.

Solar: the clear-sky production of the coming slots times a clear-sky index, which blends
what the last hour showed (fading over about two hours) with yesterday's and the last two
weeks' daily index. Load: the mean of the same time of day over the last seven days. The
replayed truth of the future is never looked at.
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
        d = s // SLOTS_PER_DAY
        if d >= 1:
            k_base = 0.5 * self.k_day[d - 1] + 0.5 * float(np.mean(self.k_day[max(0, d - 14) : d]))
        else:
            k_base = 0.6
        lo = max(0, s - 4)
        seen_cs = float(self.cs[lo:s].sum())
        k_now = float(self.pv[lo:s].sum()) / seen_cs if seen_cs > 400.0 else k_base
        j = np.arange(horizon_slots)
        weight = np.exp(-j / 8.0)
        k = weight * k_now + (1.0 - weight) * k_base
        idx = np.minimum(s + j, len(self.cs) - 1)
        pv = np.minimum(self.cs[idx] * k, self.cs[idx])
        load = np.zeros(horizon_slots)
        count = np.zeros(horizon_slots)
        for m in range(1, 8):
            past = s + j - SLOTS_PER_DAY * m
            ok = (past >= 0) & (past < s)
            load[ok] += self.load[past[ok]]
            count[ok] += 1
        fallback = float(self.load[:s].mean()) if s > 0 else 400.0
        load = np.where(count > 0, load / np.maximum(count, 1), fallback)
        slot_start = self.start + timedelta(seconds=s * SLOT_S)
        return Forecast(slot_start, SLOT_S, pv, load)
