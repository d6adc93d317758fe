"""Contactor protection and surplus hysteresis, as plain state and pure functions.

Two separate concerns: the surplus hysteresis (how long surplus must last, or be missing,
before we act) and the contactor protection (minimum on-time, minimum off-time, a daily
start budget) that no surplus signal can override. Forced stops (mode off, car unplugged,
limit reached, stale data) skip the minimum on-time: safety first, wear second.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from surplus.control.settings import ContactorSettings
from surplus.control.state import LoadpointState


@dataclass(frozen=True, slots=True)
class Gate:
    """Whether the contactor should be on after this tick, and why."""

    on: bool
    state: LoadpointState
    reason: str


def duration(seconds: float) -> str:
    """``seconds`` as 1h05m, 4m30s or 12s."""
    seconds = max(0, int(seconds))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _elapsed(since: datetime | None, now: datetime) -> float:
    return float("inf") if since is None else (now - since).total_seconds()


def starts_left(state: LoadpointState, cfg: ContactorSettings, now: datetime) -> int:
    today = now.date()
    used = state.starts_today if state.starts_day == today else 0
    return cfg.max_starts_per_day - used


def gate(
    state: LoadpointState,
    want_on: bool,
    cfg: ContactorSettings,
    now: datetime,
    *,
    immediate: bool = False,
) -> Gate:
    """Apply delays and protection to a wish.

    ``immediate`` skips the surplus delays (not the protection): used for charging the
    owner asked for (``now``, planned grid slots), where waiting for surplus makes no sense.
    """
    if state.on:
        if want_on:
            return Gate(True, replace(state, short_since=None), "")
        short_since = state.short_since or now
        waited = _elapsed(short_since, now)
        on_for = _elapsed(state.switched_at, now)
        if not immediate and waited < cfg.stop_delay_s:
            left = cfg.stop_delay_s - waited
            return Gate(
                True,
                replace(state, short_since=short_since),
                f"{duration(left)} of stop delay left",
            )
        if on_for < cfg.min_on_s:
            left = cfg.min_on_s - on_for
            return Gate(
                True,
                replace(state, short_since=short_since),
                f"{duration(left)} of minimum on-time left",
            )
        return Gate(False, stopped(state, now), "stopped: not enough surplus")

    if not want_on:
        return Gate(False, replace(state, want_since=None), "")
    want_since = state.want_since or now
    waited = _elapsed(want_since, now)
    off_for = _elapsed(state.switched_at, now)
    pending = replace(state, want_since=want_since)
    if not immediate and waited < cfg.start_delay_s:
        return Gate(False, pending, f"{duration(cfg.start_delay_s - waited)} of start delay left")
    if off_for < cfg.min_off_s:
        return Gate(False, pending, f"{duration(cfg.min_off_s - off_for)} of minimum off-time left")
    if starts_left(state, cfg, now) <= 0:
        return Gate(False, pending, f"daily start budget of {cfg.max_starts_per_day} used up")
    return Gate(True, started(state, now), "started")


def started(state: LoadpointState, now: datetime) -> LoadpointState:
    today = now.date()
    used = state.starts_today if state.starts_day == today else 0
    return replace(
        state,
        on=True,
        switched_at=now,
        want_since=None,
        short_since=None,
        starts_day=today,
        starts_today=used + 1,
    )


def stopped(state: LoadpointState, now: datetime) -> LoadpointState:
    return replace(state, on=False, switched_at=now, want_since=None, short_since=None)
