"""Benchmark: 200 simulated chargers connected at once to one central system, each charging
and sending meter values every 10 s of its (10x fast) clock, over real websockets on
127.0.0.1. Measured: the time from a ``set_current_limit`` call to its SetChargingProfile
reaching the charger (median and 99th percentile), one call at a time and in bursts that
limit every charger at once, and the whole call, verified by Current.Offered.

Chargers and central system share this process and its one event loop, so the figures
include the chargers' own work: an upper bound for the central system alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from surplus.integrations.ocpp.chargepoint_sim import SimulatedChargePoint
from surplus.integrations.ocpp.limits import LimitStatus
from surplus.store import Store
from tests.ocpp_kit import FAST, Site, central, eventually

CHARGERS = 200
ROUNDS = 5
SPEED = 10.0  # MeterValueSampleInterval 10 s: a MeterValues per charger every second


@dataclasses.dataclass
class Figures:
    connect_s: float
    alone_ms: list[float]
    alone_verified_ms: list[float]
    reach_ms: list[float]
    verified_ms: list[float]
    meter_values_per_s: float

    def lines(self) -> list[str]:
        return [
            f"{CHARGERS} chargers connected, booted and configured in {self.connect_s:.1f} s",
            f"meter values received: {self.meter_values_per_s:.0f}/s",
            f"set_current_limit -> SetChargingProfile at the charger ({len(self.alone_ms)} calls,"
            f" one at a time): median {percentile(self.alone_ms, 50):.1f} ms,"
            f" p99 {percentile(self.alone_ms, 99):.1f} ms; verified by Current.Offered: median"
            f" {percentile(self.alone_verified_ms, 50):.1f} ms,"
            f" p99 {percentile(self.alone_verified_ms, 99):.1f} ms",
            f"set_current_limit -> SetChargingProfile at the charger ({len(self.reach_ms)} calls,"
            f" {CHARGERS} at once): median {percentile(self.reach_ms, 50):.1f} ms,"
            f" p99 {percentile(self.reach_ms, 99):.1f} ms",
            f"  the same bursts, verified by Current.Offered: median"
            f" {percentile(self.verified_ms, 50):.1f} ms,"
            f" p99 {percentile(self.verified_ms, 99):.1f} ms",
        ]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def scenario(directory: Path) -> Figures:
    store = Store.open(directory / "surplus.db")
    keys = {
        f"BENCH-{i:03d}": store.chargers.add(f"BENCH-{i:03d}").reveal() for i in range(CHARGERS)
    }
    reached: dict[str, float] = {}
    options = dataclasses.replace(FAST, verify_timeout_s=10.0, heartbeat_interval_s=60)
    try:
        async with central(directory, store=store, options=options, ping_interval_s=None) as site:

            def hook(charger_id: str) -> Any:
                def on_call(action: str, payload: Any) -> None:
                    if action == "SetChargingProfile":
                        reached[charger_id] = time.perf_counter()

                return on_call

            sims = [
                SimulatedChargePoint(
                    charger_id, site.cs.urls[1], key=key, speed=SPEED, on_call=hook(charger_id)
                )
                for charger_id, key in keys.items()
            ]
            started = time.perf_counter()
            tasks = [asyncio.create_task(sim.run()) for sim in sims]
            await asyncio.gather(*(sim.wait_connected(60) for sim in sims))

            def configured() -> bool:
                return all(
                    "Current.Offered" in sim.config.text("MeterValuesSampledData") for sim in sims
                )

            await eventually(configured, 60)
            connect_s = time.perf_counter() - started
            await asyncio.gather(*(sim.plug_in() for sim in sims))
            await asyncio.sleep(1.5)

            counted = time.perf_counter()
            before = meter_values(site)
            alone_ms: list[float] = []
            alone_verified_ms: list[float] = []
            for charger_id in keys:
                t0 = time.perf_counter()
                result = await site.cs.charger(charger_id).set_current_limit(7.0)
                alone_verified_ms.append((time.perf_counter() - t0) * 1000)
                assert result.status is LimitStatus.APPLIED, result
                alone_ms.append((reached[charger_id] - t0) * 1000)
            reach_ms: list[float] = []
            verified_ms: list[float] = []
            for round_ in range(ROUNDS):
                amps = 8.0 + round_
                reached.clear()

                async def limit(charger_id: str, amps: float = amps) -> None:
                    t0 = time.perf_counter()
                    result = await site.cs.charger(charger_id).set_current_limit(amps)
                    verified_ms.append((time.perf_counter() - t0) * 1000)
                    assert result.status is LimitStatus.APPLIED, result
                    reach_ms.append((reached[charger_id] - t0) * 1000)

                await asyncio.gather(*(limit(charger_id) for charger_id in keys))
                await asyncio.sleep(1.0)  # meter values flow on between the bursts
            after = meter_values(site)
            rate = (after - before) / (time.perf_counter() - counted)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            return Figures(connect_s, alone_ms, alone_verified_ms, reach_ms, verified_ms, rate)
    finally:
        store.close()


def meter_values(site: Site) -> int:
    """How many MeterValues the central system has had from all chargers."""
    states = (site.cs.state(charger_id) for charger_id in site.cs.connected())
    return sum(state.meter_values for state in states if state is not None)


def test_bench_200_chargers_set_current_limit(
    benchmark: BenchmarkFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        figures = benchmark.pedantic(
            lambda: asyncio.run(scenario(Path(tmp))), rounds=1, iterations=1
        )
    with capsys.disabled():  # the figures are the point: shown even under capture
        print()
        for line in figures.lines():
            print(line)
    assert len(figures.reach_ms) == CHARGERS * ROUNDS
    assert figures.meter_values_per_s > 0.5 * CHARGERS * SPEED / 10
