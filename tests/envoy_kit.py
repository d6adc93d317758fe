"""What the Envoy tests share: a served simulator with a client pinned to it, the cloud
that issues its tokens, and a vault to keep them in."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from surplus.integrations.envoy.client import EnvoyClient
from surplus.integrations.envoy.cloud import EnlightenCloud
from surplus.integrations.envoy.simstate import EnvoySimulator
from surplus.integrations.envoy.simulator import ServedEnvoy, running_simulator
from surplus.integrations.envoy.tokens import OWNER, EnvoyTokens
from surplus.security.vault import Secret, Vault
from tests.powerwall_kit import T0, SimClock

__all__ = ["EMAIL", "PASSWORD", "T0", "SimClock", "cloud_of", "gateway", "new_sim", "vault_in"]

EMAIL = "owner@example.com"
PASSWORD = "Enl1ghten-pass-Zq7"
TOKEN_ENTRY = "gw.token"


def new_sim(clock: Callable[[], datetime] | None = None, **kwargs: Any) -> EnvoySimulator:
    """A simulator on ``clock`` (a fresh ``SimClock`` by default) whose cloud knows
    EMAIL/PASSWORD."""
    kwargs.setdefault("stream_interval_s", 0.05)
    return EnvoySimulator(clock=clock or SimClock(), email=EMAIL, password=PASSWORD, **kwargs)


def vault_in(directory: Path) -> Vault:
    return Vault.open(directory / "secrets.vault", key_file=directory / "vault.key")


def cloud_of(served: ServedEnvoy, directory: Path, password: str = PASSWORD) -> EnlightenCloud:
    """An Enlighten client of the served simulator's cloud, trusting its certificate."""
    ca = directory / "cloud-ca.pem"
    ca.write_bytes(served.cloud_ca_pem)
    return EnlightenCloud(
        EMAIL,
        Secret(password),
        enlighten_url=served.cloud_url,
        entrez_url=served.cloud_url,
        ca_file=ca,
    )


@asynccontextmanager
async def gateway(
    sim: EnvoySimulator,
    *,
    token: str | None = None,
    role: str = OWNER,
    directory: Path | None = None,
    vault: Vault | None = None,
    pin: bool = True,
    **client_kwargs: Any,
) -> AsyncIterator[tuple[ServedEnvoy, EnvoyClient, EnvoyTokens]]:
    """``sim`` served, and a client pinned to it with ``token`` (by default a ``role`` token
    the simulator issued); with ``directory`` the tokens renew from the simulator's cloud."""
    async with running_simulator(sim) as served:
        value = token if token is not None else sim.issue_token(role)
        if vault is not None:
            vault.set(TOKEN_ENTRY, value)
        tokens = EnvoyTokens(
            Secret(value),
            vault=vault,
            entry=TOKEN_ENTRY if vault is not None else None,
            cloud=cloud_of(served, directory) if directory is not None else None,
            now=sim.clock,
        )
        fingerprint = served.fingerprint if pin else None
        async with EnvoyClient(served.url, tokens, fingerprint, **client_kwargs) as client:
            yield served, client, tokens
