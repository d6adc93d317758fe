"""Benchmark tracks: real weather, real prices and a standard household, on one timeline.

- ``nl-2024``: Dutch day-ahead prices of 2024 (ev2gym's CSV), PV at 8 kWp from the
  Amsterdam typical-year weather placed on 2024, BDEW H25 household load at 4,000 kWh,
  15-minute steps; import at (spot + 0.02 + 0.1088) x 1.21 EUR/kWh, export at spot;
  patterns ``commuter`` and ``home-office``, each car to 80 % by departure.
- ``payerne-1min``: BSRN Payerne's measured 1-minute irradiance of June 2016, the car at
  home all day charging from surplus only; a fixed tariff (0.30 / 0.08 EUR/kWh).
``--weather`` and ``--prices`` swap in any other weather file or price year.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from surplus.bench.household import h25_load_w
from surplus.bench.prices import PriceSeries, nl_day_ahead, on_grid, read_price_csv
from surplus.bench.weather import (
    PvSeries,
    amsterdam_2024,
    payerne_june_2016,
    pv_on_year,
    read_weather,
)
from surplus.domain.tariff import SLOT_S, DayAheadTariff, FixedTariff, PriceFormula

F64 = NDArray[np.float64]
TRACKS = ("nl-2024", "payerne-1min")
NL_TZ = "Europe/Amsterdam"


@dataclass(frozen=True)
class Track:
    """Everything a replay needs, per step from ``start`` (UTC)."""

    name: str
    start: datetime
    step_s: int
    pv_w: F64
    clear_sky_w: F64
    load_w: F64
    tz: str
    patterns: tuple[str, ...]
    use_targets: bool
    spot_eur_per_kwh: F64 | None  # per 15-minute slot; None: fixed tariff
    fixed_import_eur_per_kwh: float = 0.30
    fixed_export_eur_per_kwh: float = 0.08
    formula: PriceFormula = field(default_factory=PriceFormula)
    notes: str = ""
    forecast: str = "weather"  # the solar forecast surplus plans with (``sim.forecast``)

    @property
    def n(self) -> int:
        return len(self.pv_w)

    def tariff(self) -> DayAheadTariff | FixedTariff:
        if self.spot_eur_per_kwh is None:
            return FixedTariff(self.fixed_import_eur_per_kwh, self.fixed_export_eur_per_kwh)
        return DayAheadTariff(self.start, self.spot_eur_per_kwh, self.formula, self.tz)

    def prices_per_step(self) -> tuple[F64, F64]:
        """Import and export price (EUR/kWh) of every step."""
        if self.spot_eur_per_kwh is None:
            return (
                np.full(self.n, self.fixed_import_eur_per_kwh),
                np.full(self.n, self.fixed_export_eur_per_kwh),
            )
        per_slot = max(1, SLOT_S // self.step_s)
        spot = np.repeat(self.spot_eur_per_kwh, per_slot)[: self.n]
        return self.formula.import_price(spot), self.formula.export_price(spot)


def _index(pv: PvSeries) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pv.pv_w.index)


def _spot_slots(prices: PriceSeries, index: pd.DatetimeIndex) -> F64:
    """Spot price per 15-minute slot from the first step of ``index``, EUR/kWh."""
    slots = pd.date_range(index[0], index[-1], freq="15min")
    return on_grid(prices, slots) / 1000.0


def build(
    name: str,
    weather: Path | None = None,
    prices: Path | None = None,
    days: int | None = None,
    forecast: str = "weather",
) -> Track:
    """Build track ``name``, optionally on another weather file or price file, with the
    ``weather`` (emulated weather service) or ``persistence`` (past-only) solar forecast."""
    if name not in TRACKS:
        raise ValueError(f"unknown track {name!r}; choose one of {', '.join(TRACKS)}")
    price_series = read_price_csv(prices) if prices is not None else None
    label = name
    if name == "nl-2024":
        year = 2024
        if price_series is not None:
            year = int(pd.DatetimeIndex(price_series.eur_per_mwh.index)[0].year)
        if weather is not None:
            frame, site = read_weather(weather)
            pv = pv_on_year(frame, site, year, "15min")
            label += f"+{weather.stem}"
        else:
            pv = amsterdam_2024("15min") if year == 2024 else _amsterdam(year)
        if price_series is None:
            price_series = nl_day_ahead(year)
        else:
            label += f"+{prices.stem if prices else ''}"
        index = _index(pv)
        tz = pv.site.tz if weather is not None else NL_TZ
        track = Track(
            name=label,
            start=index[0].to_pydatetime().astimezone(UTC),
            step_s=SLOT_S,
            pv_w=np.asarray(pv.pv_w.to_numpy(dtype=float), dtype=np.float64),
            clear_sky_w=np.asarray(pv.clear_sky_w.to_numpy(dtype=float), dtype=np.float64),
            load_w=h25_load_w(index, NL_TZ, 4000.0),
            tz=tz,
            patterns=("commuter", "home-office"),
            use_targets=True,
            spot_eur_per_kwh=_spot_slots(price_series, index),
        )
    else:
        if weather is not None:
            raise ValueError("payerne-1min is measured weather; --weather goes with nl-2024")
        pv = payerne_june_2016("1min")
        index = _index(pv)
        track = Track(
            name=label,
            start=index[0].to_pydatetime().astimezone(UTC),
            step_s=60,
            pv_w=np.asarray(pv.pv_w.to_numpy(dtype=float), dtype=np.float64),
            clear_sky_w=np.asarray(pv.clear_sky_w.to_numpy(dtype=float), dtype=np.float64),
            load_w=h25_load_w(index, "Europe/Zurich", 4000.0),
            tz="Europe/Zurich",
            patterns=("home-day",),
            use_targets=False,
            spot_eur_per_kwh=_spot_slots(price_series, index) if price_series else None,
        )
    if forecast != "weather":  # the default forecast goes unnamed
        track = replace(track, name=f"{track.name}+{forecast}-forecast", forecast=forecast)
    return shorten(track, days) if days else track


def _amsterdam(year: int) -> PvSeries:
    from surplus.bench.sources import pvlib_test_file

    frame, site = read_weather(pvlib_test_file("NLD_Amsterdam062400_IWEC.epw"))
    return pv_on_year(frame, site, year, "15min")


def shorten(track: Track, days: int) -> Track:
    """The first ``days`` days of ``track``."""
    n = min(track.n, days * 86_400 // track.step_s)
    slots = (n * track.step_s + SLOT_S - 1) // SLOT_S + 2 * 96
    spot = track.spot_eur_per_kwh
    return replace(
        track,
        pv_w=track.pv_w[:n],
        clear_sky_w=track.clear_sky_w[:n],
        load_w=track.load_w[:n],
        spot_eur_per_kwh=spot[:slots] if spot is not None else None,
    )
