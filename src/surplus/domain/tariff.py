"""Electricity prices as 15-minute slots, and the tariffs that publish them.

A tariff answers one question, ``known_rates(now)``: which slot prices can be known at
``now``. Fixed and time-of-use prices are known for ever; dynamic (day-ahead) prices for a
day become known once a day at the publication time of the day before, never earlier.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

SLOT = timedelta(minutes=15)
SLOT_S = 900
SLOTS_PER_DAY = 86_400 // SLOT_S


@dataclass(frozen=True, slots=True)
class Rates:
    """Import and export prices for consecutive 15-minute slots from ``start`` (UTC)."""

    start: datetime
    import_eur_per_kwh: NDArray[np.float64]
    export_eur_per_kwh: NDArray[np.float64]

    @property
    def end(self) -> datetime:
        return self.start + SLOT * len(self.import_eur_per_kwh)

    def __len__(self) -> int:
        return len(self.import_eur_per_kwh)

    def slot_index(self, at: datetime) -> int:
        """Index of the slot holding ``at`` (may be out of range)."""
        return int((at - self.start).total_seconds() // SLOT_S)


def floor_slot(at: datetime) -> datetime:
    """The start of the 15-minute slot holding ``at``."""
    return at - timedelta(minutes=at.minute % 15, seconds=at.second, microseconds=at.microsecond)


@dataclass(frozen=True, slots=True)
class PriceFormula:
    """How a spot price becomes what the household pays and earns, per kWh.

    import = (spot + markup + network) x (1 + vat); export = spot x export_factor + export_bonus.
    """

    markup_eur_per_kwh: float = 0.02
    network_eur_per_kwh: float = 0.1088
    vat: float = 0.21
    export_factor: float = 1.0
    export_bonus_eur_per_kwh: float = 0.0

    def import_price(self, spot_eur_per_kwh: NDArray[np.float64]) -> NDArray[np.float64]:
        out: NDArray[np.float64] = (
            spot_eur_per_kwh + self.markup_eur_per_kwh + self.network_eur_per_kwh
        ) * (1.0 + self.vat)
        return out

    def export_price(self, spot_eur_per_kwh: NDArray[np.float64]) -> NDArray[np.float64]:
        out: NDArray[np.float64] = (
            spot_eur_per_kwh * self.export_factor + self.export_bonus_eur_per_kwh
        )
        return out


class FixedTariff:
    """One price at all times."""

    def __init__(self, import_eur_per_kwh: float, export_eur_per_kwh: float = 0.0) -> None:
        self.import_eur_per_kwh = import_eur_per_kwh
        self.export_eur_per_kwh = export_eur_per_kwh

    def known_rates(self, now: datetime, horizon: timedelta = timedelta(days=2)) -> Rates:
        n = int(horizon / SLOT)
        return Rates(
            floor_slot(now),
            np.full(n, self.import_eur_per_kwh),
            np.full(n, self.export_eur_per_kwh),
        )


class DayAheadTariff:
    """Dynamic prices: day D's slots are published at ``publish_at`` local time on day D-1.

    ``spot`` holds spot prices (EUR/kWh) per 15-minute slot from ``start``; hourly prices are
    split into four equal slots before they reach here.
    """

    def __init__(
        self,
        start: datetime,
        spot_eur_per_kwh: NDArray[np.float64],
        formula: PriceFormula,
        tz: str,
        publish_at: time = time(13, 0),
    ) -> None:
        self.start = start.astimezone(UTC)
        self.spot = spot_eur_per_kwh
        self.imp = formula.import_price(spot_eur_per_kwh)
        self.exp = formula.export_price(spot_eur_per_kwh)
        self.tz = ZoneInfo(tz)
        self.publish_at = publish_at

    def known_until(self, now: datetime) -> datetime:
        """The end of the last slot whose price is published at ``now``."""
        local = now.astimezone(self.tz)
        days_ahead = 2 if local.time() >= self.publish_at else 1
        end_local = datetime.combine(
            local.date() + timedelta(days=days_ahead), time(0), tzinfo=self.tz
        )
        return end_local.astimezone(UTC)

    def known_rates(self, now: datetime) -> Rates:
        first = max(0, int((floor_slot(now) - self.start).total_seconds() // SLOT_S))
        last = int((self.known_until(now) - self.start).total_seconds() // SLOT_S)
        last = min(last, len(self.spot))
        first = min(first, last)
        return Rates(self.start + SLOT * first, self.imp[first:last], self.exp[first:last])

    def all_rates(self) -> Rates:
        """Every slot at once: perfect foresight, for the optimum only."""
        return Rates(self.start, self.imp, self.exp)
