"""``surplus sim wallbox``: serve a simulated Wallbox cloud (both hosts) until Ctrl-C and print
what a config needs: the URLs, the account, the charger id and the certificate."""

from __future__ import annotations

import secrets
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from surplus.terminal import fail, say

if TYPE_CHECKING:
    from surplus.integrations.wallbox.simulator import ServedWallbox

__all__ = ["sim_wallbox"]


def sim_wallbox(
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="The charger API's port; 0 picks a free one.")
    ] = 8447,
    user_port: Annotated[
        int, typer.Option(min=0, max=65535, help="The user API's port; 0 picks a free one.")
    ] = 8448,
    email: Annotated[str, typer.Option(help="The account's email.")] = "owner@example.com",
    password: Annotated[
        str | None,
        typer.Option(help="The account's password; default: a random one, printed."),
    ] = None,
    charger_id: Annotated[int, typer.Option(min=1, help="The charger's id.")] = 12345,
    speed: Annotated[
        float, typer.Option(min=0.01, help="How much faster than real time the charger runs.")
    ] = 1.0,
    fault: Annotated[
        list[str] | None,
        typer.Option(
            "--fault",
            help="A fault active from the start; repeat for several. Faults can also be"
            ' changed while it runs: POST /sim/faults {"add": [...], "remove": [...]}.',
        ),
    ] = None,
) -> None:
    """Serve a simulated Wallbox cloud (user API and charger API) until Ctrl-C."""
    from surplus.integrations.wallbox.simstate import FAULTS, WallboxSimulator
    from surplus.integrations.wallbox.simulator import serve

    for name in fault or []:
        if name not in FAULTS:
            raise typer.BadParameter(
                f"unknown fault {name!r}; choose from {', '.join(sorted(FAULTS))}",
                param_hint="--fault",
            )
    if password == "":
        raise typer.BadParameter("must not be empty", param_hint="--password")
    password = password or secrets.token_urlsafe(9)
    sim = WallboxSimulator(email, password, charger_id=charger_id, speed=speed)
    sim.faults.add(*(fault or []))

    with tempfile.TemporaryDirectory(prefix="surplus-sim-wallbox-") as tmp:
        ca_file = Path(tmp, "wallbox-ca.pem")

        def ready(served: ServedWallbox) -> None:
            ca_file.write_bytes(served.ca_pem)
            lines = [
                "Wallbox cloud simulator is ready",
                f"  api_url:     {served.api_url}",
                f"  user_url:    {served.user_url}",
                f"  ca_file:     {ca_file}",
                f"  fingerprint: {served.fingerprint}",
                f"  email:       {email}",
                f"  password:    {password}",
                f"  charger_id:  {charger_id}",
                f"  speed:       {speed:g}x",
                f"  faults:      {', '.join(sorted(sim.faults.active)) or 'none'}",
                "  the car:     POST /sim/plug, POST /sim/unplug on the api_url",
                "Ctrl-C stops it.",
            ]
            for line in lines:
                say(line)

        try:
            serve(sim, port=port, user_port=user_port, ready=ready)
        except OSError as err:
            raise fail(
                f"error: cannot serve on ports {port} and {user_port} ({err.strerror or err})", 2
            ) from None
    say("stopped")
