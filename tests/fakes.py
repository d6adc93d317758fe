"""Fakes shared by the control tests: a charger that does what it was last told."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from surplus.control.state import ChargerCommand
from surplus.domain.readings import ChargerState, ChargerStatus

VOLTS = 230.0


@dataclass
class Evse:
    """A charger following the engine's commands; a plugged-in car draws what is offered."""

    enabled: bool = False
    amps: float = 6.0
    phases: int = 3
    plugged: bool = True

    def reading(self, at: datetime) -> ChargerState:
        if not self.plugged:
            status = ChargerStatus.DISCONNECTED
        elif self.enabled:
            status = ChargerStatus.CHARGING
        else:
            status = ChargerStatus.CONNECTED
        power = self.amps * self.phases * VOLTS if status == ChargerStatus.CHARGING else 0.0
        return ChargerState(status, self.enabled, self.amps, power, self.phases, at)

    def apply(self, cmd: ChargerCommand) -> None:
        if cmd.enable is not None:
            self.enabled = cmd.enable
        if cmd.current_a is not None:
            self.amps = cmd.current_a
        if cmd.phases is not None:
            self.phases = cmd.phases
