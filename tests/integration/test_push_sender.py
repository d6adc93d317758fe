"""``surplus sim push-sender`` against the push receiver served by uvicorn on 127.0.0.1.

The sender runs in process (``CliRunner``) at 0.2 s intervals; the simulated day starts at a
fixed time with the local time zone set to UTC, so the sun is where the test expects it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pytest
import uvicorn
from click.testing import Result
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp
from typer.testing import CliRunner

from surplus.cli import app
from surplus.integrations.push.models import PushedReading
from surplus.integrations.push.receiver import PUSH_PATH, push_routes
from surplus.store import PushMessage, Store

NOON, MIDNIGHT = "2024-06-10T12:00:00Z", "2024-06-10T00:30:00Z"
FAST = ["--unsafe-fast", "--interval-s", "0.2"]


@contextmanager
def serving(asgi: ASGIApp) -> Iterator[str]:
    """``asgi`` served by uvicorn in a thread on a free port of 127.0.0.1; its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(asgi, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 5.0
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(5.0)
        sock.close()


@dataclass
class Receiver:
    store: Store
    key: str
    url: str = ""
    delivered: list[tuple[str, PushedReading | None, frozenset[str]]] = field(default_factory=list)

    def sink(self, source: str, reading: PushedReading | None, flags: frozenset[str]) -> None:
        self.delivered.append((source, reading, flags))

    def messages(self) -> list[PushMessage]:
        return list(reversed(self.store.push_messages.recent("sim")))

    def readings(self) -> list[PushedReading]:
        found = [reading for _, reading, _ in self.delivered]
        assert all(r is not None for r in found)
        return [r for r in found if r is not None]


@pytest.fixture
def local_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone set to UTC (the demo's sun follows local time)."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def receiver(tmp_path: Path, local_utc: None) -> Iterator[Receiver]:
    with Store.open(tmp_path / "surplus.db", flush_interval_s=3600.0) as store:
        found = Receiver(store, store.push_keys.create("sim", datetime.now(UTC)))
        now = partial(datetime.now, UTC)
        routes = push_routes(
            store.push_keys, store.push_messages, found.sink, now, min_interval_s=0
        )
        with serving(Starlette(routes=routes)) as base:
            found.url = base + PUSH_PATH
            yield found


def send(url: str, *options: str) -> Result:
    return CliRunner().invoke(app, ["sim", "push-sender", "--url", url, *options])


def run(receiver: Receiver, *options: str, count: int = 3) -> Result:
    return send(receiver.url, "--key", receiver.key, *FAST, "--count", str(count), *options)


def test_a_healthy_site_pushes_plausible_readings(receiver: Receiver) -> None:
    result = run(receiver, "--start", NOON, "--speed", "60")
    assert result.exit_code == 0, result.output
    pushes = [line for line in result.stdout.splitlines() if line.startswith("push ")]
    assert len(pushes) == 3
    assert all(line.endswith(": 200 OK") for line in pushes), pushes
    assert result.stdout.splitlines()[-1] == "stopped"
    assert receiver.key not in result.output
    assert [m.flags for m in receiver.messages()] == [frozenset()] * 3
    for reading in receiver.readings():
        battery = reading.battery
        assert battery is not None
        balance = reading.grid.power_w + reading.pv.power_w + battery.power_w
        assert reading.load.power_w == pytest.approx(balance, abs=1.0)
        assert reading.pv.power_w > 1_000.0  # noon, even under clouds
        assert reading.load.power_w >= 300.0
        assert 0.0 <= battery.soc_pct <= 100.0
        assert battery.power_w <= 0.0  # taking the noon surplus
    payload = receiver.messages()[-1].payload["siteMeters"]
    assert isinstance(payload, dict)
    assert set(payload) >= {"imported_kwh", "exported_kwh", "battery_energy_kwh"}


def test_a_site_without_battery_pushes_no_battery_fields(receiver: Receiver) -> None:
    result = run(receiver, "--start", MIDNIGHT, "--no-battery")
    assert result.exit_code == 0, result.output
    readings = receiver.readings()
    assert [r.battery for r in readings] == [None] * 3
    for reading in readings:
        assert reading.pv.power_w == 0.0
        assert reading.grid.power_w == pytest.approx(reading.load.power_w, abs=1.0)


@pytest.mark.parametrize(
    ("fault", "options", "flags"),
    [
        ("bad-sign", ["--no-battery", "--start", MIDNIGHT], {"balance"}),
        ("kw-as-w", ["--start", MIDNIGHT], {"watts"}),
        ("soc-percent", ["--start", NOON], {"soc_percent"}),
    ],
)
def test_each_data_fault_is_flagged_by_the_receiver(
    receiver: Receiver, fault: str, options: list[str], flags: set[str]
) -> None:
    result = run(receiver, "--fault", fault, *options)
    assert result.exit_code == 0, result.output
    assert [m.flags for m in receiver.messages()] == [flags] * 3
    assert f"warnings: {', '.join(flags)}" in result.stdout


def test_an_outage_sends_error_pushes(receiver: Receiver) -> None:
    result = run(receiver, "--fault", "outage")
    assert result.exit_code == 0, result.output
    assert receiver.delivered == [("sim", None, {"error"})] * 3
    assert [m.payload for m in receiver.messages()] == [{"error": "inverter offline"}] * 3


def test_a_missing_key_is_refused_and_the_sender_stops(receiver: Receiver) -> None:
    result = run(receiver, "--fault", "missing-key")
    assert result.exit_code == 1
    assert "401 missing apiKey" in result.stderr
    assert "refused the key; stopping" in result.stderr
    assert "push 2" not in result.output
    assert receiver.messages() == []


def test_a_revoked_key_stops_the_sender(receiver: Receiver) -> None:
    receiver.store.push_keys.revoke("sim", datetime.now(UTC))
    result = run(receiver)
    assert result.exit_code == 1
    assert "401 unknown or revoked apiKey" in result.stderr


def test_a_429_is_waited_out(tmp_path: Path, local_utc: None) -> None:
    with Store.open(tmp_path / "surplus.db", flush_interval_s=3600.0) as store:
        key = store.push_keys.create("sim", datetime.now(UTC))
        routes = push_routes(
            store.push_keys, store.push_messages, lambda *_: None, partial(datetime.now, UTC)
        )
        with serving(Starlette(routes=routes)) as base:
            result = send(base + PUSH_PATH, "--key", key, *FAST, "--count", "2")
    assert result.exit_code == 0, result.output
    assert "429 too soon: at most one push every 30 s; waiting 30 s" in result.stdout


def test_no_answer_or_a_5xx_drops_the_sample_and_carries_on(local_utc: None) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    result = send(f"http://127.0.0.1:{port}/push", "--key", "k", *FAST, "--count", "2")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("no answer (ConnectError") == 2
    assert result.stdout.count("sample dropped") == 2

    async def busy(request: Request) -> Response:
        return PlainTextResponse("", status_code=503)

    with serving(Starlette(routes=[Route("/push", busy, methods=["POST"])])) as base:
        result = send(base + "/push", "--key", "k", *FAST, "--count", "2")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("503 (no JSON answer); sample dropped") == 2


@pytest.mark.parametrize(
    ("options", "hint"),
    [
        (["--interval-s", "10"], "--interval-s"),
        (["--interval-s", "0", "--unsafe-fast"], "--interval-s"),
        (["--fault", "meltdown"], "--fault"),
        (["--fault", "soc-percent", "--no-battery"], "--fault"),
        (["--speed", "0"], "--speed"),
        (["--start", "noon"], "--start"),
        (["--start", "2024-06-10T12:00:00"], "--start"),
    ],
)
def test_bad_options_are_refused(options: list[str], hint: str) -> None:
    result = send("http://127.0.0.1:9/push", "--key", "k", *options)
    assert result.exit_code == 2, result.output
    assert hint in result.stderr


def test_a_key_is_needed_unless_its_absence_is_the_fault(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SURPLUS_PUSH_KEY", raising=False)
    result = send("http://127.0.0.1:9/push")
    assert result.exit_code == 2
    assert "--key" in result.stderr


def test_the_url_must_be_http() -> None:
    result = send("ftp://127.0.0.1/push", "--key", "k")
    assert result.exit_code == 2
    assert "--url" in result.stderr


def test_the_key_may_come_from_the_environment(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SURPLUS_PUSH_KEY", receiver.key)
    result = send(receiver.url, *FAST, "--count", "1")
    assert result.exit_code == 0, result.output
    assert len(receiver.messages()) == 1
