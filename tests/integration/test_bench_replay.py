"""``surplus bench`` end to end on a short stretch of the real tracks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from surplus.bench import runner, strategies, tracks
from surplus.bench.accounting import FIGURES
from surplus.cli import app


@pytest.fixture(scope="module")
def nl_week() -> tracks.Track:
    return tracks.build("nl-2024", days=10)


def test_json_holds_every_figure_of_every_strategy(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    result = CliRunner().invoke(
        app, ["bench", "--track", "nl-2024", "--days", "4", "--json", str(out), "--jobs", "1"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert set(data) == {"nl-2024"}
    assert set(data["nl-2024"]) == {"commuter", "home-office"}
    for pattern in data["nl-2024"].values():
        assert set(pattern) == {*strategies.STRATEGIES, "optimum"}
        for figures in pattern.values():
            assert set(figures) == set(FIGURES)
        assert pattern["naive"]["cost_gap_closure"] == 0.0
        assert pattern["optimum"]["cost_gap_closure"] == 1.0


def test_a_malformed_price_file_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "prices.csv"
    rows = [f"2024-01-01T{h:02d}:00:00Z,{50 + h}" for h in range(24)]
    rows[5] = "2024-01-01T05:00:00Z,lots"
    bad.write_text("timestamp,price\n" + "\n".join(rows) + "\n")
    result = CliRunner().invoke(app, ["bench", "--track", "nl-2024", "--prices", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:7" in result.output
    assert "Traceback" not in result.output


def test_an_unknown_track_is_refused_with_exit_code_2() -> None:
    result = CliRunner().invoke(app, ["bench", "--track", "mars-2024"])
    assert result.exit_code == 2
    assert "mars-2024" in result.output


def test_the_optimum_is_never_beaten(nl_week: tracks.Track) -> None:
    figs = runner.run(
        [nl_week], {nl_week.name: ("commuter",)}, list(strategies.STRATEGIES), jobs=1
    )[nl_week.name]["commuter"]
    best = figs["optimum"].net_cost
    for name, f in figs.items():
        assert f.net_cost >= best - 0.01, name
        assert f.unmet_kwh == pytest.approx(0.0, abs=0.5), name
        assert f.ev_kwh > 50, name  # ten days of commuting needs charging


def test_energy_balances_in_every_step(nl_week: tracks.Track) -> None:
    world = runner.make_world(nl_week, "home-office")
    strat = strategies.make("surplus", strategies.default_settings(), True)
    for i in range(world.n):
        world.apply(strat.act(world, i))
        world.advance(i)
    balance = world.load + world.ev_w - world.pv - world.battery_w - world.grid_w
    assert np.abs(balance).max() < 1e-6
    assert (world.ev_w[~world.plugged] == 0).all()  # never charging a car that is away


def test_the_persistence_forecast_is_named_in_the_results(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    args = ["bench", "--track", "nl-2024", "--days", "2", "--forecast", "persistence"]
    args += ["--strategy", "surplus", "--pattern", "commuter", "--json", str(out), "--jobs", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert set(json.loads(out.read_text())) == {"nl-2024+persistence-forecast"}


def test_an_unknown_forecast_is_refused_with_exit_code_2() -> None:
    result = CliRunner().invoke(app, ["bench", "--forecast", "oracle"])
    assert result.exit_code == 2
    assert "oracle" in result.output
