"""What the Wallbox tests share: one hand-moved clock for the simulated cloud and the client
(sleeping on it moves it), and a served simulator with a client trusting its certificate."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from surplus.integrations.wallbox.client import WallboxClient
from surplus.integrations.wallbox.simstate import SimError
from surplus.integrations.wallbox.simulator import (
    ServedWallbox,
    WallboxSimulator,
    running_simulator,
)
from surplus.integrations.wallbox.tokens import WallboxTokens, clock_skew_s, store_tokens
from surplus.security.vault import Secret, Vault
from tests.powerwall_kit import T0

EMAIL = "owner@example.com"
PASSWORD = "Wb-pass-7Qz9x"
CHARGER = 12345


class FakeTime:
    """Wall time moved by hand; ``sleep`` moves it instead of waiting."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start
        self.slept = 0.0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    async def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.advance(seconds)
        await asyncio.sleep(0)


def new_sim(time: FakeTime, **kwargs: Any) -> WallboxSimulator:
    return WallboxSimulator(EMAIL, PASSWORD, charger_id=CHARGER, clock=time, **kwargs)


def vault_in(directory: Path) -> Vault:
    return Vault.open(directory / "secrets.vault", key_file=directory / "vault.key")


def client_of(
    served: ServedWallbox, directory: Path, time: FakeTime, **kwargs: Any
) -> WallboxClient:
    ca = directory / "wallbox-ca.pem"
    ca.write_bytes(served.ca_pem)
    kwargs.setdefault("user_url", served.user_url)
    return WallboxClient(
        EMAIL,
        Secret(kwargs.pop("password", PASSWORD)),
        api_url=served.api_url,
        ca_file=ca,
        clock=time,
        sleep=time.sleep,
        seed=1,
        **kwargs,
    )


@asynccontextmanager
async def cloud(
    sim: WallboxSimulator, directory: Path, time: FakeTime, **client_kwargs: Any
) -> AsyncIterator[tuple[ServedWallbox, WallboxClient]]:
    """``sim`` served, and a client of it."""
    async with (
        running_simulator(sim) as served,
        client_of(served, directory, time, **client_kwargs) as client,
    ):
        yield served, client


# --- for the service-level tests (the whole service against a served simulator) ---

SIGNIN = "GET /users/signin"
REFRESH = "GET /users/refresh-token"
STATUS = f"GET /chargers/status/{CHARGER}"
WRITES = (f"PUT /v2/charger/{CHARGER}", f"POST /v3/chargers/{CHARGER}/remote-action")


class ServiceSim(WallboxSimulator):
    """The simulated cloud, telling how many data calls it refused for their token (401)
    and letting the owner change the account's password."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refused_tokens = 0

    def authorize(self, token: str | None) -> None:
        try:
            super().authorize(token)
        except SimError as e:
            if e.status == 401:
                self.refused_tokens += 1
            raise

    def change_password(self, password: str) -> None:
        self._password = Secret(password)

    def writes(self) -> int:
        """The writes (limit, lock, pause/resume) the cloud was sent."""
        return sum(self.requests[w] for w in WRITES)


def stored_session(sim: WallboxSimulator, vault: Vault, entry: str) -> None:
    """A session left in the vault by an earlier run: the service starts without signing in."""
    attrs = sim.signin(sim.email, PASSWORD)
    skew = clock_skew_s(Secret(attrs["token"]), datetime.now(UTC).timestamp())
    store_tokens(
        vault,
        entry,
        WallboxTokens(
            Secret(attrs["token"]),
            attrs["ttl"] / 1000 - skew,
            Secret(attrs["refresh_token"]),
            attrs["refresh_token_ttl"] / 1000 - skew,
        ),
    )
