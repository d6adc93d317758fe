"""Build a ``TeslaVehicle`` from its config: the TLS trust, the tokens from the vault, the
Fleet API client and the adapter, with the account's energy site when one is configured."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from surplus.domain.errors import ConfigError
from surplus.integrations.tesla.client import FleetClient
from surplus.integrations.tesla.config import TeslaConfig
from surplus.integrations.tesla.energy import DEFAULT_NORMAL_RESERVE_PCT, TeslaEnergySite
from surplus.integrations.tesla.tokens import TeslaTokens
from surplus.integrations.tesla.vehicle import TeslaVehicle
from surplus.security.vault import Vault

__all__ = ["build_tesla", "tokens_of", "trust"]


def trust(ca_file: Path | None, key: str) -> ssl.SSLContext | bool:
    """The TLS trust for ``ca_file`` (the system's CAs when None)."""
    if ca_file is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as e:
        raise ConfigError([(key, f"{ca_file} cannot be used as a CA file ({e})")]) from None


def tokens_of(config: TeslaConfig, vault: Vault, now: Callable[[], datetime]) -> TeslaTokens:
    secret = (
        vault.get(config.client_secret_secret) if config.client_secret_secret is not None else None
    )
    return TeslaTokens(
        vault,
        config.token_secret,
        client_id=config.client_id,
        client_secret=secret,
        auth_url=config.auth_url,
        verify=trust(config.ca_file, "ca_file"),
        now=now,
        timeout_s=config.timeout_s,
    )


def build_tesla(config: TeslaConfig, vault: Vault, now: Callable[[], datetime]) -> TeslaVehicle:
    """The car of ``config``; its tokens are read from ``vault`` when first needed. Its energy
    site shares its client: refresh tokens rotate, and two clients refreshing one vault entry
    would race and lose it."""
    client = FleetClient(
        config.base_url,
        tokens_of(config, vault, now),
        verify=trust(config.ca_file, "ca_file"),
        proxy_url=config.proxy_url,
        proxy_verify=trust(config.proxy_ca_file, "proxy_ca_file") if config.proxy_url else None,
        timeout_s=config.timeout_s,
    )
    site = None
    if config.energy_site_id is not None:
        reserve = config.energy_site_reserve_pct
        site = TeslaEnergySite(
            client,
            config.energy_site_id,
            now=now,
            normal_reserve_pct=DEFAULT_NORMAL_RESERVE_PCT if reserve is None else reserve,
        )
    return TeslaVehicle(
        client,
        config.vin,
        now=now,
        poll_interval_s=config.poll_interval_s,
        idle_data_s=config.idle_data_s,
        allow_below_5a=config.allow_below_5a,
        energy_site=site,
    )
