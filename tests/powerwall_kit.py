"""What the Powerwall tests share: a hand-moved clock for the simulated site, one for the
client's cool-downs, and a served simulator with a client pinned to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from surplus.integrations.powerwall.client import PowerwallClient
from surplus.integrations.powerwall.simulator import (
    PowerwallSimulator,
    ServedSimulator,
    running_simulator,
)
from surplus.security.vault import Secret

T0 = datetime(2024, 6, 10, 12, 0, tzinfo=UTC)
LOGIN = "POST /api/login/Basic"


class SimClock:
    """The simulated site's time (and the adapter's), moved by hand."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class MonoClock:
    """The client's monotonic clock, moved by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@asynccontextmanager
async def gateway(
    sim: PowerwallSimulator, password: str, **client_kwargs: Any
) -> AsyncIterator[tuple[ServedSimulator, PowerwallClient]]:
    """``sim`` served, and a client pinned to it logging in with ``password``."""
    client_kwargs.setdefault("write_retry_delay_s", 0.0)
    async with running_simulator(sim) as served:
        client = PowerwallClient(served.url, Secret(password), served.fingerprint, **client_kwargs)
        async with client:
            yield served, client
