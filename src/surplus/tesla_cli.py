"""The Tesla commands: ``surplus auth tesla`` and ``surplus sim tesla``.

- ``surplus auth tesla DEVICE --config FILE`` runs the OAuth authorization-code flow with
  PKCE: it prints the authorize URL, catches the browser's redirect on 127.0.0.1, exchanges
  the code and stores the tokens in the vault under the device's ``token_secret``. With
  ``--token-stdin`` it reads a refresh token pasted on standard input instead (it is
  exchanged at once: refresh tokens rotate). It prints the expiry and scopes, never a token.
- ``surplus sim tesla`` serves a simulated Fleet API (both regions, a signing proxy and the
  OAuth server) until Ctrl-C and prints what a config needs: URLs, client id, a ready refresh
  token, the certificate's fingerprint and a CA file.
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from surplus.cli_config import ConfigFile, config_of, device_of
from surplus.domain.errors import SurplusError
from surplus.sim_cli import FaultOption, check_faults, listed, say_ready
from surplus.terminal import fail, say

if TYPE_CHECKING:
    from surplus.integrations.tesla.simulator import ServedFleet
    from surplus.integrations.tesla.tokens import TeslaTokens, TokenSet

__all__ = ["auth_tesla", "sim_tesla"]

AUTH_WAIT_S = 300.0


def auth_tesla(
    device: Annotated[str, typer.Argument(help="The tesla device's name in the config file.")],
    config: ConfigFile,
    token_stdin: Annotated[
        bool,
        typer.Option(
            "--token-stdin",
            help="Read a refresh token pasted on standard input (hidden at a terminal) instead"
            " of authorizing in a browser.",
        ),
    ] = False,
    redirect_port: Annotated[
        int,
        typer.Option(
            min=0,
            max=65535,
            help="Port of the local redirect listener; the app's registered redirect URI must"
            " be http://127.0.0.1:<port>/callback.",
        ),
    ] = 8765,
) -> None:
    """Authorize surplus for a Tesla account and keep its tokens in the vault."""
    from surplus.integrations.tesla.config import TeslaConfig
    from surplus.integrations.tesla.factory import tokens_of
    from surplus.runtime.datadir import open_vault
    from surplus.security.vault import Secret

    service = config_of(config)
    _, chosen = device_of(service, device, config)
    if not isinstance(chosen, TeslaConfig):
        raise fail(f"error: {device} is a {chosen.type} device, not a tesla", 2)
    pasted = None
    if token_stdin:
        pasted = _read_token()
        if not pasted:
            raise fail("error: no refresh token on standard input", 2)
    data_dir = service.service.data_dir
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        tokens = tokens_of(chosen, open_vault(data_dir), lambda: datetime.now(UTC))
        if pasted is not None:
            stored = asyncio.run(tokens.adopt(Secret(pasted)))
        else:
            scope = _scope(chosen.energy_site_id is not None)
            stored = asyncio.run(
                _browser_flow(tokens, chosen.auth_url, chosen.client_id, scope, redirect_port)
            )
    except (SurplusError, OSError) as err:
        raise fail(f"error: {device}: {err}") from None
    say(
        f"{device}: authorized; tokens stored in the vault as {chosen.token_secret}; access"
        f" token valid until {stored.expires_at:%Y-%m-%d %H:%M} UTC, refreshed automatically"
        f" (scopes: {stored.scope or 'as granted'})"
    )


def _scope(energy_site: bool) -> str:
    from surplus.integrations.tesla.tokens import scopes_for

    return scopes_for(energy_site)


def _read_token() -> str:
    if sys.stdin.isatty():
        return str(typer.prompt("refresh token", hide_input=True)).strip()
    return sys.stdin.readline().strip()


async def _browser_flow(
    tokens: TeslaTokens, auth_url: str, client_id: str, scope: str, port: int
) -> TokenSet:
    from surplus.integrations.tesla.tokens import authorize_url, pkce_pair, redirect_listener

    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(16)
    async with redirect_listener(port) as listener:
        url = authorize_url(auth_url, client_id, listener.redirect_uri, scope, state, challenge)
        say("Open this URL in a browser and allow access:")
        say(f"  {url}")
        say(f"Waiting for Tesla's redirect to {listener.redirect_uri} ...")
        code = await listener.wait(state, AUTH_WAIT_S)
        return await tokens.exchange_code(code, verifier, listener.redirect_uri)


def sim_tesla(
    port: Annotated[
        int,
        typer.Option(
            min=0,
            max=65533,
            help="The NA region's port; EU and the signing proxy use the next two. 0 picks free"
            " ones.",
        ),
    ] = 8450,
    host: Annotated[str, typer.Option(help="IPv4 address to listen on.")] = "127.0.0.1",
    vin: Annotated[str, typer.Option(help="The simulated car's VIN.")] = "5YJ3E7EB0KF000001",
    region: Annotated[str, typer.Option(help="The account's region: na or eu.")] = "eu",
    speed: Annotated[
        float, typer.Option(min=0.001, help="Simulated time runs this many times as fast.")
    ] = 1.0,
    signing: Annotated[
        bool,
        typer.Option(
            "--signing-required", help="The car accepts only signed commands (use the proxy)."
        ),
    ] = False,
    plugged: Annotated[bool, typer.Option("--plugged", help="The car starts plugged in.")] = False,
    fault: FaultOption = None,
) -> None:
    """Serve a simulated Tesla Fleet API (vehicles, energy site, OAuth) until Ctrl-C."""
    from surplus.integrations.tesla.simstate import FAULTS, FleetSimulator
    from surplus.integrations.tesla.simulator import serve
    from surplus.integrations.tesla.tokens import scopes_for

    faults = check_faults(fault, FAULTS)
    if region not in ("na", "eu"):
        raise typer.BadParameter("na or eu", param_hint="--region")
    if len(vin) != 17 or not vin.isalnum():
        raise typer.BadParameter("a VIN is 17 letters and digits", param_hint="--vin")
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        raise typer.BadParameter(
            f"{host!r} is not an IPv4 address (the certificate names the address)",
            param_hint="--host",
        ) from None
    client_id = f"sim-{secrets.token_hex(6)}"
    sim = FleetSimulator(client_id=client_id, region=region, speed=speed)
    sim.add_vehicle(vin.upper(), command_signing="required" if signing else "allowed")
    sim.add_site()
    if plugged:
        sim.plug_in(vin.upper())
    sim.faults.add(*faults)
    ports = (port, port + 1, port + 2) if port else (0, 0, 0)

    with tempfile.TemporaryDirectory(prefix="surplus-sim-tesla-") as tmp:
        ca_file = Path(tmp, "fleet-ca.pem")

        def ready(served: ServedFleet) -> None:
            ca_file.write_bytes(served.tls.cert_pem)
            refresh = served.sim.issue_refresh_token(scopes_for(energy_site=True))
            say_ready(
                f"Tesla Fleet API simulator (account region {region}, speed x{speed:g}) is ready",
                [
                    ("fleet url", served.url),
                    *(
                        (f"{r} region", u)
                        for r, u in served.region_urls.items()
                        if r != served.sim.region
                    ),
                    ("proxy url", served.proxy_url),
                    ("auth url", served.auth_url),
                    ("ca file", str(ca_file)),
                    ("fingerprint", served.fingerprint),
                    ("client id", client_id),
                    ("refresh token", refresh),
                    ("vin", vin.upper() + (" (signed commands only)" if signing else "")),
                    ("energy site", str(next(iter(served.sim.sites)))),
                    ("faults", listed(served.sim.faults)),
                ],
            )

        try:
            serve(sim, host=host, ports=ports, ready=ready)
        except OSError as err:
            raise fail(
                f"error: cannot serve on {host}:{port}-{port + 2} ({err.strerror or err})", 2
            ) from None
    say("stopped")
