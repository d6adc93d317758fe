"""The check on data the defaults were not tuned on: another weather file and price year.

``prepare`` returns the ``surplus bench`` options for it: pvlib's PVGIS typical year at
45 N 8 E (its source distribution's ``tests/data``) and the Dutch day-ahead prices of 2023
(from the same ev2gym file as ``nl-2024``), written as a ``--prices`` CSV.
"""

from __future__ import annotations

from surplus.bench.prices import nl_day_ahead, write_price_csv
from surplus.bench.sources import cache_dir, pvlib_test_file

WEATHER = "tmy_45.000_8.000_2005_2023.epw"
PRICE_YEAR = 2023


def prepare() -> list[str]:
    """The ``surplus bench`` options for the untuned check, its files made ready."""
    weather = pvlib_test_file(WEATHER)
    prices = write_price_csv(
        nl_day_ahead(PRICE_YEAR), cache_dir() / f"nl-day-ahead-{PRICE_YEAR}.csv"
    )
    return ["--weather", str(weather), "--prices", str(prices)]


if __name__ == "__main__":
    print("\n".join(prepare()))
