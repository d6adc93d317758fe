"""Wire models of the Envoy's local API and of the Enlighten cloud, shared by client and
simulator.

Field names are the gateway's own (``activeCount``, ``whLifetime``, even ``"devices:"`` with
its colon), so a rename breaks both sides at once. Parsing is tolerant: unknown keys are
ignored and most fields have a default, because firmware adds, drops and renames them. Some
endpoints answer 200 with ``{"error": "..."}`` instead of their data: ``error_of`` recognises
such a body before it is parsed.

Units: W and Wh, except ``/ivp/livedata/status`` and ``/ivp/ensemble/power``, which give mW
and mVA. Signs: ``net-consumption`` is + import, - export; battery power is + discharging.
``/info`` is XML, parsed by ``parse_info`` (and written by ``info_xml`` for the simulator).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

PRODUCTION = "production"
NET = "net-consumption"
TOTAL = "total-consumption"
INVERTERS = "inverters"
EIM = "eim"

_VERSION = re.compile(r"\d+(?:\.\d+)*")


def parse_version(software: str) -> tuple[int, ...]:
    """``"D8.2.4264"`` (or ``"8.2.4264"``, ``"R5.0.62_abc"``) -> ``(8, 2, 4264)``; ``()``
    when it holds no version."""
    found = _VERSION.search(software)
    return tuple(int(part) for part in found.group().split(".")) if found else ()


def error_of(content: bytes) -> str | None:
    """The message of an ``{"error": ...}`` body (a 200 that is a failure), else None."""
    try:
        body = json.loads(content)
    except ValueError:
        return None
    if isinstance(body, dict) and "error" in body:
        return str(body["error"])
    return None


class Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


# --- /production.json?details=1 and /api/v1/production ---


class Line(Wire):
    """One phase of an ``eim`` entry (only with ``details=1``)."""

    wNow: float = 0.0
    whLifetime: float = 0.0
    whToday: float = 0.0
    whLastSevenDays: float = 0.0
    rmsCurrent: float = 0.0
    rmsVoltage: float = 0.0
    pwrFactor: float = 0.0


class ProductionEntry(Wire):
    """An ``inverters`` or ``eim`` entry; an ``eim`` entry names its ``measurementType``.

    ``activeCount`` 0 on an ``eim`` entry: no CT measures it (the values are not measured).
    """

    type: str
    activeCount: int = 0
    measurementType: str | None = None
    readingTime: int = 0
    wNow: float = 0.0
    whLifetime: float = 0.0
    whToday: float | None = None
    whLastSevenDays: float | None = None
    rmsCurrent: float | None = None
    rmsVoltage: float | None = None
    pwrFactor: float | None = None
    lines: list[Line] | None = None


class StorageEntry(Wire):
    """The ``storage`` entry: AC batteries (ACB) only; IQ Batteries are in ``/ivp/ensemble``."""

    type: str = "acb"
    activeCount: int = 0
    readingTime: int = 0
    wNow: float = 0.0
    whNow: float = 0.0
    state: str = "idle"
    percentFull: float | None = None


class Production(Wire):
    """``GET /production.json?details=1``."""

    production: list[ProductionEntry]
    consumption: list[ProductionEntry] = Field(default_factory=list)
    storage: list[StorageEntry] = Field(default_factory=list)

    def inverters(self) -> ProductionEntry | None:
        return next((e for e in self.production if e.type == INVERTERS), None)

    def eim(self, measurement: str) -> ProductionEntry | None:
        """The ``eim`` entry of ``measurement`` (``PRODUCTION``, ``NET`` or ``TOTAL``)."""
        return next(
            (
                e
                for e in (*self.production, *self.consumption)
                if e.type == EIM and e.measurementType == measurement
            ),
            None,
        )

    def measured(self, measurement: str) -> ProductionEntry | None:
        """The ``eim`` entry of ``measurement`` if a CT measures it (``activeCount`` > 0)."""
        entry = self.eim(measurement)
        return entry if entry is not None and entry.activeCount > 0 else None

    def all_zero(self) -> bool:
        """Every power and energy zero: what a gateway reports right after it booted."""
        return all(
            e.wNow == 0.0 and e.whLifetime == 0.0 and not e.whToday
            for e in (*self.production, *self.consumption)
        )


class ApiV1Production(Wire):
    """``GET /api/v1/production``: the solar production only."""

    wattHoursToday: float = 0.0
    wattHoursSevenDays: float = 0.0
    wattHoursLifetime: float = 0.0
    wattsNow: float = 0.0


class InverterReport(Wire):
    """One entry of ``GET /api/v1/production/inverters``."""

    serialNumber: str
    lastReportDate: int = 0
    devType: int = 1
    lastReportWatts: float = 0.0
    maxReportWatts: float = 0.0


# --- /ivp/meters and /ivp/meters/readings, joined on ``eid`` ---


class MeterConfig(Wire):
    """One CT of ``GET /ivp/meters``."""

    eid: int
    state: str  # "enabled" | "disabled"
    measurementType: str
    phaseMode: str = "single"  # "single" | "split" | "three"
    phaseCount: int = 1
    meteringStatus: str = "normal"
    statusFlags: list[str] = Field(default_factory=list)

    @property
    def enabled(self) -> bool:
        return self.state == "enabled"


class MeterChannel(Wire):
    """The reading of one CT, or of one of its phases; W, VA, var, Wh, V, A, Hz."""

    eid: int
    timestamp: int = 0
    actEnergyDlvd: float = 0.0
    actEnergyRcvd: float = 0.0
    apparentEnergy: float = 0.0
    instantaneousDemand: float = 0.0
    activePower: float = 0.0
    apparentPower: float = 0.0
    reactivePower: float = 0.0
    pwrFactor: float = 0.0
    voltage: float = 0.0
    current: float = 0.0
    freq: float = 0.0


class MeterReading(MeterChannel):
    """One entry of ``GET /ivp/meters/readings``; unused phases read 0."""

    channels: list[MeterChannel] = Field(default_factory=list)


# --- /ivp/livedata/status (mW) ---


class LiveConnection(Wire):
    mqtt_state: str = ""
    prov_state: str = ""
    auth_state: str = ""
    sc_stream: str = "disabled"  # "enabled" while the live stream runs
    sc_debug: str = "disabled"


class LivePower(Wire):
    """One live meter; **mW** and mVA."""

    agg_p_mw: float = 0.0
    agg_s_mva: float = 0.0
    agg_p_ph_a_mw: float = 0.0
    agg_p_ph_b_mw: float = 0.0
    agg_p_ph_c_mw: float = 0.0

    @property
    def watts(self) -> float:
        return self.agg_p_mw / 1000.0


class LiveMeters(Wire):
    """Signs: pv >= 0, storage + discharging, grid + import, load >= 0."""

    last_update: int = 0
    soc: float = 0.0
    main_relay_state: int = 1
    gen_relay_state: int = 5
    backup_bat_mode: int = 1
    backup_soc: float = 0.0
    is_split_phase: int = 0
    phase_count: int = 1
    enc_agg_soc: float = 0.0
    enc_agg_energy: float = 0.0
    pv: LivePower = Field(default_factory=LivePower)
    storage: LivePower = Field(default_factory=LivePower)
    grid: LivePower = Field(default_factory=LivePower)
    load: LivePower = Field(default_factory=LivePower)
    generator: LivePower = Field(default_factory=LivePower)


class LiveData(Wire):
    """``GET /ivp/livedata/status``; a stale ``meters.last_update`` means the stream is off."""

    connection: LiveConnection = Field(default_factory=LiveConnection)
    meters: LiveMeters
    tasks: dict[str, Any] = Field(default_factory=dict)
    counters: dict[str, Any] = Field(default_factory=dict)


# --- /ivp/ensemble (IQ Batteries) ---


class InventoryDevice(Wire):
    """A device of ``/ivp/ensemble/inventory``; the battery fields are absent on others."""

    serial_num: str
    part_num: str = ""
    installed: int = 0
    last_rpt_date: int = 0
    admin_state: int = 0
    admin_state_str: str = ""
    img_load_date: int = 0
    img_pnum_running: str = ""
    bmu_fw_version: str = ""
    communicating: bool = True
    dc_switch_off: bool = False
    encharge_rev: int = 0
    encharge_capacity: float | None = None  # Wh
    led_status: int = 0
    maxCellTemp: float = 0.0
    temperature: float = 0.0
    comm_level_2_4_ghz: int = 0
    comm_level_sub_ghz: int = 0
    percentFull: float | None = None


class InventoryGroup(Wire):
    """``GET /ivp/ensemble/inventory`` is a list of these (``[]`` without batteries)."""

    type: str  # "ENCHARGE" (batteries), "ENPOWER" (system controller), ...
    devices: list[InventoryDevice] = Field(default_factory=list)


ENCHARGE = "ENCHARGE"


class SecCtrl(Wire):
    """``GET /ivp/ensemble/secctrl``: the batteries together; Wh and %."""

    agg_soc: float = 0.0
    Max_energy: float = 0.0
    ENC_agg_soc: float = 0.0
    ENC_agg_soh: float = 100.0
    ENC_agg_backup_energy: float = 0.0
    ENC_agg_avail_energy: float = 0.0
    Enc_commissioned_capacity: float = 0.0
    Enc_max_available_capacity: float = 0.0
    configured_backup_soc: float = 0.0
    adjusted_backup_soc: float = 0.0


class BatteryPower(Wire):
    """One battery of ``/ivp/ensemble/power``: **mW**, + discharging."""

    serial_num: str
    real_power_mw: float = 0.0
    apparent_power_mva: float = 0.0
    soc: float = 0.0


class EnsemblePower(Wire):
    """``GET /ivp/ensemble/power``; the gateway's key really is ``"devices:"``, colon and all."""

    devices: list[BatteryPower] = Field(default_factory=list, alias="devices:")

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


# --- /stream/meter (SSE) ---


class PhaseSample(Wire):
    """One phase of a stream frame: W, var, VA, V, A, power factor, Hz."""

    p: float = 0.0
    q: float = 0.0
    s: float = 0.0
    v: float = 0.0
    i: float = 0.0
    pf: float = 0.0
    f: float = 0.0


class StreamMeter(Wire):
    ph_a: PhaseSample = Field(default_factory=PhaseSample, alias="ph-a")
    ph_b: PhaseSample = Field(default_factory=PhaseSample, alias="ph-b")
    ph_c: PhaseSample = Field(default_factory=PhaseSample, alias="ph-c")

    @property
    def watts(self) -> float:
        return self.ph_a.p + self.ph_b.p + self.ph_c.p

    @property
    def silent(self) -> bool:
        """No voltage on any phase: the meter does not measure (yet)."""
        return self.ph_a.v == 0.0 and self.ph_b.v == 0.0 and self.ph_c.v == 0.0


class StreamFrame(Wire):
    """The JSON of one ``data:`` line of ``GET /stream/meter``."""

    production: StreamMeter = Field(default_factory=StreamMeter)
    net_consumption: StreamMeter = Field(default_factory=StreamMeter, alias=NET)
    total_consumption: StreamMeter = Field(default_factory=StreamMeter, alias=TOTAL)

    def dump_json(self) -> str:
        return self.model_dump_json(by_alias=True)


# --- /info (XML) ---


@dataclass(frozen=True, slots=True)
class Info:
    """``GET /info``, readable without a token."""

    serial: str
    part_number: str
    software: str  # as the gateway spells it, e.g. "D8.2.4264"
    metered: bool  # ``imeter``: a metered model (it may still have no CT)
    web_tokens: bool  # ``web-tokens``: the local API wants a token (firmware >= 7)

    @property
    def firmware(self) -> str:
        """``software`` without its leading letter: ``"D8.2.4264"`` -> ``"8.2.4264"``."""
        return self.software[1:] if self.software[:1].isalpha() else self.software

    @property
    def version(self) -> tuple[int, ...]:
        return parse_version(self.software)


def parse_info(content: bytes) -> Info:
    """The ``/info`` XML; ``ValueError`` when it is not one."""
    if b"<!DOCTYPE" in content or b"<!ENTITY" in content:
        raise ValueError("/info holds a DTD; refused unparsed")  # no entity expansion
    try:
        root = ET.fromstring(content)
    except ET.ParseError as e:
        raise ValueError(f"/info is not XML ({e})") from None
    device = root.find("device")
    if root.tag != "envoy_info" or device is None:
        raise ValueError("/info has no <envoy_info><device>")

    def text(parent: ET.Element, tag: str) -> str:
        found = parent.find(tag)
        return (found.text or "").strip() if found is not None else ""

    serial, software = text(device, "sn"), text(device, "software")
    if not serial or not software:
        raise ValueError("/info names no serial (sn) or no firmware (software)")
    return Info(
        serial=serial,
        part_number=text(device, "pn"),
        software=software,
        metered=text(device, "imeter") == "true",
        web_tokens=text(root, "web-tokens") == "true",
    )


def info_xml(info: Info, now_s: int) -> str:
    """``/info`` as a gateway writes it (the simulator's answer)."""
    root = ET.Element("envoy_info")
    ET.SubElement(root, "time").text = str(now_s)
    device = ET.SubElement(root, "device")
    for tag, value in (
        ("sn", info.serial),
        ("pn", info.part_number),
        ("software", info.software),
        ("euaid", "4c8675"),
        ("seqnum", "0"),
        ("apiver", "1"),
        ("imeter", "true" if info.metered else "false"),
    ):
        ET.SubElement(device, tag).text = value
    ET.SubElement(root, "web-tokens").text = "true" if info.web_tokens else "false"
    body = ET.tostring(root, encoding="unicode")
    return f"<?xml version='1.0' encoding='UTF-8'?>\n{body}\n"


# --- the Enlighten cloud ---


class LoginResponse(Wire):
    """``POST /login/login.json``; ``session_id`` is missing when the account has MFA on."""

    session_id: str | None = Field(default=None, repr=False)
    user_id: int | str | None = None
    user_name: str = ""
    first_name: str = ""
    is_consumer: bool = False
    manager_token: str | None = Field(default=None, repr=False)


class TokenRequest(Wire):
    """``POST /tokens`` (entrez) JSON body; the answer is the JWT as plain text."""

    session_id: str = Field(repr=False)
    serial_num: str
    username: str


class EntrezToken(Wire):
    """``GET /entrez-auth-token?serial_num=``; times in epoch seconds."""

    generation_time: int
    token: str = Field(repr=False)
    expires_at: int
