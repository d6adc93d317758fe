"""The Envoy as the site's meter: grid, solar and household power, and the IQ Batteries
where there are any.

``EnvoyAdapter`` turns what ``EnvoyClient`` says in the gateway's terms into the domain's
readings: grid = ``net-consumption`` (+ import), solar = the production CT (else the
inverters), household = ``total-consumption`` plus what the batteries give (they sit behind
the consumption CT, so ``total-consumption`` counts their charging as consumption).

Live data: the first read polls ``/production.json``, which tells which CTs there are. With
production and consumption CTs, a background task then reads ``/stream/meter`` (about one
frame a second) and later reads take its latest frame, stale after ``stream_stale_s``. A
token whose role may not read the stream (owner tokens since firmware 7.6.175) gets 401:
the adapter remembers and polls ``/production.json`` on each read instead. Never both.

Data defects: a gateway right after its start answers 503 (unavailable) and then, for a
while, all-zero readings; those raise ``UnavailableError`` instead of passing for a dark,
idle site (stream frames without any voltage are skipped alike). Firmware from 8.3.5433 on
reports the net values as ``total-consumption``; the household is then net + solar.
A gateway without consumption CTs cannot tell the grid power: ``NotSupportedError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from surplus.domain.errors import (
    AuthenticationError,
    DeviceError,
    NotSupportedError,
    UnavailableError,
)
from surplus.domain.readings import BatteryState, MeterReading
from surplus.integrations.envoy import models as m
from surplus.integrations.envoy.client import EnvoyClient

__all__ = ["EnvoyAdapter", "EnvoyReading"]

log = logging.getLogger(__name__)

BATTERY_MAX_W = 3_840.0  # an IQ Battery 5P's continuous charge and discharge power, each
STREAM_STALE_S = 30.0  # longer than the ~20 s bursts of firmware that buffers the stream
STREAM_RETRY_S = 5.0
STREAM_RETRY_MAX_S = 60.0


@dataclass(frozen=True, slots=True)
class EnvoyReading:
    """One round of the gateway's telemetry."""

    grid: MeterReading  # + import, - export
    pv: MeterReading  # >= 0
    load: MeterReading  # the household, >= 0
    battery: BatteryState | None  # None: no IQ Battery (or none readable)
    at: datetime


@dataclass(frozen=True, slots=True)
class _Powers:
    pv_w: float
    net_w: float
    total_w: float
    at: datetime


class EnvoyAdapter:
    """An Envoy as the site's meters (and its batteries' state, read only).

    ``use_stream`` False: always poll ``/production.json``. ``first_frame_s``: how long a
    read waits for a stream frame when it has none fresh.
    """

    def __init__(
        self,
        client: EnvoyClient,
        name: str,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        use_stream: bool = True,
        stream_stale_s: float = STREAM_STALE_S,
        stream_retry_s: float = STREAM_RETRY_S,
        first_frame_s: float = 5.0,
    ) -> None:
        self.name = name
        self._client = client
        self._now = now
        self._use_stream = use_stream
        self._stream_stale_s = stream_stale_s
        self._stream_retry_s = stream_retry_s
        self._first_frame_s = first_frame_s
        self._read_lock = asyncio.Lock()
        self._stream_task: asyncio.Task[None] | None = None
        self._streaming = False  # reads take the stream's frames
        self._frame: _Powers | None = None
        self._stream_error: AuthenticationError | None = None
        self._changed = asyncio.Event()
        self._battery_count: int | None = None  # known once the inventory was read
        self._battery_capacity_wh = 0.0
        self._no_battery = False
        self._quirk_logged = False
        client.on_close(self.aclose)

    def __repr__(self) -> str:
        return f"EnvoyAdapter({self.name!r}, {self._client!r})"

    @property
    def streaming(self) -> bool:
        """Whether reads take their powers from ``/stream/meter`` (else ``production.json``)."""
        return self._streaming

    async def aclose(self) -> None:
        """End the stream reader, if one runs (the client closes it too)."""
        task = self._stream_task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def read_site(self) -> EnvoyReading:
        """A fresh round of the site's telemetry; the poller's call."""
        async with self._read_lock:
            powers = await (self._from_stream() if self._streaming else self._from_production())
            battery = await self._battery()
        battery_w = battery.power_w if battery is not None else 0.0
        return EnvoyReading(
            grid=MeterReading(powers.net_w, powers.at),
            pv=MeterReading(max(powers.pv_w, 0.0), powers.at),
            load=MeterReading(max(powers.total_w + battery_w, 0.0), powers.at),
            battery=battery,
            at=powers.at,
        )

    # --- powers ---

    async def _from_production(self) -> _Powers:
        production = await self._client.production()
        at = self._now()
        if production.all_zero():
            raise UnavailableError(
                f"{self.name}: the gateway reports all zeros, as right after it started;"
                " not taken for real readings"
            )
        net, total = production.measured(m.NET), production.measured(m.TOTAL)
        if net is None or total is None:
            raise NotSupportedError(
                f"{self.name}: the gateway has no consumption CT (or is not metered), so it"
                " cannot tell the grid power surplus steers by"
            )
        ct = production.measured(m.PRODUCTION)
        pv_entry = ct if ct is not None else production.inverters()
        pv_w = pv_entry.wNow if pv_entry is not None else 0.0
        total_w = total.wNow
        if total.wNow == net.wNow and total.whLifetime == net.whLifetime:
            total_w = self._repaired_total(net.wNow, pv_w)
        if self._use_stream and self._stream_task is None and ct is not None:
            self._start_stream()
        return _Powers(pv_w, net.wNow, total_w, at)

    def _repaired_total(self, net_w: float, pv_w: float) -> float:
        """``total-consumption`` that reports the net values (firmware 8.3.5433)."""
        if not self._quirk_logged:
            self._quirk_logged = True
            log.info(
                "%s: total-consumption reports the net values (a firmware defect);"
                " taking net + production instead",
                self.name,
            )
        return net_w + pv_w

    def _start_stream(self) -> None:
        self._streaming = True
        self._stream_task = asyncio.create_task(self._consume(), name=f"{self.name} stream")

    async def _from_stream(self) -> _Powers:
        if not self._fresh():
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), self._first_frame_s)
        if self._stream_error is not None:
            raise self._stream_error
        if not self._streaming:  # the stream was refused meanwhile
            return await self._from_production()
        frame = self._frame
        if frame is None or not self._fresh():
            raise UnavailableError(
                f"{self.name}: no live frame from /stream/meter in the last"
                f" {self._stream_stale_s:g} s"
            )
        return frame

    def _fresh(self) -> bool:
        frame = self._frame
        return (
            frame is not None and (self._now() - frame.at).total_seconds() <= self._stream_stale_s
        )

    async def _consume(self) -> None:
        """Read the stream until cancelled; reconnect after it breaks; stop for good when
        the token's role may not read it (then reads poll) or the token is refused."""
        failures = 0
        while True:
            try:
                async for frame in self._client.meter_stream():
                    failures = 0
                    self._take(frame)
            except NotSupportedError as err:
                log.info("%s: no meter stream (%s); polling production.json", self.name, err)
                self._streaming = False
                self._changed.set()
                return
            except AuthenticationError as err:
                self._stream_error = err
                self._changed.set()
                return
            except DeviceError as err:
                log.info("%s: the meter stream broke off: %s", self.name, err)
            except Exception:
                log.exception("%s: the meter stream reader failed; polling instead", self.name)
                self._streaming = False
                self._changed.set()
                return
            failures += 1
            await asyncio.sleep(min(self._stream_retry_s * failures, STREAM_RETRY_MAX_S))

    def _take(self, frame: m.StreamFrame) -> None:
        if frame.net_consumption.silent and frame.production.silent:
            return  # all zero, no voltage: the meters are not measuring yet
        pv_w, net_w = frame.production.watts, frame.net_consumption.watts
        total_w = frame.total_consumption.watts
        if total_w == net_w and pv_w != 0.0:
            total_w = self._repaired_total(net_w, pv_w)
        self._frame = _Powers(pv_w, net_w, total_w, self._now())
        self._changed.set()

    # --- batteries ---

    async def _battery(self) -> BatteryState | None:
        """The IQ Batteries together, or None where there are none (or none readable)."""
        if self._no_battery:
            return None
        client = self._client
        try:
            if self._battery_count is None:
                groups = await client.inventory()
                batteries = [d for g in groups if g.type == m.ENCHARGE for d in g.devices]
                if not batteries:
                    raise NotSupportedError("the inventory lists no IQ Battery")
                self._battery_count = len(batteries)
                self._battery_capacity_wh = sum(d.encharge_capacity or 0.0 for d in batteries)
            secctrl = await client.secctrl()
            power = await client.battery_power()
        except NotSupportedError as err:
            log.info("%s: no battery readings (%s); reading on without them", self.name, err)
            self._no_battery = True
            return None
        capacity_wh = self._battery_capacity_wh or secctrl.Max_energy
        if capacity_wh <= 0:
            log.warning("%s: the batteries report no capacity; reading on without them", self.name)
            self._no_battery = True
            return None
        count = self._battery_count or 1
        return BatteryState(
            soc_pct=secctrl.ENC_agg_soc or secctrl.agg_soc,
            power_w=sum(d.real_power_mw for d in power.devices) / 1000.0,
            capacity_wh=capacity_wh,
            at=self._now(),
            max_charge_w=BATTERY_MAX_W * count,
            max_discharge_w=BATTERY_MAX_W * count,
        )
