"""The explicit map from a ``[[devices]]`` table's ``type`` to its config model and its factory.

A new integration adds its model to ``DEVICE_TYPES`` and ``DeviceConfig``, and a factory
(config + vault -> adapter + client) to ``FACTORIES``; nothing is discovered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeAlias

from surplus.integrations.powerwall.adapter import PowerwallAdapter
from surplus.integrations.powerwall.client import PowerwallClient
from surplus.integrations.powerwall.config import PowerwallConfig
from surplus.security.vault import Secret, Vault

__all__ = [
    "DEVICE_TYPES",
    "FACTORIES",
    "Adapter",
    "BuiltDevice",
    "Client",
    "DeviceConfig",
    "build_device",
]

# The config of any registered device: a union of the models below, one per integration.
DeviceConfig: TypeAlias = PowerwallConfig
# What a factory builds: the capabilities (adapter) over the wire protocol (client).
Adapter: TypeAlias = PowerwallAdapter
Client: TypeAlias = PowerwallClient
Clock = Callable[[], datetime]

DEVICE_TYPES: Mapping[str, type[DeviceConfig]] = {
    "powerwall": PowerwallConfig,
}


@dataclass(frozen=True, slots=True)
class BuiltDevice:
    """A device ready to be polled: its adapter, the client to close at the end, and the
    credentials it holds (for the log redaction)."""

    adapter: Adapter
    client: Client
    secrets: tuple[Secret, ...]


def build_powerwall(config: PowerwallConfig, vault: Vault, now: Clock) -> BuiltDevice:
    """A Powerwall gateway; its password from the file or, by name, from the vault."""
    if config.password is not None:
        password = config.password
    else:
        assert config.password_secret is not None  # the model requires one of the two
        password = vault.get(config.password_secret)
    client = PowerwallClient(config.host, password, config.fingerprint, timeout_s=config.timeout_s)
    return BuiltDevice(PowerwallAdapter(client, config.name, now=now), client, (password,))


FACTORIES: Mapping[str, Callable[[DeviceConfig, Vault, Clock], BuiltDevice]] = {
    "powerwall": build_powerwall,
}


def build_device(
    config: DeviceConfig, vault: Vault, now: Clock = lambda: datetime.now(UTC)
) -> BuiltDevice:
    """The adapter and client of one ``[[devices]]`` table; a ``VaultError`` when its
    secret is not in the vault."""
    return FACTORIES[config.type](config, vault, now)
