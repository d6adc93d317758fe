"""A Tesla energy site's battery steered through the Fleet API: ``TeslaEnergySite`` is the
``BatteryController`` for a Powerwall whose local API refuses the customer its operation (a
Powerwall 3), reached through the same ``FleetClient`` as the account's car.

The engine's ``BatteryMode`` is mapped as the local ``PowerwallAdapter`` maps it, onto the
site's operation mode and backup reserve (the app's whole percent):

- ``normal``: ``self_consumption`` with the normal reserve, ``normal_reserve_pct`` (Tesla's
  factory 20 % unless configured: a reserve read from the site could be one a run stopped
  during a hold left raised);
- ``hold``: ``self_consumption`` with the reserve raised to the state of charge (rounded
  down): the pack gives nothing below it and still stores solar surplus;
- ``charge``: ``self_consumption`` with a 100 % reserve: the site charges at its own pace;
- ``idle`` and ``discharge``: ``NotSupportedError``, no operation and reserve do them.

Before any write the site's live status is read: while the grid is not connected (Tesla's
``grid_status`` other than ``Active``), or when that status is older than ``STALE_S``, the
battery is not changed (``UnavailableError``). Then only what differs from ``site_info`` is
written, each write read back by the client; the same mode again sends nothing. Failures are
the client's ``DeviceError``s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from surplus.control.state import BatteryMode
from surplus.domain.errors import NotSupportedError, UnavailableError
from surplus.integrations.powerwall.adapter import (
    DEFAULT_NORMAL_RESERVE_PCT as POWERWALL_NORMAL_RESERVE_PCT,
)
from surplus.integrations.powerwall.adapter import reserve_for
from surplus.integrations.tesla.client import FleetClient
from surplus.integrations.tesla.models import LiveStatus

__all__ = [
    "DEFAULT_NORMAL_RESERVE_PCT",
    "GRID_ACTIVE",
    "SELF_CONSUMPTION",
    "STALE_S",
    "TeslaEnergySite",
]

log = logging.getLogger(__name__)

GRID_ACTIVE = "Active"  # live_status ``grid_status`` while on grid ("Inactive" in an outage)
SELF_CONSUMPTION = "self_consumption"
DEFAULT_NORMAL_RESERVE_PCT = int(POWERWALL_NORMAL_RESERVE_PCT)  # the same Powerwall, remotely
STALE_S = 600.0  # a live status older than this does not show the grid is up


class TeslaEnergySite:
    """The battery of energy site ``site_id`` through ``client``; times come from ``now``."""

    def __init__(
        self,
        client: FleetClient,
        site_id: str,
        *,
        now: Callable[[], datetime],
        normal_reserve_pct: int = DEFAULT_NORMAL_RESERVE_PCT,
    ) -> None:
        if not 0 <= normal_reserve_pct <= 100:
            raise ValueError(f"normal_reserve_pct must be within 0..100, not {normal_reserve_pct}")
        self.client = client
        self.site_id = site_id
        self._now = now
        self._normal_reserve_pct = normal_reserve_pct
        self._mode: BatteryMode | None = None  # what the site was last confirmed to do

    def __repr__(self) -> str:
        return f"TeslaEnergySite({self.site_id!r})"

    async def set_battery_mode(self, mode: str, power_w: float = 0.0) -> None:
        """Steer the site's battery to ``mode``; ``power_w`` cannot be set (the site charges
        and discharges at its own pace)."""
        wanted = self._supported(mode)
        if wanted == self._mode:
            return
        self._mode = None  # unknown until the site confirms the new one
        live = await self.client.live_status(self.site_id)
        self._check_grid(live)
        info = await self.client.site_info(self.site_id)
        reserve_pct = int(reserve_for(wanted, live.percentage_charged, self._normal_reserve_pct))
        wrote = False
        if info.default_real_mode != SELF_CONSUMPTION:
            await self.client.set_operation(self.site_id, SELF_CONSUMPTION)
            wrote = True
        if info.backup_reserve_percent != reserve_pct:
            await self.client.set_backup_reserve(self.site_id, reserve_pct)
            wrote = True
        if wrote:
            log.info(
                "tesla site %s: battery %s (%s, reserve %d %%)",
                self.site_id,
                wanted,
                SELF_CONSUMPTION,
                reserve_pct,
            )
        self._mode = wanted

    def _supported(self, mode: str) -> BatteryMode:
        try:
            wanted = BatteryMode(mode)
        except ValueError:
            raise NotSupportedError(
                f"tesla site {self.site_id}: unknown battery mode {mode!r}"
            ) from None
        if wanted in (BatteryMode.IDLE, BatteryMode.DISCHARGE):
            raise NotSupportedError(
                f"tesla site {self.site_id}: the Fleet API cannot set a battery to {wanted}; it"
                " offers only an operation mode and a backup reserve"
            )
        return wanted

    def _check_grid(self, live: LiveStatus) -> None:
        """Raise ``UnavailableError`` unless ``live`` shows, recently, a connected grid."""
        if live.grid_status != GRID_ACTIVE:
            raise UnavailableError(
                f"tesla site {self.site_id}: grid outage (grid status {live.grid_status}): the"
                " battery is not changed"
            )
        at = _timestamp(live)
        if at is not None and (self._now() - at).total_seconds() > STALE_S:
            raise UnavailableError(
                f"tesla site {self.site_id}: its live status is from {at.isoformat()}, too old"
                " to show the grid is up (is the gateway offline?): the battery is not changed"
            )


def _timestamp(live: LiveStatus) -> datetime | None:
    """When the site took ``live`` (an aware time), if it says so."""
    value = (live.model_extra or {}).get("timestamp")
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return None
    return at if at.tzinfo is not None else None
