"""Showing benchmark results: a table on the terminal, JSON for scripts, a PNG plot."""

from __future__ import annotations

import json
import math
from pathlib import Path

from rich.console import Console
from rich.table import Table

from surplus.bench.accounting import FIGURES
from surplus.bench.runner import Results

COLUMNS = (
    ("solar_share", "solar", "{:.3f}"),
    ("solar_share_ratio", "/opt", "{:.2f}"),
    ("net_cost", "net EUR", "{:.0f}"),
    ("gross_import_cost", "import EUR", "{:.0f}"),
    ("cost_gap_closure", "gap closed", "{:.2f}"),
    ("export_kwh", "export kWh", "{:.0f}"),
    ("battery_throughput_kwh", "batt kWh", "{:.0f}"),
    ("starts", "starts", "{:.0f}"),
    ("starts_per_session", "/session", "{:.2f}"),
    ("worst_day_starts", "worst day", "{:.0f}"),
    ("commands_per_day", "cmd/day", "{:.1f}"),
    ("unmet_kwh", "unmet kWh", "{:.1f}"),
    ("ev_kwh", "EV kWh", "{:.0f}"),
    ("wall_s", "wall s", "{:.1f}"),
)


def print_tables(results: Results, console: Console) -> None:
    for track, patterns in results.items():
        for pattern, strategies in patterns.items():
            table = Table(title=f"{track} / {pattern}", title_justify="left")
            table.add_column("strategy")
            for _, head, _ in COLUMNS:
                table.add_column(head, justify="right")
            for name, figures in strategies.items():
                values = figures.as_dict()
                table.add_row(name, *(fmt.format(values[key]) for key, _, fmt in COLUMNS))
            console.print(table)


def to_json(results: Results) -> dict[str, object]:
    """``{track: {pattern: {strategy: {figure: value}}}}``; NaN becomes null."""

    def clean(value: float) -> float | None:
        return None if math.isnan(value) else round(value, 6)

    return {
        track: {
            pattern: {
                name: {k: clean(v) for k, v in figs.as_dict().items() if k in FIGURES}
                for name, figs in strategies.items()
            }
            for pattern, strategies in patterns.items()
        }
        for track, patterns in results.items()
    }


def write_json(results: Results, path: Path) -> None:
    path.write_text(json.dumps(to_json(results), indent=2) + "\n", encoding="utf-8")


def plot(results: Results, path: Path) -> None:
    """Bars per strategy: net cost, solar share, starts per session, per track and pattern."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(t, p, s) for t, ps in results.items() for p, s in ps.items()]
    metrics = (
        ("net_cost", "net cost (EUR)"),
        ("solar_share", "EV solar share"),
        ("starts_per_session", "starts per session"),
    )
    fig, axes = plt.subplots(
        len(panels), len(metrics), figsize=(13, 3.2 * len(panels)), squeeze=False
    )
    for row, (track, pattern, strategies) in enumerate(panels):
        names = list(strategies)
        for col, (key, label) in enumerate(metrics):
            ax = axes[row][col]
            values = [strategies[n].as_dict()[key] for n in names]
            colors = ["#2a9d8f" if n == "surplus" else "#8d99ae" for n in names]
            ax.bar(names, values, color=colors)
            ax.set_title(f"{track} / {pattern}: {label}", fontsize=9)
            ax.tick_params(axis="x", labelrotation=45, labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
