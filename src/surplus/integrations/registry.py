"""The explicit map from a ``[[devices]]`` table's ``type`` to the config model of that device.

A new integration adds its model here and to ``DeviceConfig``; nothing is discovered.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeAlias

from surplus.integrations.powerwall.config import PowerwallConfig

__all__ = ["DEVICE_TYPES", "DeviceConfig"]

# The config of any registered device: a union of the models below, one per integration.
DeviceConfig: TypeAlias = PowerwallConfig

DEVICE_TYPES: Mapping[str, type[DeviceConfig]] = {
    "powerwall": PowerwallConfig,
}
