"""``surplus sim powerwall``: bad options refused; a simulator served until Ctrl-C."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
from typing import IO

import httpx
import pytest
from typer.testing import CliRunner

from surplus.cli import app

PASSWORD = "sim-cli-password-4711"


@pytest.mark.parametrize(
    "args",
    [["--firmware", "3.0"], ["--fault", "meltdown"], ["--host", "localhost"], ["--port", "-1"]],
)
def test_sim_powerwall_refuses_bad_options(args: list[str]) -> None:
    result = CliRunner().invoke(app, ["sim", "powerwall", *args])
    assert result.exit_code == 2
    assert args[0] in result.stderr


def _lines(stream: IO[str], into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line)


def test_sim_powerwall_serves_until_ctrl_c() -> None:
    command = [sys.executable, "-m", "surplus.cli", "sim", "powerwall", "--port", "0"]
    proc = subprocess.Popen(
        [*command, "--password", PASSWORD, "--fault", "grid_down"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True).start()
        shown: dict[str, str] = {}
        while "fingerprint" not in shown:
            key, _, value = lines.get(timeout=8).strip().partition(": ")
            shown[key.strip()] = value.strip()
        assert shown["password"] == PASSWORD
        assert len(shown["fingerprint"]) == 95
        assert shown["url"].startswith("https://127.0.0.1:")

        answer = httpx.get(f"{shown['url']}/api/status", verify=False, timeout=5)
        assert answer.status_code == 200
        assert answer.json()["version"].startswith("21.44")
        faults = httpx.get(f"{shown['url']}/sim/faults", verify=False, timeout=5)
        assert faults.json() == {"active": ["grid_down"]}

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
