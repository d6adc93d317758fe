"""A device that pushes its readings (``type = "push"``): the latest one, and its health.

The push API hands each accepted push to ``PushedFeed.receive``; ``run`` watches the
silence: a source that has not pushed for ``stale_after_s`` is stale, and one that pushed
an ``error`` instead of readings is stale with its own words, until its next good push.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Generic, TypeVar

from surplus.runtime.poller import Health, PollState

__all__ = ["PushedFeed"]

T = TypeVar("T")


class PushedFeed(Generic[T]):
    """The pushes of one source; ``state`` and ``latest`` read like a ``Poller``'s."""

    def __init__(
        self,
        name: str,
        stale_after_s: float,
        now: Callable[[], datetime],
        on_reading: Callable[[T], None] | None = None,
    ) -> None:
        self.name = name
        self.stale_after_s = stale_after_s
        self._now = now
        self._on_reading = on_reading
        self.latest: T | None = None
        self.state = PollState(Health.STARTING, "waiting for the first push")
        self._last_push: datetime | None = None

    def receive(self, reading: T | None, error: str = "") -> None:
        """One accepted push: a reading, or (``reading`` None) the error the source sent."""
        self._last_push = self._now()
        if reading is None:
            self.state = replace(
                self.state,
                health=Health.STALE,
                detail=f"the source reported an error: {error}",
                failures=self.state.failures + 1,
            )
            return
        self.latest = reading
        self.state = PollState(Health.OK, "", self._last_push, 0)
        if self._on_reading is not None:
            self._on_reading(reading)

    def check(self) -> None:
        """Mark the source stale once it has been silent for ``stale_after_s``."""
        last = self._last_push
        if last is None or self.state.health != Health.OK:
            return
        silent_s = (self._now() - last).total_seconds()
        if silent_s > self.stale_after_s:
            self.state = replace(
                self.state,
                health=Health.STALE,
                detail=f"no push for {silent_s:.0f} s (stale after {self.stale_after_s:g} s)",
            )

    async def run(self, every_s: float = 1.0) -> None:
        while True:
            self.check()
            await asyncio.sleep(every_s)
