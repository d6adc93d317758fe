"""The charger faults the simulator can reproduce, one switch per item of reference C.6.

A quirk is named on the command line as ``NAME`` or ``NAME=ARG``:
``profile_ignored=ChargePointMaxProfile,TxProfile`` (default: TxDefaultProfile) or
``no_redial=600`` (redial only after 600 s; plain ``no_redial`` never does).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["QUIRKS", "Quirks"]

QUIRKS: dict[str, str] = {
    "profile_ignored": "accepts a charging profile of these purposes but does not apply it"
    " (=PURPOSE,...; default TxDefaultProfile)",
    "rate_unit_short": "ChargingScheduleAllowedChargingRateUnit says A/W, not Current/Power",
    "sparse_measurands": "MeterValuesSampledData takes any measurand, but only energy and"
    " power are ever reported",
    "config_reboot": "reboots when asked for its whole configuration while more than four"
    " measurands are enabled (ABB Terra AC)",
    "kwh_values": "energy in kWh and power in kW",
    "odd_strings": "values with blanks, decimal commas and units glued on",
    "voltage_l1": "voltage labelled L1 instead of L1-N",
    "register_resets": "the energy register restarts at zero every session (Grizzl-E)",
    "missing_timestamps": "meter values without a timestamp (breaks the schema)",
    "out_of_order": "each meter values message repeats the previous, older sample last",
    "late_meter_values": "the closing meter values arrive after StopTransaction (Ocular)",
    "stuck_finishing": "stays Finishing after a stop, refusing RemoteStart until unplugged",
    "invalid_json": "sends a broken frame before every Heartbeat (Grizzl-E 5.x)",
    "schema_violations": "a serial number longer than the schema allows",
    "no_redial": "does not redial after a dropped connection (=S: only after S seconds)",
    "reject_connector0_availability": "rejects ChangeAvailability on connector 0",
}
PURPOSES = ("ChargePointMaxProfile", "TxDefaultProfile", "TxProfile")


@dataclass(frozen=True, slots=True)
class Quirks:
    active: frozenset[str] = frozenset()
    ignored_purposes: frozenset[str] = frozenset()
    redial_after_s: float | None = None  # with no_redial: None never

    @classmethod
    def parse(cls, specs: Iterable[str]) -> Quirks:
        """Quirks from ``NAME`` or ``NAME=ARG`` strings; ValueError names a bad one."""
        active: set[str] = set()
        ignored: frozenset[str] = frozenset()
        redial: float | None = None
        for spec in specs:
            name, _, arg = spec.strip().partition("=")
            if name not in QUIRKS:
                raise ValueError(f"unknown quirk {name!r}; choose from {', '.join(QUIRKS)}")
            active.add(name)
            if name == "profile_ignored":
                ignored = frozenset(p.strip() for p in (arg or "TxDefaultProfile").split(","))
                if not ignored <= set(PURPOSES):
                    raise ValueError(f"profile_ignored takes purposes of {', '.join(PURPOSES)}")
            elif name == "no_redial" and arg:
                try:
                    redial = float(arg)
                except ValueError:
                    raise ValueError("no_redial takes a number of seconds") from None
            elif arg:
                raise ValueError(f"quirk {name!r} takes no argument")
        return cls(frozenset(active), ignored, redial)

    def __contains__(self, name: object) -> bool:
        return name in self.active
