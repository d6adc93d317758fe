"""The replay's forecasts are forecasts: skill between none and the truth's, and seeded."""

from __future__ import annotations

import numpy as np
import pytest

from surplus.bench import tracks
from surplus.sim.devices import ElectricVehicle, HomeBattery
from surplus.sim.forecast import Forecaster, WeatherForecaster
from surplus.sim.world import World


@pytest.fixture(scope="module")
def nl() -> tracks.Track:
    return tracks.build("nl-2024")


def _daily_errors(f: Forecaster, lead_days: int) -> tuple[float, float]:
    """Mean absolute error of the daily solar energy forecast ``lead_days`` ahead (issued
    at noon), relative to the mean, and the correlation with the truth."""
    told, true = [], []
    for day in range(15, 360):
        issued = (day - lead_days) * 96 + 48
        ahead = day * 96 - issued
        told.append(float(f.at(issued).pv_w[ahead : ahead + 96].sum()))
        true.append(float(f.pv[day * 96 : (day + 1) * 96].sum()))
    t, s = np.array(told), np.array(true)
    return float(np.abs(t - s).mean() / s.mean()), float(np.corrcoef(t, s)[0, 1])


def test_the_weather_forecast_has_a_weather_services_skill(nl: tracks.Track) -> None:
    args = (nl.start, nl.step_s, nl.pv_w, nl.clear_sky_w, nl.load_w)
    weather, persistence = WeatherForecaster(*args), Forecaster(*args)
    mae_1, corr_1 = _daily_errors(weather, 1)
    mae_3, _ = _daily_errors(weather, 3)
    mae_past, corr_past = _daily_errors(persistence, 1)
    # off by about a quarter of a day's energy the day before: a forecast, not the truth
    assert 0.15 < mae_1 < 0.40
    assert corr_1 < 0.95
    # better than the past alone can tell, and worse the further ahead
    assert mae_1 < mae_past and corr_1 > corr_past
    assert mae_3 > mae_1


def test_the_weather_forecast_is_seeded_and_starts_from_the_nowcast(nl: tracks.Track) -> None:
    args = (nl.start, nl.step_s, nl.pv_w, nl.clear_sky_w, nl.load_w)
    a, b = WeatherForecaster(*args), WeatherForecaster(*args)
    past = Forecaster(*args)
    step = 200 * 96 + 40
    assert np.array_equal(a.at(step).pv_w, b.at(step).pv_w)
    assert not np.array_equal(a.at(step).pv_w, WeatherForecaster(*args, seed=1).at(step).pv_w)
    # the slot now is what the panels just showed; the load forecast is the same
    assert a.at(step).pv_w[0] == pytest.approx(past.at(step).pv_w[0])
    assert np.array_equal(a.at(step).load_w, past.at(step).load_w)
    # never above clear sky
    assert (a.at(step).pv_w <= a.cs[step : step + 384] + 1e-9).all()


def test_a_world_refuses_an_unknown_forecast(nl: tracks.Track) -> None:
    with pytest.raises(ValueError, match="oracle"):
        World(
            nl.start,
            nl.step_s,
            nl.pv_w,
            nl.load_w,
            nl.clear_sky_w,
            *nl.prices_per_step(),
            tariff=nl.tariff(),
            trips=[],
            ev=ElectricVehicle(),
            battery=HomeBattery(),
            forecast="oracle",
        )
