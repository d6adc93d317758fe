"""The service's configuration file: TOML, validated in one pass with every problem named.

    [service]       where the store and the vault live, where the API listens
    [site]          the engine's ``SiteSettings`` but its loadpoints (battery, planner, stale...)
    [[devices]]     one table per device; its ``type`` picks its model in the registry
    [[loadpoints]]  the engine's ``LoadpointSettings``, plus the device that is its charger
    [tariff]        the owner's time-of-use tariff (``TimeOfUseTariff``): the planner's prices
    [ocpp]          where the OCPP central system listens for chargers (``OcppSection``)

``load_config`` raises one ``ConfigError`` naming the file and, for each problem, its key path
(``devices[0].password``) or, for a TOML syntax error, its line and column. No message quotes
a value from the file, so a secret never shows in one.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PlainValidator,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from surplus.control.settings import LoadpointSettings, SiteSettings, parse_settings
from surplus.domain.errors import ConfigError
from surplus.integrations.ocpp.config import OcppSection
from surplus.integrations.registry import DEVICE_TYPES, DeviceConfig
from surplus.tariffs import TimeOfUseTariff

__all__ = [
    "LoadpointConfig",
    "ServiceConfig",
    "ServiceSection",
    "SiteSection",
    "load_config",
]

Loc = tuple[str | int, ...]
CHARGER_TYPES = frozenset(
    {"ocpp", "wallbox", "tesla"}
)  # the device types a loadpoint can charge through

_TOML_WHERE = re.compile(r"(?P<message>.*) \(at (?P<where>[^()]*)\)$")


class ServiceSection(BaseModel):
    """``[service]``: the process itself."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    data_dir: Path = Path("/var/lib/surplus")  # the store and the vault live here
    api_host: Annotated[str, Field(min_length=1)] = "127.0.0.1"
    api_port: Annotated[int, Field(ge=1, le=65535)] = 8080


class SiteSection(SiteSettings):
    """``[site]``: the engine's ``SiteSettings``; its loadpoints are the ``[[loadpoints]]``."""

    model_config = ConfigDict(hide_input_in_errors=True)

    @field_validator("loadpoints")
    @classmethod
    def _declared_apart(cls, value: list[LoadpointSettings]) -> list[LoadpointSettings]:
        if value:
            raise ValueError("declare loadpoints as [[loadpoints]] tables, not inside [site]")
        return value


class LoadpointConfig(LoadpointSettings):
    """``[[loadpoints]]``: the engine's ``LoadpointSettings`` and the device that charges."""

    model_config = ConfigDict(hide_input_in_errors=True)

    # the name of a [[devices]] table; absent until a charger integration exists
    charger_device: Annotated[str | None, Field(min_length=1)] = None


def _device(data: object) -> DeviceConfig:
    """One ``[[devices]]`` table, validated by the model its ``type`` names in the registry."""
    known = ", ".join(sorted(DEVICE_TYPES))
    if not isinstance(data, dict):
        raise _invalid("device", [((), f"must be a [[devices]] table with a type ({known})")])
    kind = data.get("type")
    model = DEVICE_TYPES.get(kind) if isinstance(kind, str) else None
    if model is not None:
        return model.model_validate(data)
    problem = "missing" if kind is None else f"unknown device type {kind!r}"
    raise _invalid("device", [(("type",), f"{problem}; give one of: {known}")])


class ServiceConfig(BaseModel):
    """The whole file. ``site_settings()`` gives what the engine runs with."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    service: ServiceSection = ServiceSection()
    site: SiteSection = SiteSection()
    devices: list[Annotated[DeviceConfig, PlainValidator(_device)]] = Field(default_factory=list)
    loadpoints: list[LoadpointConfig] = Field(default_factory=list)
    ocpp: OcppSection = OcppSection()
    tariff: TimeOfUseTariff | None = None  # without it there are no prices and no plan

    @model_validator(mode="wrap")
    @classmethod
    def _across_tables(
        cls, data: Any, handler: ModelWrapValidatorHandler[ServiceConfig]
    ) -> ServiceConfig:
        """Unique names and known charger devices, checked on the raw tables so that these
        problems are reported together with those of the tables themselves."""
        problems = _cross_problems(data) if isinstance(data, dict) else []
        try:
            config = handler(data)
        except ValidationError as err:
            if not problems:
                raise
            raise _invalid(err.title, problems, first=err) from None
        if problems:
            raise _invalid(cls.__name__, problems)
        return config

    def site_settings(self) -> SiteSettings:
        """The engine's settings: ``[site]`` with the ``[[loadpoints]]``."""
        site = self.site.model_dump(exclude={"loadpoints"})
        loadpoints = [lp.model_dump(exclude={"charger_device"}) for lp in self.loadpoints]
        return parse_settings(SiteSettings, {**site, "loadpoints": loadpoints})


def load_config(path: Path | str) -> ServiceConfig:
    """Read and validate the config file at ``path``, or raise a ``ConfigError`` naming it."""
    source = str(path)
    try:
        text = Path(path).read_bytes().decode()
    except FileNotFoundError as err:
        raise ConfigError([("(file)", "no such file")], source) from err
    except OSError as err:
        raise ConfigError([("(file)", f"cannot be read ({err.strerror or err})")], source) from err
    except UnicodeDecodeError:
        # not chained: the codec's message quotes bytes of the file
        raise ConfigError([("(file)", "is not UTF-8 text")], source) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        found = _TOML_WHERE.fullmatch(str(err))
        where, message = (found["where"], found["message"]) if found else ("(syntax)", str(err))
        raise ConfigError([(where, f"TOML syntax: {message}")], source) from err
    return parse_settings(ServiceConfig, data, source)


def _cross_problems(data: dict[str, Any]) -> list[tuple[Loc, str]]:
    devices = _tables(data.get("devices"))
    loadpoints = _tables(data.get("loadpoints"))
    problems = _duplicate_names("devices", devices) + _duplicate_names("loadpoints", loadpoints)
    device_types = {table.get("name"): table.get("type") for _, table in devices}
    for i, table in loadpoints:
        charger = table.get("charger_device")
        if not isinstance(charger, str) or not charger:
            continue
        where = ("loadpoints", i, "charger_device")
        if charger not in device_types:
            problems.append((where, f"no device named {charger!r}"))
        elif device_types[charger] not in CHARGER_TYPES:
            kinds = ", ".join(sorted(CHARGER_TYPES))
            problems.append((where, f"{charger!r} is no charger (charger types: {kinds})"))
    return problems


def _tables(value: object) -> list[tuple[int, dict[str, Any]]]:
    """The (index, table) of each table in an array of tables; anything else is left to the
    models to report."""
    if not isinstance(value, list):
        return []
    return [(i, table) for i, table in enumerate(value) if isinstance(table, dict)]


def _duplicate_names(key: str, tables: list[tuple[int, dict[str, Any]]]) -> list[tuple[Loc, str]]:
    first: dict[str, int] = {}
    problems: list[tuple[Loc, str]] = []
    for i, table in tables:
        name = table.get("name")
        if not isinstance(name, str):
            continue
        if name in first:
            problems.append(((key, i, "name"), f"{key}[{first[name]}] has this name already"))
        else:
            first[name] = i
    return problems


def _invalid(
    title: str, problems: list[tuple[Loc, str]], first: ValidationError | None = None
) -> ValidationError:
    """A ValidationError of the problems of ``first`` (if given) and then ``problems``, none
    of them carrying an input value."""
    details: list[InitErrorDetails] = [
        {"type": PydanticCustomError(e["type"], e["msg"]), "loc": tuple(e["loc"]), "input": None}
        for e in (first.errors() if first is not None else [])
    ]
    details += [
        {"type": PydanticCustomError("config", message), "loc": loc, "input": None}
        for loc, message in problems
    ]
    return ValidationError.from_exception_data(title, details)
