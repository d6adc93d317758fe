"""The OCPP commands: ``surplus ca init/issue``, ``surplus charger add/list/remove`` and
``surplus sim ocpp-charger`` against a central system in this process, until Ctrl-C."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from surplus.cli import app
from surplus.integrations.ocpp.ca import CA_CERT_FILE, CA_KEY_ENTRY
from surplus.runtime.datadir import open_vault
from surplus.store import Store
from tests.integration.output import Followed
from tests.ocpp_kit import central, eventually


def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "surplus.toml"
    path.write_text(f'[service]\ndata_dir = "{tmp_path / "data"}"\n')
    return path


def every_byte(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file())


def test_ca_init_keeps_its_key_in_the_vault_and_issues_client_certificates(
    tmp_path: Path,
) -> None:
    config, runner = config_file(tmp_path), CliRunner()
    data = tmp_path / "data"
    made = runner.invoke(app, ["ca", "init", "--config", str(config)])
    assert made.exit_code == 0, made.output
    assert "fingerprint:" in made.stdout
    assert (data / CA_CERT_FILE).is_file()
    assert CA_KEY_ENTRY in open_vault(data).names()
    assert b"PRIVATE KEY" not in every_byte(data)  # only sealed, in the vault

    again = runner.invoke(app, ["ca", "init", "--config", str(config)])
    assert again.exit_code == 1 and "exists already" in again.stderr

    out = tmp_path / "certs"
    issued = runner.invoke(app, ["ca", "issue", "CP 7", "--config", str(config), "--out", str(out)])
    assert issued.exit_code == 0, issued.output
    cert_path, key_path = out / "CP_7.pem", out / "CP_7.key"
    assert str(cert_path) in issued.stdout and str(key_path) in issued.stdout
    assert "not registered" in issued.stderr
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    ca = x509.load_pem_x509_certificate((data / CA_CERT_FILE).read_bytes())
    cert.verify_directly_issued_by(ca)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "CP 7"

    twice = runner.invoke(app, ["ca", "issue", "CP 7", "--config", str(config), "--out", str(out)])
    assert twice.exit_code == 2 and "exists" in twice.stderr


def test_charger_add_shows_the_key_once_and_stores_only_its_hash(tmp_path: Path) -> None:
    config, runner = config_file(tmp_path), CliRunner()
    added = runner.invoke(app, ["charger", "add", "CP-1", "--config", str(config)])
    assert added.exit_code == 0, added.output
    key = added.stdout.strip()
    assert len(key) == 40 and int(key, 16) >= 0
    assert "shown only now" in added.stderr

    listed = runner.invoke(app, ["charger", "list", "--config", str(config)])
    assert listed.exit_code == 0 and "CP-1" in listed.stdout and "active" in listed.stdout
    assert key not in listed.output

    stored = every_byte(tmp_path / "data")
    assert key.encode() not in stored
    assert hashlib.sha256(key.encode()).hexdigest().encode() in stored

    twice = runner.invoke(app, ["charger", "add", "CP-1", "--config", str(config)])
    assert twice.exit_code == 2 and "already registered" in twice.stderr
    removed = runner.invoke(app, ["charger", "remove", "CP-1", "--config", str(config)])
    assert removed.exit_code == 0
    listed = runner.invoke(app, ["charger", "list", "--config", str(config)])
    assert "removed" in listed.stdout
    unknown = runner.invoke(app, ["charger", "remove", "CP-9", "--config", str(config)])
    assert unknown.exit_code == 2


@pytest.mark.parametrize(
    "args",
    [
        ["--url", "http://127.0.0.1:1/ocpp", "--id", "X"],
        ["--url", "ws://127.0.0.1:1/ocpp", "--id", "X", "--quirk", "meltdown"],
        ["--url", "ws://127.0.0.1:1/ocpp", "--id", "X", "--quirk", "kwh_values=3"],
        ["--url", "ws://127.0.0.1:1/ocpp", "--id", "X", "--cert", "c.pem"],
        ["--url", "ws://127.0.0.1:1/ocpp", "--id", "X", "--speed", "0"],
    ],
)
def test_sim_ocpp_charger_refuses_bad_options(args: list[str]) -> None:
    result = CliRunner().invoke(app, ["sim", "ocpp-charger", *args])
    assert result.exit_code == 2, result.output


async def test_sim_ocpp_charger_connects_charges_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "surplus.db")
    try:
        key = store.chargers.add("CP-CLI").reveal()
        async with central(tmp_path, store=store) as site:
            command = [sys.executable, "-m", "surplus.cli", "sim", "ocpp-charger"]
            command += ["--url", site.cs.urls[1], "--id", "CP-CLI", "--speed", "10"]
            command += ["--plug-in-after", "1", "--quirk", "odd_strings"]
            proc = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env={**os.environ, "SURPLUS_OCPP_KEY": key},
            )
            try:
                assert proc.stdout is not None
                output = Followed(proc.stdout)

                def charging() -> bool:
                    state = site.cs.state("CP-CLI")
                    return state is not None and state.connector(1).transaction is not None

                await eventually(lambda: "CP-CLI" in site.cs.connected(), 20)
                await eventually(charging, 10)
                proc.send_signal(signal.SIGINT)
                assert await asyncio.to_thread(proc.wait, 10) == 0
                lines = [line.strip() for line in await asyncio.to_thread(output.read_to_end, 5)]
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            await eventually(lambda: "CP-CLI" not in site.cs.connected())
    finally:
        store.close()
    assert lines[0].startswith("simulated charger CP-CLI -> ws://127.0.0.1:")
    assert "quirks: odd_strings" in lines[0]
    assert any(line.startswith("connected to") for line in lines)
    assert any(line.startswith("transaction") and "started" in line for line in lines)
    assert lines[-1] == "stopped"
    assert not any(key in line for line in lines)
