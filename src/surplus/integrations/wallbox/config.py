"""The config model of one Wallbox charger: a ``[[devices]]`` table with ``type = "wallbox"``.

The password is never in the file: ``password_secret`` names its vault entry; the tokens go
to the vault entry ``token_secret`` (by default ``<name>.tokens``) so a restart reuses the
session. ``user_url``/``api_url`` default to the real hosts; the simulator prints its own,
with the certificate to trust (``ca_file``). ``reads_per_minute`` is the account's budget of
status reads (Wallbox held accounts to about one a minute in 2025).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from surplus.integrations.wallbox.client import API_URL, USER_URL

__all__ = ["WallboxConfig"]

Name = Annotated[str, Field(min_length=1)]


class WallboxConfig(BaseModel):
    """A Wallbox charger reached through the Wallbox cloud."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    type: Literal["wallbox"]
    name: Name
    charger_id: Annotated[int, Field(gt=0)]
    email: Name
    password_secret: Name  # the vault entry of the account's password
    token_secret: Name | None = None  # the vault entry of the tokens; default <name>.tokens
    user_url: str = USER_URL
    api_url: str = API_URL
    ca_file: Path | None = None  # a CA to trust (e.g. the simulator's certificate)
    phases: Literal[1, 3] = 3
    reads_per_minute: Annotated[float, Field(gt=0, le=60)] = 1.0
    writes_per_minute: Annotated[float, Field(gt=0, le=60)] = 5.0
    poll_interval_s: Annotated[float, Field(gt=0)] = 60.0
    timeout_s: Annotated[float, Field(gt=0)] = 10.0

    @property
    def token_entry(self) -> str:
        return self.token_secret or f"{self.name}.tokens"

    @field_validator("user_url", "api_url")
    @classmethod
    def _https(cls, value: str) -> str:
        try:
            url = httpx.URL(value)
        except httpx.InvalidURL:
            url = None
        if url is None or url.scheme != "https" or not url.host or url.query or url.userinfo:
            raise ValueError("must be https://<host>[:port][/path]")
        return str(url).rstrip("/")
