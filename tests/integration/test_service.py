"""The whole service on 127.0.0.1: ``surplus demo`` in a subprocess, the service in-process
beside devices it cannot use, the control loop's handling of refused battery commands, and
``surplus run`` with a bad config. No secret (password or gateway token) in any log line,
answer or file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from surplus.cli import app
from surplus.config import load_config
from surplus.control.settings import SiteSettings
from surplus.control.state import BatteryCommand, BatteryMode, ControlState, Decision
from surplus.demo import demo_simulator, write_demo_files
from surplus.domain.errors import NotSupportedError, SurplusError, UnavailableError
from surplus.domain.readings import BatteryState, MeterReading
from surplus.integrations.powerwall import models as m
from surplus.integrations.powerwall.adapter import PowerwallReading
from surplus.integrations.powerwall.simulator import running_simulator
from surplus.runtime import service as service_module
from surplus.runtime.devices import Device
from surplus.runtime.loop import ControlLoop
from surplus.runtime.poller import Poller
from surplus.runtime.service import Service
from surplus.security.vault import Vault
from surplus.store import Store
from tests.integration.output import Followed

SITE_KEYS = ("grid_w", "solar_w", "home_w", "battery_w", "battery_soc_pct")
# A gateway token is 86 URL-safe characters; nothing else surplus logs is such a long run.
TOKEN_LIKE = re.compile(r"[A-Za-z0-9_-]{80,}")
# A reading is stamped when its round of three requests ends, so just before the next one
# lands its age is the interval plus that round's jitter.
ROUND_JITTER_S = 0.5


def _z(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _files(root: Path) -> Iterator[bytes]:
    for path in root.rglob("*"):
        if path.is_file():
            yield path.read_bytes()


def _site_ready(state: dict[str, Any]) -> bool:
    return all(state["site"][key] is not None for key in SITE_KEYS)


def test_demo_serves_the_simulated_site_until_ctrl_c(tmp_path: Path) -> None:
    started = datetime.now(UTC)
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "surplus.cli", "demo", "--port", "0", "--speed", "60"),
            *("--data", str(tmp_path), "--log-level", "debug"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    answers: list[str] = []
    assert proc.stdout is not None and proc.stderr is not None
    out, err = Followed(proc.stdout), Followed(proc.stderr)
    try:
        url = out.wait_for("state:", timeout_s=15)
        assert url.startswith("http://127.0.0.1:") and url.endswith("/api/v1/state")
        api = url.removesuffix("/state")
        interval_s = load_config(tmp_path / "surplus.toml").devices[0].poll_interval_s

        def get(path: str) -> httpx.Response:
            answer = httpx.get(f"{api}{path}", timeout=5)
            answers.append(answer.text)
            return answer

        deadline = time.monotonic() + 30
        while not _site_ready(first := get("/state").json()):
            assert time.monotonic() < deadline, first
            time.sleep(0.2)
        for key in SITE_KEYS:
            assert 0 <= first["site"][key]["age_s"] < interval_s + ROUND_JITTER_S, key
        values = {key: first["site"][key]["value"] for key in SITE_KEYS}
        assert 0 <= values["battery_soc_pct"] <= 100
        assert values["solar_w"] >= 0 and values["home_w"] >= 0
        # the simulator's physics: site = load - solar - battery (solar noise under 20 W is 0)
        balance = values["home_w"] - values["solar_w"] - values["battery_w"]
        assert values["grid_w"] == pytest.approx(balance, abs=20.0)
        assert first["integrations"] == [
            {
                "name": "gateway",
                "type": "powerwall",
                "status": "ok",
                "detail": "",
                "api_usage": None,
            }
        ]
        assert first["loadpoints"][0]["name"] == "carport"
        assert first["loadpoints"][0]["reason"].startswith("not controlled")

        time.sleep(interval_s + 0.3)
        second = get("/state").json()
        assert second["site"]["grid_w"]["at"] > first["site"]["grid_w"]["at"]
        assert {key: second["site"][key]["value"] for key in SITE_KEYS} != values

        query = f"series=gateway.battery_soc_pct&from={_z(started)}"
        query += f"&to={_z(datetime.now(UTC) + timedelta(minutes=1))}"
        while not (history := get(f"/history?{query}&step=60").json())["buckets"]:
            assert time.monotonic() < deadline, history  # the recorder flushes each second
            time.sleep(0.2)
        assert history["unit"] == "%" and history["step"] == 60
        assert all(0 <= b["mean"] <= 100 and b["count"] >= 1 for b in history["buckets"])
        for step in ("61", "abc", "0"):
            bad = get(f"/history?{query}&step={step}")
            assert bad.status_code == 400 and bad.json()["field"] == "step", bad.text
        missing = get(f"/history?from={_z(started)}&to={_z(datetime.now(UTC))}&step=60")
        assert missing.status_code == 400 and missing.json()["field"] == "series"
        assert get("/sessions").json() == {"sessions": []}  # no charger here
        bad = get(f"/sessions?from={_z(datetime.now(UTC))}&to={_z(started)}")
        assert bad.status_code == 400 and bad.json()["field"] == "to", bad.text
        assert get("/sessions?from=yesterday").json()["field"] == "from"

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    vault = Vault.open(tmp_path / "secrets.vault", key_file=tmp_path / "vault.key")
    password = vault.get("gateway.password").reveal()
    assert all(password.encode() not in data for data in _files(tmp_path))
    output = "".join(out.read_to_end(5) + err.read_to_end(5))
    assert "stopped" in out.lines[-1]
    assert "DEBUG" in output  # the gateway's traffic was logged, and still no secret in it
    assert password not in output and not TOKEN_LIKE.search(output)
    assert all(password not in text and not TOKEN_LIKE.search(text) for text in answers)


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextlib.contextmanager
def _debug_log() -> Iterator[_Lines]:
    root = logging.getLogger()
    handler, level = _Lines(), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def test_service_runs_on_beside_refused_devices_and_leaks_no_secret(
    tmp_path: Path,
) -> None:
    password, wrong = "demo-Pw-7f3kq9", "wrong-Pw-xk27m1"
    sim = demo_simulator(password, speed=60)
    answers: list[str] = []
    with _debug_log() as log:
        async with running_simulator(sim) as served:
            config_file = write_demo_files(tmp_path, served, password)
            with config_file.open("a") as f:
                # attic: a wrong password in the file; shed: a secret missing from the vault
                for name, secret in (
                    ("attic", f'password = "{wrong}"'),
                    ("shed", 'password_secret = "not.in.vault"'),
                ):
                    f.write(
                        f'\n[[devices]]\ntype = "powerwall"\nname = "{name}"\n'
                        f'host = "{served.url}"\nfingerprint = "{served.fingerprint}"\n'
                        f"{secret}\n"
                    )
            urls: list[str] = []
            service = Service(load_config(config_file), api_port=0, on_ready=urls.append)
            task = asyncio.create_task(service.run())
            try:
                async with httpx.AsyncClient(timeout=5) as http:
                    deadline = time.monotonic() + 15
                    while True:
                        assert time.monotonic() < deadline and not task.done()
                        if urls:
                            answer = await http.get(f"{urls[0]}/api/v1/state")
                            answers.append(answer.text)
                            status = {i["name"]: i for i in answer.json()["integrations"]}
                            if status["gateway"]["status"] == "ok" and _site_ready(answer.json()):
                                break
                        await asyncio.sleep(0.1)
                    assert status["attic"]["status"] == "needs re-authentication"
                    assert "refused the password" in status["attic"]["detail"]
                    assert status["shed"]["status"] == "needs re-authentication"
                    assert "not.in.vault" in status["shed"]["detail"]
                    logging.getLogger("surplus.test").warning("leak %s and %s", password, wrong)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    assert sim.tokens_issued
    assert any("leak ******** and ********" in line for line in log.lines)
    logged = "\n".join(log.lines)
    assert "set-cookie" in logged.lower()  # the gateway's answers were traced at DEBUG
    for secret in (password, wrong, *sim.tokens_issued):
        assert secret not in logged
        assert all(secret not in text for text in answers)
    for secret in (password, *sim.tokens_issued):
        assert all(secret.encode() not in data for data in _files(tmp_path))
    with Store.open(tmp_path / "surplus.db") as store:  # closed and flushed by the service
        far = timedelta(days=1)
        now = datetime.now(UTC)
        assert store.series.samples("gateway", "grid_w", now - far, now + far)
        assert store.series.unit("attic", "grid_w") is None


class _FakeBattery:
    """A site device whose battery refuses what ``errors`` says, per mode."""

    name = "fake"

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.errors: dict[str, Exception] = {}

    async def read_site(self) -> PowerwallReading:
        at = datetime.now(UTC)
        meter = MeterReading(0.0, at)
        battery = BatteryState(50.0, 0.0, 13_500.0, at)
        return PowerwallReading(meter, meter, battery, meter, "SystemGridConnected", at)

    async def set_battery_mode(self, mode: str, power_w: float = 0.0) -> None:
        self.calls.append(mode)
        error = self.errors.get(mode)
        if error is not None:
            raise error


async def test_refused_battery_modes_are_dropped_or_retried(tmp_path: Path) -> None:
    fake = _FakeBattery()
    fake.errors = {
        BatteryMode.IDLE: NotSupportedError("no idle"),
        BatteryMode.HOLD: UnavailableError("busy"),
    }
    poller: Poller[Any] = Poller("fake", fake.read_site, 1.0, 1.0)
    await poller.poll_once()
    device = Device("fake", "fake", fake, None, poller)
    at = datetime.now(UTC)

    def wants(mode: BatteryMode) -> Decision:
        return Decision((BatteryCommand(mode),), ControlState(battery_mode=mode), {"battery": "x"})

    with Store.open(tmp_path / "surplus.db") as store:
        loop = ControlLoop(SiteSettings(), [], [device], store.log, 1.0, lambda: at)
        for _ in range(2):
            await loop.apply(wants(BatteryMode.IDLE), device, at)
            await loop.apply(wants(BatteryMode.HOLD), device, at)
        assert fake.calls == ["idle", "hold", "hold"]  # idle dropped, hold retried
        assert loop.state.battery_mode == BatteryMode.NORMAL  # nothing took effect
        del fake.errors[BatteryMode.HOLD]
        await loop.apply(wants(BatteryMode.HOLD), device, at)
        assert loop.state.battery_mode == BatteryMode.HOLD
        results = [e.result for e in store.log.between(at, at + timedelta(seconds=1))]
    assert [r.partition(",")[0] for r in reversed(results)] == [
        "not supported",
        "failed",
        "failed",
        "ok",
    ]


@pytest.mark.parametrize(
    ("toml", "paths"),
    [
        (
            '[service]\napi_port = 0\n[[devices]]\ntype = "powerwall"\nname = "gw"\n'
            'host = "http://192.168.1.50"\n',
            ["service.api_port", "devices[0].host", "devices[0].password"],
        ),
        ('[service]\napi_host = "0.0.0.0"\n', ["service.api_host"]),
    ],
)
def test_run_refuses_a_bad_config_naming_each_key_path(
    tmp_path: Path, toml: str, paths: list[str]
) -> None:
    config = tmp_path / "surplus.toml"
    config.write_text(toml)
    result = CliRunner().invoke(app, ["run", "--config", str(config)])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    for path in paths:
        assert any(f"{path}:" in line for line in lines), (path, lines)


async def test_a_reserve_left_raised_by_an_earlier_run_is_put_back(tmp_path: Path) -> None:
    """At start the engine's battery mode is sent even though it did not change: a gateway
    left holding (a raised reserve) by a run that was killed goes back to normal."""
    sim = demo_simulator("Pw-reserve-3k", speed=1)
    sim.operation = sim.operation.model_copy(
        update={"backup_reserve_percent": m.app_to_raw_pct(80.0)}
    )
    async with running_simulator(sim) as served:
        path = write_demo_files(tmp_path, served, "Pw-reserve-3k", poll_s=0.2)
        text = path.read_text()  # without the tariff: the engine keeps to self-consumption
        path.write_text(text[: text.index("[tariff]")])
        config = load_config(path)
        task = asyncio.create_task(Service(config, api_port=0).run())
        try:
            deadline = time.monotonic() + 10
            while m.raw_to_app_pct(sim.operation.backup_reserve_percent) > 20.5:
                assert time.monotonic() < deadline and not task.done()
                await asyncio.sleep(0.1)
            while not _logged(tmp_path):  # the write's read-back, then its log entry
                assert time.monotonic() < deadline and not task.done()
                await asyncio.sleep(0.1)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert sim.operation.real_mode == m.RealMode.SELF_CONSUMPTION
    with Store.open(tmp_path / "surplus.db") as store:
        now = datetime.now(UTC)
        entries = store.log.between(now - timedelta(minutes=1), now + timedelta(minutes=1))
    assert [(e.command["battery_mode"], e.result) for e in entries] == [("normal", "ok")]


def _logged(data_dir: Path) -> bool:
    with Store.open(data_dir / "surplus.db") as store:
        now = datetime.now(UTC)
        return bool(store.log.between(now - timedelta(minutes=1), now + timedelta(minutes=1)))


async def test_a_task_that_fails_at_start_is_one_error_not_a_group(tmp_path: Path) -> None:
    async def fail() -> None:
        raise SurplusError("the API could not start")

    with pytest.raises(SurplusError, match="could not start"), service_module.one_error():
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(fail())
