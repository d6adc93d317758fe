"""``surplus bench-service`` on a short, fast demo: its table and final line parse and add up."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from surplus.cli import app

ROW = re.compile(r"\s*(\d+\.\d)\s+(\d+\.\d)\s+(\d+\.\d)\s+(\d+\.\d\d)")
SUMMARY = re.compile(
    r"rss (\d+\.\d) MB \(peak (\d+\.\d) MB\), cpu (\d+\.\d) % of one core over (\d+) s: "
    r"(within|over) target"
)


def test_bench_service_prints_the_demos_memory_and_cpu_share() -> None:
    result = CliRunner().invoke(
        app, ["bench-service", "--minutes", "0.2", "--poll-s", "2", "--speed", "60"]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    rows = [[float(x) for x in m.groups()] for line in lines if (m := ROW.fullmatch(line))]
    assert len(rows) == 10  # a reading every tenth of the run
    times = [row[0] for row in rows]
    assert times == sorted(times) and 11.0 < times[-1] < 14.0
    assert all(0 < rss <= peak for _, rss, peak, _ in rows)
    assert "integrations at the end: gateway ok" in lines
    found = SUMMARY.match(lines[-1])
    assert found is not None, lines[-1]
    rss, peak, cpu, seconds = (float(x) for x in found.groups()[:4])
    assert 0 < rss <= peak and cpu > 0 and seconds == round(times[-1])
