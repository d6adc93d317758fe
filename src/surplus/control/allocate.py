"""One global allocation of power across loadpoints, by priority, within a site limit.

Every tick the whole surplus is shared at once (no round-robin): loadpoints that must
charge (``now``, a planned grid slot, the minimum of ``minsolar``) are served first; then
each priority level, highest first, gets its minimum where the surplus covers it, running
loadpoints before idle ones so a newcomer never cuts off a running charge; what is left is
shared up to each maximum, equal priorities in proportion to their headroom.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby


@dataclass(frozen=True, slots=True)
class Demand:
    """What one loadpoint could take this tick, in watts."""

    name: str
    priority: int
    min_w: float  # the least it can run at
    max_w: float  # the most it can take
    forced_w: float = 0.0  # must get this much whatever the surplus
    running: bool = False  # already charging (or may start on battery): served first
    lean_w: float = float("inf")  # the most of the battery allowance it may lean on, if running


def allocate(
    available_w: float,
    demands: Sequence[Demand],
    cap_w: float = float("inf"),
    allowance_w: float = 0.0,
) -> dict[str, float]:
    """Share ``available_w`` (+ ``allowance_w`` for running loadpoints only) among demands.

    ``cap_w`` bounds the total (the site's current limit expressed as power).
    Returns the power granted to each loadpoint; 0 means "not enough to run".
    """
    grant = {d.name: 0.0 for d in demands}
    remaining = available_w
    budget = cap_w
    for d in demands:
        if d.forced_w > 0:
            give = min(d.forced_w, d.max_w, max(budget, 0.0))
            grant[d.name] = give
            remaining -= give
            budget -= give

    by_priority = sorted(demands, key=lambda d: -d.priority)
    for _, level in groupby(by_priority, key=lambda d: d.priority):
        group = sorted(level, key=lambda d: not d.running)
        for d in group:
            if grant[d.name] > 0 or d.min_w > budget:
                continue
            lean = min(allowance_w, d.lean_w) if d.running else 0.0
            if remaining + lean >= d.min_w:
                grant[d.name] = d.min_w
                # what the battery lends is taken from its allowance, not the surplus
                from_battery = min(max(0.0, d.min_w - max(remaining, 0.0)), lean)
                allowance_w -= from_battery
                remaining -= d.min_w - from_battery
                budget -= d.min_w
        takers = [d for d in group if grant[d.name] > 0]
        headroom = {d.name: max(0.0, d.max_w - grant[d.name]) for d in takers}
        total_headroom = sum(headroom.values())
        share = min(max(remaining, 0.0), max(budget, 0.0), total_headroom)
        if share <= 0 or total_headroom <= 0:
            continue
        for d in takers:
            extra = share * headroom[d.name] / total_headroom
            grant[d.name] += extra
        remaining -= share
        budget -= share
    return grant
