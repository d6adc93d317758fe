"""The whole service driving a Tesla through the simulated Fleet API, on 127.0.0.1.

One test per failure mode of the Fleet API a client must survive (reference E2, items 8-16):
the service keeps running and answering its API, and the Tesla integration either recovers
(its status back to "ok", the engine's commands "ok" in the decision log) or asks for
re-authentication (with the command to run) and sends nothing more to the token endpoint.
Then the rotating refresh token across a ``kill -9``, and the secrets at DEBUG logging.

The site is a simulated Powerwall polled every 0.3 s: it paces the control loop, and its sun
makes the engine steer the car. The car polls at the config's minimum of 5 s, so a test
waits for one or two of its polls at most; the engine's commands go out at the loop's pace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import time
from asyncio.subprocess import Process
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from surplus.config import load_config
from surplus.integrations.powerwall.simulator import PowerwallSimulator
from surplus.integrations.powerwall.simulator import running_simulator as running_gateway
from surplus.integrations.tesla.config import TeslaConfig
from surplus.integrations.tesla.factory import tokens_of
from surplus.integrations.tesla.simstate import FleetSimulator, SimVehicle
from surplus.integrations.tesla.simulator import ServedFleet
from surplus.integrations.tesla.simulator import running_simulator as running_fleet
from surplus.integrations.tesla.tokens import TokenSet, scopes_for
from surplus.runtime.datadir import open_store, open_vault
from surplus.runtime.service import Service
from surplus.security.vault import Secret
from surplus.sim.devices import ElectricVehicle, HomeBattery
from tests.tesla_kit import VIN, TokenEndpoint, watch_refusals, watch_token_endpoint

PASSWORD = "Tesla-site-gateway-Pw-4"
CLIENT_SECRET = "ta-secret.Kq7vZ2mR9xW4pL8n"
TESLA = "model3"
LOADPOINT = "carport"
HOUSE_W = 500.0
SUNNY_W = 6_000.0  # more than the car's 16 A on one phase takes: no current changes
POLL_S = 5.0  # the car's poll interval, the config's minimum
DATA = "GET /api/1/vehicles/{tag}/vehicle_data"
COMMAND = "POST /api/1/vehicles/{tag}/command/{name}"
WAKE = "POST /api/1/vehicles/{tag}/wake_up"
REAUTH = "needs re-authentication"

State = dict[str, Any]


def write_config(
    data_dir: Path,
    gateway: Any,
    fleet: ServedFleet,
    *,
    region: str | None = None,
    proxy: bool = False,
    client_secret: bool = False,
) -> Path:
    """The service's config: the Powerwall site, the Tesla (the base URL of ``region``,
    default the account's) and the loadpoint it charges."""
    open_vault(data_dir).set("gateway.password", PASSWORD)
    ca = data_dir / "fleet-ca.pem"
    ca.write_bytes(fleet.tls.cert_pem)
    tesla = (
        f'[[devices]]\ntype = "tesla"\nname = "{TESLA}"\nvin = "{VIN}"\n'
        f'token_secret = "{TESLA}.tokens"\nclient_id = "{fleet.sim.client_id}"\n'
        f'fleet_url = "{fleet.region_urls[region] if region else fleet.url}"\n'
        f'auth_url = "{fleet.auth_url}"\n'
        f'ca_file = "{ca}"\npoll_interval_s = 5\ntimeout_s = 2\n'
    )
    if proxy:
        tesla += f'proxy_url = "{fleet.proxy_url}"\nproxy_ca_file = "{ca}"\n'
    if client_secret:
        tesla += f'client_secret_secret = "{TESLA}.client_secret"\n'
        open_vault(data_dir).set(f"{TESLA}.client_secret", CLIENT_SECRET)
    path = data_dir / "surplus.toml"
    path.write_text(
        f'[service]\ndata_dir = "{data_dir}"\n\n'
        "# the car runs on the sun alone: no battery power for it, no carrying it through\n"
        "[site.battery]\nbuffer_carry_s = 0\nmax_battery_to_ev_w = 0\n\n"
        f'[[devices]]\ntype = "powerwall"\nname = "gateway"\nhost = "{gateway.url}"\n'
        f'password_secret = "gateway.password"\nfingerprint = "{gateway.fingerprint}"\n'
        "poll_interval_s = 0.3\n\n"
        f"{tesla}\n"
        f'[[loadpoints]]\nname = "{LOADPOINT}"\nmode = "solar"\ncharger_device = "{TESLA}"\n'
        "[loadpoints.charger]\nphases = 1\nmin_current_a = 6\nmax_current_a = 16\n"
        "[loadpoints.contactor]\nstart_delay_s = 0.3\nstop_delay_s = 0.5\nmin_on_s = 0.5\n"
        "min_off_s = 0.5\n"
        "[loadpoints.budget]\nmin_interval_s = 3\n"
    )
    return path


def tesla_config(config: Path) -> TeslaConfig:
    return next(d for d in load_config(config).devices if isinstance(d, TeslaConfig))


async def seed_tokens(config: Path, data_dir: Path, sim: FleetSimulator) -> None:
    """As if the owner had run ``surplus auth tesla``: the tokens in the vault."""
    refresh = sim.issue_refresh_token(scopes_for(energy_site=False))
    tokens = tokens_of(tesla_config(config), open_vault(data_dir), lambda: datetime.now(UTC))
    await tokens.adopt(Secret(refresh))


@dataclass
class Running:
    """The service under test, its simulators and what the test looks at."""

    fleet: ServedFleet
    car: SimVehicle
    sun: dict[str, float]
    tokens: TokenEndpoint
    refusals: list[int]
    data_dir: Path
    config: Path
    url: str
    http: httpx.AsyncClient
    task: asyncio.Task[None]
    started: datetime
    answers: list[str] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)  # the Tesla's statuses, as answered
    last: State | None = None

    @property
    def sim(self) -> FleetSimulator:
        return self.fleet.sim

    async def state(self) -> State:
        assert not self.task.done(), "the service stopped"
        answer = await self.http.get(f"{self.url}/api/v1/state")
        assert answer.status_code == 200, answer.text
        self.answers.append(answer.text)
        self.last = answer.json()
        self.seen.append(tesla_of(self.last)["status"])
        return self.last

    async def until(self, what: str, test: Callable[[State], bool], within_s: float = 12) -> State:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            state = await self.state()
            if test(state):
                return state
            await asyncio.sleep(0.1)
        raise AssertionError(f"not {what} within {within_s} s; last state: {self.last}")

    async def tesla(self, status: str, detail: str = "", within_s: float = 12) -> dict[str, Any]:
        """The Tesla integration once its status is ``status`` with ``detail`` in its detail."""

        def matches(state: State) -> bool:
            found = tesla_of(state)
            return found["status"] == status and detail in found["detail"]

        return tesla_of(await self.until(f"{status!r} ({detail!r})", matches, within_s))

    def results(self) -> list[str]:
        """The loadpoint's command results in the decision log, oldest first."""
        with open_store(self.data_dir) as store:
            entries = store.log.between(
                self.started - timedelta(minutes=1), datetime.now(UTC) + timedelta(minutes=1)
            )
        return [e.result for e in reversed(entries) if e.loadpoint == LOADPOINT]

    async def results_until(
        self, what: str, test: Callable[[list[str]], bool], within_s: float = 12
    ) -> list[str]:
        deadline = time.monotonic() + within_s
        results: list[str] = []
        while time.monotonic() < deadline:
            await self.state()  # and the service still answers
            results = self.results()
            if test(results):
                return results
            await asyncio.sleep(0.1)
        raise AssertionError(f"no {what} within {within_s} s; the log: {results}")

    async def command_ok(self, after: int = 0, within_s: float = 12) -> list[str]:
        """The log once a command after the ``after`` first ones succeeded."""
        return await self.results_until(
            "command carried out", lambda r: any(x.startswith("ok") for x in r[after:]), within_s
        )

    async def charging(self) -> State:
        """Once the engine has started the car on the sun and it charges."""

        def started(state: State) -> bool:
            lp = state["loadpoints"][0]
            return (
                self.car.charge_on and bool(lp["setpoint_a"]) and lp["charger_status"] == "charging"
            )

        return await self.until("charging from the sun", started)

    async def stopped(self) -> list[str]:
        """The sun goes: the log once the engine has stopped the car."""
        before = len(self.results())
        self.sun["w"] = 0.0
        results = await self.command_ok(after=before)
        await self.until("stopped", lambda _: not self.car.charge_on)
        return results[before:]

    async def polled(self) -> None:
        """Until the car's next poll has read its charge state."""
        reads = self.sim.requests[DATA]
        deadline = time.monotonic() + 2 * POLL_S + 2
        while self.sim.requests[DATA] == reads:
            assert time.monotonic() < deadline, "the car was not polled"
            await self.state()
            await asyncio.sleep(0.05)

    async def polled_free(self) -> None:
        """Until the car's next poll has asked its (free) state."""
        free = "GET /api/1/vehicles/{tag}"
        asked = self.sim.requests[free]
        deadline = time.monotonic() + 2 * POLL_S + 2
        while self.sim.requests[free] == asked:
            assert time.monotonic() < deadline, "the car was not polled"
            await self.state()
            await asyncio.sleep(0.05)

    def stored_refresh(self) -> str:
        """The refresh token in the service's vault."""
        return stored_refresh(self.data_dir)


def tesla_of(state: State) -> dict[str, Any]:
    found: dict[str, Any] = next(i for i in state["integrations"] if i["name"] == TESLA)
    return found


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path,
    sim: FleetSimulator | None = None,
    *,
    vehicle: dict[str, Any] | None = None,
    plugged: bool = True,
    solar_w: float = SUNNY_W,
    wait_ok: bool = True,
    **config: Any,
) -> AsyncIterator[Running]:
    """The service with a Powerwall site and a Tesla (``vehicle`` its settings), its car
    plugged in under ``solar_w`` of sun; with ``wait_ok``, once the Tesla is read and the
    engine has started the charge (or, without sun, stopped the one the car started)."""
    sim = sim if sim is not None else FleetSimulator()
    car = sim.add_vehicle(
        VIN,
        car=ElectricVehicle(capacity_wh=60_000.0, energy_wh=20_000.0),
        phases=1,
        **(vehicle or {}),
    )
    if plugged:
        sim.plug_in(VIN)
    sun = {"w": solar_w}
    site = PowerwallSimulator(
        PASSWORD,
        solar_w=lambda _: sun["w"],
        load_w=lambda _: HOUSE_W + car.power_w(),
        battery=HomeBattery(energy_wh=13_500.0),  # full: the surplus is the car's
    )
    tokens, refusals = watch_token_endpoint(sim), watch_refusals(sim)
    async with running_fleet(sim) as fleet, running_gateway(site) as gateway:
        path = write_config(tmp_path, gateway, fleet, **config)
        await seed_tokens(path, tmp_path, sim)
        urls: list[str] = []
        started = datetime.now(UTC)
        task = asyncio.create_task(
            Service(load_config(path), api_port=0, on_ready=urls.append, recheck_s=0.2).run()
        )
        try:
            async with httpx.AsyncClient(timeout=5) as http:
                deadline = time.monotonic() + 10
                while not urls:
                    assert time.monotonic() < deadline and not task.done(), "no API"
                    await asyncio.sleep(0.02)
                run = Running(
                    fleet, car, sun, tokens, refusals, tmp_path, path, urls[0], http, task, started
                )
                if wait_ok:
                    await run.tesla("ok")
                    if plugged and solar_w > 0:
                        await run.charging()
                    elif plugged:  # it charged by itself: the engine stops it
                        await run.command_ok()
                        await run.until("stopped", lambda _: not car.charge_on)
                yield run
                await run.state()  # still answering at the end
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def failed(results: list[str], text: str) -> list[str]:
    return [r for r in results if r.startswith("failed") and text in r]


# --- E2.8: refresh-token race, lost refresh answer, login_required ---


async def test_a_lost_refresh_answer_is_covered_by_the_previous_tokens_grace(
    tmp_path: Path,
) -> None:
    """The token endpoint rotates the refresh token and its answer is lost: the vault still
    holds the previous one, which Tesla honours for 24 h; the next refresh uses it."""
    # the access token lives 601 s: the service refreshes 600 s ahead, 1 s after each one
    async with running(tmp_path, FleetSimulator(access_ttl_s=601)) as run:
        held = run.stored_refresh()
        run.sim.faults.add("lose_refresh_answer", times=1)
        await run.stopped()  # commands, and refreshes for them
        await run.until(
            "a refresh after the lost answer",
            lambda _: "504 (no body)" in run.tokens.refreshes[:-1],
        )
        lost = run.tokens.issued[run.tokens.requests.index(("refresh_token", "504 (no body)"))]
        assert lost != held and lost != run.stored_refresh()
        await run.tesla("ok")
        assert run.stored_refresh() == run.tokens.issued[-1]  # stored before used
        assert REAUTH not in run.seen


async def cycle_out(run: Running) -> None:
    """Another holder of the service's refresh token (a copied vault) refreshes twice: the
    service's token is neither the current one nor the previous one any more."""
    token = run.stored_refresh()
    for _ in range(2):
        form = {"grant_type": "refresh_token", "client_id": run.sim.client_id}
        token = run.sim.grant({**form, "refresh_token": token})["refresh_token"]


async def test_a_refresh_token_cycled_out_asks_for_re_authentication(tmp_path: Path) -> None:
    """``login_required``: the service asks for ``surplus auth tesla`` and sends nothing more
    to the token endpoint (nor to the Fleet API) until the vault holds new tokens."""
    async with running(tmp_path) as run:
        await cycle_out(run)
        run.sim.faults.add("token_revoked", times=1)  # the next call: 401, then a refresh
        run.sun["w"] = 0.0  # the engine wants the car stopped
        await run.results_until("refused command", lambda r: bool(failed(r, "surplus auth")))
        assert run.tokens.refreshes[-1] == "401 login_required"
        asked, calls = len(run.tokens.requests), sum(run.sim.requests.values())
        quiet_until = time.monotonic() + POLL_S + 0.5  # a poll, at least, in between
        await run.tesla(REAUTH, "surplus auth tesla")
        await asyncio.sleep(quiet_until - time.monotonic())
        assert len(run.tokens.requests) == asked
        assert sum(run.sim.requests.values()) == calls
        assert tesla_of(await run.state())["status"] == REAUTH
        assert run.car.charge_on  # nothing reached the car


async def test_after_re_authentication_the_car_is_steered_again(tmp_path: Path) -> None:
    async with running(tmp_path) as run:
        await cycle_out(run)
        run.sim.faults.add("token_revoked", times=1)
        await run.tesla(REAUTH, "surplus auth tesla")
        await seed_tokens(run.config, tmp_path, run.sim)  # the owner re-authorizes
        await run.tesla("ok")
        before = len(run.results())
        run.sun["w"] = 0.0
        await run.results_until("a command", lambda r: len(r) > before, within_s=3)
        assert not failed(run.results()[before:], "re-authentication")


# --- E2.9: the 8 h access token ---


async def test_the_access_token_is_refreshed_before_it_expires(tmp_path: Path) -> None:
    """Access tokens living 601 s (the service refreshes 600 s ahead): the service refreshes
    before each expiry, so the API never refuses a token."""
    async with running(tmp_path, FleetSimulator(access_ttl_s=601)) as run:
        await run.stopped()
        await run.until("two refreshes", lambda _: run.tokens.refreshes.count("ok") >= 3)
        await run.tesla("ok")
        assert run.stored_refresh() == run.tokens.issued[-1]
        assert 401 not in run.refusals
        assert set(run.tokens.refreshes) == {"ok"}
        assert set(run.seen) == {"ok"}


async def test_an_access_token_refused_with_an_empty_401_is_refreshed_once(
    tmp_path: Path,
) -> None:
    """A 401 with no body (an expired or revoked access token): refreshed once and the call
    sent again, which a refused call allows (it did nothing)."""
    async with running(tmp_path) as run:
        refreshes = len(run.tokens.refreshes)
        run.sim.faults.add("token_revoked", times=1)
        results = await run.stopped()
        assert run.refusals == [401]
        assert run.tokens.refreshes[refreshes:] == ["ok"]
        assert not failed(results, "")  # the refused call was sent again at once
        assert set(run.seen) == {"ok"}


# --- E2.10: 408 asleep ---


async def test_an_asleep_car_is_woken_once_and_confirmed_online_for_free(
    tmp_path: Path,
) -> None:
    """The car falls asleep while stopped: it is not woken to be read (its free state says
    asleep). When the sun asks for charging, it is woken once, its coming online is seen
    through the free ``/vehicles/{vin}``, and the commands go through."""
    sim = FleetSimulator(wake_delay_s=4.0)
    async with running(tmp_path, sim, solar_w=0.0) as run:
        run.sim.fall_asleep(VIN)
        reads = run.sim.requests[DATA]
        await run.tesla("ok", "asleep")
        assert run.sim.requests[DATA] == reads  # an asleep car is not read
        free = run.sim.requests["GET /api/1/vehicles/{tag}"]
        run.sun["w"] = SUNNY_W
        await run.charging()
        assert run.car.state == "online"
        assert run.sim.requests[WAKE] == 1
        assert run.sim.requests["GET /api/1/vehicles/{tag}"] >= free + 2
        assert not failed(run.results(), "")
        await run.tesla("ok", "online")


async def test_a_command_answered_408_wakes_the_car_instead_of_resending(
    tmp_path: Path,
) -> None:
    sim = FleetSimulator(wake_delay_s=4.0)
    async with running(tmp_path, sim, solar_w=0.0) as run:
        await run.polled()  # the service saw it online; it falls asleep before the next poll
        run.sim.fall_asleep(VIN)
        run.sun["w"] = SUNNY_W
        await run.results_until("a command to the asleep car", lambda r: bool(failed(r, "asleep")))
        await asyncio.sleep(2)  # a few control ticks, still before the next poll
        assert len(failed(run.results(), "asleep")) <= 1
        await run.charging()
        assert run.sim.requests[WAKE] == 1


# --- E2.11: 200 with result:false; read back after every write ---


async def test_benign_refusals_are_done_real_ones_fail_and_writes_are_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The car takes at most 10 A: 16 A answers success and is clamped, which only the
    read-back tells. A lower current goes without a (billed) ``charge_start``. ``charge_stop``
    to a car the owner has stopped answers result:false ``not_charging``: done, not a
    failure. A real refusal fails, and is sent again next tick."""
    sim = FleetSimulator()
    answers: list[tuple[str, bool, str]] = []
    command = sim.command
    refuse = {"next": False}

    def watched(v: SimVehicle, name: str, body: dict[str, Any], *, signed: bool) -> Any:
        if refuse["next"]:
            refuse["next"] = False
            answers.append((name, False, "could_not_wake_buses"))
            return {"result": False, "reason": "could_not_wake_buses"}
        answer = command(v, name, body, signed=signed)
        answers.append((name, answer["result"], answer["reason"]))
        return answer

    monkeypatch.setattr(sim, "command", watched)
    vehicle = {"charge_current_request": 10, "charge_current_request_max": 10}
    async with running(tmp_path, sim, vehicle=vehicle) as run:
        results = run.results()
        assert "ok; 16 A capped by the car at 10 A" in results
        assert run.car.charge_current_request == 10
        before, sent = len(results), len(answers)
        run.sun["w"] = 2_000.0  # less sun: a lower current
        await run.results_until("a lower current", lambda r: len(r) > before)
        assert [a for a in answers[sent:] if a[0] == "charge_start"] == []

        run.car.charge_on = False  # the owner stops it in the app as the sun goes
        results = await run.stopped()
        assert ("charge_stop", False, "not_charging") in answers
        assert not failed(results, "")

        refuse["next"] = True
        before = len(run.results())
        run.sun["w"] = SUNNY_W
        await run.results_until(
            "a refusal", lambda r: bool(failed(r[before:], "refused (could_not_wake_buses)"))
        )
        await run.charging()  # sent again
        await run.tesla("ok")


# --- E2.12: signed commands ---


async def test_a_car_requiring_signed_commands_is_driven_through_the_proxy(
    tmp_path: Path,
) -> None:
    vehicle = {"command_signing": "required"}
    async with running(tmp_path, vehicle=vehicle, proxy=True) as run:
        results = await run.stopped()  # an unsigned command would have been refused
        assert not failed(run.results(), "")
        assert results
        await run.tesla("ok")


async def test_a_car_requiring_signed_commands_without_a_proxy_asks_for_one(
    tmp_path: Path,
) -> None:
    async with running(tmp_path, vehicle={"command_signing": "required"}, wait_ok=False) as run:
        await run.results_until("refused command", lambda r: bool(failed(r, "proxy_url")))
        assert run.sim.requests[COMMAND] == 0  # nothing unsigned is sent
        integration = await run.tesla(REAUTH, "tesla-http-proxy", within_s=POLL_S + 2)
        assert "proxy_url" in integration["detail"]


# --- E2.13: 429, 503/504/540 ---


async def test_failed_reads_are_retried_with_backoff(tmp_path: Path) -> None:
    """503 then 540 on reads: retried with backoff within the poll, which succeeds."""
    async with running(tmp_path, solar_w=0.0) as run:
        reads = run.sim.requests[DATA]
        run.sim.faults.add("unavailable_503", times=1)
        run.sim.faults.add("device_540", times=1)
        await run.until("read", lambda _: run.sim.requests[DATA] >= reads + 3)
        assert not run.sim.faults.active
        await run.tesla("ok")
        assert set(run.seen) == {"ok"}


async def test_a_command_answered_504_is_not_resent_blindly(tmp_path: Path) -> None:
    """A 504 on a command: the client does not send it again (its effect is unknown) but
    fails it; the engine decides again on the next tick."""
    async with running(tmp_path) as run:
        await run.polled()  # the next poll is 5 s away: the engine's commands come first
        run.sim.faults.add("timeout_504", times=1)
        results = await run.stopped()
        assert len(failed(results, "answered 504")) == 1
        assert not run.sim.faults.active
        await run.tesla("ok")


async def test_a_rate_limited_command_waits_for_retry_after(tmp_path: Path) -> None:
    """Tesla's 429 with Retry-After: the engine's commands fail at once, without being sent,
    until then, and go through afterwards."""
    async with running(tmp_path) as run:
        # the minute's 30 commands were used 56 s ago: Retry-After is about 4 s
        run.car.calls["command"] = deque([run.sim.now() - timedelta(seconds=56)] * 30)
        run.sun["w"] = 0.0
        await run.results_until("a 429", lambda r: bool(failed(r, "rate limited by Tesla")))
        commands = run.sim.requests[COMMAND]
        await run.results_until("held back", lambda r: len(failed(r, "next call in")) >= 3)
        assert run.sim.requests[COMMAND] == commands  # not sent before Retry-After
        results = await run.stopped()
        assert results[-1].startswith("ok")
        await run.tesla("ok")


# --- E2.14: billing cap ---


async def test_a_disabled_app_degrades_to_local_control(tmp_path: Path) -> None:
    """402: the Fleet API is not called any more and the API says why; the Powerwall, read
    locally, goes on."""
    async with running(tmp_path) as run:
        run.sim.faults.add("billing_402")
        run.sun["w"] = 0.0  # the engine wants the car stopped
        await run.results_until("402", lambda r: bool(failed(r, "402")))
        calls = sum(run.sim.requests.values())
        quiet_until = time.monotonic() + POLL_S + 0.5
        integration = await run.tesla(REAUTH, "402")
        assert "Local control goes on" in integration["detail"]
        await asyncio.sleep(quiet_until - time.monotonic())
        state = await run.state()
        assert sum(run.sim.requests.values()) == calls
        gateway = next(i for i in state["integrations"] if i["name"] == "gateway")
        assert gateway["status"] == "ok"
        assert not any(state["site"][k]["stale"] for k in ("grid_w", "solar_w", "battery_w"))
        assert state["site"]["solar_w"]["value"] == 0.0


# --- E2.15: wrong region ---


async def test_a_wrong_region_is_switched_once(tmp_path: Path) -> None:
    """The config names the NA base URL for an EU account: 421, the region is looked up and
    the base URL switched, once."""
    async with running(tmp_path, region="na") as run:
        await run.stopped()
        assert run.refusals == [421]
        assert run.sim.requests["GET /api/1/users/region"] == 1
        await run.tesla("ok")


# --- E2.16: stale resources, acknowledgements that never took effect ---


async def test_an_acknowledged_command_that_did_nothing_is_caught_by_the_read_back(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as run:
        run.sim.faults.add("ack_ignored", times=1)
        results = await run.stopped()
        assert failed(results, "acknowledged, the car")
        await run.tesla("ok")


async def test_a_vehicle_answering_404_is_stale_until_it_is_back(tmp_path: Path) -> None:
    """The car is gone from the account for a while (404 ``not_found``, as for a stale
    site): stale, saying so, then read again."""
    async with running(tmp_path, solar_w=0.0) as run:
        car = run.sim.vehicles.pop(VIN)
        await run.tesla("stale", "not found")
        run.sim.vehicles[VIN] = car
        await run.tesla("ok")


# --- the rotating refresh token across kill -9 ---


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextlib.asynccontextmanager
async def service_process(config: Path, log: Path) -> AsyncIterator[tuple[Process, str]]:
    """``surplus run`` in a subprocess and its API's base URL; killed at the end."""
    with log.open("ab") as err:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "surplus.cli", "run", "--config", str(config)),
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
        )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            while b"surplus is running:" not in (line := await proc.stdout.readline()):
                assert line, "the service exited before it listened"
        url = line.decode().split("running:", 1)[1].split()[0]
        yield proc, url.removesuffix("/api/v1/state")
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


def stored_tokens(data_dir: Path) -> TokenSet:
    """The Tesla tokens in ``data_dir``'s vault, as they are on disk now."""
    return TokenSet.load(open_vault(data_dir).get(f"{TESLA}.tokens").reveal())


def stored_refresh(data_dir: Path) -> str:
    return stored_tokens(data_dir).refresh.reveal()


async def tesla_ok(http: httpx.AsyncClient, url: str, seen: list[str]) -> None:
    deadline = time.monotonic() + 15
    status = None
    while status != "ok":
        assert time.monotonic() < deadline, f"the Tesla is {status}, not ok"
        with contextlib.suppress(httpx.TransportError):
            state = (await http.get(f"{url}/api/v1/state")).json()
            status = tesla_of(state)["status"]
            seen.append(status)
        await asyncio.sleep(0.1)


async def test_killed_right_after_a_refresh_the_service_is_still_authenticated(
    tmp_path: Path,
) -> None:
    """``surplus run`` refreshing every second (a 601 s access token, refreshed 600 s
    ahead) is killed with SIGKILL twice: once the moment the simulator issued a new refresh
    token, before its answer left (the answer is lost: the vault holds the previous token,
    which Tesla honours for 24 h), and once the moment the new token was in the vault. Each
    time the restarted service is authenticated; and every call used the tokens the vault
    held at that moment: they are stored before they are used."""
    sim = FleetSimulator(access_ttl_s=601)
    sim.add_vehicle(VIN, car=ElectricVehicle(capacity_wh=60_000.0, energy_wh=20_000.0), phases=1)
    sim.plug_in(VIN)
    victim: list[Process] = []

    def kill_at_once(token: str) -> None:
        if victim:
            victim.pop().send_signal(signal.SIGKILL)  # before the grant's answer is sent

    tokens = watch_token_endpoint(sim, kill_at_once)
    calls: list[tuple[str | None, str]] = []  # the bearer token, and the vault's then
    admit = sim.admit

    def watched(region: str | None, token: str | None, **kwargs: Any) -> None:
        calls.append((token, stored_tokens(tmp_path).access.reveal()))
        admit(region, token, **kwargs)

    sim.admit = watched  # type: ignore[method-assign]
    seen: list[str] = []
    async with running_fleet(sim) as fleet, httpx.AsyncClient(timeout=5) as http:
        ca = tmp_path / "fleet-ca.pem"
        ca.write_bytes(fleet.tls.cert_pem)
        config = tmp_path / "surplus.toml"
        config.write_text(
            f'[service]\ndata_dir = "{tmp_path}"\napi_port = {_free_port()}\n\n'
            f'[[devices]]\ntype = "tesla"\nname = "{TESLA}"\nvin = "{VIN}"\n'
            f'token_secret = "{TESLA}.tokens"\nclient_id = "{sim.client_id}"\n'
            f'fleet_url = "{fleet.url}"\nauth_url = "{fleet.auth_url}"\nca_file = "{ca}"\n'
            "poll_interval_s = 5\n"
        )
        await seed_tokens(config, tmp_path, sim)
        log = tmp_path / "service.log"

        # 1: killed while the simulator answers a refresh
        async with service_process(config, log) as (proc, url):
            await tesla_ok(http, url, seen)
            held = len(tokens.issued)
            victim.append(proc)
            async with asyncio.timeout(15):
                assert await proc.wait() == -signal.SIGKILL
        assert len(tokens.issued) == held + 1
        lost, previous = tokens.issued[-1], tokens.issued[-2]
        assert stored_refresh(tmp_path) == previous  # the answer never came

        # 2: killed as soon as the new refresh token is in the vault
        async with service_process(config, log) as (proc, url):
            async with asyncio.timeout(15):
                while (refresh := stored_refresh(tmp_path)) == previous:
                    await asyncio.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
            assert await proc.wait() == -signal.SIGKILL
        assert refresh in tokens.issued and refresh != lost

        # 3: still authenticated, and refreshing on
        async with service_process(config, log) as (proc, url):
            await tesla_ok(http, url, seen)
            refreshes = len(tokens.refreshes)
            async with asyncio.timeout(15):
                while len(tokens.refreshes) < refreshes + 1:
                    await asyncio.sleep(0.05)
            await tesla_ok(http, url, seen)

    assert set(tokens.refreshes) == {"ok"}  # never login_required
    assert REAUTH not in seen
    assert all(used == stored for used, stored in calls), "a token was used before stored"
    assert len(calls) >= 3


# --- secrets ---


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextlib.contextmanager
def debug_log() -> Iterator[_Lines]:
    """Every log record at DEBUG, formatted, through the filters the service installs on
    the root logger's handlers."""
    root = logging.getLogger()
    handler, level = _Lines(), root.level
    # a command run in-process earlier (CliRunner) may have quietened the HTTP loggers
    quiet = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in quiet:
        logging.getLogger(name).setLevel(logging.NOTSET)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        for name, was in quiet.items():
            logging.getLogger(name).setLevel(was)


async def test_no_token_or_client_secret_in_the_log_the_api_or_the_data_dir(
    tmp_path: Path,
) -> None:
    """At DEBUG, through refreshes (one of them refused with an empty 401, one answer lost)
    and commands: neither an access token, a refresh token nor the client secret appears in
    a log line, an answer of the API or a file of the data directory."""
    sim = FleetSimulator(client_secret=CLIENT_SECRET, access_ttl_s=601)
    with debug_log() as log:
        async with running(tmp_path, sim, client_secret=True) as run:
            run.sim.faults.add("token_revoked", times=1)
            run.sim.faults.add("lose_refresh_answer", times=1)
            await run.stopped()
            await run.until("refreshes", lambda _: run.tokens.refreshes.count("ok") >= 3)
            assert "504 (no body)" in run.tokens.refreshes
            assert 401 in run.refusals
            await run.polled()
            await run.tesla("ok")
            answers = run.answers
            logging.getLogger("surplus.test").warning("leak %s", CLIENT_SECRET)
    assert len(sim.tokens_issued) >= 3  # the refreshes above issued tokens to search for
    logged = "\n".join(log.lines)
    assert "/oauth2/v3/token" in logged  # the token endpoint's traffic was logged at DEBUG
    assert "leak ********" in logged  # a leaked client secret is masked
    secrets = [*sim.tokens_issued, CLIENT_SECRET]
    for secret in secrets:
        assert secret not in logged
        assert all(secret not in answer for answer in answers)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {"secrets.vault", "surplus.db"} <= {p.name for p in files}
    for path in files:
        data = path.read_bytes()
        assert not [s for s in secrets if s.encode() in data], path


async def test_a_token_leaking_into_a_log_message_is_masked(tmp_path: Path) -> None:
    with debug_log() as log:
        async with running(tmp_path, FleetSimulator(access_ttl_s=601), solar_w=0.0) as run:
            await run.until("a refresh", lambda _: run.tokens.refreshes.count("ok") >= 2)
            tokens = stored_tokens(tmp_path)
            leak = logging.getLogger("surplus.test")
            leak.warning("leak %s %s", tokens.access.reveal(), tokens.refresh.reveal())
    logged = "\n".join(log.lines)
    assert "leak ******** ********" in logged
