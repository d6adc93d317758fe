"""``surplus sim envoy`` (served until Ctrl-C) and ``surplus auth envoy`` against it: a token
from the simulated cloud, or a pasted one, checked on the gateway and kept in the vault."""

from __future__ import annotations

import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from surplus.cli import app
from surplus.integrations.envoy.tokens import read_claims
from surplus.runtime.datadir import open_vault
from tests.integration.output import Followed

PASSWORD = "sim-envoy-cli-pass-4711"


@pytest.mark.parametrize(
    "args",
    [
        ["--firmware", "latest"],
        ["--fault", "meltdown"],
        ["--host", "localhost"],
        ["--serial", "12-34"],
        ["--cloud-port", "70000"],
    ],
)
def test_sim_envoy_refuses_bad_options(args: list[str]) -> None:
    result = CliRunner().invoke(app, ["sim", "envoy", *args])
    assert result.exit_code == 2
    assert args[0] in result.stderr


@pytest.fixture(scope="module")
def simulator() -> Iterator[dict[str, str]]:
    """``surplus sim envoy`` on free ports; what it printed, by key."""
    command = [sys.executable, "-m", "surplus.cli", "sim", "envoy", "--port", "0"]
    proc = subprocess.Popen(
        [*command, "--cloud-port", "0", "--password", PASSWORD, "--fault", "tokens_route_gone"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        output = Followed(proc.stdout)
        output.wait_for("Ctrl-C", timeout_s=30)
        shown = {}
        for line in output.lines[1:]:
            key, _, value = line.strip().partition(": ")
            shown[key.strip()] = value.strip()
        yield shown
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=5) == 0
        assert output.read_to_end(timeout_s=5)[-1].strip() == "stopped"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sim_envoy_serves_until_ctrl_c(simulator: dict[str, str]) -> None:
    assert simulator["url"].startswith("https://127.0.0.1:")
    assert simulator["cloud"].startswith("https://127.0.0.1:")
    assert simulator["password"] == PASSWORD
    assert len(simulator["fingerprint"]) == 95
    assert read_claims(simulator["owner token"]).role == "owner"
    assert read_claims(simulator["installer token"]).role == "installer"
    assert simulator["faults"] == "tokens_route_gone"

    info = httpx.get(f"{simulator['url']}/info", verify=False, timeout=5)
    assert f"<sn>{simulator['serial']}</sn>" in info.text
    bearer = {"Authorization": f"Bearer {simulator['owner token']}"}
    checked = httpx.get(f"{simulator['url']}/auth/check_jwt", headers=bearer, verify=False)
    assert checked.text == "<!DOCTYPE html><h2>Valid token.</h2>"
    login = httpx.post(
        f"{simulator['cloud']}/login/login.json",
        data={"user[email]": simulator["email"], "user[password]": PASSWORD},
        verify=ssl.create_default_context(cafile=simulator["cloud ca file"]),
        timeout=5,
    )
    assert login.json()["session_id"]


def write_config(tmp_path: Path, sim: dict[str, str], *, cloud: bool = True) -> Path:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    lines = [
        f'[service]\ndata_dir = "{data_dir}"\n',
        "[[devices]]",
        'type = "envoy"',
        'name = "gw"',
        f'host = "{sim["url"]}"',
        'token_secret = "gw.token"',
    ]
    if cloud:
        open_vault(data_dir).set("enlighten.password", PASSWORD)
        lines += [
            f'enlighten_email = "{sim["email"]}"',
            'enlighten_password_secret = "enlighten.password"',
            f'enlighten_url = "{sim["cloud"]}"',
            f'entrez_url = "{sim["cloud"]}"',
            f'cloud_ca_file = "{sim["cloud ca file"]}"',
        ]
    path = tmp_path / "surplus.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_auth_envoy_stores_a_token_from_the_cloud(
    simulator: dict[str, str], tmp_path: Path
) -> None:
    config = write_config(tmp_path, simulator)
    result = CliRunner().invoke(app, ["auth", "envoy", "gw", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "accepted the owner token; stored in the vault as gw.token" in result.stdout
    vault = open_vault(tmp_path / "data")
    assert vault.names() == ["enlighten.password", "gw.token"]
    token = vault.get("gw.token").reveal()
    assert read_claims(token).audience == simulator["serial"]
    assert token not in result.output
    assert PASSWORD not in result.output


def test_auth_envoy_stores_a_pasted_token(simulator: dict[str, str], tmp_path: Path) -> None:
    config = write_config(tmp_path, simulator, cloud=False)
    token = simulator["installer token"]
    args = ["auth", "envoy", "gw", "--config", str(config), "--token-stdin"]
    result = CliRunner().invoke(app, args, input=token + "\n")
    assert result.exit_code == 0, result.output
    assert "accepted the installer token" in result.stdout
    assert token not in result.output
    assert open_vault(tmp_path / "data").get("gw.token").reveal() == token


def test_auth_envoy_errors_are_one_clear_line(simulator: dict[str, str], tmp_path: Path) -> None:
    config = write_config(tmp_path, simulator, cloud=False)
    runner = CliRunner()
    no_cloud = runner.invoke(app, ["auth", "envoy", "gw", "--config", str(config)])
    assert no_cloud.exit_code == 2
    assert "--token-stdin" in no_cloud.stderr
    unknown = runner.invoke(app, ["auth", "envoy", "nope", "--config", str(config)])
    assert unknown.exit_code == 2
    args = ["auth", "envoy", "gw", "--config", str(config), "--token-stdin"]
    garbage = runner.invoke(app, args, input="not-a-token\n")
    assert garbage.exit_code == 1
    assert garbage.stderr.count("\n") == 1
    assert "not a token" in garbage.stderr
    assert "gw.token" not in open_vault(tmp_path / "data").names()
