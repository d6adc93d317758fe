"""Charge HQ push payloads: validation naming the field, conversion to a reading, every flag."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from surplus.integrations.push.models import (
    DEFAULT_CAPACITY_WH,
    Flag,
    PayloadError,
    PushPayload,
    parse_payload,
    to_reading,
)
from surplus.store.timestamps import to_ms

NOW = datetime(2024, 6, 10, 12, 0, tzinfo=UTC)
KEY = "k" * 43
EXAMPLE: dict[str, Any] = {  # Charge HQ's own example
    "apiKey": KEY,
    "tsms": to_ms(NOW - timedelta(seconds=5)),
    "siteMeters": {
        "production_kw": 4.2,
        "net_import_kw": -2.9,
        "consumption_kw": 1.3,
        "imported_kwh": 10234.5,
        "exported_kwh": 8123.4,
        "battery_discharge_kw": 0.0,
        "battery_soc": 0.55,
        "battery_energy_kwh": 7.4,
    },
}


def convert(data: dict[str, Any]) -> tuple[Any, frozenset[Flag]]:
    return to_reading(parse_payload(data), NOW)


def meters(**fields: float) -> dict[str, Any]:
    return {"apiKey": KEY, "siteMeters": fields}


def test_the_example_converts_to_w_and_percent_stamped_with_tsms() -> None:
    reading, flags = convert(EXAMPLE)
    at = NOW - timedelta(seconds=5)
    assert flags == frozenset()
    assert reading.at == at
    assert reading.grid.power_w == pytest.approx(-2900.0)
    assert reading.pv.power_w == pytest.approx(4200.0)
    assert reading.load.power_w == pytest.approx(1300.0)
    assert {reading.grid.at, reading.pv.at, reading.load.at, reading.battery.at} == {at}
    battery = reading.battery
    assert battery.soc_pct == pytest.approx(55.0)
    assert battery.power_w == 0.0
    assert battery.capacity_wh == pytest.approx(7400 / 0.55)


def test_unknown_keys_are_tolerated_anywhere() -> None:
    data = {**EXAMPLE, "source": "my-script", "version": 3}
    data["siteMeters"] = {**EXAMPLE["siteMeters"], "grid_voltage": 231.0, "phases": [1, 2]}
    reading, flags = convert(data)
    assert flags == frozenset()
    assert reading.load.power_w == pytest.approx(1300.0)
    assert "source" not in parse_payload(data).redacted()


def test_signs_follow_charge_hq_import_and_discharge_positive() -> None:
    night = {"production_kw": 0.0, "net_import_kw": 1.0, "consumption_kw": 3.0}
    reading, _ = convert(meters(**night, battery_discharge_kw=2.0, battery_soc=0.4))
    assert reading.grid.power_w == pytest.approx(1000.0)
    assert reading.battery.power_w == pytest.approx(2000.0)
    noon = {"production_kw": 5.0, "net_import_kw": -0.5, "consumption_kw": 0.5}
    reading, flags = convert(meters(**noon, battery_discharge_kw=-4.0, battery_soc=0.4))
    assert reading.grid.power_w == pytest.approx(-500.0)
    assert reading.battery.power_w == pytest.approx(-4000.0)
    assert flags == frozenset()


def test_missing_consumption_is_derived_from_the_balance() -> None:
    reading, flags = convert(
        meters(production_kw=3.0, net_import_kw=-1.0, battery_discharge_kw=-0.5, battery_soc=0.5)
    )
    assert reading.load.power_w == pytest.approx(1500.0)
    assert flags == frozenset()


def test_missing_net_import_is_derived_from_consumption() -> None:
    reading, flags = convert(meters(production_kw=3.0, consumption_kw=1.0))
    assert reading.grid.power_w == pytest.approx(-2000.0)
    assert flags == frozenset()


def test_missing_production_is_zero_and_no_battery_field_means_no_battery() -> None:
    reading, flags = convert(meters(net_import_kw=0.8, consumption_kw=0.8))
    assert reading.pv.power_w == 0.0
    assert reading.battery is None
    assert flags == frozenset()


def test_a_balance_violation_is_flagged_and_kept_as_sent() -> None:
    reading, flags = convert(meters(production_kw=2.0, net_import_kw=1.0, consumption_kw=1.0))
    assert flags == {Flag.BALANCE}
    assert (reading.pv.power_w, reading.grid.power_w, reading.load.power_w) == pytest.approx(
        (2000.0, 1000.0, 1000.0)
    )


@pytest.mark.parametrize(
    ("load_kw", "flagged"), [(1.04, False), (0.96, False), (1.06, True), (0.94, True)]
)
def test_the_balance_tolerance_is_50_w(load_kw: float, flagged: bool) -> None:
    sides = {"production_kw": 0.5, "net_import_kw": 0.7, "battery_discharge_kw": -0.2}
    _, flags = convert(meters(**sides, consumption_kw=load_kw, battery_soc=0.5))
    assert (Flag.BALANCE in flags) is flagged


def test_a_soc_above_1_is_flagged_and_read_as_a_percentage() -> None:
    data = {**EXAMPLE, "siteMeters": {**EXAMPLE["siteMeters"], "battery_soc": 55.0}}
    reading, flags = convert(data)
    assert flags == {Flag.SOC_PERCENT}
    assert reading.battery.soc_pct == pytest.approx(55.0)
    assert reading.battery.capacity_wh == pytest.approx(7400 / 0.55)


def test_a_soc_of_exactly_1_is_a_full_battery() -> None:
    reading, flags = convert(
        meters(net_import_kw=0.0, consumption_kw=0.0, battery_soc=1.0, battery_discharge_kw=0.0)
    )
    assert reading.battery.soc_pct == 100.0
    assert flags == frozenset()


def test_powers_in_watts_are_flagged() -> None:
    reading, flags = convert(meters(production_kw=4200, net_import_kw=-2900, consumption_kw=1300))
    assert flags == {Flag.WATTS}
    assert reading.pv.power_w == pytest.approx(4.2e6)  # kept as sent


def test_capacity_falls_back_when_it_cannot_be_derived() -> None:
    for soc, energy in ((0.5, None), (0.01, 0.1), (0.5, 0.0)):
        fields = {"net_import_kw": 0.0, "consumption_kw": 0.0, "battery_soc": soc}
        if energy is not None:
            fields["battery_energy_kwh"] = energy
        reading, _ = convert(meters(**fields))
        assert reading.battery.capacity_wh == DEFAULT_CAPACITY_WH
    reading, _ = to_reading(
        parse_payload(meters(net_import_kw=0.0, consumption_kw=0.0, battery_soc=0.5)),
        NOW,
        default_capacity_wh=9_000.0,
    )
    assert reading is not None
    assert reading.battery is not None
    assert reading.battery.capacity_wh == 9_000.0


@pytest.mark.parametrize(
    ("offset", "flag"),
    [
        (timedelta(seconds=59), None),
        (timedelta(seconds=61), Flag.FUTURE_TIMESTAMP),
        (-timedelta(minutes=14, seconds=59), None),
        (-timedelta(minutes=15, seconds=1), Flag.OLD_TIMESTAMP),
    ],
)
def test_tsms_is_used_when_plausible_else_flagged_and_replaced(
    offset: timedelta, flag: Flag | None
) -> None:
    sent = NOW + offset
    reading, flags = convert({**meters(net_import_kw=1.0), "tsms": to_ms(sent)})
    if flag is None:
        assert flags == frozenset()
        assert reading.at == sent
    else:
        assert flags == {flag}
        assert reading.at == NOW


def test_without_tsms_the_receive_time_stamps_the_reading() -> None:
    reading, _ = convert(meters(net_import_kw=1.0))
    assert reading.at == NOW


def test_tsms_in_seconds_by_mistake_is_old() -> None:
    _, flags = convert({**meters(net_import_kw=1.0), "tsms": to_ms(NOW) // 1000})
    assert flags == {Flag.OLD_TIMESTAMP}


def test_an_error_payload_gives_no_reading_and_the_error_flag() -> None:
    reading, flags = convert({"apiKey": KEY, "error": "inverter offline"})
    assert reading is None
    assert flags == {Flag.ERROR}
    future = {"apiKey": KEY, "error": "x", "tsms": to_ms(NOW + timedelta(hours=1))}
    assert convert(future) == (None, {Flag.ERROR, Flag.FUTURE_TIMESTAMP})
    # meters sent beside an error are not trusted, and need not be complete
    both = {"apiKey": KEY, "error": "meter lost", "siteMeters": {"production_kw": 1.0}}
    assert convert(both) == (None, {Flag.ERROR})


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ([1, 2], None),
        ("text", None),
        ({"apiKey": KEY}, "siteMeters"),
        ({"apiKey": KEY, "siteMeters": {"production_kw": 1.0}}, "siteMeters.net_import_kw"),
        ({"apiKey": KEY, "siteMeters": "4.2"}, "siteMeters"),
        (meters(net_import_kw="lots"), "siteMeters.net_import_kw"),  # type: ignore[arg-type]
        (meters(net_import_kw=1.0, battery_discharge_kw=0.5), "siteMeters.battery_soc"),
        (meters(net_import_kw=1.0, battery_soc=-0.1), "siteMeters.battery_soc"),
        (meters(net_import_kw=1.0, battery_soc=101.0), "siteMeters.battery_soc"),
        ({**meters(net_import_kw=1.0), "tsms": -1}, "tsms"),
        ({**meters(net_import_kw=1.0), "tsms": "soon"}, "tsms"),
        ({**meters(net_import_kw=1.0), "tsms": 10**20}, "tsms"),
        ({"apiKey": KEY, "error": 42}, "error"),
        ({"apiKey": KEY, "error": "x" * 1001}, "error"),
        ({"apiKey": 12345, "siteMeters": {"net_import_kw": 1.0}}, "apiKey"),
    ],
)
def test_a_bad_payload_names_its_field(data: object, field: str | None) -> None:
    with pytest.raises(PayloadError) as refused:
        parse_payload(data)
    assert refused.value.field == field
    assert refused.value.message


def test_infinite_and_nan_powers_are_refused() -> None:
    for value in (float("inf"), float("nan")):
        with pytest.raises(PayloadError) as refused:
            parse_payload(meters(net_import_kw=value))
        assert refused.value.field == "siteMeters.net_import_kw"


def test_numbers_as_strings_are_read_like_charge_hq_scripts_send_them() -> None:
    reading, _ = convert({"apiKey": KEY, "siteMeters": {"net_import_kw": "0.75"}})
    assert reading.grid.power_w == pytest.approx(750.0)


def test_the_key_is_never_in_the_repr_the_error_or_the_stored_form() -> None:
    payload = parse_payload({**EXAMPLE, "siteId": "legacy-" + KEY})
    assert KEY not in repr(payload)
    assert KEY not in str(payload)
    stored = payload.redacted()
    assert "apiKey" not in stored
    assert "siteId" not in stored
    assert stored["siteMeters"]["battery_soc"] == 0.55
    assert stored["tsms"] == EXAMPLE["tsms"]
    with pytest.raises(PayloadError) as refused:
        parse_payload({"apiKey": KEY, "siteMeters": {"net_import_kw": KEY}})
    assert KEY not in str(refused.value)


def test_the_legacy_site_id_is_read_as_the_key() -> None:
    payload = PushPayload.model_validate({"siteId": KEY, "siteMeters": {"net_import_kw": 1.0}})
    assert payload.site_id == KEY
    assert payload.api_key is None
