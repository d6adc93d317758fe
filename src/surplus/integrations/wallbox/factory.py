"""Building a ``WallboxCharger`` from its config and the vault."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from surplus.integrations.wallbox.charger import WallboxCharger
from surplus.integrations.wallbox.client import WallboxClient
from surplus.integrations.wallbox.config import WallboxConfig
from surplus.security.vault import Vault

__all__ = ["build_wallbox"]


def build_wallbox(
    config: WallboxConfig, vault: Vault, now: Callable[[], datetime]
) -> WallboxCharger:
    """The charger of ``config``, its password read from ``vault`` (a ``VaultError`` when it is
    not there) and its tokens kept there; close it with ``charger.client.aclose()``."""
    client = WallboxClient(
        config.email,
        vault.get(config.password_secret),
        user_url=config.user_url,
        api_url=config.api_url,
        ca_file=config.ca_file,
        reads_per_minute=config.reads_per_minute,
        writes_per_minute=config.writes_per_minute,
        timeout_s=config.timeout_s,
        vault=vault,
        token_entry=config.token_entry,
        clock=now,
    )
    return WallboxCharger(
        client,
        config.charger_id,
        phases=config.phases,
        poll_interval_s=config.poll_interval_s,
        now=now,
    )
