"""The config model of one Enphase gateway: a ``[[devices]]`` table with ``type = "envoy"``.

The token is never in the file: ``token_secret`` names its vault entry (``surplus auth envoy``
puts it there). With ``enlighten_email`` and ``enlighten_password_secret`` (both or neither)
the service renews the token from the Enlighten cloud by itself. A gateway on firmware
before 7 is reached over plain HTTP (``host = "http://..."``) and needs no token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from surplus.integrations.envoy.cloud import ENLIGHTEN_URL, ENTREZ_URL
from surplus.integrations.powerwall.tls import normalize_fingerprint

__all__ = ["EnvoyConfig"]

Name = Annotated[str, Field(min_length=1)]


class EnvoyConfig(BaseModel):
    """An Envoy / IQ Gateway on the local network."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    type: Literal["envoy"]
    name: Name
    host: str  # https://<address>[:port], or http://<address>[:port] for firmware < 7
    serial: Annotated[str | None, Field(pattern=r"^[0-9A-Za-z]+$")] = None  # else from /info
    token_secret: Name | None = None  # the vault entry of the token; required over https
    enlighten_email: Name | None = None
    enlighten_password_secret: Name | None = None
    enlighten_url: str = ENLIGHTEN_URL
    entrez_url: str = ENTREZ_URL
    cloud_ca_file: Path | None = None  # a CA to trust for the cloud (e.g. the simulator's)
    # SHA-256 of the gateway's certificate; without it the first one met is trusted
    fingerprint: str | None = None
    poll_interval_s: Annotated[float, Field(gt=0)] = 10.0
    timeout_s: Annotated[float, Field(gt=0)] = 10.0

    @property
    def plain_http(self) -> bool:
        return self.host.startswith("http://")

    @property
    def cloud_renewal(self) -> bool:
        return self.enlighten_email is not None

    @field_validator("host")
    @classmethod
    def _gateway_url(cls, value: str) -> str:
        url = _url(value)
        if url is None or url.scheme not in ("https", "http") or url.path not in ("", "/"):
            raise ValueError(
                "must be https://<address>[:port], e.g. https://192.168.1.60 (http:// only for"
                " firmware before 7)"
            )
        return f"{url.scheme}://{url.host}" + (f":{url.port}" if url.port else "")

    @field_validator("enlighten_url", "entrez_url")
    @classmethod
    def _cloud_url(cls, value: str) -> str:
        url = _url(value)
        if url is None or url.scheme != "https":
            raise ValueError("must be https://<host>[:port][/path]")
        return str(url).rstrip("/")

    @field_validator("fingerprint")
    @classmethod
    def _sha256(cls, value: str | None) -> str | None:
        return None if value is None else normalize_fingerprint(value)

    @model_validator(mode="after")
    def _consistent(self) -> EnvoyConfig:
        if (self.enlighten_email is None) != (self.enlighten_password_secret is None):
            raise ValueError(
                "give enlighten_email and enlighten_password_secret together (or neither)"
            )
        if self.plain_http:
            if self.fingerprint is not None:
                raise ValueError("fingerprint: a gateway on plain http:// has no certificate")
        elif self.token_secret is None:
            raise ValueError(
                "token_secret: required for a gateway on https:// (the vault entry of its token;"
                " store one with: surplus auth envoy <device> --config <file>)"
            )
        return self


def _url(value: str) -> httpx.URL | None:
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL:
        return None
    if not url.host or url.query or url.fragment or url.userinfo:
        return None
    return url
