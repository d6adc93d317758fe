"""The OCPP commands: ``surplus ca``, ``surplus charger`` and ``surplus sim ocpp-charger``.

- ``surplus ca init`` creates surplus's certificate authority for OCPP security profile 3
  (its key into the vault, its certificate into the data directory); ``surplus ca issue ID``
  writes a client certificate and key for charger ``ID`` (CN = ID), to install on it.
- ``surplus charger add ID`` registers a charge point and prints its authorization key once,
  alone on standard output (the advice goes to standard error, so ``KEY=$(surplus charger
  add …)`` works); only its hash is stored. ``list`` shows the ids, never a key; ``remove``
  revokes one, which a running central system refuses from its next connection on.
- ``surplus sim ocpp-charger`` runs a simulated charger against a central system
  (``integrations.ocpp.chargepoint_sim``), with charger faults on request, until Ctrl-C.

All but the simulator find the data directory through the config file's ``service.data_dir``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from surplus.cli_config import ConfigFile, data_dir_of, store_of
from surplus.domain.errors import SurplusError
from surplus.integrations.ocpp.quirks import QUIRKS
from surplus.terminal import fail, say

if TYPE_CHECKING:
    from surplus.integrations.ocpp.chargepoint_sim import SimulatedChargePoint

__all__ = ["ca_app", "charger_app", "sim_ocpp_charger"]

ca_app = typer.Typer(
    help="surplus's certificate authority for OCPP chargers (security profile 3).",
    no_args_is_help=True,
)
charger_app = typer.Typer(
    help="The OCPP charge points allowed to connect, and their keys.", no_args_is_help=True
)

ChargerId = Annotated[str, typer.Argument(help="The charge point's id (its chargePointId).")]


# --- surplus ca ---


@ca_app.command("init")
def ca_init(config: ConfigFile) -> None:
    """Create the CA: its key goes into the vault, its certificate into the data directory."""
    from surplus.integrations.ocpp.ca import CA_CERT_FILE, CertificateAuthority
    from surplus.integrations.powerwall.tls import fingerprint
    from surplus.runtime.datadir import open_vault

    data_dir = data_dir_of(config)
    try:
        ca = CertificateAuthority.create(data_dir, open_vault(data_dir))
    except (SurplusError, OSError) as err:
        raise fail(f"error: {err}") from None
    say(f"OCPP CA created: {data_dir / CA_CERT_FILE} (its key is in the vault)")
    say(f"  fingerprint: {fingerprint(ca.cert_der)}")
    say("  install that certificate on chargers as the central system's root")


@ca_app.command("issue")
def ca_issue(
    charger_id: ChargerId,
    config: ConfigFile,
    out: Annotated[
        Path, typer.Option(help="Directory to write the certificate and key into.")
    ] = Path("."),
) -> None:
    """Issue a client certificate (CN = CHARGER_ID) and key for security profile 3."""
    from surplus.integrations.ocpp.ca import CertificateAuthority
    from surplus.runtime.datadir import open_vault
    from surplus.store.chargers import valid_charger_id

    if not valid_charger_id(charger_id):
        raise fail(f"error: invalid charger id {charger_id!r}", 2)
    data_dir = data_dir_of(config)
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", charger_id)
    cert_path, key_path = out / f"{stem}.pem", out / f"{stem}.key"
    for path in (cert_path, key_path):
        if path.exists():
            raise fail(f"error: {path} exists; it is left as it is", 2)
    try:
        ca = CertificateAuthority.load(data_dir, open_vault(data_dir))
        issued = ca.issue_client(charger_id)
        out.mkdir(parents=True, exist_ok=True)
        cert_path.write_bytes(issued.cert_pem)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(issued.key_pem.reveal())
    except (SurplusError, OSError, ValueError) as err:
        raise fail(f"error: {err}") from None
    with store_of(config) as store:
        entry = store.chargers.get(charger_id)
    say(f"certificate for {charger_id}: {cert_path}")
    say(f"its private key:  {key_path} (mode 0600)")
    if entry is None or not entry.active:
        say(f"note: {charger_id} is not registered; add it with: surplus charger add", err=True)


# --- surplus charger ---


@charger_app.command("add")
def charger_add(charger_id: ChargerId, config: ConfigFile) -> None:
    """Register a charge point; its authorization key is printed this once."""
    with store_of(config) as store:
        try:
            key = store.chargers.add(charger_id)
        except (ValueError, SurplusError) as err:
            raise fail(f"error: {err}", 2) from None
    say(key.reveal())
    say(
        f"{charger_id} registered. Set the line above as its AuthorizationKey (the Basic"
        " password of security profiles 1 and 2); it is shown only now, surplus keeps only"
        " a hash.",
        err=True,
    )


@charger_app.command("list")
def charger_list(config: ConfigFile) -> None:
    """The registered charge points (never a key)."""
    with store_of(config) as store:
        entries = store.chargers.list()
    for entry in entries:
        created = entry.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
        state = "active" if entry.revoked_at is None else f"removed {entry.revoked_at:%Y-%m-%d}"
        say(f"{entry.id}\tadded {created} UTC\t{state}")


@charger_app.command("remove")
def charger_remove(charger_id: ChargerId, config: ConfigFile) -> None:
    """Revoke a charge point: it is refused from its next connection on."""
    with store_of(config) as store:
        try:
            store.chargers.revoke(charger_id)
        except KeyError:
            raise fail(f"error: no registered charger {charger_id!r}", 2) from None
    say(f"{charger_id} removed")


# --- surplus sim ocpp-charger ---


def sim_ocpp_charger(
    url: Annotated[
        str,
        typer.Option(help="The central system's URL, e.g. ws://host:9000/ocpp (the id is added)."),
    ],
    charger_id: Annotated[str, typer.Option("--id", help="The charge point's id.")],
    key: Annotated[
        str | None,
        typer.Option(
            envvar="SURPLUS_OCPP_KEY",
            help="Authorization key (HTTP Basic, profiles 1 and 2); or $SURPLUS_OCPP_KEY.",
        ),
    ] = None,
    ca: Annotated[
        Path | None, typer.Option(help="CA certificate to trust for wss:// (profiles 2, 3).")
    ] = None,
    cert: Annotated[
        Path | None, typer.Option(help="Client certificate (profile 3), with --client-key.")
    ] = None,
    client_key: Annotated[
        Path | None, typer.Option("--client-key", help="The client certificate's key file.")
    ] = None,
    quirk: Annotated[
        list[str] | None,
        typer.Option(
            help="A charger fault, NAME or NAME=ARG; repeat for several. One of: "
            + ", ".join(QUIRKS)
            + "."
        ),
    ] = None,
    plug_in_after: Annotated[
        float | None,
        typer.Option(min=0.0, help="Plug a car in after this many (simulated) seconds."),
    ] = None,
    speed: Annotated[
        float, typer.Option(min=0.01, max=10_000.0, help="Simulated time runs this much faster.")
    ] = 1.0,
) -> None:
    """Run a simulated OCPP 1.6J charger against a central system until Ctrl-C."""
    from surplus.integrations.ocpp.quirks import Quirks

    if not url.startswith(("ws://", "wss://")):
        raise typer.BadParameter("must start with ws:// or wss://", param_hint="--url")
    if (cert is None) != (client_key is None):
        raise typer.BadParameter("give both or neither", param_hint="--cert/--client-key")
    for path, flag in ((ca, "--ca"), (cert, "--cert"), (client_key, "--client-key")):
        if path is not None and not path.is_file():
            raise typer.BadParameter(f"{path}: no such file", param_hint=flag)
    try:
        quirks = Quirks.parse(quirk or [])
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--quirk") from None
    from surplus.integrations.ocpp.chargepoint_sim import SimulatedChargePoint

    sim = SimulatedChargePoint(
        charger_id,
        url,
        key=key,
        ca_file=ca,
        cert_file=cert,
        key_file=client_key,
        quirks=quirks,
        speed=speed,
        say=say,
    )
    active = ", ".join(sorted(quirks.active)) or "none"
    say(f"simulated charger {charger_id} -> {sim.url} ({speed:g}x time, quirks: {active})")
    say("Ctrl-C stops it.")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run_sim(sim, plug_in_after))
    say("stopped")


async def _run_sim(sim: SimulatedChargePoint, plug_in_after: float | None) -> None:
    if plug_in_after is not None:

        async def plug_in_later() -> None:
            await sim.clock.sleep(plug_in_after)
            await sim.plug_in()

        sim.spawn(plug_in_later())
    await sim.run()
