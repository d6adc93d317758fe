"""The explicit map from a ``[[devices]]`` table's ``type`` to its config model and its factory.

A new integration adds its model to ``DEVICE_TYPES`` and ``DeviceConfig``, and, for a
device surplus polls, a factory (config + vault -> adapter + client) to ``FACTORIES``;
nothing is discovered.

Registered: ``powerwall`` (Tesla Powerwall 2/3 gateway), ``envoy`` (Enphase IQ Gateway),
both polled, ``push`` (a source posting to the Charge HQ-compatible push API), and the
chargers ``ocpp`` (connecting to surplus's OCPP central system), ``wallbox`` (through the
Wallbox cloud) and ``tesla`` (a car, through the Tesla Fleet API).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeAlias, TypeGuard, TypeVar

import httpx

from surplus.capabilities import RunningCharger
from surplus.domain.errors import NotSupportedError
from surplus.integrations.envoy import client as envoy_client
from surplus.integrations.envoy.adapter import EnvoyAdapter
from surplus.integrations.envoy.client import EnvoyClient
from surplus.integrations.envoy.cloud import EnlightenCloud
from surplus.integrations.envoy.config import EnvoyConfig
from surplus.integrations.envoy.tokens import EnvoyTokens
from surplus.integrations.ocpp.config import OcppDeviceConfig
from surplus.integrations.powerwall import client as powerwall_client
from surplus.integrations.powerwall.adapter import PowerwallAdapter
from surplus.integrations.powerwall.client import PowerwallClient
from surplus.integrations.powerwall.config import PowerwallConfig
from surplus.integrations.powerwall.tls import fingerprint, presented_certificate
from surplus.integrations.push.config import PushConfig
from surplus.integrations.tesla.config import TeslaConfig
from surplus.integrations.tesla.factory import build_tesla
from surplus.integrations.wallbox.config import WallboxConfig
from surplus.integrations.wallbox.factory import build_wallbox
from surplus.security.vault import Secret, Vault

__all__ = [
    "DEVICE_TYPES",
    "FACTORIES",
    "Adapter",
    "BuiltCharger",
    "BuiltDevice",
    "ChargerConfig",
    "Client",
    "CloudChargerConfig",
    "DeviceConfig",
    "PolledConfig",
    "build_charger",
    "build_device",
    "is_polled",
    "presented_fingerprint",
]

# The config of a device surplus polls, and of any registered device.
PolledConfig: TypeAlias = PowerwallConfig | EnvoyConfig
# a loadpoint's charger: connecting to surplus (OCPP), or reached through a vendor's cloud
CloudChargerConfig: TypeAlias = WallboxConfig | TeslaConfig
ChargerConfig: TypeAlias = OcppDeviceConfig | CloudChargerConfig
DeviceConfig: TypeAlias = PolledConfig | PushConfig | ChargerConfig
# What a factory builds: the capabilities (adapter) over the wire protocol (client).
Adapter: TypeAlias = PowerwallAdapter | EnvoyAdapter
Client: TypeAlias = PowerwallClient | EnvoyClient
Clock = Callable[[], datetime]
Factory = Callable[[PolledConfig, Vault, Clock, str | None], "BuiltDevice"]


def is_polled(config: DeviceConfig) -> TypeGuard[PolledConfig]:
    """Whether surplus polls the device (a push source and a charger come to surplus)."""
    return not isinstance(config, PushConfig | OcppDeviceConfig | WallboxConfig | TeslaConfig)


DEVICE_TYPES: Mapping[str, type[DeviceConfig]] = {
    "powerwall": PowerwallConfig,
    "envoy": EnvoyConfig,
    "push": PushConfig,
    "ocpp": OcppDeviceConfig,
    "wallbox": WallboxConfig,
    "tesla": TeslaConfig,
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


def build_envoy(config: EnvoyConfig, vault: Vault, now: Clock, pinned: str | None) -> BuiltDevice:
    """An Envoy; its token from the vault (over https), renewed from Enlighten when its
    credentials are configured (the password from the vault too); its certificate the
    config's fingerprint, else the one ``pinned`` in the store."""
    secrets: list[Secret] = []
    tokens = None
    if not config.plain_http:
        assert config.token_secret is not None  # the model requires it over https
        token = vault.get(config.token_secret)
        secrets.append(token)
        cloud = None
        if config.enlighten_email is not None:
            assert config.enlighten_password_secret is not None  # the model pairs them
            password = vault.get(config.enlighten_password_secret)
            secrets.append(password)
            cloud = EnlightenCloud(
                config.enlighten_email,
                password,
                enlighten_url=config.enlighten_url,
                entrez_url=config.entrez_url,
                ca_file=config.cloud_ca_file,
                timeout_s=config.timeout_s,
            )
        tokens = EnvoyTokens(token, vault=vault, entry=config.token_secret, cloud=cloud, now=now)
    client = EnvoyClient(
        config.host,
        tokens,
        config.fingerprint or pinned,
        serial=config.serial,
        timeout_s=config.timeout_s,
    )
    adapter = EnvoyAdapter(client, config.name, now=now)
    return BuiltDevice(adapter, client, tuple(secrets))


_C = TypeVar("_C", PowerwallConfig, EnvoyConfig)


def _factory(
    model: type[_C], build: Callable[[_C, Vault, Clock, str | None], BuiltDevice]
) -> Factory:
    """``build`` for any ``PolledConfig``, refusing the models of other types."""

    def checked(config: PolledConfig, vault: Vault, now: Clock, pinned: str | None) -> BuiltDevice:
        if not isinstance(config, model):
            raise TypeError(f"{model.__name__} expected, not {type(config).__name__}")
        return build(config, vault, now, pinned)

    return checked


FACTORIES: Mapping[str, Factory] = {
    "powerwall": _factory(PowerwallConfig, build_powerwall),
    "envoy": _factory(EnvoyConfig, build_envoy),
}


def build_device(
    config: PolledConfig,
    vault: Vault,
    now: Clock = lambda: datetime.now(UTC),
    *,
    pinned: str | None = None,
) -> BuiltDevice:
    """The adapter and client of one ``[[devices]]`` table; a ``VaultError`` when its
    secret is not in the vault. ``pinned``: the certificate fingerprint the store holds for
    it (the config's own fingerprint comes first)."""
    return FACTORIES[config.type](config, vault, now, pinned)


async def presented_fingerprint(config: PolledConfig) -> str:
    """The fingerprint of the certificate the device presents now (for ``surplus pin``)."""
    url = httpx.URL(config.host)
    if url.scheme != "https":
        raise NotSupportedError(f"{config.host} is plain HTTP: there is no certificate to pin")
    sni = envoy_client.SNI_NAME if isinstance(config, EnvoyConfig) else powerwall_client.SNI_NAME
    der = await presented_certificate(
        url.host, url.port or 443, sni=sni, timeout_s=config.timeout_s
    )
    return fingerprint(der)


@dataclass(frozen=True, slots=True)
class BuiltCharger:
    """A charger reached through its vendor's cloud, and how to close its client."""

    charger: RunningCharger
    aclose: Callable[[], Awaitable[None]]


def build_charger(config: CloudChargerConfig, vault: Vault, now: Clock) -> BuiltCharger:
    """The charger of one ``[[devices]]`` table of a cloud charger; a ``VaultError`` when its
    secret is not in the vault."""
    if isinstance(config, WallboxConfig):
        wallbox = build_wallbox(config, vault, now)
        return BuiltCharger(wallbox, wallbox.client.aclose)
    tesla = build_tesla(config, vault, now)
    return BuiltCharger(tesla, tesla.client.aclose)
