"""Day-ahead electricity prices for the benchmark, mended into complete regular UTC series.

Two sources:

* :func:`nl_day_ahead` reads the Dutch day-ahead prices shipped in the ev2gym wheel
  (2015 to early 2025). That file has quirks, all mended here: two datetime formats
  (ISO until the end of 2022, then day-first ``31/12/2022 23:00``), one row with empty
  datetimes (dropped), a block of 2023 rows repeated verbatim (first kept, counted) and
  two missing hours (linearly interpolated, counted).
* :func:`read_price_csv` reads a user's ``--prices FILE``: ``timestamp,price`` rows in
  EUR/MWh, with an optional header, comma or semicolon separated, ISO 8601 timestamps
  (naive means UTC), hourly or 15-minute. Every problem is a :class:`DataFileError`
  naming the 1-based line.

:func:`on_grid` looks the price up for every step of a simulation index.
"""

from __future__ import annotations

import csv
import functools
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from surplus.bench.sources import nl_prices_csv
from surplus.bench.timestamps import epoch_ns
from surplus.domain.errors import DataFileError

__all__ = ["PriceSeries", "nl_day_ahead", "on_grid", "read_price_csv"]

_NS_PER_S = 1_000_000_000
_MAX_GAP_S = 24 * 3600
_NL_COLUMNS = ("Datetime (UTC)", "Price (EUR/MWhe)")


@dataclass(frozen=True)
class PriceSeries:
    """A complete, regular price series.

    ``eur_per_mwh`` has a tz-aware UTC index with a fixed step (1 h or 15 min); a value is
    the price of the slot that starts at its label. The counters say how much mending the
    source needed.
    """

    eur_per_mwh: pd.Series[float]
    duplicates_dropped: int
    gaps_filled: int
    rows_dropped: int
    source: str

    @property
    def step(self) -> pd.Timedelta:
        """Length of one price slot."""
        index = pd.DatetimeIndex(self.eur_per_mwh.index)
        return pd.Timedelta(index[1] - index[0])


# --------------------------------------------------------------------------------------
# The Dutch day-ahead file from ev2gym


@dataclass(frozen=True)
class _NlTable:
    seconds: npt.NDArray[np.int64]  # UTC epoch seconds, file order, unusable rows removed
    price: npt.NDArray[np.float64]
    rows_dropped: int


@functools.lru_cache(maxsize=2)
def _nl_table(path: Path) -> _NlTable:
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataFileError(path, f"cannot read: {exc}") from exc
    missing = [name for name in _NL_COLUMNS if name not in raw.columns]
    if missing:
        raise DataFileError(path, f"missing column(s) {', '.join(missing)}", line=1)
    text = raw[_NL_COLUMNS[0]].str.strip()
    iso = pd.to_datetime(text, format="%Y-%m-%d %H:%M:%S", errors="coerce")
    dmy = pd.to_datetime(text, format="%d/%m/%Y %H:%M", errors="coerce")
    stamps = iso.fillna(dmy)
    price = pd.to_numeric(raw[_NL_COLUMNS[1]].str.strip(), errors="coerce")
    empty = (text == "").to_numpy()
    bad_time = stamps.isna().to_numpy() & ~empty
    if bad_time.any():
        row = int(np.flatnonzero(bad_time)[0])
        raise DataFileError(path, f"timestamp '{text.iloc[row]}' not understood", line=row + 2)
    bad_price = ~np.isfinite(price.to_numpy(dtype=float)) & ~empty
    if bad_price.any():
        row = int(np.flatnonzero(bad_price)[0])
        value = raw[_NL_COLUMNS[1]].iloc[row]
        raise DataFileError(path, f"price '{value}' is not a number", line=row + 2)
    keep = ~empty
    seconds = stamps[keep].to_numpy(dtype="datetime64[s]").astype(np.int64)
    return _NlTable(
        seconds=seconds,
        price=price[keep].to_numpy(dtype=np.float64),
        rows_dropped=int(empty.sum()),
    )


def nl_day_ahead(year: int) -> PriceSeries:
    """Dutch day-ahead prices of one UTC calendar year, hourly, EUR/MWh.

    Duplicated hours keep their first row; missing hours are linearly interpolated between
    their neighbours (which may lie in the adjacent year). ``duplicates_dropped`` and
    ``gaps_filled`` count within the requested year; ``rows_dropped`` counts the rows of
    the whole file that carry no timestamp (the year of such a row cannot be told).
    """
    path = nl_prices_csv()
    table = _nl_table(path)
    start = int(datetime(year, 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(year + 1, 1, 1, tzinfo=UTC).timestamp())
    in_year = (table.seconds >= start) & (table.seconds < end)
    if not in_year.any():
        first = datetime.fromtimestamp(int(table.seconds.min()), UTC).year
        last = datetime.fromtimestamp(int(table.seconds.max()), UTC).year
        raise DataFileError(path, f"no prices for {year} (the file covers {first}-{last})")
    known_s, first_rows = np.unique(table.seconds, return_index=True)  # sorted by time
    known_p = table.price[first_rows]
    duplicates = int(in_year.sum()) - int(((known_s >= start) & (known_s < end)).sum())

    grid = np.arange(start, end, 3600, dtype=np.int64)
    where = np.searchsorted(known_s, grid)
    found = (where < known_s.size) & (known_s[np.minimum(where, known_s.size - 1)] == grid)
    values = np.full(grid.size, np.nan)
    values[found] = known_p[where[found]]
    gaps = int((~found).sum())
    if gaps:
        lo = np.searchsorted(known_s, grid[~found]) - 1
        hi = lo + 1
        if (lo < 0).any() or (hi >= known_s.size).any():
            raise DataFileError(path, f"prices for {year} are incomplete at the year's edge")
        span = known_s[hi] - known_s[lo]
        if int(span.max()) - 3600 > _MAX_GAP_S:
            raise DataFileError(path, f"prices for {year} have a gap longer than 24 hours")
        weight = (grid[~found] - known_s[lo]) / span
        values[~found] = known_p[lo] + weight * (known_p[hi] - known_p[lo])
    index = pd.date_range(
        pd.Timestamp(start, unit="s", tz="UTC"), periods=grid.size, freq="h", name="time"
    )
    series = pd.Series(values, index=index, name="eur_per_mwh", dtype=float)
    return PriceSeries(
        eur_per_mwh=series,
        duplicates_dropped=duplicates,
        gaps_filled=gaps,
        rows_dropped=table.rows_dropped,
        source=f"{path} ({year})",
    )


# --------------------------------------------------------------------------------------
# A user's price CSV


def _parse_timestamp(text: str) -> int | None:
    """UTC epoch seconds of an ISO 8601 timestamp (naive means UTC), None if not one."""
    if not text or not text[0].isdigit():
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.microsecond:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def _parse_price(text: str, delimiter: str) -> float | None:
    """The price as a finite float, None if it is not a number."""
    if delimiter == ";" and "," in text and "." not in text:
        text = text.replace(",", ".")  # decimal comma, usual with semicolon separators
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _describe(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")


def read_price_csv(path: Path) -> PriceSeries:
    """Read a ``timestamp,price`` CSV (EUR/MWh) into a complete regular UTC series.

    Rows are ``timestamp<sep>price`` with ``<sep>`` a comma or a semicolon (then a decimal
    comma is accepted); a first line that is neither is a header. Blank lines and lines
    starting with ``#`` are skipped. Timestamps are ISO 8601 (``2024-01-01T00:00``,
    ``2024-01-01 01:00+01:00``, ``...Z``), naive ones are UTC, and they must not go
    backwards. The step is 15 minutes if any two rows are 15 minutes apart, else an hour;
    an hourly row followed by a row one hour later covers four 15-minute slots. A repeated
    timestamp keeps its first row, a row with an empty price is dropped, and missing slots
    (at most 24 hours in a row) are linearly interpolated.
    """
    source = Path(path)
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise DataFileError(source, f"cannot read: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataFileError(source, "not UTF-8 text", line=line) from exc

    delimiter: str | None = None
    header_line: int | None = None
    lines: list[int] = []
    stamps: list[int] = []
    prices: list[float] = []
    duplicates = 0
    dropped = 0
    previous: int | None = None
    for number, raw_line in enumerate(text.splitlines(), start=1):
        stripped = raw_line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        first_row = delimiter is None
        if delimiter is None:
            delimiter = ";" if ";" in stripped else ","
        fields = [field.strip() for field in next(csv.reader([stripped], delimiter=delimiter))]
        while len(fields) > 2 and not fields[-1]:
            fields.pop()
        if len(fields) != 2:
            raise DataFileError(
                source,
                f"expected 2 columns (timestamp, price), found {len(fields)}",
                line=number,
            )
        stamp_text, price_text = fields
        stamp = _parse_timestamp(stamp_text)
        price = _parse_price(price_text, delimiter) if price_text else None
        if stamp is None:
            if first_row and price is None:
                header_line = number
                continue
            raise DataFileError(source, f"timestamp '{stamp_text}' not understood", line=number)
        if price_text and price is None:
            raise DataFileError(source, f"price '{price_text}' is not a number", line=number)
        if previous is not None and stamp < previous:
            raise DataFileError(
                source,
                f"timestamps go backwards ({_describe(stamp)} after {_describe(previous)})",
                line=number,
            )
        if price is None:
            dropped += 1
        elif stamps and stamp == stamps[-1]:
            duplicates += 1
        else:
            lines.append(number)
            stamps.append(stamp)
            prices.append(price)
        previous = stamp

    if not lines:
        if header_line is not None:
            raise DataFileError(source, "file is empty (a header but no prices)", line=1)
        raise DataFileError(source, "file is empty", line=1)
    return _regularise(source, lines, stamps, prices, duplicates, dropped)


def _regularise(
    source: Path,
    lines: list[int],
    stamps: list[int],
    prices: list[float],
    duplicates: int,
    dropped: int,
) -> PriceSeries:
    seconds = np.asarray(stamps, dtype=np.int64)
    values_in = np.asarray(prices, dtype=np.float64)
    diffs = np.diff(seconds)
    if (diffs == 900).any():
        step = 900
    elif diffs.size == 0 or (diffs == 3600).any():
        step = 3600
    else:
        raise DataFileError(
            source, "timestamps are neither hourly nor 15 minutes apart", line=lines[1]
        )
    label = "15-minute" if step == 900 else "hourly"
    off_grid = (seconds - seconds[0]) % step != 0
    if off_grid.any():
        row = int(np.flatnonzero(off_grid)[0])
        raise DataFileError(
            source,
            f"timestamp {_describe(int(seconds[row]))} is off the {label} grid "
            f"set by line {lines[0]}",
            line=lines[row],
        )
    too_far = diffs > _MAX_GAP_S + step
    if too_far.any():
        row = int(np.flatnonzero(too_far)[0])
        hours = (int(diffs[row]) - step) / 3600
        raise DataFileError(
            source, f"no prices for {hours:g} hours after this line", line=lines[row]
        )
    slots = (seconds - seconds[0]) // step
    count = int(slots[-1]) + 1
    if count * step < 24 * 3600:
        raise DataFileError(source, "fewer than 24 hours of prices", line=lines[-1])
    values = np.full(count, np.nan)
    values[slots] = values_in
    if step == 900:
        # an hourly row (on the full hour, next row an hour later) holds for four slots
        hourly = np.flatnonzero((diffs == 3600) & (seconds[:-1] % 3600 == 0))
        for offset in (1, 2, 3):
            values[slots[hourly] + offset] = values_in[hourly]
    missing = np.isnan(values)
    gaps = int(missing.sum())
    if gaps:
        known = np.flatnonzero(~missing)
        values[missing] = np.interp(np.flatnonzero(missing), known, values[known])
    index = pd.date_range(
        pd.Timestamp(int(seconds[0]), unit="s", tz="UTC"),
        periods=count,
        freq=pd.Timedelta(seconds=step),
        name="time",
    )
    series = pd.Series(values, index=index, name="eur_per_mwh", dtype=float)
    return PriceSeries(
        eur_per_mwh=series,
        duplicates_dropped=duplicates,
        gaps_filled=gaps,
        rows_dropped=dropped,
        source=str(source),
    )


# --------------------------------------------------------------------------------------
# Prices on a simulation grid


def _slot_keys(ns: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """month, day, hour and minute of UTC instants packed as MMDDHHmm."""
    index = pd.DatetimeIndex(ns.astype("datetime64[ns]"))
    month = index.month.to_numpy(dtype=np.int64)
    day = index.day.to_numpy(dtype=np.int64)
    hour = index.hour.to_numpy(dtype=np.int64)
    minute = index.minute.to_numpy(dtype=np.int64)
    keys: npt.NDArray[np.int64] = ((month * 100 + day) * 100 + hour) * 100 + minute
    return keys


def on_grid(prices: PriceSeries, index: pd.DatetimeIndex) -> npt.NDArray[np.float64]:
    """The price (EUR/MWh) of every step of a tz-aware ``index``.

    Each step takes the price of the slot it starts in (held, not interpolated). Steps
    outside the span of the series (another year, say) take the price of the same UTC
    month, day, hour and minute slot found in the series (the first such slot; Feb 29
    falls back to Feb 28). Raises :class:`DataFileError` if a step finds no price.
    """
    if index.tz is None:
        raise ValueError("on_grid needs a tz-aware index")
    series = prices.eur_per_mwh
    price_index = pd.DatetimeIndex(series.index)
    price_ns = epoch_ns(price_index)
    price_values = series.to_numpy(dtype=np.float64)
    step_ns = int(price_ns[1] - price_ns[0]) if price_ns.size > 1 else 3600 * _NS_PER_S
    target_ns = epoch_ns(index)
    slot = np.floor_divide(target_ns - price_ns[0], step_ns)
    result = np.full(target_ns.size, np.nan)
    inside = (slot >= 0) & (slot < price_ns.size)
    result[inside] = price_values[slot[inside]]
    outside = np.flatnonzero(~inside)
    if outside.size:
        keys, first = np.unique(_slot_keys(price_ns), return_index=True)
        floored = price_ns[0] + slot[outside] * step_ns
        wanted = _slot_keys(floored)
        leap = wanted // 10_000 == 229
        wanted[leap] -= 10_000  # Feb 29 -> Feb 28
        where = np.searchsorted(keys, wanted)
        clipped = np.minimum(where, keys.size - 1)
        hit = keys[clipped] == wanted
        result[outside[hit]] = price_values[first[clipped[hit]]]
    missing = np.isnan(result)
    if missing.any():
        first_missing = pd.Timestamp(int(target_ns[np.flatnonzero(missing)[0]]), tz="UTC")
        raise DataFileError(
            prices.source,
            f"no price for {int(missing.sum())} of {target_ns.size} steps "
            f"(first at {first_missing:%Y-%m-%d %H:%M} UTC)",
        )
    return result


def write_price_csv(prices: PriceSeries, path: Path) -> Path:
    """Write ``prices`` as the CSV ``--prices`` reads (ISO timestamp, EUR per MWh)."""
    with path.open("w", encoding="utf-8") as out:
        out.write("timestamp,price_eur_per_mwh\n")
        series = prices.eur_per_mwh
        for at, value in zip(pd.DatetimeIndex(series.index), series.to_numpy(), strict=True):
            out.write(f"{at.isoformat()},{value:.2f}\n")
    return path
