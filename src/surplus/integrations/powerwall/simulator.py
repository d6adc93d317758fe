"""A faithful Powerwall 2 gateway over HTTPS: the Starlette app and its runners.

``running_simulator()`` serves a ``PowerwallSimulator`` on 127.0.0.1 (port 0 picks a free
one) as an asyncio task, for tests; ``serve()`` blocks, for ``surplus sim powerwall``. Each
start generates a self-signed certificate, like a gateway's, and rejects TLS SNI names a
gateway would reject. With ``http_port`` a plain HTTP listener answers every request with a
301 to the HTTPS one, as a gateway does.

Hidden doors, for driving it from outside the process: ``/sim/faults`` (GET, or POST
``{"add": [...], "remove": [...]}``) injects faults; ``POST /sim/toggle`` is the gateway's
switch toggle, which ends a password lockout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from surplus.integrations.powerwall import models as m
from surplus.integrations.powerwall.simstate import PowerwallSimulator, SimError
from surplus.integrations.powerwall.tls import GATEWAY_NAMES, SelfSigned, self_signed
from surplus.sim.serving import (
    bind,
    faults_route,
    serve_until_interrupted,
    server_context,
    serving,
)

__all__ = ["PowerwallSimulator", "ServedSimulator", "create_app", "running_simulator", "serve"]

Handler = Callable[[PowerwallSimulator, Request], Awaitable[Response]]
_M = TypeVar("_M", bound=BaseModel)


def _json(model: BaseModel, status: int = 200) -> JSONResponse:
    return JSONResponse(model.model_dump(mode="json"), status_code=status)


def _token(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.cookies.get("AuthCookie")


async def _body(request: Request, model: type[_M]) -> _M:
    try:
        return model.model_validate_json(await request.body())
    except ValidationError:
        # The gateway's own text for a malformed body is unknown; the shape is its usual one.
        raise SimError(
            400, m.ErrorBody(code=400, error="Bad Request", message="malformed request body")
        ) from None


async def _login(sim: PowerwallSimulator, request: Request) -> Response:
    answer = sim.login(await _body(request, m.LoginRequest))
    response = _json(answer)
    response.set_cookie("AuthCookie", answer.token, httponly=True)
    response.set_cookie("UserRecord", "eyJyb2xlcyI6WyJIb21lX093bmVyIl19", httponly=True)
    return response


async def _logout(sim: PowerwallSimulator, request: Request) -> Response:
    sim.logout(_token(request))
    response = Response(status_code=204)
    response.delete_cookie("AuthCookie")
    response.delete_cookie("UserRecord")
    return response


async def _operation(sim: PowerwallSimulator, request: Request) -> Response:
    if request.method == "POST":
        return _json(sim.stage_operation(await _body(request, m.OperationWrite)))
    return _json(sim.operation)


async def _commit(sim: PowerwallSimulator, request: Request) -> Response:
    sim.commit()
    return Response(status_code=202)


async def _run_sitemaster(sim: PowerwallSimulator, request: Request) -> Response:
    sim.run_sitemaster()
    return Response(status_code=202)


async def _islanding(sim: PowerwallSimulator, request: Request) -> Response:
    body = await _body(request, m.IslandingRequest)
    sim.request_island(body.island_mode)
    return _json(body)


async def _vitals(sim: PowerwallSimulator, request: Request) -> Response:
    return Response(sim.vitals(), media_type="application/octet-stream")


async def _tedapi_din(sim: PowerwallSimulator, request: Request) -> Response:
    return PlainTextResponse(sim.tedapi_din())


UPDATING_PAGE = "<!DOCTYPE html><html><body><p>Updating, please wait</p></body></html>"


def _reader(read: Callable[[PowerwallSimulator], BaseModel]) -> Handler:
    async def handler(sim: PowerwallSimulator, request: Request) -> Response:
        answer = read(sim)
        if "garbled" in sim.faults:
            return HTMLResponse(UPDATING_PAGE)
        return _json(answer)

    return handler


async def _sim_toggle(sim: PowerwallSimulator, request: Request) -> Response:
    sim.toggle_reset()
    return JSONResponse({"locked": sim.locked})


def _route(
    sim: PowerwallSimulator,
    path: str,
    handler: Handler,
    methods: list[str],
    *,
    auth: bool = True,
) -> Route:
    async def endpoint(request: Request) -> Response:
        sim.requests[f"{request.method} {request.url.path}"] += 1
        if "slow" in sim.faults and path.startswith("/api/"):
            await asyncio.sleep(sim.slow_s)
        try:
            sim.admit(path, _token(request), auth=auth)
            return await handler(sim, request)
        except SimError as e:
            if e.body is None:
                return Response(status_code=e.status)
            return _json(e.body, e.status)

    return Route(path, endpoint, methods=methods)


def create_app(sim: PowerwallSimulator) -> Starlette:
    """The gateway's HTTP API over ``sim``."""
    get = ["GET"]
    routes = [
        _route(sim, "/api/status", _reader(PowerwallSimulator.status), get, auth=False),
        _route(sim, "/api/login/Basic", _login, ["POST"], auth=False),
        _route(sim, "/api/logout", _logout, get, auth=False),
        _route(sim, "/api/meters/aggregates", _reader(PowerwallSimulator.aggregates), get),
        _route(sim, "/api/system_status/soe", _reader(PowerwallSimulator.soe), get),
        _route(sim, "/api/system_status/grid_status", _reader(PowerwallSimulator.grid), get),
        _route(sim, "/api/system_status", _reader(PowerwallSimulator.system_status), get),
        _route(sim, "/api/operation", _operation, ["GET", "POST"]),
        _route(sim, "/api/config/completed", _commit, get),
        _route(sim, "/api/sitemaster", _reader(PowerwallSimulator.sitemaster), get),
        _route(sim, "/api/sitemaster/run", _run_sitemaster, get),
        _route(sim, "/api/v2/islanding/mode", _islanding, ["POST"]),
        _route(sim, "/api/devices/vitals", _vitals, get),
        _route(sim, "/tedapi/din", _tedapi_din, get, auth=False),
        faults_route(sim.faults),
        _route(sim, "/sim/toggle", _sim_toggle, ["POST"], auth=False),
    ]
    return Starlette(routes=routes)


def _redirect_app(https_url: str) -> ASGIApp:
    """Plain HTTP as a gateway serves it: 301 to the same path over HTTPS."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        query = scope["query_string"].decode("latin-1")
        location = https_url + scope["raw_path"].decode("latin-1") + (f"?{query}" if query else "")
        await Response(status_code=301, headers={"location": location})(scope, receive, send)

    return app


@dataclass(slots=True)
class ServedSimulator:
    """A simulator being served: its state, the bound URLs and the certificate's fingerprint.

    ``http_url`` is the plain HTTP listener that redirects to ``url``, if one was asked for.
    """

    sim: PowerwallSimulator
    url: str
    fingerprint: str
    tls: SelfSigned = field(repr=False)
    _task: asyncio.Task[None] = field(repr=False)
    http_url: str | None = None

    async def wait_closed(self) -> None:
        """Until the server stops (on SIGINT or SIGTERM when it runs in the main thread)."""
        await asyncio.shield(self._task)


@contextlib.asynccontextmanager
async def running_simulator(
    sim: PowerwallSimulator | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    http_port: int | None = None,
    tls: SelfSigned | None = None,
) -> AsyncIterator[ServedSimulator]:
    """Serve ``sim`` (a default one if None) over HTTPS on ``host:port`` in this event loop,
    and, if ``http_port`` is given (0 picks a free one), plain HTTP redirecting to it. The
    certificate is ``tls`` (a gateway rebooting keeps its own), else a new one.
    """
    sim = sim if sim is not None else PowerwallSimulator()
    cert = tls if tls is not None else self_signed(host)
    ctx = server_context(cert, names=GATEWAY_NAMES)
    sock = bind(host, port)
    url = f"https://{host}:{sock.getsockname()[1]}"
    # An exit stack closes the redirect first: uvicorn restores the signal handlers it
    # replaced when a server stops, so servers must stop in the reverse order they started.
    async with contextlib.AsyncExitStack() as stack:
        task = await stack.enter_async_context(serving(create_app(sim), sock, ctx))
        http_url = None
        if http_port is not None:
            http_sock = bind(host, http_port)
            http_url = f"http://{host}:{http_sock.getsockname()[1]}"
            await stack.enter_async_context(serving(_redirect_app(url), http_sock, None))
        yield ServedSimulator(sim, url, cert.fingerprint, cert, task, http_url)


def serve(
    sim: PowerwallSimulator | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8443,
    http_port: int | None = None,
    ready: Callable[[ServedSimulator], None] | None = None,
) -> None:
    """Serve until interrupted; ``ready`` is told the URLs and fingerprint once it listens."""
    serve_until_interrupted(
        lambda: running_simulator(sim, host=host, port=port, http_port=http_port), ready
    )
