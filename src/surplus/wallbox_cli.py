"""``surplus sim wallbox``: serve a simulated Wallbox cloud (both hosts) until Ctrl-C and print
what a config needs: the URLs, the account, the charger id and the certificate."""

from __future__ import annotations

import secrets
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from surplus.sim_cli import FaultOption, check_faults, listed, say_ready
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
    fault: FaultOption = None,
) -> None:
    """Serve a simulated Wallbox cloud (user API and charger API) until Ctrl-C."""
    from surplus.integrations.wallbox.simstate import FAULTS, WallboxSimulator
    from surplus.integrations.wallbox.simulator import serve

    faults = check_faults(fault, FAULTS)
    if password == "":
        raise typer.BadParameter("must not be empty", param_hint="--password")
    password = password or secrets.token_urlsafe(9)
    sim = WallboxSimulator(email, password, charger_id=charger_id, speed=speed)
    sim.faults.add(*faults)

    with tempfile.TemporaryDirectory(prefix="surplus-sim-wallbox-") as tmp:
        ca_file = Path(tmp, "wallbox-ca.pem")

        def ready(served: ServedWallbox) -> None:
            ca_file.write_bytes(served.ca_pem)
            say_ready(
                "Wallbox cloud simulator is ready",
                [
                    ("api_url", served.api_url),
                    ("user_url", served.user_url),
                    ("ca_file", str(ca_file)),
                    ("fingerprint", served.fingerprint),
                    ("email", email),
                    ("password", password),
                    ("charger_id", str(charger_id)),
                    ("speed", f"{speed:g}x"),
                    ("faults", listed(sim.faults)),
                    ("the car", "POST /sim/plug, POST /sim/unplug on the api_url"),
                ],
            )

        try:
            serve(sim, port=port, user_port=user_port, ready=ready)
        except OSError as err:
            raise fail(
                f"error: cannot serve on ports {port} and {user_port} ({err.strerror or err})", 2
            ) from None
    say("stopped")
