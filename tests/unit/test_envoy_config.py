"""The ``envoy`` device table and its factory in the registry."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from surplus.domain.errors import NotSupportedError, VaultError
from surplus.integrations.envoy.adapter import EnvoyAdapter
from surplus.integrations.envoy.client import EnvoyClient
from surplus.integrations.envoy.config import EnvoyConfig
from surplus.integrations.registry import DEVICE_TYPES, build_device, presented_fingerprint
from surplus.security.vault import Secret, Vault

BASE = {"type": "envoy", "name": "gw", "host": "https://192.168.1.60", "token_secret": "gw.token"}


def config(**changes: Any) -> EnvoyConfig:
    return EnvoyConfig.model_validate({**BASE, **changes})


def test_defaults_and_normalised_fields() -> None:
    c = config(host="https://192.168.1.60:8443/", fingerprint="AB" * 32)
    assert DEVICE_TYPES["envoy"] is EnvoyConfig
    assert c.host == "https://192.168.1.60:8443"
    assert c.fingerprint == ":".join(["ab"] * 32)
    assert (c.poll_interval_s, c.timeout_s) == (10.0, 10.0)
    assert c.enlighten_url == "https://enlighten.enphaseenergy.com"
    assert c.entrez_url == "https://entrez.enphaseenergy.com"
    old = config(host="http://192.168.1.61", token_secret=None)
    assert old.plain_http


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"host": "ftp://envoy"}, "https://"),
        ({"host": "https://envoy/path"}, "https://"),
        ({"token_secret": None}, "token_secret"),
        ({"enlighten_email": "o@example.com"}, "together"),
        ({"enlighten_password_secret": "pw"}, "together"),
        ({"enlighten_url": "http://cloud"}, "https://"),
        ({"serial": "12-34"}, "pattern"),
        ({"host": "http://envoy", "fingerprint": "ab" * 32}, "no certificate"),
        ({"password": "x"}, "Extra inputs"),
    ],
)
def test_bad_tables_are_refused(changes: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        config(**changes)


def vault(tmp_path: Path) -> Vault:
    return Vault.open(tmp_path / "v.vault", key_file=tmp_path / "v.key")


def test_built_with_the_token_and_password_from_the_vault(tmp_path: Path) -> None:
    v = vault(tmp_path)
    v.set("gw.token", "a.b.c")
    v.set("enlighten.pw", "secret-pw")
    c = config(enlighten_email="o@example.com", enlighten_password_secret="enlighten.pw")
    built = build_device(c, v, lambda: datetime.now(UTC), pinned="cd" * 32)
    assert isinstance(built.adapter, EnvoyAdapter)
    assert isinstance(built.client, EnvoyClient)
    assert built.client.fingerprint == ":".join(["cd"] * 32)
    assert built.secrets == (Secret("a.b.c"), Secret("secret-pw"))
    assert "a.b.c" not in repr(built.client)


def test_a_missing_token_is_a_vault_error(tmp_path: Path) -> None:
    with pytest.raises(VaultError, match=r"gw\.token"):
        build_device(config(), vault(tmp_path))


def test_old_firmware_needs_no_token_and_has_nothing_to_pin(tmp_path: Path) -> None:
    c = config(host="http://192.168.1.61", token_secret=None)
    built = build_device(c, vault(tmp_path))
    assert built.secrets == ()
    assert built.client.fingerprint is None


async def test_no_fingerprint_over_plain_http() -> None:
    with pytest.raises(NotSupportedError, match="plain HTTP"):
        await presented_fingerprint(config(host="http://192.168.1.61", token_secret=None))
