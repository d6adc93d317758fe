"""The Powerwall gateway as capabilities: grid and solar meters, the battery, its steering.

``PowerwallAdapter`` turns what ``PowerwallClient`` says in the gateway's terms into the
domain's readings and maps the engine's ``BatteryMode`` onto the two operations the
customer account can set locally (mode and backup reserve). It satisfies the Protocols in
``CAPABILITIES``; the client beneath knows none of them.

Readings: one round (``/api/meters/aggregates``, ``/api/system_status/soe``,
``/api/system_status``) gives every value, stamped with the time its last answer arrived.
``read_site`` always reads; ``read_power`` and ``read_battery`` reuse the latest round while
it is younger than ``max_age_s``, so pollers of both capabilities share one round per tick
and a caller of only one of them still gets fresh values.

Degraded gateways: where ``/api/system_status`` is not offered (a Powerwall 3 lets the
customer read only the meters, the state of energy and the grid status), the grid status
comes from ``/api/system_status/grid_status`` and the capacity and power limits are the last
ones the gateway gave, else ``default_capacity_wh`` and ``default_max_w``. Where the
gateway refuses local operation writes, ``set_battery_mode`` raises ``NotSupportedError``.

Scales: the state of charge is the app's (the local API's raw pack percentage less the
hidden bottom 5 %), so the capacity is the part of ``nominal_full_pack_energy`` that scale
covers (95 %): ``soc_pct / 100 * capacity_wh`` is the energy the pack can still give.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from surplus.capabilities import Battery, BatteryController, Meter
from surplus.control.state import BatteryMode
from surplus.domain.errors import NotSupportedError
from surplus.domain.readings import BatteryState, MeterReading
from surplus.integrations.powerwall import models as m
from surplus.integrations.powerwall.client import PowerwallClient

__all__ = ["CAPABILITIES", "PowerwallAdapter", "PowerwallReading", "reserve_for"]

log = logging.getLogger(__name__)

CAPABILITIES: Final = (Meter, Battery, BatteryController)
SOLAR_NOISE_W = 20.0  # the solar meter reads about ±10 W at night; below this it is 0
DEFAULT_NORMAL_RESERVE_PCT = 20.0  # Tesla's factory backup reserve, app scale
DEFAULT_CAPACITY_WH = 13_500.0  # a Powerwall 2's usable energy: 0..100 % in the app's scale
DEFAULT_MAX_W = 5_000.0  # a Powerwall 2's continuous charge and discharge power
_RESERVE_TOLERANCE_PCT = 0.01  # app scale; the gateway echoes the raw value it was sent


@dataclass(frozen=True, slots=True)
class PowerwallReading:
    """One round of the gateway's telemetry; every part is stamped with the same ``at``."""

    grid: MeterReading  # + import, - export
    pv: MeterReading  # >= 0, night noise cleared
    battery: BatteryState  # + discharging, soc in the app's scale
    load: MeterReading  # the household behind the gateway, >= 0
    grid_status: str  # ``m.GridStatus`` values, kept as the gateway spells them
    at: datetime

    @property
    def grid_connected(self) -> bool:
        return self.grid_status == m.GridStatus.CONNECTED


class PowerwallAdapter:
    """A Powerwall gateway as a ``Meter`` (the grid), a ``Battery`` and a ``BatteryController``.

    ``normal_reserve_pct`` (app scale) is the backup reserve of ``BatteryMode.NORMAL``;
    ``default_capacity_wh`` (app scale) and ``default_max_w`` stand in for what a gateway
    without ``/api/system_status`` never tells.
    """

    def __init__(
        self,
        client: PowerwallClient,
        name: str,
        *,
        normal_reserve_pct: float = DEFAULT_NORMAL_RESERVE_PCT,
        max_age_s: float = 5.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        default_capacity_wh: float = DEFAULT_CAPACITY_WH,
        default_max_w: float = DEFAULT_MAX_W,
    ) -> None:
        if not 0.0 <= normal_reserve_pct <= 100.0:
            raise ValueError(f"normal_reserve_pct must be within 0..100, not {normal_reserve_pct}")
        if max_age_s < 0:
            raise ValueError(f"max_age_s must not be negative, not {max_age_s}")
        if default_capacity_wh <= 0 or default_max_w <= 0:
            raise ValueError(
                "default_capacity_wh and default_max_w must be positive, not"
                f" {default_capacity_wh} and {default_max_w}"
            )
        self.name = name
        self._client = client
        self._normal_reserve_pct = normal_reserve_pct
        self._max_age_s = max_age_s
        self._now = now
        self._latest: PowerwallReading | None = None
        self._read_lock = asyncio.Lock()
        self._mode: BatteryMode | None = None  # what the gateway was last confirmed to do
        # (capacity_wh, max_charge_w, max_discharge_w), the latest the gateway gave
        self._limits = (default_capacity_wh, default_max_w, default_max_w)
        self._degraded_logged = False

    def __repr__(self) -> str:
        return f"PowerwallAdapter({self.name!r}, {self._client!r})"

    # --- readings ---

    async def read_site(self) -> PowerwallReading:
        """A fresh round of the gateway's telemetry; the poller's call."""
        async with self._read_lock:
            return await self._read()

    async def read_power(self) -> MeterReading:
        """The grid meter (+ import) of a recent round."""
        return (await self._recent()).grid

    async def read_battery(self) -> BatteryState:
        return (await self._recent()).battery

    async def _recent(self) -> PowerwallReading:
        async with self._read_lock:
            latest = self._latest
            if latest is not None:
                age_s = (self._now() - latest.at).total_seconds()
                if 0.0 <= age_s < self._max_age_s:
                    return latest
            return await self._read()

    async def _read(self) -> PowerwallReading:
        agg = await self._client.aggregates()
        soc_pct = await self._client.soe_pct()
        system = await self._system_status()
        if system is None:
            grid_status = (await self._client.grid_status()).grid_status
        else:
            grid_status = system.system_island_state
            self._limits = (
                system.nominal_full_pack_energy * m.RESERVE_SCALE,
                system.max_charge_power,
                system.max_discharge_power,
            )
        capacity_wh, max_charge_w, max_discharge_w = self._limits
        at = self._now()
        solar_w = agg.solar.instant_power
        reading = PowerwallReading(
            grid=MeterReading(agg.site.instant_power, at),
            pv=MeterReading(solar_w if solar_w >= SOLAR_NOISE_W else 0.0, at),
            battery=BatteryState(
                soc_pct=soc_pct,
                power_w=agg.battery.instant_power,
                capacity_wh=capacity_wh,
                at=at,
                max_charge_w=max_charge_w,
                max_discharge_w=max_discharge_w,
            ),
            load=MeterReading(max(agg.load.instant_power, 0.0), at),
            grid_status=grid_status,
            at=at,
        )
        self._latest = reading
        return reading

    async def _system_status(self) -> m.SystemStatus | None:
        """``/api/system_status``, or None where the gateway does not offer it."""
        try:
            return await self._client.system_status()
        except NotSupportedError as err:
            if not self._degraded_logged:
                self._degraded_logged = True
                capacity_wh, max_charge_w, max_discharge_w = self._limits
                log.warning(
                    "%s: no system status from this gateway (%s); reading the grid status"
                    " alone and assuming a %.0f Wh capacity, %.0f W charge and %.0f W"
                    " discharge",
                    self.name,
                    err,
                    capacity_wh,
                    max_charge_w,
                    max_discharge_w,
                )
            return None

    # --- steering ---

    async def set_battery_mode(self, mode: str, power_w: float = 0.0) -> None:
        """Steer the battery as far as the local API allows; ``power_w`` cannot be set.

        - ``normal``: ``self_consumption`` with the normal reserve.
        - ``hold``: ``self_consumption`` with the reserve raised to the state of charge when
          the hold began (whole percent, rounded down). The pack then gives nothing below
          that level and still stores solar surplus, which is what ``hold`` asks. Not
          ``backup`` mode: that keeps the pack full by charging from the grid, so it is a
          charge at the gateway's pace, not a hold. Solar stored during the hold may be
          given back down to that level.
        - ``charge``: ``self_consumption`` with a 100 % reserve; the gateway charges at its
          own pace from solar and, where the site permits grid charging, from the grid.
        - ``idle`` and ``discharge`` raise ``NotSupportedError``: the local API has no way to
          stop the pack storing surplus, nor to make it export.

        A mode already in effect sends nothing: the gateway's operation is read before
        the first write of each new mode and written only if it differs (writes are slow
        and stop sitemaster on old firmware). While the grid is not connected the client
        refuses to write (``UnavailableError``) and nothing changes. A gateway that refuses
        the customer its operation (a Powerwall 3) raises ``NotSupportedError``.
        """
        wanted = BatteryMode(mode)
        if wanted in (BatteryMode.IDLE, BatteryMode.DISCHARGE):
            raise NotSupportedError(
                f"{self.name}: a Powerwall cannot be set to {wanted} through its local API;"
                " it offers only self_consumption and backup with a backup reserve"
            )
        if wanted == self._mode:
            return
        self._mode = None  # unknown until the gateway confirms the new one
        real_mode = m.RealMode.SELF_CONSUMPTION
        reserve_pct = await self._reserve_for(wanted)
        # Only self_consumption is ever sent, which every firmware accepts: a NotSupportedError
        # here is the gateway refusing the operation endpoint itself.
        try:
            current = await self._client.operation()
            current_reserve_pct = m.raw_to_app_pct(current.backup_reserve_percent)
            if (
                current.real_mode != real_mode
                or abs(current_reserve_pct - reserve_pct) > _RESERVE_TOLERANCE_PCT
            ):
                await self._client.set_operation(real_mode, reserve_pct)
                log.info(
                    "%s: battery %s (%s, reserve %.0f %%)",
                    self.name,
                    wanted,
                    real_mode,
                    reserve_pct,
                )
        except NotSupportedError as err:
            raise NotSupportedError(
                f"{self.name}: local writes of the operation (mode and backup reserve) are"
                f" refused on this gateway ({err}); the customer account cannot change them"
                " on a Powerwall 3 or where the firmware keeps them from it. Steer the battery"
                " through the Tesla Fleet API (the energy site's operation and backup"
                " commands) instead"
            ) from err
        self._mode = wanted

    async def _reserve_for(self, mode: BatteryMode) -> float:
        """The backup reserve (app scale) that makes ``self_consumption`` do ``mode``."""
        soc_pct = (await self._recent()).battery.soc_pct if mode == BatteryMode.HOLD else 0.0
        return reserve_for(mode, soc_pct, self._normal_reserve_pct)


def reserve_for(mode: BatteryMode, soc_pct: float, normal_pct: float) -> float:
    """The backup reserve (app %) that makes a Powerwall in ``self_consumption`` do ``mode``
    at a state of charge of ``soc_pct``: ``normal_pct``, 100 to charge, the state of charge
    (whole percent, rounded down) to hold."""
    if mode == BatteryMode.NORMAL:
        return normal_pct
    if mode == BatteryMode.CHARGE:
        return 100.0
    return float(min(max(math.floor(soc_pct), 0), 100))
