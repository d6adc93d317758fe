"""What the credential and device commands share: the ``--config FILE`` option, the config
read from it, and the data directory and store it names, each failure one clear line."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from surplus.domain.errors import ConfigError, SurplusError
from surplus.terminal import fail

if TYPE_CHECKING:
    from surplus.config import ServiceConfig
    from surplus.integrations.registry import DeviceConfig
    from surplus.store import Store

__all__ = ["ConfigFile", "config_of", "data_dir_of", "device_of", "store_of"]

ConfigFile = Annotated[
    Path, typer.Option("--config", help="The service's TOML config file (for its data_dir).")
]


def config_of(file: Path) -> ServiceConfig:
    """The config in ``file``; its problems end the command (exit 2)."""
    from surplus.config import load_config

    try:
        return load_config(file)
    except ConfigError as err:
        raise fail(str(err), 2) from None


def device_of(service: ServiceConfig, name: str, file: Path) -> tuple[int, DeviceConfig]:
    """The index and table of the device ``name`` in ``service`` (read from ``file``); none
    of that name ends the command (exit 2), naming the devices there are."""
    for index, device in enumerate(service.devices):
        if device.name == name:
            return index, device
    names = ", ".join(d.name for d in service.devices) or "none"
    raise fail(f"error: no device named {name!r} in {file} (devices: {names})", 2)


def data_dir_of(file: Path) -> Path:
    """The data directory ``file`` names, made if missing."""
    data_dir = config_of(file).service.data_dir
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as err:
        raise fail(f"error: {err}") from None
    return data_dir


def store_of(file: Path) -> Store:
    """The store of the data directory ``file`` names (close it after use)."""
    from surplus.runtime.datadir import open_store

    try:
        return open_store(data_dir_of(file))
    except SurplusError as err:
        raise fail(f"error: {err}") from None
