"""The public ``pyenphase`` library, Home Assistant's Envoy client, as a second client of the
simulator: it authenticates with a token (and, pointed at the simulated cloud, with an
Enlighten account) and reads production, consumption and the batteries as our client does.

pyenphase builds every URL as ``https://{host}{path}``, so the host carries the port; it
never checks the gateway's certificate, and checks the cloud's against the system's CAs,
which the test widens to the simulated cloud's certificate.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from pyenphase import Envoy
from pyenphase.auth import EnvoyTokenAuth
from pyenphase.const import SupportedFeatures

from surplus.integrations.envoy.simulator import running_simulator
from surplus.integrations.envoy.tokens import OWNER
from surplus.sim.devices import HomeBattery
from tests.envoy_kit import EMAIL, PASSWORD, new_sim


def host_of(url: str) -> str:
    return url.removeprefix("https://")


async def test_pyenphase_reads_production_and_consumption_with_a_token() -> None:
    battery = HomeBattery(max_discharge_w=1_000.0)
    sim = new_sim(solar_w=1_500.0, load_w=4_000.0, battery=battery)
    async with running_simulator(sim) as served:
        envoy = Envoy(host_of(served.url))
        try:
            await envoy.setup()
            assert str(envoy.firmware) == "8.2.4264"
            assert envoy.serial_number == sim.serial
            assert envoy.is_metered
            await envoy.authenticate(token=sim.issue_token(OWNER))
            data = await envoy.update()
        finally:
            await envoy.close()
    features = envoy.supported_features
    assert SupportedFeatures.METERING in features
    assert SupportedFeatures.NET_CONSUMPTION in features
    assert SupportedFeatures.ENCHARGE in features
    assert data.system_production is not None
    assert data.system_production.watts_now == 1_500
    assert data.system_consumption is not None  # total-consumption: load less the battery
    assert data.system_consumption.watts_now == 4_000 - 1_000
    assert data.system_net_consumption is not None
    assert data.system_net_consumption.watts_now == 4_000 - 1_500 - 1_000
    assert data.encharge_power is not None
    assert data.encharge_power["482301000001"].real_power_mw == 1_000_000
    assert data.encharge_aggregate is not None
    assert data.encharge_aggregate.state_of_charge == round(battery.soc_pct)
    assert data.ctmeter_production is not None
    assert data.ctmeter_production.active_power == 1_500
    assert sim.requests["GET /auth/check_jwt"] == 1


async def test_pyenphase_gets_its_token_from_the_simulated_cloud(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = new_sim()
    async with running_simulator(sim) as served:
        ca = tmp_path / "cloud-ca.pem"
        ca.write_bytes(served.cloud_ca_pem)
        monkeypatch.setattr("pyenphase.auth.SSL_CONTEXT", ssl.create_default_context(cafile=ca))
        monkeypatch.setattr(
            EnvoyTokenAuth, "JSON_LOGIN_URL", f"{served.cloud_url}/login/login.json?"
        )
        monkeypatch.setattr(EnvoyTokenAuth, "TOKEN_URL", f"{served.cloud_url}/tokens")
        envoy = Envoy(host_of(served.url))
        try:
            await envoy.setup()
            await envoy.authenticate(username=EMAIL, password=PASSWORD)
            data = await envoy.update()
        finally:
            await envoy.close()
    assert isinstance(envoy.auth, EnvoyTokenAuth)
    assert envoy.auth.token_type == OWNER
    assert data.system_production is not None
    assert data.system_production.watts_now == 3_000
    assert sim.cloud.requests == ["login", "tokens"]
