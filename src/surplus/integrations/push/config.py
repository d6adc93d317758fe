"""The config model of one pushed source: a ``[[devices]]`` table with ``type = "push"``.

A script on the owner's network (written for Charge HQ's push API) posts the inverter's
readings to ``/api/public/push-solar-data`` with a key made by ``surplus push-key create
NAME``; NAME is this table's ``name``. Nothing is polled: the source is stale once it has
been silent for ``stale_after_s``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["PushConfig"]


class PushConfig(BaseModel):
    """A source that pushes its readings; Charge HQ asks for one push every 30 to 60 s."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    type: Literal["push"]
    name: Annotated[str, Field(min_length=1)]
    stale_after_s: Annotated[float, Field(gt=0)] = 180.0
