"""What prices to expect past the published ones, from what was published before.

Day-ahead prices come once a day, for the next day; the planner plans days further. Past
the published prices it expects, for each slot, a blend of the last published day's price
at that time of day (tomorrow's wind and demand are much like today's) and the usual
price at that time of day over the past weeks (prices revert to the usual), the usual
weighing more the further ahead. ``PriceMemory`` keeps the usual prices: every published
slot is folded in once, into an exponential average over about two weeks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from surplus.domain.tariff import SLOT, SLOT_S, SLOTS_PER_DAY, Rates

F64 = NDArray[np.float64]
MEMORY_DAYS = 14.0  # the usual price forgets with this time constant
USUAL_AFTER_DAYS = 7.0  # the usual price is trusted once this many days were seen
REPEAT_WEIGHT = 0.5  # the last published day's weight one day on; squared two days on, ...


def _slot_of_day(at: datetime) -> int:
    return int(at.timestamp() // SLOT_S) % SLOTS_PER_DAY


@dataclass(frozen=True, slots=True)
class PriceMemory:
    """The usual import and export price per 15-minute slot of the (UTC) day."""

    import_eur_per_kwh: F64 = field(default_factory=lambda: np.zeros(SLOTS_PER_DAY))
    export_eur_per_kwh: F64 = field(default_factory=lambda: np.zeros(SLOTS_PER_DAY))
    counts: F64 = field(default_factory=lambda: np.zeros(SLOTS_PER_DAY))  # prices seen per slot
    seen_until: datetime | None = None  # the end of the last slot folded in

    @property
    def days(self) -> float:
        """Whole days of prices seen: every slot of the day at least this often."""
        return float(self.counts.min())

    def fold(self, rates: Rates) -> PriceMemory:
        """The memory with the slots of ``rates`` it has not seen yet."""
        first = 0 if self.seen_until is None else max(0, rates.slot_index(self.seen_until))
        if first >= len(rates):
            return self
        imp = self.import_eur_per_kwh.copy()
        exp = self.export_eur_per_kwh.copy()
        counts = self.counts.copy()
        start = _slot_of_day(rates.start)
        for i in range(first, len(rates)):
            k = (start + i) % SLOTS_PER_DAY
            # a plain mean over the first days, then an exponential average
            weight = 1.0 / min(counts[k] + 1.0, MEMORY_DAYS)
            imp[k] += weight * (rates.import_eur_per_kwh[i] - imp[k])
            exp[k] += weight * (rates.export_eur_per_kwh[i] - exp[k])
            counts[k] += 1.0
        return PriceMemory(imp, exp, counts, rates.start + SLOT * len(rates))

    def usual(self) -> tuple[F64, F64] | None:
        """(import, export) per slot of the day, once enough days were seen."""
        if self.days < USUAL_AFTER_DAYS:
            return None
        return self.import_eur_per_kwh, self.export_eur_per_kwh


def expected_rates(rates: Rates, slots: int, memory: PriceMemory | None = None) -> Rates:
    """``rates`` stretched to ``slots`` slots: past the published prices, each slot is
    expected to cost what the same time of day cost on the last published day, blended
    into the usual price of that time of day (``PriceMemory``) the further ahead it is.
    """
    n = len(rates)
    if slots <= n or n == 0:
        return rates
    k = np.arange(n, slots)
    days_ahead = (k - n) // SLOTS_PER_DAY + 1
    src = k - days_ahead * SLOTS_PER_DAY
    known = src >= 0
    usual = memory.usual() if memory is not None else None
    weight = REPEAT_WEIGHT**days_ahead
    of_day = (_slot_of_day(rates.start) + k) % SLOTS_PER_DAY
    out = []
    for j, prices in enumerate((rates.import_eur_per_kwh, rates.export_eur_per_kwh)):
        tail = np.full(len(k), float(np.mean(prices)))
        tail[known] = prices[src[known]]
        if usual is not None:
            tail = weight * tail + (1.0 - weight) * usual[j][of_day]
        out.append(np.concatenate([prices, tail]))
    return Rates(rates.start, out[0], out[1])
