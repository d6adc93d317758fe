"""``surplus demo``: the service against a simulated Powerwall site, on this machine alone.

The world: a day running ``speed`` times faster than real time from now on, with solar of a
clear-sky shape (5 kW peak, 06:00-20:00 local time) under a slowly drifting cloud factor, and
a household load with morning and evening peaks and appliances cycling. The simulator's own
battery physics move the state of charge. Its random password goes into the demo's vault and
the config file names it (``password_secret``); it is never written in plain text.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from surplus.config import load_config
from surplus.integrations.powerwall.simulator import (
    PowerwallSimulator,
    ServedSimulator,
    running_simulator,
)
from surplus.runtime.datadir import VAULT_FILE, open_vault
from surplus.runtime.service import Service, until_signalled

__all__ = [
    "DEVICE",
    "Demo",
    "demo_simulator",
    "load_w",
    "run_demo",
    "solar_w",
    "speed_clock",
    "write_demo_files",
]

DEVICE = "gateway"  # the simulated gateway's name in the config, the store and the API
PASSWORD_SECRET = f"{DEVICE}.password"
POLL_INTERVAL_S = 2.0
CONFIG_FILE = "surplus.toml"

SOLAR_PEAK_W = 5_000.0
SUNRISE_H, SUNSET_H = 6.0, 20.0


@dataclass(frozen=True, slots=True)
class Demo:
    """A running demo: where its API answers and where its files are."""

    api_url: str
    data_dir: Path
    config_file: Path
    speed: float


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


def speed_clock(speed: float) -> Callable[[], datetime]:
    """The simulated time: now, moving ``speed`` times faster than real time."""
    start, started = datetime.now(UTC), time.monotonic()
    return lambda: start + timedelta(seconds=(time.monotonic() - started) * speed)


def demo_simulator(password: str, speed: float) -> PowerwallSimulator:
    """A Powerwall gateway over the demo's day."""
    return PowerwallSimulator(password, solar_w=solar_w, load_w=load_w, clock=speed_clock(speed))


def write_demo_files(
    data_dir: Path, served: ServedSimulator, password: str, poll_s: float = POLL_INTERVAL_S
) -> Path:
    """Store ``password`` in the vault of ``data_dir`` and write a config file naming it, the
    gateway polled every ``poll_s``; returns the config file's path."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    open_vault(data_dir).set(PASSWORD_SECRET, password)
    path = data_dir / CONFIG_FILE
    path.write_text(
        f"""# Written by `surplus demo` for its simulated gateway (rewritten at each start).

[service]
data_dir = {_toml(str(data_dir))}

[[devices]]
type = "powerwall"
name = "{DEVICE}"
host = {_toml(served.url)}
password_secret = "{PASSWORD_SECRET}"  # in {VAULT_FILE} beside this file
fingerprint = "{served.fingerprint}"
poll_interval_s = {poll_s}
timeout_s = 5.0

# a time-of-use tariff: the planner charges the battery in cheap hours for dear ones
[tariff]
import_eur_per_kwh = 0.30
export_eur_per_kwh = 0.07

[[tariff.periods]]
from = "00:00"
to = "06:00"
import_eur_per_kwh = 0.18

[[tariff.periods]]
from = "17:00"
to = "21:00"
import_eur_per_kwh = 0.42

[[loadpoints]]
name = "carport"
mode = "solar"
"""
    )
    return path


def _toml(text: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, once non-ASCII is left as it is."""
    return json.dumps(text, ensure_ascii=False)


async def run_demo(
    data_dir: Path,
    *,
    speed: float,
    poll_s: float,
    port: int,
    on_ready: Callable[[Demo], None],
) -> None:
    """Serve the simulator and run the service against it, polling every ``poll_s``, until
    SIGINT or SIGTERM."""
    password = secrets.token_urlsafe(12)
    async with running_simulator(demo_simulator(password, speed)) as served:
        config_file = write_demo_files(data_dir, served, password, poll_s)
        service = Service(
            load_config(config_file),
            api_port=port,
            on_ready=lambda url: on_ready(Demo(url, data_dir, config_file, speed)),
        )
        # installed after the simulator started: its server sets handlers of its own
        await until_signalled(service.run())
