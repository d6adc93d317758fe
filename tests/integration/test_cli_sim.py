"""``surplus sim powerwall``: bad options refused; a simulator served until Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys

import httpx
import pytest
from typer.testing import CliRunner

from surplus.cli import app
from tests.integration.output import Followed

PASSWORD = "sim-cli-password-4711"


@pytest.mark.parametrize(
    "args",
    [["--firmware", "3.0"], ["--fault", "meltdown"], ["--host", "localhost"], ["--port", "-1"]],
)
def test_sim_powerwall_refuses_bad_options(args: list[str]) -> None:
    result = CliRunner().invoke(app, ["sim", "powerwall", *args])
    assert result.exit_code == 2
    assert args[0] in result.stderr


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
        output = Followed(proc.stdout)
        output.wait_for("fingerprint:", timeout_s=8)
        shown = {}
        for line in output.lines:
            key, _, value = line.strip().partition(": ")
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
