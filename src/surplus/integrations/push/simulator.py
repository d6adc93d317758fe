"""A simulated site pushing its meters like a Charge HQ script (``surplus sim push-sender``).

The site lives the demo's day (``surplus.sim.day.solar_w`` and ``load_w``) with, unless left
out, a home battery (``sim.devices.HomeBattery`` in self-consumption) that takes the surplus
and covers the deficit. ``SimulatedSite.meters`` steps it to a simulated time and gives its
``siteMeters``, rounded to the watt so that the balance holds as sent; ``payload`` wraps them
in the body of one push, with the faults asked for:

    bad-sign     net_import_kw with its sign flipped
    kw-as-w      the powers in W, in the kW fields
    soc-percent  battery_soc from 0 to 100 instead of a fraction
    missing-key  no apiKey
    outage       {"apiKey": "…", "error": "inverter offline"} instead of the meters

No ``tsms`` is sent: the simulated clock runs apart from the real one, and Charge HQ asks for
``tsms`` only where the source's own time can be trusted.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime

from surplus.control.state import BatteryMode
from surplus.sim.day import load_w, solar_w
from surplus.sim.devices import HomeBattery

__all__ = ["FAULTS", "OUTAGE_ERROR", "SimulatedSite", "payload"]

FAULTS = ("bad-sign", "kw-as-w", "soc-percent", "missing-key", "outage")
OUTAGE_ERROR = "inverter offline"
_POWERS = ("production_kw", "net_import_kw", "consumption_kw", "battery_discharge_kw")


@dataclass(slots=True)
class SimulatedSite:
    """The site's physics; ``step_s`` (simulated seconds between pushes) sizes the battery's
    limits for the step ahead."""

    battery: HomeBattery | None
    step_s: float
    house_w: Callable[[datetime], float] = load_w  # the load behind the meter
    imported_kwh: float = 0.0
    exported_kwh: float = 0.0
    _last: datetime | None = field(default=None, init=False)
    _battery_w: float = field(default=0.0, init=False)
    _grid_w: float = field(default=0.0, init=False)

    def meters(self, at: datetime) -> dict[str, float]:
        """Step to ``at`` (the powers of the last step held until then); the meters there."""
        dt_s = 0.0 if self._last is None else max(0.0, (at - self._last).total_seconds())
        self._last = at
        self.imported_kwh += max(self._grid_w, 0.0) * dt_s / 3.6e6
        self.exported_kwh += max(-self._grid_w, 0.0) * dt_s / 3.6e6
        solar, load = solar_w(at), self.house_w(at)
        production_kw, consumption_kw = round(solar / 1000, 3), round(load / 1000, 3)
        meters = {
            "production_kw": production_kw,
            "consumption_kw": consumption_kw,
            "imported_kwh": round(self.imported_kwh, 3),
            "exported_kwh": round(self.exported_kwh, 3),
        }
        battery_kw = 0.0
        if self.battery is not None:
            self.battery.apply(self._battery_w, dt_s)
            self._battery_w = self.battery.dispatch(
                load - solar, BatteryMode.NORMAL, 0.0, max(self.step_s, 1.0)
            )
            battery_kw = round(self._battery_w / 1000, 3)
            meters |= {
                "battery_discharge_kw": battery_kw,
                "battery_soc": round(self.battery.soc_pct / 100, 4),
                "battery_energy_kwh": round(self.battery.energy_wh / 1000, 3),
            }
        meters["net_import_kw"] = round(consumption_kw - production_kw - battery_kw, 3)
        self._grid_w = meters["net_import_kw"] * 1000
        return meters


def payload(
    meters: dict[str, float], key: str | None, faults: Collection[str]
) -> dict[str, object]:
    """The body of one push of ``meters`` with ``faults`` (some of ``FAULTS``)."""
    body: dict[str, object] = {}
    if key is not None and "missing-key" not in faults:
        body["apiKey"] = key
    if "outage" in faults:
        body["error"] = OUTAGE_ERROR
        return body
    sent = dict(meters)
    if "bad-sign" in faults:
        sent["net_import_kw"] = -sent["net_import_kw"]
    if "kw-as-w" in faults:
        sent |= {name: round(sent[name] * 1000, 3) for name in _POWERS if name in sent}
    if "soc-percent" in faults and "battery_soc" in sent:
        sent["battery_soc"] = round(sent["battery_soc"] * 100, 2)
    body["siteMeters"] = sent
    return body
