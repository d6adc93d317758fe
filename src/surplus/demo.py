"""``surplus demo``: the service against a simulated site, on this machine alone.

Every site lives the same simulated day (``sim.day``), ``speed`` times faster than real
time from now on, and is served on 127.0.0.1 over the device's real protocol:

- ``powerwall``: a Tesla Powerwall 2 gateway (its battery steered by the engine against a
  time-of-use tariff);
- ``envoy``: an Enphase IQ Gateway with an IQ battery, and its Enlighten cloud (the token
  renewed from it);
- ``push``: an inverter script posting Charge HQ's push API to the service every 30 s.

With ``charger`` (``demo_chargers``: ``ocpp``, ``wallbox`` or ``tesla``) a simulated
charger and car join the site, and in ``solar`` mode the engine makes the charging current
follow the site's surplus.

The demo writes a config file into the data directory and its credentials (the gateway's
random password, the Envoy's token and Enlighten password, the push key) into the vault or
the store: none is written in plain text.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from surplus.config import load_config
from surplus.demo_chargers import CHARGERS, DemoCharger, start_charger
from surplus.integrations.envoy.simstate import EnvoySimulator
from surplus.integrations.envoy.simulator import ServedEnvoy
from surplus.integrations.envoy.simulator import running_simulator as running_envoy
from surplus.integrations.envoy.tokens import OWNER
from surplus.integrations.powerwall.simulator import (
    PowerwallSimulator,
    ServedSimulator,
    running_simulator,
)
from surplus.integrations.push.receiver import PUSH_PATH
from surplus.integrations.push.simulator import SimulatedSite, payload
from surplus.runtime.datadir import VAULT_FILE, open_store, open_vault
from surplus.runtime.service import Service, one_error, until_signalled
from surplus.sim.day import load_w, solar_w, speed_clock
from surplus.sim.devices import HomeBattery

__all__ = [
    "CHARGERS",
    "DEVICE",
    "SITES",
    "Demo",
    "demo_simulator",
    "run_demo",
    "write_demo_files",
]

log = logging.getLogger(__name__)

SITES = ("powerwall", "envoy", "push")
DEVICE = "gateway"  # the simulated Powerwall's name in the config, the store and the API
DEVICES = {"powerwall": DEVICE, "envoy": "envoy", "push": "inverter"}
PASSWORD_SECRET = f"{DEVICE}.password"
POLL_INTERVAL_S = 2.0
PUSH_INTERVAL_S = 30.0  # Charge HQ's floor, which the push API enforces
CONFIG_FILE = "surplus.toml"

# a time-of-use tariff: the planner charges the battery in cheap hours for dear ones
TARIFF = """
[tariff]
import_eur_per_kwh = 0.30
export_eur_per_kwh = 0.07

[[tariff.periods]]
from = "00:00"
to = "06:00"
import_eur_per_kwh = 0.18

[[tariff.periods]]
from = "17:00"
to = "21:00"
import_eur_per_kwh = 0.42
"""

LOADPOINT = """
[[loadpoints]]
name = "carport"
mode = "solar"
"""


@dataclass(frozen=True, slots=True)
class Demo:
    """A running demo: where its API answers, where its files are, what it simulates."""

    api_url: str
    data_dir: Path
    config_file: Path
    speed: float
    site: str = "powerwall"

    @property
    def device(self) -> str:
        """The name of the site's device in the API and the store."""
        return DEVICES[self.site]


def demo_simulator(
    password: str,
    speed: float,
    house_w: Callable[[datetime], float] = load_w,
    clock: Callable[[], datetime] | None = None,
) -> PowerwallSimulator:
    """A Powerwall gateway over the demo's day; ``house_w``: all the load behind it."""
    return PowerwallSimulator(
        password, solar_w=solar_w, load_w=house_w, clock=clock or speed_clock(speed)
    )


def _write_config(
    data_dir: Path, device: str, extra: str = "", charger: DemoCharger | None = None
) -> Path:
    """The demo's config: the site's device, ``extra`` tables and the loadpoint, driven by
    the simulated ``charger`` when there is one."""
    loadpoint = LOADPOINT if charger is None else charger.tables()
    path = data_dir / CONFIG_FILE
    path.write_text(
        "# Written by `surplus demo` for its simulated site (rewritten at each start).\n\n"
        f"[service]\ndata_dir = {_toml(str(data_dir))}\n\n"
        f"[[devices]]\n{device}{extra}{loadpoint}"
    )
    return path


def write_demo_files(
    data_dir: Path,
    served: ServedSimulator,
    password: str,
    poll_s: float = POLL_INTERVAL_S,
    charger: DemoCharger | None = None,
) -> Path:
    """Store ``password`` in the vault of ``data_dir`` and write a config file naming it, the
    gateway polled every ``poll_s``; returns the config file's path."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    open_vault(data_dir).set(PASSWORD_SECRET, password)
    device = f"""type = "powerwall"
name = "{DEVICE}"
host = {_toml(served.url)}
password_secret = "{PASSWORD_SECRET}"  # in {VAULT_FILE} beside this file
fingerprint = "{served.fingerprint}"
poll_interval_s = {poll_s}
timeout_s = 5.0
"""
    return _write_config(data_dir, device, TARIFF, charger)


def _write_envoy_files(
    data_dir: Path,
    served: ServedEnvoy,
    email: str,
    password: str,
    poll_s: float,
    charger: DemoCharger | None,
) -> Path:
    """The Envoy's owner token and Enlighten password in the vault, the cloud's certificate
    beside them, and a config naming them."""
    sim, name = served.sim, DEVICES["envoy"]
    vault = open_vault(data_dir)
    vault.set(f"{name}.token", sim.issue_token(OWNER))
    vault.set(f"{name}.enlighten_password", password)
    ca_file = data_dir / "enlighten-ca.pem"
    ca_file.write_bytes(served.cloud_ca_pem)
    device = f"""type = "envoy"
name = "{name}"
host = {_toml(served.url)}
serial = "{sim.serial}"
token_secret = "{name}.token"  # in {VAULT_FILE} beside this file
enlighten_email = {_toml(email)}
enlighten_password_secret = "{name}.enlighten_password"
enlighten_url = {_toml(served.cloud_url)}  # the simulated Enlighten cloud
entrez_url = {_toml(served.cloud_url)}
cloud_ca_file = {_toml(str(ca_file))}
fingerprint = "{served.fingerprint}"
poll_interval_s = {poll_s}
timeout_s = 5.0
"""
    return _write_config(data_dir, device, charger=charger)


def _write_push_files(data_dir: Path, charger: DemoCharger | None) -> tuple[Path, str]:
    """A config with a push source, and a new key for it (an earlier one revoked)."""
    name = DEVICES["push"]
    device = f'type = "push"\nname = "{name}"\nstale_after_s = {3 * PUSH_INTERVAL_S:g}\n'
    config = _write_config(data_dir, device, charger=charger)
    with open_store(data_dir) as store:
        store.push_keys.revoke(name, datetime.now(UTC))
        key = store.push_keys.create(name, datetime.now(UTC))
    return config, key


def _toml(text: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, once non-ASCII is left as it is."""
    return json.dumps(text, ensure_ascii=False)


async def _push_forever(
    api_url: asyncio.Future[str],
    key: str,
    speed: float,
    clock: Callable[[], datetime],
    house_w: Callable[[datetime], float],
) -> None:
    """Post the simulated inverter's meters every ``PUSH_INTERVAL_S``, like a script would."""
    url = f"{await api_url}{PUSH_PATH}"
    site = SimulatedSite(HomeBattery(), step_s=PUSH_INTERVAL_S * speed, house_w=house_w)
    async with httpx.AsyncClient(timeout=10.0) as http:
        while True:
            try:
                answer = await http.post(url, json=payload(site.meters(clock()), key, ()))
                if answer.status_code != 200:
                    log.warning("the demo's push was answered %d", answer.status_code)
            except httpx.HTTPError as err:
                log.warning("the demo's push failed: %s", err)
            await asyncio.sleep(PUSH_INTERVAL_S)


async def run_demo(
    data_dir: Path,
    *,
    speed: float,
    poll_s: float,
    port: int,
    on_ready: Callable[[Demo], None],
    site: str = "powerwall",
    charger: str | None = None,
    start: datetime | None = None,
) -> None:
    """Serve the simulated ``site`` (and ``charger``) and run the service against it,
    polling every ``poll_s``, until SIGINT or SIGTERM. The simulated day begins at ``start``
    (default: now)."""
    if site not in SITES:
        raise ValueError(f"site must be one of {SITES}, not {site!r}")
    if charger is not None and charger not in CHARGERS:
        raise ValueError(f"charger must be one of {CHARGERS}, not {charger!r}")
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    clock = speed_clock(speed, start)
    async with contextlib.AsyncExitStack() as stack:
        wallbox = None
        if charger is not None:
            wallbox = await start_charger(charger, data_dir, speed, stack, clock)

        def house_w(at: datetime) -> float:
            """The household and, charging behind the same meter, the car."""
            return load_w(at) + (0.0 if wallbox is None else wallbox.power_w())

        key = None
        if site == "powerwall":
            password = secrets.token_urlsafe(12)
            served = await stack.enter_async_context(
                running_simulator(demo_simulator(password, speed, house_w, clock))
            )
            config_file = write_demo_files(data_dir, served, password, poll_s, wallbox)
        elif site == "envoy":
            email, password = "owner@example.com", secrets.token_urlsafe(12)
            envoy = EnvoySimulator(
                email=email,
                password=password,
                solar_w=solar_w,
                load_w=house_w,
                battery=HomeBattery(),
                clock=clock,
                latency_s=(0.0, 0.05),
                boot_s=0.0,
                zeros_s=0.0,
            )
            served_envoy = await stack.enter_async_context(running_envoy(envoy))
            config_file = _write_envoy_files(
                data_dir, served_envoy, email, password, poll_s, wallbox
            )
        else:
            config_file, key = _write_push_files(data_dir, wallbox)
        api_url: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def ready(url: str) -> None:
            api_url.set_result(url)
            on_ready(Demo(url, data_dir, config_file, speed, site))

        service = Service(load_config(config_file), api_port=port, on_ready=ready)

        async def everything() -> None:
            with one_error():
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(service.run())
                    if key is not None:
                        tasks.create_task(_push_forever(api_url, key, speed, clock, house_w))
                    if wallbox is not None:
                        tasks.create_task(wallbox.drive(api_url))

        # installed after the simulators started: their servers set handlers of their own
        await until_signalled(everything())
