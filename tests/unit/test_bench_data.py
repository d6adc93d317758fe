"""The benchmark's real-data loaders: prices, weather to PV, household load, file sources."""

from __future__ import annotations

import io
import tarfile
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pvlib
import pytest

from surplus.bench import sources
from surplus.bench.household import h25_load_w
from surplus.bench.prices import PriceSeries, nl_day_ahead, on_grid, read_price_csv
from surplus.bench.sources import pvlib_test_file
from surplus.bench.weather import (
    PvSeries,
    amsterdam_2024,
    payerne_june_2016,
    pv_on_year,
    read_weather,
    solar_noon_offset_minutes,
)
from surplus.domain.errors import DataFileError

PVLIB_WHEEL_DATA = Path(pvlib.__file__).parent / "data"
AMSTERDAM_EPW = "NLD_Amsterdam062400_IWEC.epw"


# --------------------------------------------------------------------------------------
# fixtures: the expensive ones once per module


@pytest.fixture(scope="module")
def nl_2023() -> PriceSeries:
    return nl_day_ahead(2023)


@pytest.fixture(scope="module")
def nl_2024() -> PriceSeries:
    return nl_day_ahead(2024)


@pytest.fixture(scope="module")
def amsterdam() -> PvSeries:
    return amsterdam_2024()


@pytest.fixture(scope="module")
def payerne() -> PvSeries:
    return payerne_june_2016()


@pytest.fixture(scope="module")
def amsterdam_epw() -> Path:
    return pvlib_test_file(AMSTERDAM_EPW)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _hourly_csv(hours: int, start: str = "2024-01-01T00:00", sep: str = ",") -> str:
    stamps = pd.date_range(start, periods=hours, freq="h")
    return "".join(f"{t:%Y-%m-%dT%H:%M}{sep}{i}\n" for i, t in enumerate(stamps))


# --------------------------------------------------------------------------------------
# Dutch day-ahead prices


def test_nl_2024_is_a_complete_hourly_utc_year(nl_2024: PriceSeries) -> None:
    series = nl_2024.eur_per_mwh
    index = pd.DatetimeIndex(series.index)
    assert len(series) == 8784
    assert str(index.tz) == "UTC"
    assert index[0] == pd.Timestamp("2024-01-01 00:00", tz="UTC")
    assert index[-1] == pd.Timestamp("2024-12-31 23:00", tz="UTC")
    assert (np.diff(index.asi8) == 3_600_000_000_000).all()
    assert series.notna().all()
    assert nl_2024.gaps_filled == 1  # 2024-12-30 23:00 UTC is missing in the file
    assert nl_2024.duplicates_dropped == 0
    hole = pd.Timestamp("2024-12-30 23:00", tz="UTC")
    before, after = series[hole - pd.Timedelta(hours=1)], series[hole + pd.Timedelta(hours=1)]
    assert series[hole] == pytest.approx((before + after) / 2)
    assert 60.0 < series.mean() < 100.0  # 2024 averaged about 77 EUR/MWh


def test_nl_2023_drops_the_repeated_block(nl_2023: PriceSeries) -> None:
    series = nl_2023.eur_per_mwh
    assert len(series) == 8760
    assert series.notna().all()
    assert pd.DatetimeIndex(series.index).is_unique
    # 6,553 hours are repeated in the file; one of them (2022-12-31 23:00) is in 2022
    assert nl_2023.duplicates_dropped == 6552
    assert nl_2023.gaps_filled == 1  # 2023-12-30 23:00 UTC
    assert nl_2023.rows_dropped == 1  # the row without datetimes


# --------------------------------------------------------------------------------------
# A user's price CSV


def test_price_csv_names_the_line_of_a_bad_number(tmp_path: Path) -> None:
    text = "timestamp,price\n2024-01-01T00:00,10\n2024-01-01T01:00,11\n2024-01-01T02:00,abc\n"
    path = _write(tmp_path, "my-prices.csv", text + _hourly_csv(30, "2024-01-01T03:00"))
    with pytest.raises(DataFileError) as caught:
        read_price_csv(path)
    assert "my-prices.csv" in str(caught.value)
    assert ":4" in str(caught.value)
    assert "'abc' is not a number" in str(caught.value)
    assert caught.value.line == 4


def test_price_csv_mends_semicolons_offsets_duplicates_and_gaps(tmp_path: Path) -> None:
    rows = [
        "2024-03-01 01:00+01:00;10,0",  # = 00:00 UTC, decimal comma
        "2024-03-01T01:00Z;20,0",
        "2024-03-01T01:00Z;99,0",  # repeated hour: first one kept
        # 02:00 UTC missing -> interpolated
        "2024-03-01T03:00;40,0",  # naive means UTC
        "2024-03-01T04:00;",  # empty price: row dropped, hour interpolated
    ]
    rows += [f"2024-03-01T{h:02d}:00;{h * 10},0" for h in range(5, 24)]
    rows += [f"2024-03-02T{h:02d}:00;5" for h in range(3)]
    path = _write(tmp_path, "semi.csv", "# exported by hand\n" + "\n".join(rows) + "\n")
    prices = read_price_csv(path)
    series = prices.eur_per_mwh
    assert prices.step == pd.Timedelta(hours=1)
    assert len(series) == 27
    assert series.iloc[0] == 10.0
    assert series.iloc[1] == 20.0
    assert series.iloc[2] == pytest.approx(30.0)
    assert series.iloc[4] == pytest.approx(45.0)
    assert prices.duplicates_dropped == 1
    assert prices.gaps_filled == 2
    assert prices.rows_dropped == 1
    assert str(pd.DatetimeIndex(series.index).tz) == "UTC"


def test_price_csv_quarter_hours_with_hourly_part(tmp_path: Path) -> None:
    hourly = pd.date_range("2025-09-30T00:00", "2025-09-30T23:00", freq="h")
    quarters = pd.date_range("2025-10-01T00:00", periods=96, freq="15min")
    lines = [f"{t:%Y-%m-%dT%H:%M},{i}" for i, t in enumerate(hourly)]
    lines += [f"{t:%Y-%m-%dT%H:%M},{1000 + i}" for i, t in enumerate(quarters)]
    prices = read_price_csv(_write(tmp_path, "mixed.csv", "\n".join(lines)))
    series = prices.eur_per_mwh
    assert prices.step == pd.Timedelta(minutes=15)
    assert len(series) == 24 * 4 + 96
    assert series.iloc[:4].tolist() == [0.0] * 4  # an hourly price holds for its quarters
    assert series.iloc[92:96].tolist() == [23.0] * 4
    assert prices.gaps_filled == 0


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("", 1, "file is empty"),
        ("timestamp,price\n", 1, "file is empty"),
        ("time,price\nyesterday,3\n", 2, "timestamp 'yesterday' not understood"),
        (_hourly_csv(30) + "2024-01-01T05:00,1\n", 31, "timestamps go backwards"),
        (_hourly_csv(10), 10, "fewer than 24 hours"),
        ("2024-01-01T00:00,1,2\n", 1, "expected 2 columns"),
        (_hourly_csv(30) + "2024-01-02T06:30,1\n", 31, "off the hourly grid"),
    ],
)
def test_price_csv_errors_name_a_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = _write(tmp_path, "bad.csv", text)
    with pytest.raises(DataFileError) as caught:
        read_price_csv(path)
    assert caught.value.line == line
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"{path}:{line}: ")


# --------------------------------------------------------------------------------------
# Prices on a simulation grid


def _two_days_2023() -> PriceSeries:
    index = pd.date_range("2023-02-27", periods=72, freq="h", tz="UTC")
    values = pd.Series(np.arange(72, dtype=float), index=index)
    return PriceSeries(values, 0, 0, 0, "synthetic")


def test_on_grid_holds_hourly_prices_over_quarter_hours(nl_2024: PriceSeries) -> None:
    index = pd.date_range("2024-01-01", "2025-01-01", freq="15min", tz="UTC", inclusive="left")
    grid = on_grid(nl_2024, index)
    hourly = nl_2024.eur_per_mwh.to_numpy()
    assert grid.shape == (35136,)
    assert np.array_equal(grid, np.repeat(hourly, 4))


def test_on_grid_maps_another_year_by_month_day_hour() -> None:
    prices = _two_days_2023()
    index = pd.date_range("2024-02-28 22:00", periods=4 * 50, freq="15min", tz="UTC")
    grid = on_grid(prices, index)
    # 2024-02-28 22:00 -> 2023-02-28 22:00 (hour 46); Feb 29 takes Feb 28's hours
    assert grid[0] == 46.0
    assert grid[8] == 24.0  # 2024-02-29 00:00 -> 2023-02-28 00:00
    assert grid[8 + 4 * 24] == 48.0  # 2024-03-01 00:00 -> 2023-03-01 00:00
    minutes = pd.date_range("2023-02-27 05:00", periods=120, freq="1min", tz="UTC")
    assert on_grid(prices, minutes).tolist() == [5.0] * 60 + [6.0] * 60


def test_on_grid_raises_when_steps_cannot_be_priced() -> None:
    index = pd.date_range("2024-07-01", periods=10, freq="15min", tz="UTC")
    with pytest.raises(DataFileError, match="no price for 10 of 10 steps"):
        on_grid(_two_days_2023(), index)


# --------------------------------------------------------------------------------------
# Weather files


def test_read_weather_epw_amsterdam(amsterdam_epw: Path) -> None:
    weather, site = read_weather(amsterdam_epw)
    assert list(weather.columns) == ["ghi", "dni", "dhi", "temp_air", "wind_speed"]
    assert len(weather) == 8760
    assert site.name == "AMSTERDAM"
    assert (site.latitude, site.longitude, site.tz) == (52.3, 4.77, "Etc/GMT-1")
    assert pd.DatetimeIndex(weather.index)[0] == pd.Timestamp("1995-01-01 00:00", tz="Etc/GMT-1")
    assert weather.notna().all().all()


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(PVLIB_WHEEL_DATA / "723170TYA.CSV", id="tmy3"),
        pytest.param(PVLIB_WHEEL_DATA / "12839.tm2", id="tmy2"),
        pytest.param(AMSTERDAM_EPW, id="epw"),
        pytest.param("test_read_psm3.csv", id="nsrdb-psm3"),
        pytest.param("test_read_psm4.csv", id="nsrdb-psm4"),
        pytest.param(
            "Burlington, United States SolarAnywhere Time Series 2021 "
            "Lat_44_465 Lon_-73_205 TMY3 format.csv",
            id="solaranywhere-tmy3",
        ),
    ],
)
def test_weather_timing_matches_the_sun(path: Path | str) -> None:
    """Each format's timestamps are read so that the file's GHI peaks with clear sky."""
    file = path if isinstance(path, Path) else pvlib_test_file(path)
    weather, site = read_weather(file)
    assert 8760 <= len(weather) <= 8784
    assert (weather[["ghi", "dni", "dhi"]] >= 0).all().all()
    assert abs(solar_noon_offset_minutes(weather, site)) < 10.0


def test_truncated_epw_names_file_and_line(tmp_path: Path, amsterdam_epw: Path) -> None:
    lines = amsterdam_epw.read_text(encoding="utf-8").splitlines()
    cut = [*lines[:2000], lines[2000][:40]]
    path = _write(tmp_path, "cut.epw", "\n".join(cut) + "\n")
    with pytest.raises(DataFileError) as caught:
        read_weather(path)
    assert "cut.epw" in str(caught.value)
    assert caught.value.line == 2001
    short = _write(tmp_path, "short.epw", "\n".join(lines[:2000]) + "\n")
    with pytest.raises(DataFileError, match=r"short\.epw:2000: EPW file has 1992 hourly rows"):
        read_weather(short)


def test_garbled_epw_value_names_file_and_line(tmp_path: Path, amsterdam_epw: Path) -> None:
    lines = amsterdam_epw.read_text(encoding="utf-8").splitlines()
    fields = lines[4000].split(",")
    fields[13] = "-50"  # GHI
    lines[4000] = ",".join(fields)
    path = _write(tmp_path, "negative.epw", "\n".join(lines) + "\n")
    with pytest.raises(DataFileError, match=r"negative\.epw:4001: ghi -50 is negative"):
        read_weather(path)
    fields[13] = "lots"
    lines[4000] = ",".join(fields)
    path = _write(tmp_path, "garbled.epw", "\n".join(lines) + "\n")
    with pytest.raises(DataFileError, match=r"garbled\.epw:4001: ghi 'lots' is not a number"):
        read_weather(path)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("notes.epw", "hello\nworld\n"),
        ("notes.csv", "a,b\n1,2\n"),
        ("notes.txt", "just text\n"),
        ("empty.epw", ""),
    ],
)
def test_not_a_weather_file(tmp_path: Path, name: str, text: str) -> None:
    with pytest.raises(DataFileError) as caught:
        read_weather(_write(tmp_path, name, text))
    assert name in str(caught.value)
    assert caught.value.line is not None


# --------------------------------------------------------------------------------------
# PV power


def test_amsterdam_2024_yield_and_shape(amsterdam: PvSeries) -> None:
    pv, clear = amsterdam.pv_w, amsterdam.clear_sky_w
    index = pd.DatetimeIndex(pv.index)
    assert len(pv) == 35136
    assert str(index.tz) == "UTC"
    assert index[0] == pd.Timestamp("2024-01-01", tz="UTC")
    assert pv.index.equals(clear.index)
    assert (pv >= 0).all()
    assert (clear >= 0).all()
    assert 6000.0 < amsterdam.energy_kwh() < 8000.0
    assert pv.max() < 8000.0 / 1.15 + 1.0  # inverter limit
    daylight = pv > 10.0
    assert ((clear >= pv)[daylight]).mean() > 0.75
    # summer beats winter, and the mean day peaks with clear sky around 11:30 UTC
    monthly = pv.groupby(index.month).sum()
    assert monthly[6] > 3 * monthly[12]
    minute_of_day = index.hour * 60 + index.minute
    peak_pv = pv.groupby(minute_of_day).mean().idxmax()
    peak_clear = clear.groupby(minute_of_day).mean().idxmax()
    assert abs(peak_pv - peak_clear) <= 30
    assert 10 * 60 <= peak_clear <= 12 * 60 + 30


def test_pv_on_year_places_feb_29_and_other_years(amsterdam_epw: Path) -> None:
    weather, site = read_weather(amsterdam_epw)
    pv = pv_on_year(weather, site, 2023, step="1h", kwp=4.0)
    assert len(pv.pv_w) == 8760
    leap = pv_on_year(weather, site, 2024, step="1h", kwp=4.0)
    feb28 = leap.pv_w["2024-02-28"].to_numpy()
    feb29 = leap.pv_w["2024-02-29"].to_numpy()
    assert np.allclose(feb28, feb29, rtol=0.05, atol=20.0)  # same weather, a day's sun apart


def test_payerne_june_2016(payerne: PvSeries) -> None:
    pv, clear = payerne.pv_w, payerne.clear_sky_w
    assert len(pv) == 43200
    assert pd.DatetimeIndex(pv.index)[0] == pd.Timestamp("2016-06-01", tz="UTC")
    assert pv.notna().all()
    assert clear.notna().all()
    assert 6000.0 <= pv.max() <= 7000.0
    assert payerne.site.tz == "Europe/Zurich"
    daylight = pv > 10.0
    assert ((clear >= pv)[daylight]).mean() > 0.5
    assert clear.sum() > pv.sum()
    assert (pv[pd.DatetimeIndex(pv.index).hour == 0] == 0).all()


# --------------------------------------------------------------------------------------
# Household load


def test_h25_integrates_to_the_annual_energy() -> None:
    index = pd.date_range("2024-01-01", "2025-01-01", freq="15min", tz="UTC", inclusive="left")
    load = h25_load_w(index, "Europe/Amsterdam", annual_kwh=4000.0)
    assert load.shape == (35136,)
    assert (load > 0).all()
    assert load.sum() * 0.25 / 1000 == pytest.approx(4000.0, rel=0.005)
    local_hour = index.tz_convert("Europe/Amsterdam").hour
    assert load[local_hour == 19].mean() > 1.5 * load[local_hour == 3].mean()


def test_h25_minutes_hold_the_quarter_hour() -> None:
    quarters = pd.date_range("2024-06-03", periods=8, freq="15min", tz="UTC")
    minutes = pd.date_range("2024-06-03", periods=120, freq="1min", tz="UTC")
    coarse = h25_load_w(quarters, "Europe/Berlin", 3000.0)
    fine = h25_load_w(minutes, "Europe/Berlin", 3000.0)
    assert np.array_equal(fine, np.repeat(coarse, 15))


# --------------------------------------------------------------------------------------
# Sources


def test_pvlib_test_file_extracts_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SURPLUS_BENCH_DATA", str(tmp_path))
    version = metadata.version("pvlib")
    tarball = tmp_path / f"pvlib-{version}.tar.gz"
    payload = b"LOCATION,TEST\n"
    with tarfile.open(tarball, "w:gz") as archive:
        member = tarfile.TarInfo(f"pvlib-{version}/tests/data/tiny.epw")
        member.size = len(payload)
        archive.addfile(member, io.BytesIO(payload))
    path = pvlib_test_file("tiny.epw")
    assert path.read_bytes() == payload
    assert path.is_relative_to(tmp_path)
    tarball.unlink()  # the extracted copy is reused, the archive no longer needed
    assert pvlib_test_file("tiny.epw") == path
    with pytest.raises(DataFileError, match="expected a bare file name"):
        pvlib_test_file("../tiny.epw")


def test_pvlib_test_file_missing_member(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SURPLUS_BENCH_DATA", str(tmp_path))
    version = metadata.version("pvlib")
    with tarfile.open(tmp_path / f"pvlib-{version}.tar.gz", "w:gz"):
        pass
    with pytest.raises(DataFileError, match="has no member"):
        pvlib_test_file("nothing.epw")


def test_missing_ev2gym_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    def absent(name: str) -> metadata.Distribution:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(sources.metadata, "distribution", absent)
    with pytest.raises(DataFileError, match=r"pip install --no-deps ev2gym==2\.0\.0"):
        sources.nl_prices_csv()


def test_a_written_price_year_reads_back_the_same(tmp_path: Path) -> None:
    """``--prices`` reads what ``write_price_csv`` writes (the untuned check's prices)."""
    from surplus.bench.prices import nl_day_ahead, read_price_csv, write_price_csv

    year = nl_day_ahead(2023)
    back = read_price_csv(write_price_csv(year, tmp_path / "p.csv"))
    assert len(back.eur_per_mwh) == len(year.eur_per_mwh) == 8760
    assert np.allclose(back.eur_per_mwh.to_numpy(), year.eur_per_mwh.to_numpy(), atol=0.005)
