"""The read-only REST API, as a Starlette app over the running service's parts.

    GET /api/v1/state     the site's latest readings (each with its time, its age and
                          whether it is stale), the loadpoints, and each integration's state
    GET /api/v1/history   ?series=<device>.<quantity>&from=<ISO 8601>&to=<ISO 8601>&step=<s>
                          the recorded series in buckets of ``step`` seconds
    GET /api/v1/sessions  [?from=<ISO 8601>&to=<ISO 8601>] the charging sessions overlapping
                          that span (default: the last 7 days), oldest first

A bad or missing parameter is a 400 ``{"error": ..., "field": ...}``; any other error is a
JSON body without a traceback. Answers hold readings, reasons and device states, which never
carry a secret (a device's detail is its error message, and errors never quote secrets).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from surplus.capabilities import ApiUsage, MeteredApi
from surplus.domain.readings import BatteryState, MeterReading
from surplus.runtime.devices import Device, site_device
from surplus.runtime.loop import ControlLoop
from surplus.runtime.poller import Health
from surplus.store.series import Series, level_for
from surplus.store.sessions import Session, Sessions

__all__ = ["MAX_BUCKETS", "create_app"]

MAX_BUCKETS = 10_000  # per history answer
MAX_STEP_S = 366 * 86_400
SESSIONS_SPAN = timedelta(days=7)  # the sessions shown without from and to


class _BadParameter(Exception):
    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


def create_app(
    devices: Sequence[Device],
    loop: ControlLoop,
    series: Series,
    now: Callable[[], datetime],
    routes: Sequence[BaseRoute] = (),
    sessions: Sessions | None = None,
) -> Starlette:
    """The API over the service's devices, control loop and store; ages are taken at ``now``.
    ``routes``: more of them (the push API's); ``sessions``: the store's charging sessions."""

    async def state(request: Request) -> Response:
        return JSONResponse(
            {
                "site": _site(devices, now()),
                "loadpoints": [
                    {
                        "name": lp.name,
                        "mode": lp.mode,
                        "setpoint_a": lp.setpoint_a,
                        "power_w": lp.power_w,
                        "reason": lp.reason,
                        "charger_status": lp.charger_status,
                        "offered_current_a": lp.offered_current_a,
                        "session_wh": lp.session_wh,
                        "session_solar_share": lp.session_solar_share,
                        "session_api": _usage(lp.session_api),
                    }
                    for lp in loop.loadpoints()
                ],
                "integrations": [
                    {
                        "name": d.name,
                        "type": d.type,
                        "status": str(d.state.health),
                        "detail": d.state.detail,
                        "api_usage": _usage(
                            d.charger.api_usage() if isinstance(d.charger, MeteredApi) else None
                        ),
                    }
                    for d in devices
                ],
            }
        )

    def history(request: Request) -> Response:  # sync: Starlette runs it off the event loop
        try:
            device, quantity, start, end, step_s = _history_query(request)
        except _BadParameter as bad:
            return JSONResponse({"error": bad.message, "field": bad.field}, status_code=400)
        unit = series.unit(device, quantity)
        if unit is None:
            return JSONResponse(
                {"error": f"no series {device}.{quantity} is recorded", "field": "series"},
                status_code=404,
            )
        buckets = series.history(device, quantity, start, end, step_s)
        return JSONResponse(
            {
                "series": f"{device}.{quantity}",
                "unit": unit,
                "step": step_s,
                "buckets": [
                    {
                        "start": b.start.isoformat(),
                        "mean": b.mean,
                        "min": b.min,
                        "max": b.max,
                        "last": b.last,
                        "count": b.count,
                    }
                    for b in buckets
                ],
            }
        )

    def charging_sessions(request: Request) -> Response:  # sync, like history
        try:
            end = _time(request, "to") if request.query_params.get("to") else now()
            start = (
                _time(request, "from") if request.query_params.get("from") else end - SESSIONS_SPAN
            )
            if end <= start:
                raise _BadParameter("to", "must be after from")
            if end - start > timedelta(seconds=MAX_STEP_S):
                raise _BadParameter("to", "must be at most a year after from")
        except _BadParameter as bad:
            return JSONResponse({"error": bad.message, "field": bad.field}, status_code=400)
        found = sessions.between(start, end) if sessions is not None else []
        return JSONResponse({"sessions": [_session(s) for s in found]})

    return Starlette(
        routes=[
            Route("/api/v1/state", state, methods=["GET"]),
            Route("/api/v1/history", history, methods=["GET"]),
            Route("/api/v1/sessions", charging_sessions, methods=["GET"]),
            *routes,
        ],
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )


def _session(session: Session) -> dict[str, Any]:
    energy = session.energy
    share = energy.solar_share
    return {
        "id": session.id,
        "loadpoint": session.loadpoint,
        "start": session.start.isoformat(),
        "end": None if session.end is None else session.end.isoformat(),
        "energy_wh": round(energy.total_wh, 1),
        "solar_wh": round(energy.solar_wh, 1),
        "battery_wh": round(energy.battery_wh, 1),
        "grid_wh": round(energy.grid_wh, 1),
        "solar_share": None if share is None else round(share, 3),
        "cost_eur": round(energy.cost_eur, 4),
    }


def _usage(usage: ApiUsage | None) -> dict[str, Any] | None:
    if usage is None:
        return None
    cost = None if usage.cost_usd is None else round(usage.cost_usd, 4)
    return {
        "reads": usage.reads,
        "commands": usage.commands,
        "wakes": usage.wakes,
        "cost_usd": cost,
    }


def _site(devices: Sequence[Device], now: datetime) -> dict[str, Any]:
    device = site_device(devices)
    reading = device.latest if device is not None else None
    if device is None or reading is None:
        return {
            "source": None,
            **dict.fromkeys(("grid_w", "solar_w", "home_w", "battery_w", "battery_soc_pct")),
        }
    failing = device.state.health != Health.OK

    def value(
        reading: MeterReading | BatteryState | None, *, soc: bool = False
    ) -> dict[str, Any] | None:
        if reading is None:
            return None
        number = reading.soc_pct if soc and isinstance(reading, BatteryState) else reading.power_w
        age_s = (now - reading.at).total_seconds()
        return {
            "value": number,
            "at": reading.at.isoformat(),
            "age_s": round(age_s, 3),
            "stale": failing or age_s > device.stale_after_s,
        }

    return {
        "source": device.name,
        "grid_w": value(reading.grid),
        "solar_w": value(reading.pv),
        "home_w": value(reading.load),
        "battery_w": value(reading.battery),
        "battery_soc_pct": value(reading.battery, soc=True),
    }


def _history_query(request: Request) -> tuple[str, str, datetime, datetime, int]:
    device, _, quantity = _required(request, "series").rpartition(".")
    if not device or not quantity:
        raise _BadParameter("series", "must be <device>.<quantity>, e.g. gateway.grid_w")
    start, end = _time(request, "from"), _time(request, "to")
    if end <= start:
        raise _BadParameter("to", "must be after from")
    text = _required(request, "step")
    try:
        step_s = int(text)
        level_for(step_s)  # refuses a step the rollups cannot serve
    except ValueError:
        step_s = 0
    if not 0 < step_s <= MAX_STEP_S:
        raise _BadParameter(
            "step", "must be whole seconds: 1 to 59, or a whole number of minutes up to a year"
        )
    if (end - start) / timedelta(seconds=step_s) > MAX_BUCKETS:
        raise _BadParameter("step", f"gives more than {MAX_BUCKETS} buckets; take a larger one")
    return device, quantity, start, end, step_s


def _required(request: Request, name: str) -> str:
    value = request.query_params.get(name)
    if not value:
        raise _BadParameter(name, "missing")
    return value


def _time(request: Request, name: str) -> datetime:
    text = _required(request, name)
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        raise _BadParameter(
            name,
            "must be an ISO 8601 time with a UTC offset, e.g. 2024-06-10T12:00:00Z"
            " (in a URL, write + as %2B)",
        )
    return at


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code)


async def _server_error(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": "internal error; see the service's log"}, status_code=500)
