"""The demo's simulated chargers (``surplus demo --charger ocpp|wallbox|tesla``).

Each one is served on 127.0.0.1 over its real protocol, its credentials go into the demo's
vault or store, it adds its tables to the demo's config (the device, the ``carport``
loadpoint in ``solar`` mode and, for OCPP, the central system's port), and its car is
plugged in from 07:30 to 19:00 (simulated local time): a session a day, ended by the
unplugging. What the car draws is part of the simulated house, so the site's meters see it.

The engine runs on real time while the world runs ``speed`` times faster, so the
loadpoint's contactor timers, command budget and the home battery's carry time are
divided by the speed; a cloud charger's polling keeps within its real API's limits.

- ``ocpp``: a one-phase OCPP 1.6J wallbox (6 to 16 A) connecting to the service's central
  system over security profile 1, its key registered in the store;
- ``wallbox``: a Wallbox Pulsar Plus (one phase) through the simulated Wallbox cloud;
- ``tesla``: a Model 3 through the simulated Tesla Fleet API (OAuth tokens in the vault).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from surplus.integrations.ocpp.chargepoint_sim import SimulatedChargePoint
from surplus.integrations.tesla.config import TeslaConfig
from surplus.integrations.tesla.factory import tokens_of
from surplus.integrations.tesla.models import IDLE_DATA_S
from surplus.integrations.tesla.simstate import FleetSimulator
from surplus.integrations.tesla.simulator import running_simulator as running_fleet
from surplus.integrations.tesla.tokens import scopes_for
from surplus.integrations.wallbox.simstate import WallboxSimulator
from surplus.integrations.wallbox.simulator import running_simulator as running_wallbox
from surplus.runtime.datadir import open_store, open_vault
from surplus.security.vault import Secret
from surplus.sim.day import speed_clock
from surplus.sim.devices import ElectricVehicle

__all__ = ["CHARGERS", "DemoCharger", "start_charger"]

CHARGERS = ("ocpp", "wallbox", "tesla")
HOME_FROM_H, HOME_UNTIL_H = 7.5, 19.0  # the car is plugged in between (local, simulated)
VIN = "5YJ3E7EB0KF000001"
WALLBOX_ID = 12345
WALLBOX_EMAIL = "owner@example.com"

# The engine's timers in seconds of simulated time, divided by the speed in the config.
CONTACTOR_S = {"start_delay_s": 120.0, "stop_delay_s": 600.0, "min_on_s": 900.0}
MIN_OFF_S = 900.0
BUDGET_INTERVAL_S = 300.0
# A cloud charger's commands cost: Tesla bills each one, the Wallbox cloud allows a few a
# minute, and both are best kept to about 10 a plug-in session. So their current moves at
# most hourly, by 2 A or more, 10 commands a session at most, and the home battery carries
# the difference between the sun and the car for up to that hour.
CLOUD_BUDGET_S, CLOUD_DEADBAND_A, CLOUD_COMMANDS = 3600.0, 2.0, 10
BUFFER_CARRY_S = 600.0  # how long the home battery may carry a started solar charge


class DemoCharger(Protocol):
    """A simulated charger in the demo."""

    cloud: bool  # steered through a vendor cloud, its commands rationed

    def tables(self) -> str:
        """Its tables in the demo's config."""
        ...

    def power_w(self) -> float:
        """What its car draws now, in W."""
        ...

    async def drive(self, api_url: asyncio.Future[str]) -> None:
        """Its car's day (and, for OCPP, the charger itself), once the service listens."""
        ...


def _car() -> ElectricVehicle:
    return ElectricVehicle(capacity_wh=50_000.0, energy_wh=20_000.0)


def _loadpoint(device: str, speed: float, *, cloud: bool = False) -> str:
    """The ``carport`` loadpoint on ``device``; a ``cloud`` charger's commands are few."""
    timers = {**CONTACTOR_S, "min_off_s": MIN_OFF_S}
    contactor = "".join(f"{k} = {v / speed:.3g}\n" for k, v in timers.items())
    carry_s = CLOUD_BUDGET_S if cloud else BUFFER_CARRY_S
    budget = (
        f"min_interval_s = {CLOUD_BUDGET_S / speed:.3g}\ndeadband_a = {CLOUD_DEADBAND_A:g}\n"
        f"max_per_session = {CLOUD_COMMANDS}\n"
        if cloud
        else f"min_interval_s = {BUDGET_INTERVAL_S / speed:.3g}\n"
    )
    # a cloud charger's battery is left in self-consumption: the planner would rather hold
    # it for the tariff's dear hours than let it carry the car between two commands
    controllable = "false" if cloud else "true"
    return f"""
# the home battery carries a started charge through a cloud: {carry_s:g} s simulated
[site.battery]
buffer_carry_s = {carry_s / speed:.3g}
controllable = {controllable}

[[loadpoints]]
name = "carport"
mode = "solar"
charger_device = "{device}"

[loadpoints.charger]
phases = 1
min_current_a = 6
max_current_a = 16

# the timers of simulated time, at {speed:g}x real time
[loadpoints.contactor]
{contactor}
[loadpoints.budget]
{budget}"""


async def _by_day(clock: Callable[[], datetime], plug: Callable[[bool], object]) -> None:
    """Plug the car in (``plug(True)``) at 07:30 and out at 19:00, simulated local time."""
    plugged = False
    while True:
        local = clock().astimezone()
        hour = local.hour + local.minute / 60.0
        if (HOME_FROM_H <= hour < HOME_UNTIL_H) != plugged:
            plugged = not plugged
            done = plug(plugged)
            if asyncio.iscoroutine(done):
                await done
        await asyncio.sleep(1.0)


def _free_port() -> int:
    """A port free on 127.0.0.1 now (the charger needs the central system's URL before the
    service starts it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class _Ocpp:
    """A one-phase OCPP wallbox, registered with the service's central system."""

    name, cloud = "wallbox", False

    def __init__(self, data_dir: Path, speed: float, clock: Callable[[], datetime]) -> None:
        self.speed, self.clock = speed, clock
        self.port = _free_port()
        with open_store(data_dir) as store:
            with contextlib.suppress(KeyError):  # a first run: nothing to replace
                store.chargers.revoke(self.name)
            key = store.chargers.add(self.name)
        self.charge_point = SimulatedChargePoint(
            self.name,
            f"ws://127.0.0.1:{self.port}/ocpp",
            key=key,
            phases=1,
            max_current_a=16.0,
            speed=speed,
            car=_car,
        )

    def tables(self) -> str:
        return (
            f'\n[ocpp]\nhost = "127.0.0.1"\nprofile1_port = {self.port}\n\n'
            f'[[devices]]\ntype = "ocpp"\nname = "{self.name}"\nphases = 1\n'
            + _loadpoint(self.name, self.speed)
        )

    def power_w(self) -> float:
        return self.charge_point.power_w()

    async def drive(self, api_url: asyncio.Future[str]) -> None:
        await api_url
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.charge_point.run())
            await self.charge_point.wait_connected(30.0)
            await _by_day(
                self.clock,
                lambda on: self.charge_point.plug_in() if on else self.charge_point.unplug(),
            )


class _Wallbox:
    """A Wallbox Pulsar Plus through its (simulated) cloud."""

    name, cloud = "pulsar", True

    def __init__(
        self,
        sim: WallboxSimulator,
        clock: Callable[[], datetime],
        api_url: str,
        user_url: str,
        ca_file: Path,
    ) -> None:
        self.sim, self.speed, self.clock = sim, sim.speed, clock
        self.api_url, self.user_url, self.ca_file = api_url, user_url, ca_file

    def tables(self) -> str:
        # The simulated cloud counts its rate limits in simulated minutes: the demo reads the
        # status once a simulated minute (up to 60x; faster, once a second of real time), as a
        # real account is best read once a minute.
        reads = min(60.0, self.speed)
        return f"""
[[devices]]
type = "wallbox"
name = "{self.name}"
charger_id = {WALLBOX_ID}
email = "{WALLBOX_EMAIL}"
password_secret = "{self.name}.password"
user_url = "{self.user_url}"
api_url = "{self.api_url}"
ca_file = "{self.ca_file}"
phases = 1
reads_per_minute = {reads:.3g}
writes_per_minute = {reads:.3g}
poll_interval_s = {60.0 / reads:.3g}
""" + _loadpoint(self.name, self.speed, cloud=True)

    def power_w(self) -> float:
        return self.sim.power_w()

    async def drive(self, api_url: asyncio.Future[str]) -> None:
        await api_url
        await _by_day(self.clock, lambda on: self.sim.plug_in() if on else self.sim.unplug())


class _Tesla:
    """A Tesla Model 3 through the (simulated) Fleet API."""

    name, cloud = "model3", True

    def __init__(
        self, sim: FleetSimulator, clock: Callable[[], datetime], fleet_url: str, ca_file: Path
    ) -> None:
        self.sim, self.speed, self.clock = sim, sim.speed, clock
        self.fleet_url, self.ca_file, self.client_id = fleet_url, ca_file, sim.client_id

    @property
    def idle_data_s(self) -> float:
        """The idle car's read interval, simulated time (at least the config's 5 s)."""
        return max(5.0, IDLE_DATA_S / self.speed)

    def config(self) -> TeslaConfig:
        return TeslaConfig(
            type="tesla",
            name=self.name,
            vin=VIN,
            token_secret=f"{self.name}.tokens",
            client_id=self.client_id,
            fleet_url=self.fleet_url,
            auth_url=self.fleet_url,
            ca_file=self.ca_file,
            poll_interval_s=5.0,
            idle_data_s=self.idle_data_s,
        )

    def tables(self) -> str:
        return f"""
[[devices]]
type = "tesla"
name = "{self.name}"
vin = "{VIN}"
token_secret = "{self.name}.tokens"  # access and refresh tokens, in the vault
client_id = "{self.client_id}"
fleet_url = "{self.fleet_url}"
auth_url = "{self.fleet_url}"
ca_file = "{self.ca_file}"
poll_interval_s = 5
idle_data_s = {self.idle_data_s:.3g}  # {IDLE_DATA_S:g} s simulated
""" + _loadpoint(self.name, self.speed, cloud=True)

    def power_w(self) -> float:
        return self.sim.vehicles[VIN].power_w()

    async def drive(self, api_url: asyncio.Future[str]) -> None:
        await api_url
        await _by_day(self.clock, lambda on: self.sim.plug_in(VIN) if on else self.sim.unplug(VIN))


async def start_charger(
    kind: str,
    data_dir: Path,
    speed: float,
    stack: contextlib.AsyncExitStack,
    clock: Callable[[], datetime] | None = None,
) -> DemoCharger:
    """The simulated charger ``kind`` (one of ``CHARGERS``), its servers entered in
    ``stack`` and its credentials stored in ``data_dir``; its car is plugged in by the
    demo's ``clock`` (default: one starting now)."""
    clock = clock or speed_clock(speed)
    if kind == "ocpp":
        return _Ocpp(data_dir, speed, clock)
    vault = open_vault(data_dir)
    if kind == "wallbox":
        password = Secret(secrets.token_urlsafe(12))
        wallbox_sim = WallboxSimulator(
            WALLBOX_EMAIL,
            password,
            charger_id=WALLBOX_ID,
            phases=1,
            max_available_current=16,
            car=_car(),
            speed=speed,  # the simulator speeds its own clock up
        )
        served = await stack.enter_async_context(running_wallbox(wallbox_sim))
        ca_file = data_dir / "wallbox-ca.pem"
        ca_file.write_bytes(served.ca_pem)
        wallbox = _Wallbox(wallbox_sim, clock, served.api_url, served.user_url, ca_file)
        vault.set(f"{wallbox.name}.password", password)
        return wallbox
    if kind != "tesla":
        raise ValueError(f"charger must be one of {CHARGERS}, not {kind!r}")
    fleet_sim = FleetSimulator(speed=speed)  # the simulator speeds its own clock up
    fleet_sim.add_vehicle(VIN, car=_car(), phases=1)
    fleet = await stack.enter_async_context(running_fleet(fleet_sim))
    ca_file = data_dir / "fleet-ca.pem"
    ca_file.write_bytes(fleet.tls.cert_pem)
    tesla = _Tesla(fleet_sim, clock, fleet.url, ca_file)
    # as if the owner had run `surplus auth tesla`: the tokens in the vault
    refresh = fleet_sim.issue_refresh_token(scopes_for(energy_site=False))
    await tokens_of(tesla.config(), vault, lambda: datetime.now(UTC)).adopt(Secret(refresh))
    return tesla
