"""The config model of one Powerwall gateway: a ``[[devices]]`` table with ``type = "powerwall"``.

The password is given either in the file (``password``) or as the name of a vault entry
(``password_secret``), exactly one of them. A password read from the file is held as a
``Secret`` at once: no repr, validation error or message shows it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, field_validator, model_validator
from pydantic_core import PydanticCustomError

from surplus.integrations.powerwall.tls import normalize_fingerprint
from surplus.security.vault import Secret

__all__ = ["PowerwallConfig"]

# Put in place of ``password`` by ``_one_password`` so that the field's own validator reports
# the problem, at its key path and beside every other problem of the table.
_NEITHER = object()
_BOTH = object()


def _password(value: object) -> Secret:
    """The password field: a non-empty string, kept as a ``Secret``; errors never quote it."""
    if value is _NEITHER:
        raise PydanticCustomError(
            "password_missing", "give password or password_secret (a name in the vault)"
        )
    if value is _BOTH:
        raise PydanticCustomError("password_twice", "give password or password_secret, not both")
    if isinstance(value, Secret):
        return value
    if not isinstance(value, str):
        raise PydanticCustomError("string_type", "must be a string")
    if not value:
        raise PydanticCustomError("string_too_short", "must not be empty")
    return Secret(value)


class PowerwallConfig(BaseModel):
    """A Powerwall 2 gateway on the local network, reached over HTTPS as ``customer``."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    type: Literal["powerwall"]
    name: Annotated[str, Field(min_length=1)]
    host: str  # https://<address>[:port]
    password: Annotated[Secret | None, PlainValidator(_password)] = None
    password_secret: Annotated[str | None, Field(min_length=1)] = None
    # SHA-256 of the gateway's certificate; without it the first one met is trusted
    fingerprint: str | None = None
    poll_interval_s: Annotated[float, Field(gt=0)] = 10.0
    timeout_s: Annotated[float, Field(gt=0)] = 10.0

    @model_validator(mode="before")
    @classmethod
    def _one_password(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        given = ("password" in data, "password_secret" in data)
        if given == (False, False):
            return {**data, "password": _NEITHER}
        if given == (True, True):
            return {**data, "password": _BOTH}
        return data

    @field_validator("host")
    @classmethod
    def _https_url(cls, value: str) -> str:
        """``https://<host>[:port]`` as the client takes it, with nothing after the port."""
        try:
            url = httpx.URL(value)
        except httpx.InvalidURL:
            url = None
        if (
            url is None
            or url.scheme != "https"
            or not url.host
            or url.path not in ("", "/")
            or url.query
            or url.fragment
            or url.userinfo
        ):
            raise ValueError("must be https://<address>[:port], e.g. https://192.168.1.50")
        return f"https://{url.host}" + (f":{url.port}" if url.port else "")

    @field_validator("fingerprint")
    @classmethod
    def _sha256(cls, value: str | None) -> str | None:
        return None if value is None else normalize_fingerprint(value)
