"""Runs the replays: every strategy on every pattern of a track, plus the optimum.

Each (pattern, strategy) replay is independent, so they run in a process pool (one worker
per core by default); the figures are the same whatever the number of workers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from datetime import timedelta

from surplus.bench.accounting import Figures, book
from surplus.bench.optimum import optimum
from surplus.bench.strategies import default_settings, make
from surplus.bench.tracks import Track
from surplus.control.settings import SiteSettings
from surplus.sim.devices import ElectricVehicle, HomeBattery
from surplus.sim.patterns import trips
from surplus.sim.world import World

Results = dict[str, dict[str, dict[str, Figures]]]  # track -> pattern -> strategy


def make_world(track: Track, pattern: str) -> World:
    imp, exp = track.prices_per_step()
    end = track.start + timedelta(seconds=track.n * track.step_s)
    return World(
        start=track.start,
        step_s=track.step_s,
        pv_w=track.pv_w,
        load_w=track.load_w,
        clear_sky_w=track.clear_sky_w,
        import_eur_per_kwh=imp,
        export_eur_per_kwh=exp,
        tariff=track.tariff(),
        trips=trips(pattern, track.start, end, track.tz),
        ev=ElectricVehicle(),
        battery=HomeBattery(),
        target_soc_pct=80.0 if track.use_targets else 0.0,
        forecast=track.forecast,
    )


def replay(track: Track, pattern: str, strategy: str, settings: SiteSettings) -> Figures:
    """One strategy over the whole track with one plug-in pattern."""
    t0 = time.perf_counter()
    world = make_world(track, pattern)
    if strategy == "optimum":
        return optimum(world, track.use_targets)
    strat = make(strategy, settings, track.use_targets)
    for i in range(world.n):
        commands = strat.act(world, i)
        if commands:
            world.apply(commands)
        world.advance(i)
    counts = world.counts
    return book(
        step_s=world.step_s,
        pv_w=world.pv,
        load_w=world.load,
        ev_w=world.ev_w,
        battery_w=world.battery_w,
        grid_w=world.grid_w,
        import_eur_per_kwh=world.imp,
        export_eur_per_kwh=world.exp,
        starts=counts.starts,
        sessions=len(world.sessions),
        worst_day_starts=max(counts.starts_by_day.values(), default=0),
        commands=counts.commands,
        unmet_wh=counts.unmet_wh,
        wall_s=time.perf_counter() - t0,
    )


def with_ratios(figures: dict[str, Figures]) -> dict[str, Figures]:
    """Add solar share / optimum's and cost-gap closure to every strategy."""
    opt = figures.get("optimum")
    naive = figures.get("naive")
    out = {}
    for name, f in figures.items():
        ratio = f.solar_share / opt.solar_share if opt and opt.solar_share > 0 else float("nan")
        gap = float("nan")
        if opt and naive and naive.net_cost - opt.net_cost > 1e-9:
            gap = (naive.net_cost - f.net_cost) / (naive.net_cost - opt.net_cost)
        out[name] = replace(f, solar_share_ratio=ratio, cost_gap_closure=gap)
    return out


def run(
    tracks: Sequence[Track],
    patterns: Mapping[str, Sequence[str]],
    strategies: Sequence[str],
    settings: SiteSettings | None = None,
    jobs: int = 2,
    on_done: Callable[[str, str, str, Figures], None] | None = None,
) -> Results:
    """Every (track, pattern, strategy) replay; ``on_done`` is told as each one finishes."""
    settings = settings or default_settings()
    tasks = [(t, p, s) for t in tracks for p in patterns[t.name] for s in (*strategies, "optimum")]
    raw: dict[tuple[str, str, str], Figures] = {}
    if jobs <= 1:
        for t, p, s in tasks:
            raw[(t.name, p, s)] = f = replay(t, p, s, settings)
            if on_done:
                on_done(t.name, p, s, f)
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(replay, t, p, s, settings): (t.name, p, s) for t, p, s in tasks}
            for fut in as_completed(futures):
                key = futures[fut]
                raw[key] = fut.result()
                if on_done:
                    on_done(*key, raw[key])
    results: Results = {}
    for t in tracks:
        results[t.name] = {}
        for p in patterns[t.name]:
            figs = {s: raw[(t.name, p, s)] for s in (*strategies, "optimum")}
            results[t.name][p] = with_ratios(figs)
    return results
