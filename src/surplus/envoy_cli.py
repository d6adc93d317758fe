"""The Enphase commands: ``surplus auth envoy`` and ``surplus sim envoy``.

- ``surplus auth envoy DEVICE --config FILE`` gets a token for the gateway from Enlighten
  with the configured account (its password from the vault), or reads one pasted on
  standard input (``--token-stdin``, for accounts with multi-factor authentication), checks
  it against the gateway's ``/auth/check_jwt`` and stores it in the vault under the device's
  ``token_secret``. It prints the token's role and expiry, never the token. A running
  service that waits for re-authentication takes it up within seconds.
- ``surplus sim envoy`` serves a simulated gateway and its Enlighten cloud until Ctrl-C and
  prints what a config needs: URLs, serial, account, ready tokens, fingerprint, CA file.
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
    from surplus.integrations.envoy.config import EnvoyConfig
    from surplus.integrations.envoy.simulator import ServedEnvoy
    from surplus.integrations.envoy.tokens import TokenClaims
    from surplus.security.vault import Secret, Vault

__all__ = ["auth_app", "sim_envoy"]

auth_app = typer.Typer(
    help="Get a device's access token and keep it in the service's vault.",
    no_args_is_help=True,
)


@auth_app.command("envoy")
def auth_envoy(
    device: Annotated[str, typer.Argument(help="The envoy device's name in the config file.")],
    config: ConfigFile,
    token_stdin: Annotated[
        bool,
        typer.Option(
            "--token-stdin",
            help="Read a token pasted on standard input (hidden at a terminal) instead of"
            " asking Enlighten: for accounts with multi-factor authentication.",
        ),
    ] = False,
) -> None:
    """Get a token for an Enphase gateway, check it on the gateway and store it in the vault."""
    from surplus.integrations.envoy.config import EnvoyConfig
    from surplus.runtime.datadir import STORE_FILE, open_store, open_vault
    from surplus.security.vault import Secret

    service = config_of(config)
    _, chosen = device_of(service, device, config)
    if not isinstance(chosen, EnvoyConfig):
        raise fail(f"error: {device} is a {chosen.type} device, not an envoy", 2)
    if chosen.plain_http or chosen.token_secret is None:
        raise fail(f"error: {device} is reached over plain HTTP (firmware < 7): no token", 2)
    if not token_stdin and chosen.enlighten_email is None:
        raise fail(
            f"error: {device} has no enlighten_email and enlighten_password_secret in {config};"
            " add them, or paste a token with --token-stdin",
            2,
        )
    pasted = None
    if token_stdin:
        pasted = _read_token()
        if not pasted:
            raise fail("error: no token on standard input", 2)
    data_dir = service.service.data_dir
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        vault = open_vault(data_dir)
        pinned = chosen.fingerprint
        if pinned is None and (data_dir / STORE_FILE).exists():
            with open_store(data_dir) as store:
                pin = store.pins.get(device)
            pinned = pin.fingerprint if pin is not None else None
        token = Secret(pasted) if pasted is not None else None
        token, claims = asyncio.run(_obtain(chosen, vault, pinned, token))
        vault.set(chosen.token_secret, token)
    except (SurplusError, OSError) as err:
        raise fail(f"error: {device}: {err}") from None
    days = (claims.expires_at - datetime.now(UTC)).total_seconds() / 86_400
    say(
        f"{device}: the gateway accepted the {claims.role} token; stored in the vault as"
        f" {chosen.token_secret}, valid until {claims.expires_at:%Y-%m-%d %H:%M} UTC"
        f" ({days:.0f} days)"
    )


def _read_token() -> str:
    if sys.stdin.isatty():
        return str(typer.prompt("token", hide_input=True)).strip()
    return sys.stdin.readline().strip()


async def _obtain(
    config: EnvoyConfig, vault: Vault, pinned: str | None, pasted: Secret | None
) -> tuple[Secret, TokenClaims]:
    """A token (``pasted``, else from Enlighten) that the gateway accepts, with its claims."""
    from surplus.integrations.envoy.client import EnvoyClient
    from surplus.integrations.envoy.cloud import EnlightenCloud

    async with EnvoyClient(
        config.host, None, pinned, serial=config.serial, timeout_s=config.timeout_s
    ) as client:
        if pasted is not None:
            return pasted, await client.check_token(pasted)
        assert config.enlighten_email is not None  # checked by the command
        assert config.enlighten_password_secret is not None  # the model pairs them
        cloud = EnlightenCloud(
            config.enlighten_email,
            vault.get(config.enlighten_password_secret),
            enlighten_url=config.enlighten_url,
            entrez_url=config.entrez_url,
            ca_file=config.cloud_ca_file,
            timeout_s=config.timeout_s,
        )
        serial = config.serial or (await client.info()).serial
        token, _ = await cloud.fetch_token(serial)
        return token, await client.check_token(token)


def sim_envoy(
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="The gateway's port; 0 picks a free one.")
    ] = 8445,
    cloud_port: Annotated[
        int,
        typer.Option(min=0, max=65535, help="The Enlighten cloud's port; 0 picks a free one."),
    ] = 8446,
    host: Annotated[str, typer.Option(help="IPv4 address to listen on.")] = "127.0.0.1",
    firmware: Annotated[
        str,
        typer.Option(
            help="The gateway's software string: D7/D8 (HTTPS and tokens; from D8.3.5433"
            " total-consumption reports net), or below 7, e.g. R5.0.62 (plain HTTP, no token)."
        ),
    ] = "D8.2.4264",
    serial: Annotated[str, typer.Option(help="The gateway's serial number.")] = "122301012345",
    email: Annotated[
        str, typer.Option(help="The Enlighten account's email.")
    ] = "owner@example.com",
    password: Annotated[
        str | None,
        typer.Option(help="The Enlighten account's password; default: a random one, printed."),
    ] = None,
    fault: FaultOption = None,
    no_battery: Annotated[
        bool, typer.Option("--no-battery", help="A site without IQ Batteries.")
    ] = False,
) -> None:
    """Serve a simulated Enphase IQ Gateway and its Enlighten cloud until Ctrl-C."""
    from surplus.integrations.envoy.models import parse_version
    from surplus.integrations.envoy.simstate import FAULTS, EnvoySimulator
    from surplus.integrations.envoy.simulator import serve
    from surplus.integrations.envoy.tokens import INSTALLER, OWNER
    from surplus.sim.devices import HomeBattery

    if not parse_version(firmware):
        raise typer.BadParameter(f"{firmware!r} holds no version", param_hint="--firmware")
    if not serial.isalnum():
        raise typer.BadParameter("letters and digits only", param_hint="--serial")
    faults = check_faults(fault, FAULTS)
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        raise typer.BadParameter(
            f"{host!r} is not an IPv4 address (the certificates name the address)",
            param_hint="--host",
        ) from None
    if password == "":
        raise typer.BadParameter("must not be empty", param_hint="--password")
    password = password or secrets.token_urlsafe(9)
    sim = EnvoySimulator(
        serial=serial,
        firmware=firmware,
        battery=None if no_battery else HomeBattery(),
        email=email,
        password=password,
    )
    sim.faults.add(*faults)

    with tempfile.TemporaryDirectory(prefix="surplus-sim-envoy-") as tmp:
        ca_file = Path(tmp, "cloud-ca.pem")

        def ready(served: ServedEnvoy) -> None:
            ca_file.write_bytes(served.cloud_ca_pem)
            tokens = served.sim.tokens_required
            say_ready(
                f"Envoy simulator (firmware {firmware}) is ready",
                [
                    ("url", served.url),
                    ("fingerprint", served.fingerprint or "none (plain HTTP)"),
                    ("serial", served.sim.serial),
                    ("cloud", served.cloud_url),
                    ("cloud ca file", str(ca_file)),
                    ("email", email),
                    ("password", password),
                    ("owner token", served.sim.issue_token(OWNER) if tokens else "none needed"),
                    (
                        "installer token",
                        served.sim.issue_token(INSTALLER) if tokens else "none needed",
                    ),
                    ("faults", listed(served.sim.faults)),
                ],
            )

        try:
            serve(sim, host=host, port=port, cloud_port=cloud_port, ready=ready)
        except OSError as err:
            raise fail(
                f"error: cannot serve on {host}:{port} and {cloud_port} ({err.strerror or err})",
                2,
            ) from None
    say("stopped")
