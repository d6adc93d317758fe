"""The config of OCPP chargers: the ``[ocpp]`` table (the central system's ports) and a
``[[devices]]`` table with ``type = "ocpp"`` per charge point connector.

A charge point connects to surplus (it is the websocket client); it is let in once
registered with ``surplus charger add ID`` (its key shown once, stored hashed), or, on
security profile 3, with a client certificate from ``surplus ca issue ID``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["OcppDeviceConfig", "OcppSection"]

Port = Annotated[int, Field(ge=0, le=65535)]


class OcppSection(BaseModel):
    """``[ocpp]``: where the central system listens; one port per security profile (none
    for a profile that is not offered). Profiles 2 and 3 need ``surplus ca init``."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    host: Annotated[str, Field(min_length=1)] = "0.0.0.0"  # chargers are on the LAN
    path: Annotated[str, Field(pattern=r"^/[A-Za-z0-9/_-]*$")] = "/ocpp"
    profile1_port: Port | None = 8887  # ws:// with HTTP Basic (trusted networks only)
    profile2_port: Port | None = None  # wss:// with HTTP Basic
    profile3_port: Port | None = None  # wss:// with client certificates

    def ports(self) -> dict[int, int]:
        """Security profile -> port, for the profiles offered."""
        given = {1: self.profile1_port, 2: self.profile2_port, 3: self.profile3_port}
        return {profile: port for profile, port in given.items() if port is not None}


class OcppDeviceConfig(BaseModel):
    """One connector of an OCPP 1.6J charge point, steered as a loadpoint's charger."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    type: Literal["ocpp"]
    name: Annotated[str, Field(min_length=1)]
    charge_point_id: Annotated[str | None, Field(min_length=1, max_length=48)] = None
    connector_id: Annotated[int, Field(ge=1)] = 1
    phases: Literal[1, 3] = 3  # wired to the charger
    voltage_v: Annotated[float, Field(gt=0)] = 230.0

    @property
    def charger_id(self) -> str:
        """The chargePointId it connects with (its name, unless given)."""
        return self.charge_point_id or self.name
