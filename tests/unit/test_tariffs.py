"""The ``[tariff]`` table: prices per local wall-clock slot (wrapping nights, 24:00, DST days),
slot alignment and horizon, every problem named by key path, and ``decide`` planning on it."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from surplus.config import load_config
from surplus.control.settings import SiteSettings
from surplus.control.state import BatteryCommand, ControlState
from surplus.control.surplus import decide
from surplus.domain.errors import ConfigError
from surplus.domain.readings import BatteryState, MeterReading, SiteSnapshot
from surplus.domain.tariff import SLOT
from surplus.tariffs import TimeOfUseTariff

AMS = ZoneInfo("Europe/Amsterdam")
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]


def tariff(*periods: dict[str, Any], **base: Any) -> TimeOfUseTariff:
    return TimeOfUseTariff.model_validate(
        {"timezone": "Europe/Amsterdam", "import_eur_per_kwh": 0.30, **base, "periods": periods}
    )


def local(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, sec, tzinfo=AMS)


def price_at(t: TimeOfUseTariff, at: datetime) -> tuple[float, float]:
    rates = t.known_rates(at, horizon_h=0.25)
    return float(rates.import_eur_per_kwh[0]), float(rates.export_eur_per_kwh[0])


# --------------------------------------------------------------------------------------
# prices by local time
# --------------------------------------------------------------------------------------

WEEK = tariff(
    {"from": "07:00", "to": "09:00", "import_eur_per_kwh": 0.40, "export_eur_per_kwh": 0.10,
     "days": WEEKDAYS},
    {"from": "22:00", "to": "06:00", "import_eur_per_kwh": 0.15, "days": WEEKDAYS},
    {"from": "16:00", "to": "24:00", "import_eur_per_kwh": 0.25, "days": ["sun"]},
    export_eur_per_kwh=0.07,
)  # fmt: skip


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        pytest.param(local(2024, 6, 10, 8, 0), (0.40, 0.10), id="weekday-morning-period"),
        pytest.param(local(2024, 6, 10, 8, 59), (0.40, 0.10), id="inside-its-last-slot"),
        pytest.param(local(2024, 6, 10, 9, 0), (0.30, 0.07), id="to-is-exclusive"),
        pytest.param(local(2024, 6, 15, 8, 0), (0.30, 0.07), id="not-on-saturday"),
        pytest.param(local(2024, 6, 10, 23, 30), (0.15, 0.07), id="night-before-midnight"),
        pytest.param(local(2024, 6, 11, 5, 45), (0.15, 0.07), id="night-after-midnight"),
        pytest.param(local(2024, 6, 11, 6, 0), (0.30, 0.07), id="night-ends"),
        pytest.param(local(2024, 6, 15, 5, 0), (0.15, 0.07), id="friday-night-into-saturday"),
        pytest.param(local(2024, 6, 16, 5, 0), (0.30, 0.07), id="no-saturday-night"),
        pytest.param(local(2024, 6, 10, 5, 0), (0.30, 0.07), id="no-sunday-night"),
        pytest.param(local(2024, 6, 16, 15, 45), (0.30, 0.07), id="before-sunday-evening"),
        pytest.param(local(2024, 6, 16, 16, 0), (0.25, 0.07), id="sunday-evening"),
        pytest.param(local(2024, 6, 16, 23, 45), (0.25, 0.07), id="24:00-covers-the-last-slot"),
        pytest.param(local(2024, 6, 17, 0, 0), (0.30, 0.07), id="24:00-ends-at-midnight"),
    ],
)
def test_a_slot_is_priced_by_its_local_wall_clock_time(
    at: datetime, expected: tuple[float, float]
) -> None:
    assert price_at(WEEK, at) == pytest.approx(expected)


def test_without_periods_every_slot_has_the_base_price() -> None:
    rates = tariff(import_eur_per_kwh=-0.05).known_rates(datetime(2024, 6, 10, tzinfo=UTC))
    assert set(rates.import_eur_per_kwh) == {-0.05}
    assert set(rates.export_eur_per_kwh) == {0.0}


def test_the_week_repeats() -> None:
    week = WEEK.known_rates(datetime(2024, 6, 10, tzinfo=UTC), horizon_h=2 * 7 * 24)
    half = len(week) // 2
    np.testing.assert_array_equal(week.import_eur_per_kwh[:half], week.import_eur_per_kwh[half:])


# --------------------------------------------------------------------------------------
# slots and horizon
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "now",
    [
        pytest.param(datetime(2024, 6, 10, 6, 7, 31, 5, tzinfo=UTC), id="utc"),
        pytest.param(local(2024, 6, 10, 8, 14, 59), id="local"),
        pytest.param(datetime(2024, 6, 10, 6, 0, tzinfo=UTC), id="on-a-boundary"),
    ],
)
def test_start_is_the_utc_slot_holding_now(now: datetime) -> None:
    rates = WEEK.known_rates(now)
    assert rates.start == datetime(2024, 6, 10, 6, 0, tzinfo=UTC)
    assert rates.start.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("horizon_h", "slots"),
    [(36.0, 144), (24.0, 96), (1.0, 4), (0.25, 1), (0.3, 2), (48.1, 193)],
)
def test_the_horizon_sets_the_slot_count(horizon_h: float, slots: int) -> None:
    now = datetime(2024, 6, 10, 6, 7, tzinfo=UTC)
    rates = WEEK.known_rates(now, horizon_h=horizon_h)
    assert len(rates) == len(rates.export_eur_per_kwh) == slots
    assert rates.end == rates.start + SLOT * slots


def test_the_default_horizon_is_36_hours() -> None:
    assert len(WEEK.known_rates(datetime(2024, 6, 10, tzinfo=UTC))) == 144


@pytest.mark.parametrize("horizon_h", [0.0, -1.0, float("nan"), float("inf")])
def test_a_horizon_must_be_positive_and_finite(horizon_h: float) -> None:
    with pytest.raises(ValueError, match="horizon_h"):
        WEEK.known_rates(datetime(2024, 6, 10, tzinfo=UTC), horizon_h=horizon_h)


def test_now_must_be_aware() -> None:
    with pytest.raises(ValueError, match="aware"):
        WEEK.known_rates(datetime(2024, 6, 10))


# --------------------------------------------------------------------------------------
# daylight saving time (Europe/Amsterdam: 31 March and 27 October 2024 are Sundays)
# --------------------------------------------------------------------------------------

SUNDAY = tariff({"from": "00:00", "to": "24:00", "import_eur_per_kwh": 0.50, "days": ["sun"]})
NIGHT = tariff(
    {"from": "02:00", "to": "03:00", "import_eur_per_kwh": 0.50},
    {"from": "03:00", "to": "04:00", "import_eur_per_kwh": 0.40},
)


@pytest.mark.parametrize(
    ("day", "slots"),
    [
        pytest.param((2024, 3, 31), 92, id="spring-forward-23h"),
        pytest.param((2024, 10, 27), 100, id="fall-back-25h"),
        pytest.param((2024, 6, 16), 96, id="summer-24h"),
    ],
)
def test_a_local_day_has_its_own_number_of_slots(day: tuple[int, int, int], slots: int) -> None:
    saturday = local(*day) - timedelta(days=1)
    rates = SUNDAY.known_rates(saturday, horizon_h=72)
    local_days = Counter((rates.start + SLOT * i).astimezone(AMS).date() for i in range(len(rates)))
    assert local_days[local(*day).date()] == slots
    # the whole local Sunday is priced as Sunday, and nothing else is
    assert int((rates.import_eur_per_kwh == 0.50).sum()) == slots


def test_spring_forward_skips_the_hour_from_two_to_three() -> None:
    rates = NIGHT.known_rates(local(2024, 3, 31, 0, 0), horizon_h=6)
    # 00:45 UTC is 01:45 CET; the next slot, 01:00 UTC, is 03:00 CEST: no 02:30 that night
    at = {(rates.start + SLOT * i).astimezone(AMS).strftime("%H:%M"): i for i in range(24)}
    assert "02:30" not in at
    assert rates.import_eur_per_kwh[at["01:45"]] == 0.30
    assert rates.import_eur_per_kwh[at["03:00"]] == 0.40
    assert int((rates.import_eur_per_kwh == 0.50).sum()) == 0
    assert int((rates.import_eur_per_kwh == 0.40).sum()) == 4


def test_fall_back_prices_the_hour_from_two_to_three_twice() -> None:
    rates = NIGHT.known_rates(local(2024, 10, 27, 0, 0), horizon_h=6)
    first_0230 = datetime(2024, 10, 27, 0, 30, tzinfo=UTC)  # 02:30 CEST
    second_0230 = datetime(2024, 10, 27, 1, 30, tzinfo=UTC)  # 02:30 CET, an hour later
    three = datetime(2024, 10, 27, 2, 0, tzinfo=UTC)  # 03:00 CET
    imp = rates.import_eur_per_kwh
    assert [imp[rates.slot_index(t)] for t in (first_0230, second_0230, three)] == [
        0.50,
        0.50,
        0.40,
    ]
    assert int((imp == 0.50).sum()) == 8
    assert int((imp == 0.40).sum()) == 4


# --------------------------------------------------------------------------------------
# the [tariff] table of the config file
# --------------------------------------------------------------------------------------

TARIFF = """
[tariff]
timezone = "Europe/Amsterdam"
import_eur_per_kwh = 0.30
export_eur_per_kwh = 0.07

[[tariff.periods]]
from = "00:00"
to = "06:00"
import_eur_per_kwh = 0.18
days = ["mon","tue","wed","thu","fri"]

[[tariff.periods]]
from = "22:00"
to = "24:00"
import_eur_per_kwh = -0.02
export_eur_per_kwh = -0.01
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "surplus.toml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    return caught.value.problems


def test_the_tariff_table_is_read(tmp_path: Path) -> None:
    t = load_config(write(tmp_path, TARIFF)).tariff
    assert t is not None
    assert (t.timezone, t.import_eur_per_kwh, t.export_eur_per_kwh) == (AMS, 0.30, 0.07)
    night, evening = t.periods
    assert (night.from_, night.to, night.days) == (0, 6 * 60, tuple(WEEKDAYS))
    assert (evening.from_, evening.to, evening.export_eur_per_kwh) == (22 * 60, 24 * 60, -0.01)
    assert evening.model_dump(by_alias=True)["from"] == "22:00"
    assert price_at(t, local(2024, 6, 10, 3, 0)) == pytest.approx((0.18, 0.07))
    assert price_at(t, local(2024, 6, 15, 3, 0)) == pytest.approx((0.30, 0.07))
    assert price_at(t, local(2024, 6, 15, 23, 0)) == pytest.approx((-0.02, -0.01))


def test_without_a_tariff_table_there_is_no_tariff(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "")).tariff is None


def test_the_timezone_defaults_to_the_machine_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", "Asia/Kathmandu")
    t = load_config(write(tmp_path, "[tariff]\nimport_eur_per_kwh = 0.3\n")).tariff
    assert t is not None
    assert t.timezone == ZoneInfo("Asia/Kathmandu")
    # +05:45: a UTC slot boundary is still a local quarter hour
    assert WEEK.model_copy(update={"timezone": t.timezone}).known_rates(
        datetime(2024, 6, 10, 2, 15, tzinfo=UTC)  # Monday 08:00 in Kathmandu
    ).import_eur_per_kwh[0] == pytest.approx(0.40)


BASE = "[tariff]\nimport_eur_per_kwh = 0.30\n"


def period(lines: str) -> str:
    return f"\n[[tariff.periods]]\n{lines}\n"


NIGHT_0 = period('from = "00:00"\nto = "06:00"\nimport_eur_per_kwh = 0.18')
HHMM = 'must be a time "HH:MM", such as "06:00"'
RANGE = "must be a time from 00:00 to 24:00"
QUARTER = "must be on a quarter hour (:00, :15, :30 or :45): prices change per 15-minute slot"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            '[tariff]\ntimezone = "Mars/Olympus"\nimport_eur_per_kwh = 0.3\n',
            [("tariff.timezone", "unknown time zone; give an IANA name such as Europe/Amsterdam")],
            id="unknown-timezone",
        ),
        pytest.param(
            '[tariff]\ntimezone = 1\nimport_eur_per_kwh = 0.3\n',
            [("tariff.timezone", "must be an IANA time zone name, such as UTC")],
            id="timezone-not-a-string",
        ),
        pytest.param(
            "[tariff]\nexport_eur_per_kwh = 0.07\n",
            [("tariff.import_eur_per_kwh", "Field required")],
            id="base-price-required",
        ),
        pytest.param(
            "[tariff]\nimport_eur_per_kwh = nan\nexport_eur_per_kwh = -inf\n",
            [
                ("tariff.import_eur_per_kwh", "Input should be a finite number"),
                ("tariff.export_eur_per_kwh", "Input should be a finite number"),
            ],
            id="prices-finite",
        ),
        pytest.param(
            BASE + period('from = "6:00"\nto = "07:00"\nimport_eur_per_kwh = 0.1'),
            [("tariff.periods[0].from", HHMM)],
            id="from-not-hh-mm",
        ),
        pytest.param(
            BASE + period('from = 600\nto = "07:00"\nimport_eur_per_kwh = 0.1'),
            [("tariff.periods[0].from", HHMM)],
            id="from-not-a-string",
        ),
        pytest.param(
            BASE + period('from = "06:00"\nto = "24:15"\nimport_eur_per_kwh = 0.1'),
            [("tariff.periods[0].to", RANGE)],
            id="after-24:00",
        ),
        pytest.param(
            BASE + period('from = "06:60"\nto = "25:00"\nimport_eur_per_kwh = 0.1'),
            [("tariff.periods[0].from", RANGE), ("tariff.periods[0].to", RANGE)],
            id="no-such-minute-or-hour",
        ),
        pytest.param(
            BASE + period('from = "06:10"\nto = "07:50"\nimport_eur_per_kwh = 0.1'),
            [("tariff.periods[0].from", QUARTER), ("tariff.periods[0].to", QUARTER)],
            id="off-the-slot",
        ),
        pytest.param(
            BASE + period('from = "24:00"\nto = "06:00"\nimport_eur_per_kwh = 0.1'),
            [("tariff.periods[0].from", "24:00 only ends a period; start at 00:00")],
            id="from-24:00",
        ),
        pytest.param(
            BASE + NIGHT_0 + period('from = "12:00"\nto = "12:00"\nimport_eur_per_kwh = 0.1'),
            [("tariff.periods[1].to", 'must differ from "from"; a whole day is 00:00 to 24:00')],
            id="from-equals-to",
        ),
        pytest.param(
            BASE + period('from = "06:00"\nto = "07:00"'),
            [("tariff.periods[0].import_eur_per_kwh", "Field required")],
            id="period-price-required",
        ),
        pytest.param(
            BASE + period('from = "06:00"\nto = "07:00"\nimport_eur_per_kwh = 0.1\n'
                          "export_eur_per_kwh = inf"),
            [("tariff.periods[0].export_eur_per_kwh", "Input should be a finite number")],
            id="period-export-finite",
        ),
        pytest.param(
            BASE + period('from = "06:00"\nto = "07:00"\nimport_eur_per_kwh = 0.1\ndays = []'),
            [("tariff.periods[0].days", "give at least one day, or leave days out for every day")],
            id="no-days",
        ),
        pytest.param(
            BASE + period('from = "06:00"\nto = "07:00"\nimport_eur_per_kwh = 0.1\n'
                          'days = ["mon", "Tuesday"]'),
            [("tariff.periods[0].days[1]",
              "Input should be 'mon', 'tue', 'wed', 'thu', 'fri', 'sat' or 'sun'")],
            id="unknown-day",
        ),
        pytest.param(
            BASE + period('from = "06:00"\nuntil = "07:00"\nto = "07:00"\n'
                          "import_eur_per_kwh = 0.1"),
            [("tariff.periods[0].until", "unknown key")],
            id="unknown-key",
        ),
        pytest.param(
            BASE + "currency = 'EUR'\n",
            [("tariff.currency", "unknown key")],
            id="unknown-tariff-key",
        ),
        pytest.param(
            BASE + NIGHT_0 + period('from = "05:00"\nto = "07:00"\nimport_eur_per_kwh = 0.1\n'
                                    'days = ["tue", "sun"]'),
            [("tariff.periods[1]", "overlaps periods[0]: both cover tue 05:00")],
            id="overlap",
        ),
        pytest.param(
            BASE + period('from = "22:00"\nto = "06:00"\nimport_eur_per_kwh = 0.1\n'
                          'days = ["fri"]')
            + NIGHT_0.replace("0.18", "0.18\ndays = ['mon']")
            + period('from = "00:00"\nto = "08:00"\nimport_eur_per_kwh = 0.1\ndays = ["sat"]'),
            [("tariff.periods[2]", "overlaps periods[0]: both cover sat 00:00")],
            id="overlap-after-midnight",
        ),
    ],
)  # fmt: skip
def test_each_problem_is_named_by_its_key_path(
    tmp_path: Path, text: str, expected: list[tuple[str, str]]
) -> None:
    assert problems(tmp_path, text) == expected


def test_touching_periods_and_a_wrap_beside_another_day_are_no_overlap(tmp_path: Path) -> None:
    text = (
        BASE
        + period('from = "22:00"\nto = "06:00"\nimport_eur_per_kwh = 0.1\ndays = ["fri"]')
        + period('from = "06:00"\nto = "22:00"\nimport_eur_per_kwh = 0.2\ndays = ["sat"]')
        + period('from = "00:00"\nto = "06:00"\nimport_eur_per_kwh = 0.3\ndays = ["fri"]')
    )
    t = load_config(write(tmp_path, text)).tariff
    assert t is not None
    assert len(t.periods) == 3


def test_overlaps_are_named_each_once_the_periods_themselves_are_valid(tmp_path: Path) -> None:
    assert problems(tmp_path, BASE + NIGHT_0 + NIGHT_0 + NIGHT_0) == [
        ("tariff.periods[1]", "overlaps periods[0]: both cover mon 00:00"),
        ("tariff.periods[2]", "overlaps periods[0]: both cover mon 00:00"),
    ]
    text = BASE + NIGHT_0 + NIGHT_0 + NIGHT_0 + "export_eur_per_kwh = nan\n"
    assert problems(tmp_path, text) == [
        ("tariff.periods[2].export_eur_per_kwh", "Input should be a finite number"),
    ]


# --------------------------------------------------------------------------------------
# the engine plans on these prices
# --------------------------------------------------------------------------------------


def test_decide_plans_the_battery_on_the_tariff() -> None:
    t = tariff(
        {"from": "00:00", "to": "06:00", "import_eur_per_kwh": 0.10},
        import_eur_per_kwh=0.40,
        export_eur_per_kwh=0.05,
    )
    now = local(2024, 6, 11, 1, 7)
    rates = t.known_rates(now)
    snapshot = SiteSnapshot(
        at=now,
        grid=MeterReading(500.0, now),
        pv=MeterReading(0.0, now),
        battery=BatteryState(30.0, 0.0, 13_500.0, now),
        rates=rates,
    )
    settings = SiteSettings()
    assert settings.battery.controllable

    decision = decide(snapshot, settings, ControlState(), now)

    plan = decision.state.plan
    assert plan is not None
    assert plan.start == rates.start
    assert any(isinstance(c, BatteryCommand) for c in decision.commands)
    assert len(plan.battery_charge_w) == len(rates)
    # it buys in the cheap night and spends in the dear day, never the other way round
    cheap = rates.import_eur_per_kwh == 0.10
    assert plan.battery_charge_w[cheap].sum() > 0
    assert plan.battery_charge_w[~cheap].max() == pytest.approx(0.0, abs=1.0)
    assert plan.battery_discharge_w[cheap].max() == pytest.approx(0.0, abs=1.0)
    assert plan.battery_discharge_w[~cheap].sum() > 0


def test_tariff_problems_come_with_those_across_tables(tmp_path: Path) -> None:
    text = BASE + NIGHT_0 + NIGHT_0 + '[[loadpoints]]\nname = "a"\n[[loadpoints]]\nname = "a"\n'
    assert problems(tmp_path, text) == [
        ("tariff.periods[1]", "overlaps periods[0]: both cover mon 00:00"),
        ("loadpoints[1].name", "loadpoints[0] has this name already"),
    ]
