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
    [
        ["--firmware", "3.0"],
        ["--fault", "meltdown"],
        ["--host", "localhost"],
        ["--port", "-1"],
        ["--http-port", "70000"],
        ["--lockout-after", "0"],
        ["--busy-rate", "1.5"],
    ],
)
def test_sim_powerwall_refuses_bad_options(args: list[str]) -> None:
    result = CliRunner().invoke(app, ["sim", "powerwall", *args])
    assert result.exit_code == 2
    assert args[0] in result.stderr


def start_sim(*options: str) -> subprocess.Popen[str]:
    """``surplus sim powerwall`` on a free port with ``options``, its output on a pipe."""
    command = [sys.executable, "-m", "surplus.cli", "sim", "powerwall", "--port", "0"]
    return subprocess.Popen(
        [*command, "--password", PASSWORD, *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_sim_powerwall_serves_until_ctrl_c() -> None:
    proc = start_sim("--fault", "grid_down")
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


def test_sim_powerwall_mimics_a_pw3_behind_a_plain_http_redirect() -> None:
    proc = start_sim("--firmware", "pw3", "--http-port", "0")
    try:
        assert proc.stdout is not None
        output = Followed(proc.stdout)
        http_url = output.wait_for("http:", timeout_s=8)
        assert http_url.startswith("http://127.0.0.1:")
        url = output.lines[1].strip().removeprefix("url:").strip()

        moved = httpx.get(f"{http_url}/api/status", timeout=5)
        assert moved.status_code == 301
        assert moved.headers["location"] == f"{url}/api/status"
        assert httpx.get(f"{url}/api/status", verify=False, timeout=5).status_code == 404
        assert httpx.get(f"{url}/tedapi/din", verify=False, timeout=5).status_code == 403

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=5) == 0
        assert output.read_to_end(timeout_s=5)[-1].strip() == "stopped"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
