"""Wire models of the Powerwall 2 local API (``/api/...`` JSON), shared by client and simulator.

Field names are the gateway's own, so a rename breaks both sides at once. Parsing is tolerant
where firmware varies: unknown keys are ignored, enum-like strings stay strings (new values
such as ``SystemWaitForUser`` appear without notice), and older spellings are accepted by alias.

State of energy: the local API reports the raw pack percentage; the Tesla app hides the
bottom 5 %, so ``app = (raw - 5) / 0.95``. Backup reserve in ``/api/operation`` is raw too.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

CUSTOMER = "customer"
RESERVE_OFFSET_PCT = 5.0
RESERVE_SCALE = 0.95


def raw_to_app_pct(raw: float) -> float:
    """Raw pack percentage (local API) to the app's percentage, clipped to [0, 100]."""
    return _clip((raw - RESERVE_OFFSET_PCT) / RESERVE_SCALE)


def app_to_raw_pct(app: float) -> float:
    """The app's percentage to the raw pack percentage (local API), clipped to [0, 100]."""
    return _clip(app * RESERVE_SCALE + RESERVE_OFFSET_PCT)


def _clip(pct: float) -> float:
    return min(100.0, max(0.0, pct))


class GridStatus(StrEnum):
    """Known values of ``grid_status``; the field itself stays a ``str``."""

    CONNECTED = "SystemGridConnected"
    ISLANDED_READY = "SystemIslandedReady"
    ISLANDED = "SystemIslandedActive"
    TRANSITION_TO_GRID = "SystemTransitionToGrid"
    TRANSITION_TO_ISLAND = "SystemTransitionToIsland"
    WAIT_FOR_USER = "SystemWaitForUser"


class RealMode(StrEnum):
    SELF_CONSUMPTION = "self_consumption"
    BACKUP = "backup"
    AUTONOMOUS = "autonomous"


class IslandMode(StrEnum):
    OFF_GRID = "intentional_reconnect_failsafe"
    ON_GRID = "backup"


class Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ErrorBody(Wire):
    """Every error the gateway explains: ``{"code":…,"error":…,"message":…}``."""

    code: int
    error: str
    message: str


class LoginRequest(Wire):
    username: str
    email: str = ""
    password: str = Field(repr=False)
    force_sm_off: bool = False


class LoginResponse(Wire):
    email: str = ""
    firstname: str = ""
    lastname: str = ""
    roles: list[str] = Field(default_factory=list)
    token: str = Field(repr=False)
    provider: str = "Basic"
    loginTime: str = ""  # the gateway's spelling


class Meter(Wire):
    """One aggregated meter; power in W, energy counters in Wh (lifetime, only ever rising)."""

    last_communication_time: str
    instant_power: float
    instant_reactive_power: float = 0.0
    instant_apparent_power: float = 0.0
    frequency: float = 0.0
    energy_exported: float
    energy_imported: float
    instant_average_voltage: float = 0.0
    instant_average_current: float = 0.0
    i_a_current: float = 0.0
    i_b_current: float = 0.0
    i_c_current: float = 0.0
    timeout: int = 1_500_000_000
    num_meters_aggregated: int | None = None  # absent on ``load``
    instant_total_current: float = 0.0


class Aggregates(Wire):
    """``/api/meters/aggregates``. Signs: site + import, battery + discharge, load and solar >= 0
    (solar has a few W of noise at night).
    """

    site: Meter
    battery: Meter
    load: Meter
    solar: Meter


class Soe(Wire):
    percentage: float  # raw pack percentage


class GridStatusResponse(Wire):
    grid_status: str
    grid_services_active: bool = False


class BatteryBlock(Wire):
    PackageSerialNumber: str
    nominal_energy_remaining: float
    nominal_full_pack_energy: float
    p_out: float = 0.0
    v_out: float = 0.0
    f_out: float = 0.0
    energy_charged: float = 0.0
    energy_discharged: float = 0.0
    pinv_state: str = ""
    backup_ready: bool = False


class SystemStatus(Wire):
    """The essentials of ``/api/system_status``; energies in Wh, powers in W."""

    nominal_full_pack_energy: float
    nominal_energy_remaining: float
    max_charge_power: float
    max_discharge_power: float
    system_island_state: str = ""
    available_blocks: int = 0
    battery_blocks: list[BatteryBlock] = Field(default_factory=list)
    grid_faults: list[dict[str, object]] = Field(default_factory=list)


class Operation(Wire):
    """``GET /api/operation``; ``backup_reserve_percent`` is raw. Old firmware said ``mode``."""

    real_mode: str = Field(validation_alias=AliasChoices("real_mode", "mode"))
    backup_reserve_percent: float
    freq_shift_load_shed_soe: float | None = None
    freq_shift_load_shed_delta_f: float | None = None


class OperationWrite(Wire):
    """``POST /api/operation``; the gateway echoes it back."""

    real_mode: str
    backup_reserve_percent: float | None = None


class Sitemaster(Wire):
    status: str
    running: bool
    connected_to_tesla: bool = False
    power_supply_mode: bool = False
    can_reboot: str = ""


class Status(Wire):
    """``/api/status``, the one endpoint without authentication."""

    din: str = ""
    start_time: str = ""
    up_time_seconds: str = ""
    is_new: bool = False
    version: str
    git_hash: str = ""
    commission_count: int = 0
    device_type: str = ""
    sync_type: str = ""

    @property
    def firmware(self) -> str:
        """The version without its SHA suffix: ``"21.44.1 c58c2df3"`` -> ``"21.44.1"``."""
        return self.version.split(" ", 1)[0]


class IslandingRequest(Wire):
    island_mode: str
