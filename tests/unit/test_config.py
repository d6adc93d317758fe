"""The service's config file: loading, every problem at once by key path, secrets kept out of
every output, ``surplus check-config`` and ``surplus sim powerwall``."""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest
from typer.testing import CliRunner

from surplus.cli import app
from surplus.config import load_config
from surplus.control.settings import LoadpointSettings, Mode, SiteSettings
from surplus.domain.errors import ConfigError
from surplus.integrations.powerwall.config import PowerwallConfig
from surplus.security.vault import Secret

PASSWORD = "pw-Zx81-NEVER-SHOWN"

VALID = f"""
[service]
data_dir = "/srv/surplus"
api_host = "0.0.0.0"
api_port = 8181

[site]
site_max_current_a = 32
residual_w = -50

[site.battery]
buffer_soc_pct = 40

[site.stale]
fallback = "stop"

[[devices]]
type = "powerwall"
name = "gateway"
host = "https://192.168.1.50/"
password = "{PASSWORD}"
fingerprint = "{"AB" * 32}"
poll_interval_s = 5

[[loadpoints]]
name = "garage"
mode = "now"
priority = 2
charger = {{ max_current_a = 32, phases = 1 }}

[[loadpoints]]
name = "drive"
"""

HEAD = '\n[[devices]]\ntype = "powerwall"\nname = "gateway"\n'
HOST = 'host = "https://192.168.1.50"\n'
DEVICE = HEAD + HOST

# The check: an unknown key (a misspelt password), a wrong type, a missing password.
THREE_PROBLEMS = f"""
[site.battery]
buffer_soc_pct = "thirty"
{DEVICE}
pasword = "{PASSWORD}"
"""


def write(tmp_path: Path, text: str, name: str = "surplus.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    return caught.value.problems


def check_config(path: Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["check-config", str(path)])
    return result.exit_code, result.stdout, result.stderr


def test_a_valid_file_gives_the_engine_its_settings(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID))

    assert config.service.data_dir == Path("/srv/surplus")
    assert (config.service.api_host, config.service.api_port) == ("0.0.0.0", 8181)
    (device,) = config.devices
    assert isinstance(device, PowerwallConfig)
    assert device.host == "https://192.168.1.50"
    assert device.password == Secret(PASSWORD)
    assert device.fingerprint == ":".join(["ab"] * 32)
    assert (device.poll_interval_s, device.timeout_s) == (5.0, 10.0)

    site = config.site_settings()
    assert type(site) is SiteSettings
    assert site.site_max_current_a == 32.0
    assert site.residual_w == -50.0
    assert site.battery.buffer_soc_pct == 40.0
    assert site.stale.fallback == "stop"
    assert [type(lp) for lp in site.loadpoints] == [LoadpointSettings, LoadpointSettings]
    garage, drive = site.loadpoints
    assert (garage.name, garage.mode, garage.priority) == ("garage", Mode.NOW, 2)
    assert (garage.charger.max_current_a, garage.charger.phases) == (32.0, 1)
    assert (drive.name, drive.mode) == ("drive", Mode.SOLAR)


def test_check_config_says_ok_and_sums_up(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    code, out, err = check_config(path)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"{path}: ok",
        "  API on 0.0.0.0:8181, data in /srv/surplus",
        "  devices: gateway (powerwall, https://192.168.1.50)",
        "  loadpoints: garage (now), drive (solar)",
    ]


def test_an_empty_file_is_a_valid_config(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    assert (config.devices, config.site_settings()) == ([], SiteSettings())


def test_three_problems_give_three_lines_by_key_path(tmp_path: Path) -> None:
    path = write(tmp_path, THREE_PROBLEMS)
    code, out, err = check_config(path)
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"{path}: site.battery.buffer_soc_pct: Input should be a valid number, unable to parse"
        " string as a number",
        f"{path}: devices[0].password: give password or password_secret (a name in the vault)",
        f"{path}: devices[0].pasword: unknown key",
    ]


def test_a_toml_syntax_error_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[service]\ndata_dir = "/srv"\napi_port = \n')
    assert problems(tmp_path, path.read_text()) == [
        ("line 3, column 12", "TOML syntax: Invalid value")
    ]
    code, _, err = check_config(path)
    assert (code, err) == (2, f"{path}: line 3, column 12: TOML syntax: Invalid value\n")


def test_an_unknown_device_type_lists_the_known_ones(tmp_path: Path) -> None:
    text = '[[devices]]\ntype = "fronius"\nname = "solar"\n\n[[devices]]\nname = "typeless"\n'
    known = "give one of: envoy, ocpp, powerwall, push, tesla, wallbox"
    assert problems(tmp_path, text) == [
        ("devices[0].type", f"unknown device type 'fronius'; {known}"),
        ("devices[1].type", f"missing; {known}"),
    ]


def test_names_must_be_unique_and_are_checked_with_everything_else(tmp_path: Path) -> None:
    text = (
        f'{DEVICE}password = "a"\n{DEVICE}password = "b"\ntimeout_s = -1\n'
        '[[loadpoints]]\nname = "garage"\n[[loadpoints]]\nname = "garage"\n'
        'charger_device = "wallbox"\n'
    )
    assert problems(tmp_path, text) == [
        ("devices[1].timeout_s", "Input should be greater than 0"),
        ("devices[1].name", "devices[0] has this name already"),
        ("loadpoints[1].name", "loadpoints[0] has this name already"),
        ("loadpoints[1].charger_device", "no device named 'wallbox'"),
    ]


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ('host = "http://192.168.1.50"\npassword = "x"', "devices[0].host"),
        ('host = "192.168.1.50"\npassword = "x"', "devices[0].host"),
        (f'{HOST}password = "x"\nfingerprint = "abc"', "devices[0].fingerprint"),
        (f'{HOST}password = "{PASSWORD}"\npassword_secret = "gw"', "devices[0].password"),
        (f'{HOST}password = ""', "devices[0].password"),
        (f"{HOST}password = 12345", "devices[0].password"),
        ('password = "x"', "devices[0].host"),
    ],
)
def test_bad_powerwall_fields_are_named(tmp_path: Path, lines: str, expected: str) -> None:
    assert [path for path, _ in problems(tmp_path, f"{HEAD}{lines}\n")] == [expected]


def test_password_secret_names_a_vault_entry_instead(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, f'{DEVICE}password_secret = "gateway-password"\n'))
    (device,) = config.devices
    assert (device.password, device.password_secret) == (None, "gateway-password")


def test_loadpoints_are_not_declared_inside_site(tmp_path: Path) -> None:
    text = '[[site.loadpoints]]\nname = "garage"\n'
    assert [path for path, _ in problems(tmp_path, text)] == ["site.loadpoints"]


@pytest.mark.parametrize(
    "text",
    [
        f'{DEVICE}password = "{PASSWORD}"\ntimeout_s = "soon"\n',  # a wrong-typed sibling
        f'{DEVICE}password = "{PASSWORD}"\npassword_secret = "gw"\n',  # both: the whole table
        f'{DEVICE}password = "{PASSWORD}"\ncolour = ["{PASSWORD}"]\n',
        f'[[devices]]\ntype = "tesla"\npassword = "{PASSWORD}"\n',  # the table is the input
        THREE_PROBLEMS,
    ],
)
def test_the_password_never_shows_in_an_error(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    shown = [str(caught.value), repr(caught.value), *traceback.format_exception(caught.value)]
    code, out, err = check_config(path)
    assert code == 2
    for text_shown in [*shown, out, err]:
        assert PASSWORD not in text_shown


def test_the_password_never_shows_in_a_valid_config(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    config = load_config(path)
    _, out, err = check_config(path)
    for text_shown in [repr(config), str(config), repr(config.devices), out, err]:
        assert PASSWORD not in text_shown


def test_check_config_on_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    assert check_config(path) == (2, "", f"{path}: (file): no such file\n")


def test_check_config_on_a_directory(tmp_path: Path) -> None:
    code, _, err = check_config(tmp_path)
    assert code == 2
    assert err.startswith(f"{tmp_path}: (file): cannot be read")
