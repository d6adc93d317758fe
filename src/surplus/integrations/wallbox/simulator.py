"""The simulated Wallbox cloud over HTTPS: its two hosts as Starlette apps, and their runners.

``running_simulator()`` serves a ``WallboxSimulator`` on 127.0.0.1 as asyncio tasks, for
tests; ``serve()`` blocks, for ``surplus sim wallbox``. The user API (``users/signin``,
``users/refresh-token``) and the charger API (``api``, with the legacy ``auth/token/user``)
listen on two ports behind one fresh self-signed certificate, which a client trusts as its
CA (``ServedWallbox.ca_pem``, the config's ``ca_file``).

Hidden doors on the charger API, for driving it from outside the process: ``/sim/faults``
(GET, or POST ``{"add": [...], "remove": [...]}``), ``POST /sim/plug`` and
``POST /sim/unplug`` (the car), ``POST /sim/status`` ``{"status": N}`` (an injected status
code; null ends it) and ``GET /sim/state``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from surplus.integrations.powerwall.tls import SelfSigned, self_signed
from surplus.integrations.wallbox.simstate import SimError, WallboxSimulator
from surplus.sim.serving import (
    bind,
    faults_route,
    serve_until_interrupted,
    server_context,
    serving,
)

__all__ = ["ServedWallbox", "WallboxSimulator", "running_simulator", "serve"]

CERT_NAMES = ("api.wall-box.com", "user-api.wall-box.com", "localhost")
Handler = Callable[[WallboxSimulator, Request], Awaitable[Any]]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status)


def _bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else None


def _basic(request: Request) -> tuple[str, str]:
    auth = request.headers.get("authorization", "")
    if not auth.lower().startswith("basic "):
        raise SimError(401, "Basic authentication required")
    try:
        email, _, password = base64.b64decode(auth[6:].strip()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise SimError(401, "Malformed Basic authentication") from None
    return email, password


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        raise SimError(400, "Malformed JSON body") from None
    if not isinstance(body, dict):
        raise SimError(400, "The body must be a JSON object")
    return body


def _int(text: str | None, default: int | None = None) -> int | None:
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise SimError(400, f"{text!r} is not a number") from None


# --- user API ---


async def _signin(sim: WallboxSimulator, request: Request) -> Any:
    if request.headers.get("partner") != "wallbox":
        raise SimError(400, "Partner header missing")
    return {"data": {"attributes": sim.signin(*_basic(request))}}


async def _refresh(sim: WallboxSimulator, request: Request) -> Any:
    return {"data": {"attributes": sim.refresh(_bearer(request))}}


async def _legacy(sim: WallboxSimulator, request: Request) -> Any:
    return sim.legacy_token(*_basic(request))


# --- charger API ---


def _charger_id(sim: WallboxSimulator, request: Request) -> None:
    sim.charger(_int(request.path_params["id"]) or 0)


async def _groups(sim: WallboxSimulator, request: Request) -> Any:
    return sim.groups()


async def _status(sim: WallboxSimulator, request: Request) -> Any:
    _charger_id(sim, request)
    return sim.status()


async def _charger(sim: WallboxSimulator, request: Request) -> Any:
    _charger_id(sim, request)
    if request.method == "PUT":
        return sim.put_charger(await _json_body(request))
    return sim.charger_data()


async def _remote_action(sim: WallboxSimulator, request: Request) -> Any:
    _charger_id(sim, request)
    return sim.remote_action(await _json_body(request))


def _page(
    sim: WallboxSimulator, request: Request, start: int | None, end: int | None
) -> dict[str, Any]:
    limit = _int(request.query_params.get("limit"), 1000) or 1000
    offset = _int(request.query_params.get("offset"), 0) or 0
    items, more = sim.session_page(start, end, limit, offset)
    following = None
    if more:
        query = {**request.query_params, "limit": str(limit), "offset": str(offset + limit)}
        following = f"{request.url.path}?{urlencode(query)}"
    return {"data": items, "links": {"next": following}}


async def _session_stats(sim: WallboxSimulator, request: Request) -> Any:
    q = request.query_params
    sim.charger(_int(q.get("charger")) or 0)
    return _page(sim, request, _int(q.get("start_date")), _int(q.get("end_date")))


async def _group_sessions(sim: WallboxSimulator, request: Request) -> Any:
    if _int(request.path_params["group"]) != sim.group_id:
        raise SimError(404, "Group not found")
    try:
        filters = json.loads(request.query_params.get("filters") or '{"filters": []}')["filters"]
    except (ValueError, KeyError, TypeError):
        raise SimError(400, "Malformed filters") from None
    start = end = None
    for f in filters:
        if f.get("field") == "charger_id":
            sim.charger(int(f.get("value", 0)))
        elif f.get("field") == "start_time" and f.get("operator") == "gte":
            start = int(f["value"])
        elif f.get("field") == "start_time" and f.get("operator") == "lt":
            end = int(f["value"])
    return _page(sim, request, start, end)


# --- hidden doors ---


async def _sim_plug(sim: WallboxSimulator, request: Request) -> Any:
    sim.plug_in()
    return {"plugged": sim.plugged}


async def _sim_unplug(sim: WallboxSimulator, request: Request) -> Any:
    sim.unplug()
    return {"plugged": sim.plugged}


async def _sim_status(sim: WallboxSimulator, request: Request) -> Any:
    sim.status_override = _int(str((await _json_body(request)).get("status") or ""))
    return {"status": sim.status_override}


async def _sim_state(sim: WallboxSimulator, request: Request) -> Any:
    return {
        **sim.applied,
        "plugged": sim.plugged,
        "power_w": sim.power_w(),
        "signins": sim.signins,
        "evicted": sim.evicted,
    }


def _route(
    sim: WallboxSimulator, path: str, handler: Handler, methods: list[str], *, data: bool
) -> Route:
    """``data``: a charger-API call (bearer token, budgets and faults apply)."""

    async def endpoint(request: Request) -> Response:
        sim.requests[f"{request.method} {request.url.path}"] += 1
        try:
            if data:
                sim.authorize(_bearer(request))
                sim.admit(request.method, path)
            return JSONResponse(await handler(sim, request))
        except SimError as e:
            return _error(e.status, e.message)

    return Route(path, endpoint, methods=methods)


def user_app(sim: WallboxSimulator) -> Starlette:
    """The user API host (``user-api.wall-box.com``)."""
    return Starlette(
        routes=[
            _route(sim, "/users/signin", _signin, ["GET"], data=False),
            _route(sim, "/users/refresh-token", _refresh, ["GET"], data=False),
        ]
    )


def api_app(sim: WallboxSimulator) -> Starlette:
    """The charger API host (``api.wall-box.com``)."""
    get = ["GET"]
    return Starlette(
        routes=[
            _route(sim, "/auth/token/user", _legacy, ["GET", "POST"], data=False),
            _route(sim, "/v3/chargers/groups", _groups, get, data=True),
            _route(sim, "/v2/charger/{id}", _charger, ["GET", "PUT"], data=True),
            _route(sim, "/chargers/status/{id}", _status, get, data=True),
            _route(sim, "/v3/chargers/{id}/remote-action", _remote_action, ["POST"], data=True),
            _route(sim, "/v4/sessions/stats", _session_stats, get, data=True),
            _route(
                sim,
                "/v4/groups/{group}/charger-charging-sessions",
                _group_sessions,
                get,
                data=True,
            ),
            faults_route(sim.faults),
            _route(sim, "/sim/plug", _sim_plug, ["POST"], data=False),
            _route(sim, "/sim/unplug", _sim_unplug, ["POST"], data=False),
            _route(sim, "/sim/status", _sim_status, ["POST"], data=False),
            _route(sim, "/sim/state", _sim_state, get, data=False),
        ]
    )


@dataclass(slots=True)
class ServedWallbox:
    """A simulator being served: its state, both base URLs and the certificate."""

    sim: WallboxSimulator
    api_url: str
    user_url: str
    tls: SelfSigned = field(repr=False)
    _task: asyncio.Task[None] = field(repr=False)

    @property
    def ca_pem(self) -> bytes:
        """The certificate both hosts present, to trust as a CA (the config's ``ca_file``)."""
        return self.tls.cert_pem

    @property
    def fingerprint(self) -> str:
        return self.tls.fingerprint

    async def wait_closed(self) -> None:
        """Until the server stops (on SIGINT or SIGTERM when it runs in the main thread)."""
        await asyncio.shield(self._task)


@contextlib.asynccontextmanager
async def running_simulator(
    sim: WallboxSimulator | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    user_port: int = 0,
) -> AsyncIterator[ServedWallbox]:
    """Serve ``sim`` (a default one if None): the charger API on ``host:port`` and the user
    API on ``host:user_port`` (0 picks free ones), in this event loop."""
    sim = sim if sim is not None else WallboxSimulator()
    tls = self_signed(host, names=CERT_NAMES)
    ctx = server_context(tls)
    sock = bind(host, port)
    # Servers stop in the reverse order they started: uvicorn restores the signal handlers
    # it replaced when a server stops.
    async with contextlib.AsyncExitStack() as stack:
        task = await stack.enter_async_context(serving(api_app(sim), sock, ctx))
        user_sock = bind(host, user_port)
        await stack.enter_async_context(serving(user_app(sim), user_sock, ctx))
        yield ServedWallbox(
            sim,
            f"https://{host}:{sock.getsockname()[1]}",
            f"https://{host}:{user_sock.getsockname()[1]}",
            tls,
            task,
        )


def serve(
    sim: WallboxSimulator | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8447,
    user_port: int = 8448,
    ready: Callable[[ServedWallbox], None] | None = None,
) -> None:
    """Serve until interrupted; ``ready`` is told the URLs and certificate once it listens."""
    serve_until_interrupted(
        lambda: running_simulator(sim, host=host, port=port, user_port=user_port), ready
    )
