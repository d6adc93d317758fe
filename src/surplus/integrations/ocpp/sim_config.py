"""A simulated charger's configuration keys (OCPP 1.6 chapter 9): read-only keys, typed
values, unknown keys reported as such."""

from __future__ import annotations

from dataclasses import dataclass

from surplus.integrations.ocpp.meter import MEASURANDS

__all__ = ["ConfigStore"]


@dataclass(slots=True)
class _Key:
    value: str
    readonly: bool
    kind: str  # int, bool, measurands, text


class ConfigStore:
    def __init__(self, connectors: int, rate_units: str, sparse_measurands: bool) -> None:
        # sparse: takes any measurand without reporting it, so takes more of them too
        self._keys: dict[str, _Key] = {
            "AuthorizeRemoteTxRequests": _Key("false", False, "bool"),
            "ChargeProfileMaxStackLevel": _Key("8", True, "int"),
            "ChargingScheduleAllowedChargingRateUnit": _Key(rate_units, True, "text"),
            "ChargingScheduleMaxPeriods": _Key("24", True, "int"),
            "ClockAlignedDataInterval": _Key("0", False, "int"),
            "ConnectionTimeOut": _Key("120", False, "int"),
            "HeartbeatInterval": _Key("300", False, "int"),
            "LocalAuthorizeOffline": _Key("true", False, "bool"),
            "LocalPreAuthorize": _Key("false", False, "bool"),
            "MaxChargingProfilesInstalled": _Key("20", True, "int"),
            "MeterValueSampleInterval": _Key("10", False, "int"),
            "MeterValuesSampledData": _Key(
                "Energy.Active.Import.Register,Power.Active.Import,Current.Import",
                False,
                "measurands",
            ),
            "MeterValuesSampledDataMaxLength": _Key(
                "22" if sparse_measurands else "8", True, "int"
            ),
            "NumberOfConnectors": _Key(str(connectors), True, "int"),
            "StopTransactionOnEVSideDisconnect": _Key("true", False, "bool"),
            "StopTxnSampledData": _Key("Energy.Active.Import.Register", False, "measurands"),
            "SupportedFeatureProfiles": _Key(
                "Core,FirmwareManagement,LocalAuthListManagement,Reservation,SmartCharging,"
                "RemoteTrigger",
                True,
                "text",
            ),
            "TransactionMessageAttempts": _Key("3", False, "int"),
            "TransactionMessageRetryInterval": _Key("10", False, "int"),
            "WebSocketPingInterval": _Key("30", False, "int"),
        }

    def get(self, keys: list[str] | None) -> tuple[list[dict[str, object]], list[str]]:
        """(configurationKey, unknownKey) of a GetConfiguration for ``keys`` (None: all)."""
        wanted = keys or list(self._keys)
        known = [
            {"key": k, "readonly": self._keys[k].readonly, "value": self._keys[k].value}
            for k in wanted
            if k in self._keys
        ]
        return known, [k for k in wanted if k not in self._keys]

    def change(self, key: str, value: str) -> str:
        entry = self._keys.get(key)
        if entry is None:
            return "NotSupported"
        if entry.readonly or not _fits(
            entry.kind, value, self.number("MeterValuesSampledDataMaxLength")
        ):
            return "Rejected"
        entry.value = value.strip()
        return "Accepted"

    def text(self, key: str) -> str:
        return self._keys[key].value

    def number(self, key: str) -> int:
        return int(self._keys[key].value)

    def flag(self, key: str) -> bool:
        return self._keys[key].value.lower() == "true"

    def listed(self, key: str) -> list[str]:
        return [m.strip() for m in self._keys[key].value.split(",") if m.strip()]

    def set(self, key: str, value: str) -> None:
        """Set a key as the charger itself does (read-only ones too)."""
        self._keys[key].value = value


def _fits(kind: str, value: str, max_measurands: int) -> bool:
    if kind == "int":
        return value.strip().isdigit()
    if kind == "bool":
        return value.strip().lower() in ("true", "false")
    if kind == "measurands":
        items = [m.strip() for m in value.split(",") if m.strip()]
        return len(items) <= max_measurands and all(m in MEASURANDS for m in items)
    return True
