"""Weather files to PV power with pvlib.

:func:`read_weather` reads a typical-year weather file (EPW, TMY2, TMY3, the SolarAnywhere
TMY3-style and native CSVs, NSRDB PSM3/PSM4 SAM CSVs) through ``pvlib.iotools`` into one
shape: hourly rows of ``ghi, dni, dhi`` (W/m², the mean over the hour), ``temp_air`` (°C)
and ``wind_speed`` (m/s), indexed by the *start* of the hour in the file's local standard
time. The formats disagree on what a timestamp means, and this is where it is settled:

* EPW and TMY2 stamp the end of the hour (``hour 1`` = 00:00-01:00); pvlib already moves
  them back an hour, so its index is the start.
* TMY3 and SolarAnywhere ("End of Period") stamp the end of the hour; moved back here.
* NSRDB PSM rows are instantaneous satellite samples (``:30`` for hourly TMY files,
  ``:00``/``:30`` for half-hourly ones); they are averaged over each hour here.

:func:`pv_on_year` lays such a typical year on a calendar year by local month, day and hour
and models an array with pvlib: solar position at the middle of each hour, Perez
transposition, a physical incidence-angle loss on the beam, SAPM cell temperature, PVWatts
DC (γ = -0.37 %/K), 14 % system losses and a PVWatts inverter (96 % nominal efficiency,
DC/AC ratio 1.15). The hourly mean power is interpolated linearly to the simulation step
(between hour middles and step middles, which keeps the energy). The Ineichen clear-sky
power of the same system comes along on the same index.

:func:`payerne_june_2016` does the same with one month of measured BSRN minute data, and
:func:`amsterdam_2024` is the default benchmark year.

Every problem with a file is a :class:`DataFileError` naming the file and, where it can be
told, the line.
"""

from __future__ import annotations

import csv
import io
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pvlib

from surplus.bench.sources import pvlib_test_file
from surplus.bench.timestamps import epoch_ns
from surplus.domain.errors import DataFileError

__all__ = [
    "COLUMNS",
    "PvSeries",
    "Site",
    "amsterdam_2024",
    "payerne_june_2016",
    "pv_on_year",
    "read_weather",
    "solar_noon_offset_minutes",
]

COLUMNS = ("ghi", "dni", "dhi", "temp_air", "wind_speed")
_IRRADIANCE = ("ghi", "dni", "dhi")
_MAX_IRRADIANCE = 1600.0  # W/m²; EPW's "missing" 9999 and similar sentinels lie above
_TEMP_RANGE = (-90.0, 70.0)
_WIND_MAX = 70.0
_DEFAULT_WIND = 1.0  # m/s, when a file has no wind at all
_HOUR_NS = 3_600_000_000_000

# the PV system
_GAMMA_PDC = -0.0037
_SYSTEM_LOSSES = 0.14
_ETA_INV_NOM = 0.96
_DC_AC_RATIO = 1.15
_ALBEDO = 0.2
_TEMP_PARAMS = pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS["sapm"]["open_rack_glass_polymer"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Site:
    """Where the weather was measured; ``tz`` is an IANA name or a fixed ``Etc/GMT-1``."""

    name: str
    latitude: float
    longitude: float
    altitude_m: float
    tz: str


@dataclass(frozen=True)
class PvSeries:
    """AC power of the array and its clear-sky counterpart, W, on one tz-aware UTC index.

    A value is the mean power over the step that starts at its label.
    """

    pv_w: pd.Series[float]
    clear_sky_w: pd.Series[float]
    site: Site

    def energy_kwh(self) -> float:
        """Energy of ``pv_w`` over the whole index."""
        index = pd.DatetimeIndex(self.pv_w.index)
        step_h = pd.Timedelta(index[1] - index[0]).total_seconds() / 3600
        return float(self.pv_w.sum()) * step_h / 1000


# --------------------------------------------------------------------------------------
# Reading


def _fixed_tz(offset_hours: float) -> str:
    """A tz name for a fixed UTC offset: ``Etc/GMT-1`` for UTC+1, ``UTC+05:30`` otherwise."""
    if offset_hours == int(offset_hours):
        whole = int(offset_hours)
        return "UTC" if whole == 0 else f"Etc/GMT{-whole:+d}"
    sign = "+" if offset_hours > 0 else "-"
    minutes = round(abs(offset_hours) * 60)
    return f"UTC{sign}{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass
class _Raw:
    """What a format reader hands back before the common checks."""

    frame: pd.DataFrame  # columns a subset of COLUMNS, one row per data line
    lines: list[int]  # file line of each row
    local: pd.DatetimeIndex  # naive local standard time stamps of the rows
    timing: str  # "start", "end" or "instant"
    site: Site


def _decode(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataFileError(path, f"cannot read: {exc.strerror or exc}") from exc
    if data[:2] == b"\x1f\x8b":
        raise DataFileError(path, "is gzip-compressed; unpack it first", line=1)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


_TMY2_HEADER = re.compile(r"^\s*\d{4,6}\s+\S.*\s[NS]\s+\d+\s+\d+\s+[EW]\s+\d+\s+\d+\s+-?\d+\s*$")


def _sniff(path: Path, lines: list[str]) -> str:
    first = lines[0] if lines else ""
    second = lines[1] if len(lines) > 1 else ""
    suffix = path.suffix.lower()
    if first.upper().startswith("LOCATION,"):
        return "epw"
    if second.startswith("Date (MM/DD/YYYY)"):
        return "tmy3"
    if second.startswith("ObservationTime"):
        return "solaranywhere"
    if first.startswith("Source,") and len(lines) > 2 and lines[2].startswith("Year,"):
        return "nsrdb"
    if _TMY2_HEADER.match(first):
        return "tmy2"
    if suffix == ".epw":
        raise DataFileError(path, "not an EPW file: line 1 should start with LOCATION,", line=1)
    if suffix == ".tm2":
        raise DataFileError(path, "not a TMY2 file: line 1 is not a TMY2 site header", line=1)
    if suffix == ".csv" and len(lines) > 1:
        raise DataFileError(
            path,
            "not a TMY3/NSRDB/SolarAnywhere file: line 2 should start with "
            "'Date (MM/DD/YYYY)', 'Year,' (NSRDB line 3) or 'ObservationTime'",
            line=2,
        )
    raise DataFileError(path, "not a TMY2/TMY3/EPW file", line=1)


def _line_in_message(exc: BaseException, offset: int) -> int | None:
    match = re.search(r"\bline (\d+)", str(exc))
    return int(match.group(1)) + offset if match else None


def _call_reader(
    path: Path, label: str, offset: int, reader: Callable[[], tuple[pd.DataFrame, dict[str, Any]]]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Run a pvlib reader, turning whatever it raises into a DataFileError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return reader()
    except DataFileError:
        raise
    except Exception as exc:
        text = str(exc).strip()
        message = text.splitlines()[0] if text else type(exc).__name__
        raise DataFileError(
            path, f"cannot read as {label}: {message}", line=_line_in_message(exc, offset)
        ) from exc


def _data_lines(path: Path, lines: list[str], header: int, label: str) -> list[int]:
    """1-based numbers of the data lines; blank lines may only trail."""
    end = len(lines)
    while end > header and not lines[end - 1].strip():
        end -= 1
    if end <= header:
        raise DataFileError(path, f"{label} file has no data rows", line=header + 1)
    for number in range(header, end):
        if not lines[number].strip():
            raise DataFileError(path, "blank line inside the data", line=number + 1)
    return list(range(header + 1, end + 1))


def _check_field_counts(
    path: Path, lines: list[str], numbers: list[int], expected: int, label: str, exact: bool
) -> None:
    for number in numbers:
        count = len(next(csv.reader([lines[number - 1]])))
        if count < expected or (exact and count != expected):
            raise DataFileError(
                path,
                f"{label} row has {count} fields, expected {expected} (truncated line?)",
                line=number,
            )


def _check_header_numbers(
    path: Path, lines: list[str], line: int, positions: dict[str, int], label: str
) -> list[str]:
    """The fields of header ``line`` (1-based), checking those at ``positions`` are numbers."""
    fields = next(csv.reader([lines[line - 1]])) if len(lines) >= line else []
    for name, position in positions.items():
        try:
            float(fields[position])
        except (IndexError, ValueError) as exc:
            raise DataFileError(
                path, f"{label} header: {name} (field {position + 1}) is not a number", line=line
            ) from exc
    return fields


_TMY3_STAMP = re.compile(r"(\d{1,2})/(\d{1,2})/\d{4},\s*(\d{1,2}):(\d{2})")


def _check_tmy3_stamps(path: Path, lines: list[str], numbers: list[int]) -> None:
    for number in numbers:
        line = lines[number - 1]
        match = _TMY3_STAMP.match(line.strip())
        month, day, hour, minute = (int(part) for part in match.groups()) if match else (0,) * 4
        if not (1 <= month <= 12 and 1 <= day <= 31 and hour <= 24 and minute < 60):
            stamp = " ".join(line.split(",")[:2])
            raise DataFileError(path, f"date/time '{stamp}' not understood", line=number)


def _check_full_year(path: Path, numbers: list[int], label: str) -> None:
    if len(numbers) < 8760:
        raise DataFileError(
            path,
            f"{label} file has {len(numbers)} hourly rows, expected 8760 (truncated?)",
            line=numbers[-1],
        )


def _meta_float(path: Path, meta: dict[str, Any], key: str, line: int) -> float:
    try:
        return float(meta[key])
    except (KeyError, TypeError, ValueError) as exc:
        raise DataFileError(path, f"header field {key} is missing or not a number", line) from exc


def _site_from_meta(
    path: Path, meta: dict[str, Any], name: str, tz_key: str = "TZ", line: int = 1
) -> Site:
    """The site a reader's metadata describes; a bad number names the header ``line``."""
    return Site(
        name=" ".join(name.split()),
        latitude=_meta_float(path, meta, "latitude", line),
        longitude=_meta_float(path, meta, "longitude", line),
        altitude_m=_meta_float(path, meta, "altitude", line),
        tz=_fixed_tz(_meta_float(path, meta, tz_key, line)),
    )


def _read_epw(path: Path, text: str, lines: list[str]) -> _Raw:
    if len(lines) < 9:
        raise DataFileError(path, "EPW file ends inside its 8 header lines", line=len(lines))
    _check_header_numbers(
        path, lines, 1, {"latitude": 6, "longitude": 7, "time zone": 8, "elevation": 9}, "EPW"
    )
    numbers = _data_lines(path, lines, 8, "EPW")
    _check_field_counts(path, lines, numbers, 35, "EPW", exact=True)
    _check_full_year(path, numbers, "EPW")
    frame, meta = _call_reader(path, "EPW", 1, lambda: pvlib.iotools.read_epw(io.StringIO(text)))
    site = _site_from_meta(path, meta, str(meta.get("city") or path.stem))
    local = pd.DatetimeIndex(frame.index).tz_localize(None)
    return _Raw(frame, numbers, local, "start", site)


def _hours_from_tmy3(
    path: Path, dates: pd.Series[str], times: pd.Series[str], numbers: list[int]
) -> pd.DatetimeIndex:
    day = pd.to_datetime(dates.astype(str).str.strip(), format="%m/%d/%Y", errors="coerce")
    parts = times.astype(str).str.strip().str.extract(r"^(\d{1,2}):(\d{2})$")
    hour = pd.to_numeric(parts[0], errors="coerce")
    minute = pd.to_numeric(parts[1], errors="coerce")
    bad = (day.isna() | hour.isna() | minute.isna() | (hour > 24)).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataFileError(
            path,
            f"date/time '{dates.iloc[row]} {times.iloc[row]}' not understood",
            line=numbers[row],
        )
    stamps = day + pd.to_timedelta(hour, unit="h") + pd.to_timedelta(minute, unit="min")
    return pd.DatetimeIndex(stamps)


_TMY3_SITE_FIELDS = {"site id": 0, "time zone": 3, "latitude": 4, "longitude": 5, "elevation": 6}


def _read_tmy3(path: Path, text: str, lines: list[str]) -> _Raw:
    _check_header_numbers(path, lines, 1, _TMY3_SITE_FIELDS, "TMY3")
    numbers = _data_lines(path, lines, 2, "TMY3")
    width = len(next(csv.reader([lines[1]])))
    _check_field_counts(path, lines, numbers, width, "TMY3", exact=True)
    _check_tmy3_stamps(path, lines, numbers)
    frame, meta = _call_reader(
        path, "TMY3", 1, lambda: pvlib.iotools.read_tmy3(io.StringIO(text), map_variables=True)
    )
    frame = frame.rename(columns={"DNI (W/m^2))": "dni"})  # SolarAnywhere's typo
    local = _hours_from_tmy3(
        path, frame["Date (MM/DD/YYYY)"], frame["Time (HH:MM)"], numbers
    )  # pvlib moves Feb 29 onto Mar 1; read the stamps again instead
    name = str(meta.get("Name") or path.stem).strip().strip('"').strip()
    site = _site_from_meta(path, meta, name)
    return _Raw(frame, numbers, local, "end", site)


def _read_solaranywhere(path: Path, text: str, lines: list[str]) -> _Raw:
    _check_header_numbers(path, lines, 1, _TMY3_SITE_FIELDS, "SolarAnywhere")
    numbers = _data_lines(path, lines, 2, "SolarAnywhere")
    width = len(next(csv.reader([lines[1]])))
    _check_field_counts(path, lines, numbers, width, "SolarAnywhere", exact=False)
    frame, meta = _call_reader(
        path,
        "SolarAnywhere",
        1,
        lambda: pvlib.iotools.read_solaranywhere(str(path), map_variables=True),
    )
    method = str(meta.get("Averaging Method", "End of Period")).lower()
    timing = "start" if "beginning" in method else "instant" if "instant" in method else "end"
    name = str(meta.get("name") or path.stem)
    site = _site_from_meta(path, meta, name)
    local = pd.DatetimeIndex(frame.index).tz_localize(None)
    return _Raw(frame, numbers, local, timing, site)


def _read_nsrdb(path: Path, text: str, lines: list[str]) -> _Raw:
    keys = next(csv.reader([lines[0]]))
    wanted = ("Latitude", "Longitude", "Time Zone", "Local Time Zone", "Elevation")
    absent = [key for key in wanted if key not in keys]
    if absent:
        raise DataFileError(path, f"NSRDB header lacks {', '.join(absent)}", line=1)
    _check_header_numbers(path, lines, 2, {key: keys.index(key) for key in wanted}, "NSRDB site")
    numbers = _data_lines(path, lines, 3, "NSRDB")
    names = [name for name in next(csv.reader([lines[2]])) if name.strip()]
    absent = [key for key in ("Year", "Month", "Day", "Hour", "Minute") if key not in names]
    if absent:
        raise DataFileError(path, f"NSRDB column header lacks {', '.join(absent)}", line=3)
    _check_field_counts(path, lines, numbers, len(names), "NSRDB", exact=False)
    frame, meta = _call_reader(
        path, "NSRDB PSM", 3, lambda: pvlib.iotools.read_nsrdb_psm4(io.StringIO(text))
    )
    city = str(meta.get("City") or "-")
    name = city if city not in {"-", ""} else f"NSRDB {meta.get('Location ID', path.stem)}"
    site = _site_from_meta(path, meta, name, "Time Zone", 2)
    local = pd.DatetimeIndex(frame.index).tz_localize(None)
    return _Raw(frame, numbers, local, "instant", site)


# fixed-width TMY2 fields we rely on: (name, start, end, scale)
_TMY2_FIELDS = (
    ("ghi", 17, 21, 1.0),
    ("dni", 23, 27, 1.0),
    ("dhi", 29, 33, 1.0),
    ("temp_air", 67, 71, 0.1),
    ("wind_speed", 95, 98, 0.1),
)


def _read_tmy2(path: Path, text: str, lines: list[str]) -> _Raw:
    numbers = _data_lines(path, lines, 1, "TMY2")
    _check_full_year(path, numbers, "TMY2")
    width = len(lines[1].rstrip("\r\n"))
    for number in numbers:
        line = lines[number - 1].rstrip("\r\n")
        if len(line) != width or width < 98:
            raise DataFileError(
                path, f"TMY2 row is {len(line)} characters, expected {width}", line=number
            )
        stamp = line[1:9]
        if not stamp.isdigit() or not (
            1 <= int(stamp[2:4]) <= 12 and 1 <= int(stamp[4:6]) <= 31 and 1 <= int(stamp[6:8]) <= 24
        ):
            raise DataFileError(path, f"TMY2 date/hour '{stamp}' not understood", line=number)
        for field, start, end, _ in _TMY2_FIELDS:
            value = line[start:end].strip()
            if not value.lstrip("-").isdigit():
                raise DataFileError(
                    path, f"TMY2 {field} '{line[start:end]}' is not a number", line=number
                )
    raw, meta = _call_reader(path, "TMY2", 0, lambda: pvlib.iotools.read_tmy2(str(path)))
    frame = pd.DataFrame(
        {
            field: pd.to_numeric(raw[column], errors="coerce") * scale
            for field, column, scale in (
                ("ghi", "GHI", 1.0),
                ("dni", "DNI", 1.0),
                ("dhi", "DHI", 1.0),
                ("temp_air", "DryBulb", 0.1),
                ("wind_speed", "Wspd", 0.1),
            )
        },
        index=raw.index,
    )
    site = _site_from_meta(path, meta, str(meta.get("City") or path.stem))
    local = pd.DatetimeIndex(frame.index).tz_localize(None)
    return _Raw(frame, numbers, local, "start", site)


_READERS: dict[str, Callable[[Path, str, list[str]], _Raw]] = {
    "epw": _read_epw,
    "tmy3": _read_tmy3,
    "solaranywhere": _read_solaranywhere,
    "nsrdb": _read_nsrdb,
    "tmy2": _read_tmy2,
}


def _validate(path: Path, raw: _Raw) -> pd.DataFrame:
    """Numeric columns, ranges and no gaps, each failure naming the line."""
    frame = raw.frame
    if len(frame) != len(raw.lines):
        raise DataFileError(path, f"read {len(frame)} rows from {len(raw.lines)} data lines")
    out = pd.DataFrame(index=range(len(frame)))
    for column in COLUMNS:
        if column not in frame.columns:
            out[column] = np.nan
            continue
        given = frame[column]
        values = pd.to_numeric(given, errors="coerce").to_numpy(dtype=float)
        garbled = np.isnan(values) & given.notna().to_numpy()
        garbled &= given.astype(str).str.strip().ne("").to_numpy()
        if garbled.any():
            row = int(np.flatnonzero(garbled)[0])
            raise DataFileError(
                path, f"{column} '{given.iloc[row]}' is not a number", line=raw.lines[row]
            )
        out[column] = values
    if out["ghi"].isna().all():
        raise DataFileError(path, "no global horizontal irradiance (GHI) column")
    if out["dni"].isna().all() and out["dhi"].isna().all():
        raise DataFileError(path, "neither direct (DNI) nor diffuse (DHI) irradiance")
    if out["temp_air"].isna().all():
        raise DataFileError(path, "no air temperature column")
    if out["wind_speed"].isna().all():
        out["wind_speed"] = _DEFAULT_WIND
    limits = {
        "ghi": (0.0, _MAX_IRRADIANCE),
        "dni": (0.0, _MAX_IRRADIANCE),
        "dhi": (0.0, _MAX_IRRADIANCE),
        "temp_air": _TEMP_RANGE,
        "wind_speed": (0.0, _WIND_MAX),
    }
    for column, (low, high) in limits.items():
        values = out[column].to_numpy()
        if np.isnan(values).all():
            continue  # derived later (dni or dhi)
        missing = np.isnan(values)
        if missing.any():
            row = int(np.flatnonzero(missing)[0])
            raise DataFileError(path, f"{column} is missing", line=raw.lines[row])
        wrong = (values < low) | (values > high)
        if wrong.any():
            row = int(np.flatnonzero(wrong)[0])
            what = "negative" if values[row] < low and low == 0 else "out of range"
            raise DataFileError(
                path, f"{column} {values[row]:g} is {what} ({low:g}..{high:g})", line=raw.lines[row]
            )
    return out


def _hourly_from_instants(frame: pd.DataFrame, local: pd.DatetimeIndex) -> pd.DataFrame:
    """Hour means [h, h+1) of instantaneous samples, by linear interpolation at 5 minutes.

    Only hours that hold a sample are returned (a typical year joins months of different
    years; nothing is made up for the years between).
    """
    order = np.argsort(epoch_ns(local), kind="stable")
    t = epoch_ns(local)[order]
    starts = np.unique(t - t % _HOUR_NS)
    hours = pd.DatetimeIndex(starts.astype("datetime64[ns]"))
    fine = starts[:, None] + np.arange(12, dtype=np.int64)[None, :] * (_HOUR_NS // 12)
    fine = fine + _HOUR_NS // 24  # middles of the 5-minute pieces
    out = pd.DataFrame(index=hours)
    for column in COLUMNS:
        samples = frame[column].to_numpy(dtype=float)[order]
        out[column] = np.interp(fine.ravel(), t, samples).reshape(fine.shape).mean(axis=1)
    return out


def _derive_components(frame: pd.DataFrame, site: Site) -> pd.DataFrame:
    """Fill a missing DNI or DHI column from GHI = DNI·cos(z) + DHI at the hour middles."""
    need_dni = bool(frame["dni"].isna().all())
    need_dhi = bool(frame["dhi"].isna().all())
    if not (need_dni or need_dhi):
        return frame
    index = pd.DatetimeIndex(frame.index)
    middles = index + pd.Timedelta(minutes=30)
    solpos = pvlib.solarposition.get_solarposition(
        middles, site.latitude, site.longitude, altitude=site.altitude_m
    )
    cos_z = np.cos(np.radians(solpos["zenith"].to_numpy(dtype=float)))
    ghi = frame["ghi"].to_numpy(dtype=float)
    out = frame.copy()
    if need_dni:
        dhi = frame["dhi"].to_numpy(dtype=float)
        up = cos_z > np.cos(np.radians(87.0))
        dni = np.zeros(len(frame))
        dni[up] = np.clip((ghi[up] - dhi[up]) / cos_z[up], 0.0, 1100.0)
        out["dni"] = dni
    else:
        dni = frame["dni"].to_numpy(dtype=float)
        out["dhi"] = np.clip(ghi - dni * np.clip(cos_z, 0.0, None), 0.0, None)
    return out


def read_weather(path: Path) -> tuple[pd.DataFrame, Site]:
    """Read a TMY2, TMY3 (NREL or SolarAnywhere), NSRDB PSM or EPW weather file.

    Returns hourly rows with columns :data:`COLUMNS` (W/m² as the mean over the hour, °C,
    m/s), indexed by the start of the hour in the file's local standard time (a tz-aware
    fixed offset, ``site.tz``), in file order (typical years mix years), and the site.
    A file without wind gets 1 m/s; a missing DNI or DHI column is derived from the other
    two components. Raises :class:`DataFileError` naming the file and, where it can, the
    line.
    """
    source = Path(path)
    text = _decode(source)
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        raise DataFileError(source, "file is empty", line=1)
    kind = _sniff(source, lines)
    raw = _READERS[kind](source, text, lines)
    frame = _validate(source, raw)
    local = raw.local
    if raw.timing == "instant":
        frame = _hourly_from_instants(frame, local)
    else:
        if raw.timing == "end":
            local = local - pd.Timedelta(hours=1)
        frame.index = local
        off_hour = np.flatnonzero((local.minute != 0) | (local.second != 0))
        if off_hour.size:
            row = int(off_hour[0])
            raise DataFileError(source, "rows must be hourly, on the full hour", raw.lines[row])
    frame.index = pd.DatetimeIndex(frame.index).tz_localize(raw.site.tz)
    frame.index.name = "start"
    frame = _derive_components(frame, raw.site)
    return frame[list(COLUMNS)].astype(float), raw.site


def solar_noon_offset_minutes(weather: pd.DataFrame, site: Site) -> float:
    """How many minutes the file's GHI lags the clear-sky GHI (about 0 if timing is right).

    Compares, day by day, the time centroid of the hourly GHI with that of the hourly
    clear-sky GHI (both as hour means), and returns the median difference over days with
    sun. A file misread by an hour shows up as ±60.
    """
    index = pd.DatetimeIndex(weather.index)
    fine = (
        epoch_ns(index)[:, None] + np.arange(6, dtype=np.int64)[None, :] * (_HOUR_NS // 6)
    ).ravel()
    fine = fine + _HOUR_NS // 12
    times = pd.DatetimeIndex(pd.to_datetime(fine, utc=True))
    location = pvlib.location.Location(site.latitude, site.longitude, "UTC", site.altitude_m)
    clear = location.get_clearsky(times, model="ineichen")["ghi"].to_numpy(dtype=float)
    clear_hourly = clear.reshape(len(index), 6).mean(axis=1)
    ghi = weather["ghi"].to_numpy(dtype=float)
    local = index.tz_localize(None)
    day = epoch_ns(local.normalize())
    hour_mid = (epoch_ns(local) - day) / 60e9 + 30.0  # minutes after local midnight
    offsets: list[float] = []
    for start in np.unique(day):
        rows = day == start
        g, c = ghi[rows], clear_hourly[rows]
        if g.sum() < 100.0 or c.sum() <= 0.0:
            continue
        offsets.append(
            float((hour_mid[rows] * g).sum() / g.sum() - (hour_mid[rows] * c).sum() / c.sum())
        )
    return float(np.median(offsets)) if offsets else float("nan")


# --------------------------------------------------------------------------------------
# The PV model


def _ac_power_w(
    times: pd.DatetimeIndex,
    ghi: FloatArray,
    dni: FloatArray,
    dhi: FloatArray,
    temp_air: FloatArray,
    wind_speed: FloatArray,
    site: Site,
    kwp: float,
    tilt_deg: float,
    azimuth_deg: float,
    solpos: pd.DataFrame | None = None,
) -> FloatArray:
    """AC power (W) of the array at ``times`` (instants) from irradiance at those instants."""
    if solpos is None:
        solpos = pvlib.solarposition.get_solarposition(
            times, site.latitude, site.longitude, altitude=site.altitude_m
        )
    zenith = solpos["apparent_zenith"].to_numpy(dtype=float)
    azimuth = solpos["azimuth"].to_numpy(dtype=float)
    dni_extra = np.asarray(pvlib.irradiance.get_extra_radiation(times), dtype=float)
    airmass = np.asarray(pvlib.atmosphere.get_relative_airmass(zenith), dtype=float)
    poa = pvlib.irradiance.get_total_irradiance(
        tilt_deg,
        azimuth_deg,
        zenith,
        azimuth,
        dni,
        ghi,
        dhi,
        dni_extra=dni_extra,
        airmass=airmass,
        albedo=_ALBEDO,
        model="perez",
    )
    aoi = np.asarray(pvlib.irradiance.aoi(tilt_deg, azimuth_deg, zenith, azimuth), dtype=float)
    iam = np.asarray(pvlib.iam.physical(aoi), dtype=float)
    beam = np.nan_to_num(np.asarray(poa["poa_direct"], dtype=float)) * np.nan_to_num(iam)
    diffuse = np.nan_to_num(np.asarray(poa["poa_diffuse"], dtype=float))
    effective = np.clip(beam + diffuse, 0.0, None)
    poa_global = np.clip(np.nan_to_num(np.asarray(poa["poa_global"], dtype=float)), 0.0, None)
    temp_cell = np.asarray(
        pvlib.temperature.sapm_cell(poa_global, temp_air, wind_speed, **_TEMP_PARAMS), dtype=float
    )
    pdc0 = kwp * 1000.0
    pdc = np.asarray(
        pvlib.pvsystem.pvwatts_dc(effective, temp_cell, pdc0, _GAMMA_PDC), dtype=float
    ) * (1.0 - _SYSTEM_LOSSES)
    pac0 = pdc0 / _DC_AC_RATIO
    pac = np.asarray(
        pvlib.inverter.pvwatts(pdc, pac0 / _ETA_INV_NOM, eta_inv_nom=_ETA_INV_NOM), dtype=float
    )
    result: FloatArray = np.clip(np.nan_to_num(pac), 0.0, None)
    return result


def _clear_sky_w(
    times: pd.DatetimeIndex,
    temp_air: FloatArray,
    wind_speed: FloatArray,
    site: Site,
    kwp: float,
    tilt_deg: float,
    azimuth_deg: float,
) -> FloatArray:
    solpos = pvlib.solarposition.get_solarposition(
        times, site.latitude, site.longitude, altitude=site.altitude_m
    )
    location = pvlib.location.Location(site.latitude, site.longitude, "UTC", site.altitude_m)
    clear = location.get_clearsky(times, model="ineichen", solar_position=solpos)
    return _ac_power_w(
        times,
        clear["ghi"].to_numpy(dtype=float),
        clear["dni"].to_numpy(dtype=float),
        clear["dhi"].to_numpy(dtype=float),
        temp_air,
        wind_speed,
        site,
        kwp,
        tilt_deg,
        azimuth_deg,
        solpos=solpos,
    )


def _step_of(step: str) -> pd.Timedelta:
    try:
        delta = pd.Timedelta(step)
    except ValueError as exc:
        raise ValueError(f"step {step!r} is not a duration") from exc
    seconds = delta.total_seconds()
    if seconds < 60 or 3600 % seconds != 0:
        raise ValueError(f"step {step!r} must be at least a minute and divide an hour")
    return delta


def pv_on_year(
    weather: pd.DataFrame,
    site: Site,
    year: int,
    step: str = "15min",
    kwp: float = 8.0,
    tilt_deg: float = 35.0,
    azimuth_deg: float = 180.0,
) -> PvSeries:
    """PV and clear-sky AC power of a ``kwp`` array over UTC ``year`` at ``step``.

    ``weather`` is what :func:`read_weather` returns. Each local-standard-time hour of the
    target year takes the file's row of the same month, day and hour (Feb 29 takes Feb 28);
    the power is modelled at the middle of each hour, as the hour's mean, and interpolated
    linearly onto the middles of the steps. The clear-sky power is modelled at each step's
    middle directly.
    """
    delta = _step_of(step)
    index = pd.DatetimeIndex(weather.index)
    if index.tz is None:
        raise ValueError("weather needs a tz-aware index (as read_weather returns)")
    targets = pd.date_range(
        pd.Timestamp(year=year, month=1, day=1, tz="UTC"),
        pd.Timestamp(year=year + 1, month=1, day=1, tz="UTC"),
        freq=delta,
        inclusive="left",
        name="time",
    )
    # local standard hours that cover the UTC year, with a margin for interpolation
    first = (targets[0] - pd.Timedelta(hours=2)).tz_convert(index.tz).floor("h")
    last = (targets[-1] + pd.Timedelta(hours=2)).tz_convert(index.tz).floor("h")
    hours = pd.date_range(first, last, freq="h")

    def keys_of(stamps: pd.DatetimeIndex) -> npt.NDArray[np.int64]:
        month = stamps.month.to_numpy(dtype=np.int64)
        day = stamps.day.to_numpy(dtype=np.int64)
        hour = stamps.hour.to_numpy(dtype=np.int64)
        keys: npt.NDArray[np.int64] = (month * 100 + day) * 100 + hour
        return keys

    known, first_row = np.unique(keys_of(index), return_index=True)
    wanted = keys_of(hours)
    where = np.searchsorted(known, wanted)
    hit = known[np.minimum(where, known.size - 1)] == wanted
    leap = ~hit & (wanted // 100 == 229)
    wanted[leap] -= 100  # Feb 29 -> Feb 28
    where = np.searchsorted(known, wanted)
    hit = known[np.minimum(where, known.size - 1)] == wanted
    if not hit.all():
        key = int(wanted[np.flatnonzero(~hit)[0]])
        raise DataFileError(
            site.name,
            f"the weather has no hour {key // 10_000:02d}-{key // 100 % 100:02d} "
            f"{key % 100:02d}:00 (local standard time) to place on {year}",
        )
    rows = first_row[where]
    placed = weather.iloc[rows]
    middles = (hours + pd.Timedelta(minutes=30)).tz_convert("UTC")

    def column(name: str) -> FloatArray:
        values: FloatArray = placed[name].to_numpy(dtype=float)
        return values

    hourly_w = _ac_power_w(
        middles,
        column("ghi"),
        column("dni"),
        column("dhi"),
        column("temp_air"),
        column("wind_speed"),
        site,
        kwp,
        tilt_deg,
        azimuth_deg,
    )
    step_middles = targets + delta / 2
    x = epoch_ns(step_middles).astype(float)
    xp = epoch_ns(middles).astype(float)
    pv = np.clip(np.interp(x, xp, hourly_w), 0.0, None)
    temp = np.interp(x, xp, column("temp_air"))
    wind = np.interp(x, xp, column("wind_speed"))
    clear = _clear_sky_w(step_middles, temp, wind, site, kwp, tilt_deg, azimuth_deg)
    return PvSeries(
        pv_w=pd.Series(pv, index=targets, name="pv_w", dtype=float),
        clear_sky_w=pd.Series(clear, index=targets, name="clear_sky_w", dtype=float),
        site=site,
    )


# --------------------------------------------------------------------------------------
# The two benchmark data sets

PAYERNE = Site("Payerne", 46.815, 6.944, 491.0, "Europe/Zurich")
_BSRN_FILE = "bsrn-pay0616.dat.gz"
_AMSTERDAM_FILE = "NLD_Amsterdam062400_IWEC.epw"


def payerne_june_2016(step: str = "1min", kwp: float = 8.0) -> PvSeries:
    """Measured minute irradiance at BSRN Payerne, June 2016, as PV and clear-sky power.

    The minute stamps are taken as the start of each minute's mean. Gaps are mended: DNI
    missing in daylight comes from closure, (GHI - DHI) / cos(z); anything still missing is
    interpolated in time; small negative night readings become 0. There is no wind in the
    file (1 m/s is assumed). ``step`` coarser than a minute averages the minutes.
    """
    delta = _step_of(step)
    path = pvlib_test_file(_BSRN_FILE)
    try:
        raw, _ = pvlib.iotools.read_bsrn(str(path))
    except Exception as exc:
        raise DataFileError(path, f"cannot read as BSRN: {exc}") from exc
    minutes = pd.date_range(
        "2016-06-01", "2016-07-01", freq="min", tz="UTC", inclusive="left", name="time"
    )
    frame = raw.reindex(minutes)
    middles = minutes + pd.Timedelta(seconds=30)
    solpos = pvlib.solarposition.get_solarposition(
        middles, PAYERNE.latitude, PAYERNE.longitude, altitude=PAYERNE.altitude_m
    )
    cos_z = np.cos(np.radians(solpos["zenith"].to_numpy(dtype=float)))
    ghi = frame["ghi"].to_numpy(dtype=float)
    dhi = frame["dhi"].to_numpy(dtype=float)
    dni = frame["dni"].to_numpy(dtype=float)
    closure = np.isnan(dni) & (cos_z > np.cos(np.radians(87.0)))
    dni[closure] = np.clip((ghi[closure] - dhi[closure]) / cos_z[closure], 0.0, 1100.0)
    dni[np.isnan(dni) & (cos_z <= np.cos(np.radians(87.0)))] = 0.0
    mended = pd.DataFrame({"ghi": ghi, "dni": dni, "dhi": dhi}, index=minutes)
    mended["temp_air"] = frame["temp_air"] if "temp_air" in frame.columns else 15.0
    mended = mended.interpolate(method="time", limit_direction="both")
    if mended.isna().to_numpy().any():
        raise DataFileError(path, "too little data to mend June 2016")

    def column(name: str) -> FloatArray:
        values: FloatArray = np.clip(mended[name].to_numpy(dtype=float), 0.0, None)
        return values

    temp = mended["temp_air"].to_numpy(dtype=float)
    wind = np.full(len(minutes), _DEFAULT_WIND)
    pv = _ac_power_w(
        middles,
        column("ghi"),
        column("dni"),
        column("dhi"),
        temp,
        wind,
        PAYERNE,
        kwp,
        35.0,
        180.0,
        solpos=solpos,
    )
    clear = _clear_sky_w(middles, temp, wind, PAYERNE, kwp, 35.0, 180.0)
    pv_w = pd.Series(pv, index=minutes, name="pv_w", dtype=float)
    clear_w = pd.Series(clear, index=minutes, name="clear_sky_w", dtype=float)
    if delta != pd.Timedelta(minutes=1):
        pv_w = pv_w.resample(delta).mean()
        clear_w = clear_w.resample(delta).mean()
    return PvSeries(pv_w=pv_w, clear_sky_w=clear_w, site=PAYERNE)


def amsterdam_2024(step: str = "15min", kwp: float = 8.0) -> PvSeries:
    """The Amsterdam IWEC typical year placed on 2024, as PV and clear-sky power."""
    weather, site = read_weather(pvlib_test_file(_AMSTERDAM_FILE))
    return pv_on_year(weather, site, 2024, step=step, kwp=kwp)
