"""The config model of one Tesla: a ``[[devices]]`` table with ``type = "tesla"``.

No token is in the file: ``token_secret`` names the vault entry holding the access token,
the refresh token and the expiry (``surplus auth tesla`` puts them there); a confidential
app's secret is in the vault too (``client_secret_secret``). ``fleet_url`` defaults to the
region's Fleet API; a wrong region is corrected at run time (421). ``ca_file`` trusts a
private CA (the simulator's certificate); ``proxy_url`` is a ``tesla-http-proxy`` for cars
that need signed commands (``proxy_ca_file`` its certificate). ``energy_site_id`` names the
account's energy site, whose battery is steered through the Fleet API where the local gateway
refuses it; ``energy_site_reserve_pct`` is its normal backup reserve (default: Tesla's
factory 20 %).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from surplus.integrations.tesla.models import AUTH_URL, IDLE_DATA_S, REGION_URLS

__all__ = ["TeslaConfig"]

Name = Annotated[str, Field(min_length=1)]


class TeslaConfig(BaseModel):
    """A Tesla vehicle reached through the Fleet API."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    type: Literal["tesla"]
    name: Name
    vin: Annotated[str, Field(pattern=r"^[A-HJ-NPR-Z0-9]{17}$")]
    token_secret: Name
    client_id: Name
    client_secret_secret: Name | None = None
    region: Literal["na", "eu"] = "eu"
    fleet_url: str | None = None  # default: the region's base URL
    auth_url: str = AUTH_URL
    ca_file: Path | None = None
    proxy_url: str | None = None
    proxy_ca_file: Path | None = None
    energy_site_id: Annotated[str | None, Field(pattern=r"^[0-9]+$")] = None
    energy_site_reserve_pct: Annotated[int | None, Field(ge=0, le=100)] = None  # default 20
    allow_below_5a: bool = False
    poll_interval_s: Annotated[float, Field(ge=5)] = 30.0
    # the billed vehicle_data of an awake car that is neither plugged in nor charging
    idle_data_s: Annotated[float, Field(ge=5)] = IDLE_DATA_S
    timeout_s: Annotated[float, Field(gt=0)] = 10.0

    @property
    def base_url(self) -> str:
        return self.fleet_url or REGION_URLS[self.region]

    @field_validator("fleet_url", "auth_url", "proxy_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            url = httpx.URL(value)
        except httpx.InvalidURL:
            url = None
        if url is None or url.scheme != "https" or not url.host or url.query or url.userinfo:
            raise ValueError("must be https://<host>[:port][/path]")
        return str(url).rstrip("/")

    @model_validator(mode="after")
    def _consistent(self) -> TeslaConfig:
        if self.proxy_ca_file is not None and self.proxy_url is None:
            raise ValueError("proxy_ca_file: give proxy_url too")
        if self.energy_site_reserve_pct is not None and self.energy_site_id is None:
            raise ValueError("energy_site_reserve_pct: give energy_site_id too")
        return self
