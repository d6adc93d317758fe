"""What the Tesla tests share: a served Fleet API simulator on a hand-moved clock, tokens in a
vault, and a client (with its proxy) trusting the simulator's certificate, whose sleeps move
the clock instead of waiting."""

from __future__ import annotations

import re
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from surplus.integrations.tesla.client import FleetClient
from surplus.integrations.tesla.simstate import FleetError, FleetSimulator, SimVehicle
from surplus.integrations.tesla.simulator import ServedFleet, running_simulator
from surplus.integrations.tesla.tokens import TeslaTokens, scopes_for
from surplus.integrations.tesla.vehicle import TeslaVehicle
from surplus.security.vault import Secret, Vault
from tests.powerwall_kit import T0, SimClock

__all__ = [
    "ENTRY",
    "T0",
    "VIN",
    "Fleet",
    "SimClock",
    "TokenEndpoint",
    "fleet",
    "watch_refusals",
    "watch_token_endpoint",
]

VIN = "5YJ3E7EB0KF000001"
ENTRY = "tesla.tokens"
_REFRESH = re.compile(r"[A-Z]{2}_[0-9a-f]{64}")  # the simulator's refresh tokens


@dataclass
class Fleet:
    served: ServedFleet
    sim: FleetSimulator
    car: SimVehicle
    clock: SimClock
    vault: Vault
    tokens: TeslaTokens
    client: FleetClient
    verify: ssl.SSLContext
    sleeps: list[float] = field(default_factory=list)

    def vehicle(self, **kwargs: Any) -> TeslaVehicle:
        return TeslaVehicle(self.client, VIN, now=self.clock, **kwargs)

    def new_tokens(self) -> TeslaTokens:
        """Another holder of the same vault entry (another process, or a restart)."""
        return TeslaTokens(
            self.vault,
            ENTRY,
            client_id=self.sim.client_id,
            auth_url=self.served.auth_url,
            verify=self.verify,
            now=self.clock,
        )


@asynccontextmanager
async def fleet(
    directory: Path,
    *,
    energy: bool = False,
    base: str | None = None,
    proxy: bool = False,
    vehicle: dict[str, Any] | None = None,
    **sim_kwargs: Any,
) -> AsyncIterator[Fleet]:
    """A served simulator with one car (``vehicle`` its settings), tokens for it stored in a
    vault under ``ENTRY``, and a client of the region ``base`` (default: the account's)."""
    clock = SimClock()
    sim = FleetSimulator(clock=clock, **sim_kwargs)
    car = sim.add_vehicle(VIN, **(vehicle or {}))
    if energy:
        sim.add_site()
    vault = Vault.open(directory / "secrets.vault", key_file=directory / "vault.key")
    async with running_simulator(sim) as served:
        ca = directory / "fleet-ca.pem"
        ca.write_bytes(served.tls.cert_pem)
        verify = ssl.create_default_context(cafile=str(ca))
        tokens = TeslaTokens(
            vault,
            ENTRY,
            client_id=sim.client_id,
            auth_url=served.auth_url,
            verify=verify,
            now=clock,
        )
        await tokens.adopt(Secret(sim.issue_refresh_token(scopes_for(energy))))
        sleeps: list[float] = []

        def monotonic() -> float:
            return (clock.now - T0).total_seconds()

        async def sleep(seconds: float) -> None:
            sleeps.append(seconds)
            clock.advance(seconds)

        client = FleetClient(
            served.region_urls[base] if base else served.url,
            tokens,
            verify=verify,
            proxy_url=served.proxy_url if proxy else None,
            clock=monotonic,
            sleep=sleep,
            wake_poll_s=5.0,
        )
        async with client:
            yield Fleet(served, sim, car, clock, vault, tokens, client, verify, sleeps)


@dataclass
class TokenEndpoint:
    """What the simulator's token endpoint was asked and answered: one ``(grant_type,
    outcome)`` per request ("ok", or the status and error), and each refresh token it issued,
    whether or not its answer reached the client."""

    requests: list[tuple[str, str]] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)

    @property
    def refreshes(self) -> list[str]:
        """The outcomes of the ``refresh_token`` grants."""
        return [outcome for kind, outcome in self.requests if kind == "refresh_token"]


def watch_token_endpoint(
    sim: FleetSimulator, on_issued: Callable[[str], None] | None = None
) -> TokenEndpoint:
    """Record every request to ``sim``'s token endpoint; ``on_issued`` is called with each
    new refresh token as soon as the simulator issued it, before its answer is sent."""
    seen = TokenEndpoint()
    grant = sim.grant

    def watched(form: dict[str, str]) -> dict[str, Any]:
        kind = form.get("grant_type", "")
        issued = len(sim.tokens_issued)
        try:
            answer = grant(form)
        except FleetError as e:
            seen.requests.append((kind, f"{e.status} {e.error or '(no body)'}"))
            raise
        finally:
            fresh = [t for t in sim.tokens_issued[issued:] if _REFRESH.fullmatch(t)]
            seen.issued += fresh
            if on_issued is not None:
                for token in fresh:
                    on_issued(token)
        seen.requests.append((kind, "ok"))
        return answer

    sim.grant = watched  # type: ignore[method-assign]
    return seen


def watch_refusals(sim: FleetSimulator) -> list[int]:
    """The status of every call ``sim``'s gateway checks refused (401, 402, 421, ...)."""
    refused: list[int] = []
    admit = sim.admit

    def watched(region: str | None, token: str | None, **kwargs: Any) -> None:
        try:
            admit(region, token, **kwargs)
        except FleetError as e:
            refused.append(e.status)
            raise

    sim.admit = watched  # type: ignore[method-assign]
    return refused
