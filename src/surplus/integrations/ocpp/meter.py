"""Reading a charger's MeterValues: every measurand, unit and phase of OCPP 1.6, made uniform.

Values arrive as strings and chargers get them wrong (reference C.6): kWh instead of Wh,
blanks around the number, a decimal comma, a unit glued to the number, unknown units in
odd case, ``L1`` where ``L1-N`` is meant, missing or unreadable timestamps. Each sampled
value becomes a ``Sample`` in base units (Wh, W, A, V, Percent, Celsius, Hz); one that
cannot be read is counted and dropped, never guessed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["MEASURANDS", "Sample", "parse_meter_values", "parse_number", "parse_time"]

DEFAULT_MEASURAND = "Energy.Active.Import.Register"

MEASURANDS = (
    "Energy.Active.Export.Register",
    "Energy.Active.Import.Register",
    "Energy.Reactive.Export.Register",
    "Energy.Reactive.Import.Register",
    "Energy.Active.Export.Interval",
    "Energy.Active.Import.Interval",
    "Energy.Reactive.Export.Interval",
    "Energy.Reactive.Import.Interval",
    "Power.Active.Export",
    "Power.Active.Import",
    "Power.Offered",
    "Power.Reactive.Export",
    "Power.Reactive.Import",
    "Power.Factor",
    "Current.Import",
    "Current.Export",
    "Current.Offered",
    "Voltage",
    "Frequency",
    "Temperature",
    "SoC",
    "RPM",
)
_BY_LOWER = {m.lower(): m for m in MEASURANDS}

# unit (lowercase) -> (base unit, factor); temperatures are converted apart
_UNITS: Mapping[str, tuple[str, float]] = {
    "wh": ("Wh", 1.0),
    "kwh": ("Wh", 1000.0),
    "mwh": ("Wh", 1e6),
    "varh": ("varh", 1.0),
    "kvarh": ("varh", 1000.0),
    "w": ("W", 1.0),
    "kw": ("W", 1000.0),
    "va": ("VA", 1.0),
    "kva": ("VA", 1000.0),
    "var": ("var", 1.0),
    "kvar": ("var", 1000.0),
    "a": ("A", 1.0),
    "ma": ("A", 0.001),
    "v": ("V", 1.0),
    "kv": ("V", 1000.0),
    "percent": ("Percent", 1.0),
    "%": ("Percent", 1.0),
    "celsius": ("Celsius", 1.0),
    "°c": ("Celsius", 1.0),
    "c": ("Celsius", 1.0),
    "hz": ("Hz", 1.0),
}
_KELVIN = ("k", "kelvin")
_FAHRENHEIT = ("fahrenheit", "°f", "f")


def _default_unit(measurand: str) -> str:
    if measurand.startswith("Energy.Reactive"):
        return "varh"
    if measurand.startswith("Energy"):
        return "Wh"
    if measurand.startswith("Power.Reactive"):
        return "var"
    if measurand in ("Power.Factor", "RPM"):
        return ""
    if measurand.startswith("Power"):
        return "W"
    if measurand.startswith("Current"):
        return "A"
    return {"Voltage": "V", "Frequency": "Hz", "Temperature": "Celsius", "SoC": "Percent"}.get(
        measurand, ""
    )


@dataclass(frozen=True, slots=True)
class Sample:
    """One sampled value in base units. ``phase`` is L1, L2, L3, N or a pair such as L1-L2
    (``L1-N`` is L1), None for the total; ``at`` is the charger's time for it."""

    measurand: str
    value: float
    unit: str
    phase: str | None
    context: str
    location: str
    at: datetime


_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def parse_number(text: object) -> tuple[float, str] | None:
    """The number in ``text`` and any unit glued after it ("7.4 kW" -> (7.4, "kw")), or None."""
    if isinstance(text, bool):
        return None
    if isinstance(text, int | float):
        return (float(text), "") if math.isfinite(text) else None
    if not isinstance(text, str):
        return None
    s = "".join(text.split())
    if "," in s:
        # a decimal comma, unless a point is there too (then the comma groups thousands)
        s = s.replace(",", "") if "." in s else s.replace(",", ".")
    match = _NUMBER.match(s)
    if match is None:
        return None
    value = float(match.group())
    if not math.isfinite(value):
        return None
    return value, s[match.end() :].lower()


def parse_time(text: object, fallback: datetime) -> datetime:
    """An OCPP timestamp (ISO 8601; naive means UTC), or ``fallback`` when missing or odd."""
    if not isinstance(text, str):
        return fallback
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        return fallback
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _phase(text: object) -> str | None:
    if not isinstance(text, str) or not text.strip():
        return None
    phase = text.strip().upper()
    return phase.removesuffix("-N") if phase in ("L1-N", "L2-N", "L3-N") else phase


def _scaled(value: float, unit: str) -> tuple[float, str] | None:
    if unit in _UNITS:
        base, factor = _UNITS[unit]
        return value * factor, base
    if unit in _KELVIN:
        return value - 273.15, "Celsius"
    if unit in _FAHRENHEIT:
        return (value - 32.0) * 5.0 / 9.0, "Celsius"
    return None


def _sample(raw: Mapping[str, object], at: datetime) -> Sample | None:
    measurand_text = raw.get("measurand")
    if measurand_text is None:
        measurand = DEFAULT_MEASURAND
    elif isinstance(measurand_text, str) and measurand_text.strip().lower() in _BY_LOWER:
        measurand = _BY_LOWER[measurand_text.strip().lower()]
    else:
        return None
    number = parse_number(raw.get("value"))
    if number is None:
        return None
    value, glued = number
    unit_text = raw.get("unit")
    unit = glued or (unit_text.strip().lower() if isinstance(unit_text, str) else "")
    unit = unit or _default_unit(measurand).lower()
    if unit:
        scaled = _scaled(value, unit)
        if scaled is None:
            return None
        value, unit = scaled
    context = raw.get("context")
    location = raw.get("location")
    return Sample(
        measurand,
        value,
        unit,
        _phase(raw.get("phase")),
        context.strip() if isinstance(context, str) else "Sample.Periodic",
        location.strip() if isinstance(location, str) else "Outlet",
        at,
    )


def parse_meter_values(meter_value: object, received_at: datetime) -> tuple[list[Sample], int]:
    """The readable samples of a MeterValues ``meterValue`` list (snake_case keys, as the
    library hands them over) and how many sampled values could not be read."""
    samples: list[Sample] = []
    unreadable = 0
    for entry in meter_value if isinstance(meter_value, list) else []:
        if not isinstance(entry, Mapping):
            unreadable += 1
            continue
        at = parse_time(entry.get("timestamp"), received_at)
        values = entry.get("sampled_value")
        for raw in values if isinstance(values, list) else []:
            sample = _sample(raw, at) if isinstance(raw, Mapping) else None
            if sample is None:
                unreadable += 1
            else:
                samples.append(sample)
    return samples, unreadable
