"""The demo's simulated day: solar and household load by local time of day, and a clock
that runs faster than real time. Every simulated site of ``surplus demo`` and ``surplus sim
push-sender`` lives this same day.

Solar has a clear-sky shape (5 kW peak, 06:00-20:00 local time) under a slowly drifting
cloud factor; the household has a base load, peaks at breakfast and dinner, a fridge and
small appliances cycling.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

__all__ = ["load_w", "solar_w", "speed_clock"]

SOLAR_PEAK_W = 5_000.0
SUNRISE_H, SUNSET_H = 6.0, 20.0


def _hours(t: datetime) -> tuple[float, float]:
    """The local hour of day of ``t``, and the hours since the epoch (for slow drifts)."""
    local = t.astimezone()
    day_h = local.hour + local.minute / 60.0 + local.second / 3600.0
    return day_h, t.timestamp() / 3600.0


def solar_w(t: datetime) -> float:
    """Clear-sky-like production times a cloud factor drifting between 0.3 and 1."""
    day_h, abs_h = _hours(t)
    x = (day_h - SUNRISE_H) / (SUNSET_H - SUNRISE_H)
    if not 0.0 < x < 1.0:
        return 0.0
    clouds = 0.65 + 0.35 * (
        0.6 * math.sin(2 * math.pi * abs_h / 2.7 + 1.0)
        + 0.4 * math.sin(2 * math.pi * abs_h / 0.9 + 2.0)
    )
    return SOLAR_PEAK_W * math.pow(math.sin(math.pi * x), 1.5) * clouds


def load_w(t: datetime) -> float:
    """A household: base load, peaks at breakfast and dinner, a fridge and small appliances."""
    day_h, abs_h = _hours(t)

    def peak(centre_h: float, width_h: float, height_w: float) -> float:
        d = (day_h - centre_h + 12.0) % 24.0 - 12.0  # distance across midnight
        return height_w * math.exp(-0.5 * (d / width_h) ** 2)

    fridge = 90.0 if math.sin(2 * math.pi * abs_h / 0.75) > 0 else 0.0
    small = 120.0 * (1 + math.sin(2 * math.pi * abs_h * 3.1)) / 2
    return (
        300.0
        + peak(7.5, 0.8, 1_500.0)
        + peak(13.0, 1.5, 400.0)
        + peak(19.0, 1.3, 2_200.0)
        + fridge
        + small
    )


def speed_clock(speed: float, start: datetime | None = None) -> Callable[[], datetime]:
    """The simulated time: ``start`` (default: now) at this call, moving ``speed`` times
    faster than real time."""
    begun, started = start or datetime.now(UTC), time.monotonic()
    return lambda: begun + timedelta(seconds=(time.monotonic() - started) * speed)
