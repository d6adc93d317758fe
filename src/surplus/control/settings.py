"""Settings of the control engine, declared with pydantic: unknown keys are rejected and
every error names its key path. Defaults are the ones ``surplus bench`` chose.
"""

from __future__ import annotations

from enum import StrEnum
from math import ceil, floor
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from surplus.domain.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class Mode(StrEnum):
    """What a loadpoint is asked to do."""

    OFF = "off"
    NOW = "now"  # maximum current
    MINSOLAR = "minsolar"  # never below minimum current, plus surplus
    SOLAR = "solar"  # surplus only
    PLAN = "plan"  # reach a target by a deadline at least cost, solar first


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


NonNeg = Annotated[float, Field(ge=0)]
Pct = Annotated[float, Field(ge=0, le=100)]


class ContactorSettings(_Model):
    """Contactor protection, kept apart from the surplus hysteresis."""

    start_delay_s: NonNeg = 120.0  # surplus must last this long before a start
    stop_delay_s: NonNeg = 600.0  # lack of surplus must last this long before a stop
    min_on_s: NonNeg = 900.0
    min_off_s: NonNeg = 900.0
    max_starts_per_day: Annotated[int, Field(ge=1)] = 6
    phase_switch_delay_s: NonNeg = 1800.0  # a phase switch waits this long and this apart
    # a switch while charging opens and closes the contactor like a start; by default the
    # phases are picked at each start and kept (the home battery takes what 1p leaves)
    switch_under_load: bool = False


class CommandBudget(_Model):
    """Per-device command budget: vehicle and cloud APIs rate-limit and bill per call."""

    min_interval_s: NonNeg = 300.0  # between two current changes
    deadband_a: NonNeg = 1.0  # smaller changes are not sent
    # commands from plug-in to unplug (a start counts 2: its current and the start); the
    # last one is kept for a stop, which is always sent. None: no limit
    max_per_session: Annotated[int, Field(ge=4)] | None = None


class StaleSettings(_Model):
    """When a reading is too old to act on, and what to do then."""

    grid_max_age_s: Annotated[float, Field(gt=0)] = 90.0
    charger_max_age_s: Annotated[float, Field(gt=0)] = 120.0
    battery_max_age_s: Annotated[float, Field(gt=0)] = 120.0
    fallback: Literal["hold_min", "stop"] = "hold_min"


class ChargerSettings(_Model):
    """What the charger and the car accept."""

    min_current_a: Annotated[float, Field(gt=0)] = 6.0
    max_current_a: Annotated[float, Field(gt=0)] = 16.0
    resolution_a: float = 1.0  # 1 (whole amps) or 0.1
    phases: Literal[1, 3, "auto"] = 3
    voltage_v: Annotated[float, Field(gt=0)] = 230.0  # used when the charger reports none
    deadband_w: NonNeg = 100.0  # surplus noise ignored around the thresholds

    @model_validator(mode="before")
    @classmethod
    def _limits_on_resolution(cls, data: Any) -> Any:
        """A charger takes only currents on its resolution: the limits are rounded inwards
        (6.5 A at whole amps means 7 A), so no clamp can ever command an off-step current."""
        if not isinstance(data, dict):
            return data
        res = data.get("resolution_a", 1.0)
        if not isinstance(res, int | float) or float(res) not in (1.0, 0.1):
            return data
        out = dict(data)
        for key, rounding in (("min_current_a", ceil), ("max_current_a", floor)):
            value = out.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                out[key] = round(rounding(round(value / res, 6)) * res, 1)
        return out

    @model_validator(mode="after")
    def _min_below_max(self) -> ChargerSettings:
        if self.min_current_a > self.max_current_a:
            raise ValueError("min_current_a must not exceed max_current_a")
        if float(self.resolution_a) not in (1.0, 0.1):
            raise ValueError("resolution_a must be 1 or 0.1")
        return self


class PlanTarget(_Model):
    """Reach ``soc_pct`` (or add ``energy_wh``) by ``deadline``."""

    deadline: AwareDatetime  # with its offset: a local time alone is ambiguous
    soc_pct: Pct | None = None
    energy_wh: NonNeg | None = None

    @model_validator(mode="after")
    def _one_goal(self) -> PlanTarget:
        if (self.soc_pct is None) == (self.energy_wh is None):
            raise ValueError("give exactly one of soc_pct and energy_wh")
        return self


class LoadpointSettings(_Model):
    """One charger and what the owner wants of it."""

    name: str
    mode: Mode = Mode.SOLAR
    priority: int = 0
    charger: ChargerSettings = ChargerSettings()
    contactor: ContactorSettings = ContactorSettings()
    budget: CommandBudget = CommandBudget()
    limit_soc_pct: Pct = 100.0  # solar may fill up to here
    # a solar start needs the forecast to promise at least the minimum power, on average,
    # for this long: short sunny spells are left to the home battery (fewer starts)
    solar_lookahead_s: NonNeg = 7200.0
    # in plan mode, sun the car does not need yet starts a run only if the plan gives the
    # car at least this much over the next four hours (small top-ups cost a start each)
    min_solar_run_wh: NonNeg = 4000.0
    plan: PlanTarget | None = None
    vehicle_capacity_wh: Annotated[float, Field(gt=0)] = 60_000.0
    charge_efficiency: Annotated[float, Field(gt=0, le=1)] = 0.9


class BatteryPolicy(_Model):
    """How the home battery and the cars share the surplus."""

    priority_soc_pct: Pct = 10.0  # below: the battery charges first
    buffer_soc_pct: Pct = 30.0  # above: the battery may carry a started charge
    # in solar mode (surplus only) for this long at a time: through a cloud, not a dusk
    buffer_carry_s: NonNeg = 600.0
    buffer_start_soc_pct: Pct = 100.0  # above: a charge may start on battery power
    max_battery_to_ev_w: NonNeg = 2500.0
    controllable: bool = True  # may the engine hold it or charge it from the grid
    min_soc_pct: Pct = 5.0
    round_trip_efficiency: Annotated[float, Field(gt=0, le=1)] = 0.9
    wear_eur_per_kwh: NonNeg = 0.02


class PlannerSettings(_Model):
    """Site-wide planning: over the published prices, and on to a car's deadline or its
    foreseen trips."""

    # a car's deadline (or its foreseen trips) past the published prices is planned for up
    # to this far ahead, with the expected prices and forecast solar
    horizon_s: Annotated[float, Field(gt=0)] = 4 * 86_400.0
    replan_interval_s: Annotated[float, Field(gt=0)] = 3 * 3600.0
    replan_deviation_wh: Annotated[float, Field(gt=0)] = 2000.0
    # what energy left at the end of the known prices is worth, as a quantile of the known
    # import prices: in the home battery, and in a car below / above its target
    battery_value_quantile: Annotated[float, Field(ge=0, le=1)] = 0.2
    ev_value_quantile: Annotated[float, Field(ge=0, le=1)] = 0.15
    ev_surplus_value_factor: Annotated[float, Field(ge=0, le=1)] = 0.75


class SiteSettings(_Model):
    """Everything the engine needs to know about the site."""

    loadpoints: list[LoadpointSettings] = Field(default_factory=list)
    battery: BatteryPolicy = BatteryPolicy()
    stale: StaleSettings = StaleSettings()
    planner: PlannerSettings = PlannerSettings()
    residual_w: float = 0.0  # + keeps a margin of export, - tolerates import
    site_max_current_a: Annotated[float, Field(gt=0)] = 25.0  # per phase, at the grid meter

    @model_validator(mode="after")
    def _unique_names(self) -> SiteSettings:
        names = [lp.name for lp in self.loadpoints]
        if len(set(names)) != len(names):
            raise ValueError("loadpoint names must be unique")
        return self


def key_path(loc: tuple[int | str, ...]) -> str:
    """``('loadpoints', 0, 'max_current_a')`` -> ``loadpoints[0].max_current_a``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


def problems_of(err: ValidationError) -> list[tuple[str, str]]:
    """One (key path, message) per problem pydantic found."""
    problems = []
    for item in err.errors():
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        problems.append((key_path(tuple(item["loc"])), message))
    return problems


def parse_settings(model: type[M], data: object, source: str | None = None) -> M:
    """Validate ``data`` into ``model`` or raise one ConfigError naming every key path."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(problems_of(err), source) from err
