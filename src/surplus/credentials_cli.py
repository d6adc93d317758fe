"""The commands that hand the service its credentials: ``surplus secret`` and ``surplus pin``.

Both find the data directory through the config file, and both may run beside a running
service: a device waiting for re-authentication notices the changed vault or pin within
seconds and tries again (``runtime.devices``).

- ``surplus secret set NAME`` reads the value from a hidden prompt (or from standard input
  when that is not a terminal), so it never lands in the shell's history; ``list`` shows
  names only; ``delete`` removes one.
- ``surplus pin DEVICE`` shows the fingerprint of the certificate the device presents now
  and, once the owner confirms it (or passes it with ``--fingerprint``), pins it in the
  store in place of the one trusted before.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from surplus.cli_config import ConfigFile, config_of, device_of
from surplus.domain.errors import SurplusError
from surplus.terminal import fail, say

if TYPE_CHECKING:
    pass

__all__ = ["pin", "secret_app"]

secret_app = typer.Typer(
    help="The encrypted vault of the service's passwords, tokens and keys.",
    no_args_is_help=True,
)


@secret_app.command("set")
def secret_set(
    name: Annotated[str, typer.Argument(help="The entry's name, e.g. gateway.password.")],
    config: ConfigFile,
) -> None:
    """Store a secret in the vault (asked for without echo, or read from standard input)."""
    from surplus.runtime.datadir import open_vault

    data_dir = config_of(config).service.data_dir
    if sys.stdin.isatty():
        value = typer.prompt(f"value of {name}", hide_input=True, confirmation_prompt=True)
    else:
        value = sys.stdin.readline().rstrip("\r\n")
    if not value:
        raise fail("error: an empty value is not stored", 2)
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        open_vault(data_dir).set(name, value)
    except (SurplusError, ValueError, OSError) as err:
        raise fail(f"error: {err}") from None
    say(f"{name} stored in the vault in {data_dir}")


@secret_app.command("list")
def secret_list(config: ConfigFile) -> None:
    """The names of the stored secrets (never their values)."""
    from surplus.runtime.datadir import open_vault

    try:
        names = open_vault(config_of(config).service.data_dir).names()
    except (SurplusError, OSError) as err:
        raise fail(f"error: {err}") from None
    for name in names:
        say(name)


@secret_app.command("delete")
def secret_delete(
    name: Annotated[str, typer.Argument(help="The entry's name.")],
    config: ConfigFile,
) -> None:
    """Remove a secret from the vault."""
    from surplus.runtime.datadir import open_vault

    try:
        open_vault(config_of(config).service.data_dir).delete(name)
    except (SurplusError, OSError) as err:
        raise fail(f"error: {err}") from None
    say(f"{name} deleted")


def pin(
    device: Annotated[str, typer.Argument(help="The device's name in the config file.")],
    config: ConfigFile,
    fingerprint: Annotated[
        str | None,
        typer.Option(
            help="The SHA-256 fingerprint you expect (e.g. read on the device's own page);"
            " pinned only if the device presents exactly this one."
        ),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", help="Pin what the device presents without asking.")
    ] = False,
) -> None:
    """Pin the certificate a device presents now, e.g. after it was replaced or reset."""
    from surplus.integrations.powerwall.tls import normalize_fingerprint
    from surplus.integrations.registry import is_polled, presented_fingerprint
    from surplus.runtime.datadir import open_store

    service = config_of(config)
    index, chosen = device_of(service, device, config)
    if not is_polled(chosen):
        raise fail(f"error: {device} connects to surplus: it has no certificate to pin", 2)
    if chosen.fingerprint is not None:
        raise fail(
            f"error: {config}: devices[{index}].fingerprint pins {device}'s certificate in the"
            " file itself; change it there (or remove it to pin in the store)",
            2,
        )
    expected = None
    if fingerprint is not None:
        try:
            expected = normalize_fingerprint(fingerprint)
        except ValueError as err:
            raise fail(f"error: --fingerprint: {err}", 2) from None
    try:
        presented = asyncio.run(presented_fingerprint(chosen))
    except SurplusError as err:
        raise fail(f"error: {device}: {err}") from None
    say(f"{device} ({chosen.host}) presents the certificate {presented}")
    if expected is not None and presented != expected:
        raise fail(f"error: that is not the expected {expected}; nothing pinned")
    if expected is None and not yes:
        if not sys.stdin.isatty():
            raise fail("error: not confirmed; pass --yes or --fingerprint FP", 2)
        typer.confirm("pin it?", abort=True)
    try:
        with open_store(service.service.data_dir) as store:
            before = store.pins.get(device)
            store.pins.set(device, presented, datetime.now(UTC))
    except SurplusError as err:
        raise fail(f"error: {err}") from None
    if before is not None and before.fingerprint != presented:
        say(f"replaced the pin {before.fingerprint} of {before.pinned_at:%Y-%m-%d %H:%M} UTC")
    say(f"{device}: pinned; a running service uses it within seconds")
