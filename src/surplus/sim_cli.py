"""What the ``surplus sim ...`` device commands share: the ``--fault`` option's help and check,
and the lines a simulator prints once it listens."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from surplus.terminal import say

if TYPE_CHECKING:
    from surplus.sim.serving import Faults

__all__ = ["FAULT_HELP", "FaultOption", "check_faults", "listed", "say_ready"]

FAULT_HELP = (
    "A fault active from the start; repeat for several. Faults can also be changed while it"
    ' runs: POST /sim/faults {"add": [...], "remove": [...]}.'
)
# The ``--fault`` option of a ``sim`` command: ``fault: FaultOption = None``.
FaultOption = Annotated[list[str] | None, typer.Option("--fault", help=FAULT_HELP)]


def check_faults(names: list[str] | None, known: Collection[str]) -> list[str]:
    """The ``--fault`` ``names`` (none if None), each one of ``known``; else the
    ``BadParameter`` for the first that is not."""
    for name in names or []:
        if name not in known:
            raise typer.BadParameter(
                f"unknown fault {name!r}; choose from {', '.join(sorted(known))}",
                param_hint="--fault",
            )
    return list(names or [])


def listed(faults: Faults) -> str:
    """The active faults, for a ready line: sorted and comma-separated, or ``none``."""
    return ", ".join(sorted(faults.active)) or "none"


def say_ready(title: str, fields: Sequence[tuple[str, str]]) -> None:
    """A simulator's ready lines: ``title``, a ``label: value`` line a field with the values
    aligned, and how to stop it."""
    width = max((len(label) for label, _ in fields), default=0) + 2
    say(title)
    for label, value in fields:
        say(f"  {label + ':':<{width}}{value}")
    say("Ctrl-C stops it.")
