"""The Fleet API's wire shapes that surplus reads, shared by the client and the simulator.

Only the fields surplus uses are declared; the rest of each answer is kept (``extra``) and
ignored, so new fields from Tesla never break parsing. Units are Tesla's: ``charger_power``
in kW (an integer), ``charge_energy_added`` in kWh, currents in A, powers of a site in W.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = [
    "AUTH_URL",
    "BENIGN_REASONS",
    "EU_URL",
    "IDLE_DATA_S",
    "NA_URL",
    "REGION_URLS",
    "ChargeState",
    "CommandResult",
    "LiveStatus",
    "SiteInfo",
    "VehicleSummary",
]

# the billed vehicle_data of an awake car neither plugged in nor charging, at most this often
IDLE_DATA_S = 1800.0

NA_URL = "https://fleet-api.prd.na.vn.cloud.tesla.com"
EU_URL = "https://fleet-api.prd.eu.vn.cloud.tesla.com"
REGION_URLS = {"na": NA_URL, "eu": EU_URL}
AUTH_URL = "https://fleet-auth.prd.vn.cloud.tesla.com"
# Home Assistant treats these ``result:false`` reasons as success: the car is as asked.
BENIGN_REASONS = frozenset({"already_set", "not_charging", "requested", "is_charging"})
PROTOCOL_REQUIRED = (
    "Tesla Vehicle Command Protocol required, please refer to the documentation here:"
    " https://developer.tesla.com/docs/fleet-api/announcements"
    "#2023-10-09-rest-api-vehicle-commands-endpoint-deprecation-warning"
)
ASLEEP = "vehicle unavailable: vehicle is offline or asleep"
MISSING_SCOPES = "Unauthorized missing scopes"


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow")


class VehicleSummary(_Wire):
    """One item of ``GET /api/1/vehicles`` (free: it never wakes the car)."""

    id: int
    vehicle_id: int
    vin: str
    display_name: str | None = None
    state: str  # online | asleep | offline
    command_signing: str = "allowed"  # allowed | required | off


class ChargeState(_Wire):
    battery_level: int
    charge_limit_soc: int
    charge_limit_soc_min: int = 50
    charge_limit_soc_max: int = 100
    charging_state: str  # Disconnected | Stopped | Starting | Charging | Complete | NoPower
    charge_amps: int = 0
    charge_current_request: int
    charge_current_request_max: int
    charger_actual_current: int = 0
    charger_voltage: int = 0
    charger_phases: int | None = None
    charger_power: int = 0  # kW
    charge_energy_added: float = 0.0  # kWh
    charge_port_door_open: bool = False
    conn_charge_cable: str = "<invalid>"
    timestamp: int = 0  # ms

    @property
    def plugged_in(self) -> bool:
        return self.charging_state not in ("Disconnected", "")


class CommandResult(_Wire):
    result: bool
    reason: str = ""


class LiveStatus(_Wire):
    solar_power: float = 0.0
    battery_power: float = 0.0
    load_power: float = 0.0
    grid_power: float = 0.0
    percentage_charged: float = 0.0
    grid_status: str = "Unknown"
    island_status: str = "island_status_unknown"


class SiteInfo(_Wire):
    id: str
    site_name: str | None = None
    backup_reserve_percent: int
    default_real_mode: str
    components: dict[str, object] = {}
