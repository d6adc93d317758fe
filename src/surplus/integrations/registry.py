"""The explicit map from a ``[[devices]]`` table's ``type`` to its config model and its factory.

A new integration adds its model to ``DEVICE_TYPES`` and ``DeviceConfig``, and a factory
(config + vault -> adapter + client) to ``FACTORIES``; nothing is discovered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeAlias

import httpx

from surplus.integrations.powerwall.adapter import PowerwallAdapter
from surplus.integrations.powerwall.client import SNI_NAME, PowerwallClient
from surplus.integrations.powerwall.config import PowerwallConfig
from surplus.integrations.powerwall.tls import fingerprint, presented_certificate
from surplus.security.vault import Secret, Vault

__all__ = [
    "DEVICE_TYPES",
    "FACTORIES",
    "Adapter",
    "BuiltDevice",
    "Client",
    "DeviceConfig",
    "build_device",
    "presented_fingerprint",
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


def build_powerwall(
    config: PowerwallConfig, vault: Vault, now: Clock, pinned: str | None
) -> BuiltDevice:
    """A Powerwall gateway; its password from the file or, by name, from the vault; its
    certificate the config's fingerprint, else the one ``pinned`` in the store."""
    if config.password is not None:
        password = config.password
    else:
        assert config.password_secret is not None  # the model requires one of the two
        password = vault.get(config.password_secret)
    fingerprint = config.fingerprint or pinned
    client = PowerwallClient(config.host, password, fingerprint, timeout_s=config.timeout_s)
    return BuiltDevice(PowerwallAdapter(client, config.name, now=now), client, (password,))


FACTORIES: Mapping[str, Callable[[DeviceConfig, Vault, Clock, str | None], BuiltDevice]] = {
    "powerwall": build_powerwall,
}


def build_device(
    config: DeviceConfig,
    vault: Vault,
    now: Clock = lambda: datetime.now(UTC),
    *,
    pinned: str | None = None,
) -> BuiltDevice:
    """The adapter and client of one ``[[devices]]`` table; a ``VaultError`` when its
    secret is not in the vault. ``pinned``: the certificate fingerprint the store holds for
    it (the config's own fingerprint comes first)."""
    return FACTORIES[config.type](config, vault, now, pinned)


async def presented_fingerprint(config: DeviceConfig) -> str:
    """The fingerprint of the certificate the device presents now (for ``surplus pin``)."""
    url = httpx.URL(config.host)
    der = await presented_certificate(
        url.host, url.port or 443, sni=SNI_NAME, timeout_s=config.timeout_s
    )
    return fingerprint(der)
