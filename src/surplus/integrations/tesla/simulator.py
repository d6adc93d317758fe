"""The simulated Fleet API over HTTPS: the Starlette app and its runners.

``running_simulator()`` serves a ``FleetSimulator`` on 127.0.0.1 as asyncio tasks, for tests;
``serve()`` blocks, for ``surplus sim tesla``. Three listeners share one self-signed
certificate (for ``localhost`` and the address) and one state:

- the NA and the EU "regions": the same API, each answering 421 to an account of the other
  region; the OAuth endpoints answer on both;
- a ``tesla-http-proxy`` stand-in: the same paths (VIN only), no region check, and its
  commands count as signed. The real proxy re-signs commands with the paired key; here the
  signing itself is not simulated, only which path a command took.

``/oauth2/v3/authorize`` stands for the owner's consent: it redirects at once to the
``redirect_uri`` with a code. Hidden doors, for driving it from outside the process:
``/sim/faults`` (GET, or POST ``{"add": [...], "remove": [...], "times": n}``) and
``POST /sim/plug`` ``{"vin": ..., "plugged": bool}``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from surplus.integrations.powerwall.tls import SelfSigned, self_signed
from surplus.integrations.tesla.simstate import (
    SITE_SCOPES,
    VEHICLE_SCOPES,
    FleetError,
    FleetSimulator,
)
from surplus.sim.serving import (
    bind,
    faults_route,
    serve_until_interrupted,
    server_context,
    serving,
)

__all__ = ["FleetSimulator", "ServedFleet", "create_app", "running_simulator", "serve"]

Handler = Callable[[Request], Awaitable[Any]]


def _bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else None


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise FleetError(400, "invalid_request") from None
    if not isinstance(body, dict):
        raise FleetError(400, "invalid_request")
    return body


def _error(e: FleetError) -> Response:
    body = e.body()
    if body is None:
        return Response(status_code=e.status, headers=e.headers)
    return JSONResponse(body, status_code=e.status, headers=e.headers)


class _Plug(BaseModel):
    vin: str
    plugged: bool


class _App:
    """The routes of one listener: ``region`` None is the proxy (and signs commands)."""

    def __init__(self, sim: FleetSimulator, region: str | None) -> None:
        self.sim = sim
        self.region = region

    def app(self) -> Starlette:
        api: list[tuple[str, Handler, str, str | None, str | None]] = [
            # path, handler, method, billing kind, scope
            ("/api/1/users/region", self._region, "GET", None, None),
            ("/api/1/vehicles", self._vehicles, "GET", None, None),
            ("/api/1/vehicles/{tag}", self._one_vehicle, "GET", None, None),
            ("/api/1/vehicles/{tag}/vehicle_data", self._data, "GET", "data", "data"),
            ("/api/1/vehicles/{tag}/wake_up", self._wake, "POST", "wake", None),
            ("/api/1/vehicles/{tag}/command/{name}", self._command, "POST", "command", "command"),
            ("/api/1/products", self._products, "GET", None, None),
            ("/api/1/energy_sites/{site}/live_status", self._live, "GET", "data", "site:data"),
            ("/api/1/energy_sites/{site}/site_info", self._info, "GET", "data", "site:data"),
            (
                "/api/1/energy_sites/{site}/{what}",
                self._site_write,
                "POST",
                "command",
                "site:command",
            ),
        ]
        routes = [self._api_route(*spec) for spec in api]
        routes += [
            Route("/oauth2/v3/authorize", self._authorize, methods=["GET"]),
            Route("/oauth2/v3/token", self._token, methods=["POST"]),
            faults_route(self.sim.faults),
            Route("/sim/plug", self._plug, methods=["POST"]),
        ]
        return Starlette(routes=routes)

    def _api_route(
        self, path: str, handler: Handler, method: str, kind: str | None, scope: str | None
    ) -> Route:
        sim = self.sim

        async def endpoint(request: Request) -> Response:
            sim.requests[f"{method} {path}"] += 1
            status = 200
            try:
                sim.admit(
                    None if path == "/api/1/users/region" else self.region,
                    _bearer(request),
                    scope=_scope_name(scope),
                    write=method == "POST",
                    json=request.headers.get("content-type", "").startswith("application/json"),
                )
                answer = await handler(request)
                response: Response = JSONResponse(answer)
            except FleetError as e:
                status = e.status
                response = _error(e)
            if status != 402:  # a disabled app is no longer billed
                sim.bill(kind, status)
            return response

        return Route(path, endpoint, methods=[method])

    # --- OAuth ---

    async def _authorize(self, request: Request) -> Response:
        q = request.query_params
        try:
            if q.get("response_type") != "code":
                raise FleetError(400, "unsupported_response_type")
            code = self.sim.issue_code(
                q.get("client_id", ""),
                q.get("redirect_uri", ""),
                q.get("scope", ""),
                q.get("code_challenge"),
                q.get("code_challenge_method"),
            )
        except FleetError as e:
            return _error(e)
        query = urlencode({"code": code, "state": q.get("state", "")})
        return RedirectResponse(f"{q.get('redirect_uri')}?{query}", status_code=302)

    async def _token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        try:
            return JSONResponse(self.sim.grant(form))
        except FleetError as e:
            return _error(e)

    # --- vehicles ---

    async def _region(self, request: Request) -> Any:
        served: dict[str, str] = request.app.state.region_urls
        region = self.sim.region
        return {"response": {"region": region, "fleet_api_base_url": served.get(region, "")}}

    async def _vehicles(self, request: Request) -> Any:
        self.sim.advance()
        items = [self.sim.summary(v) for v in self.sim.vehicles.values()]
        pages = {"previous": None, "next": None, "current": 1, "per_page": 100}
        pagination = {**pages, "count": len(items), "pages": 1}
        return {"response": items, "pagination": pagination, "count": len(items)}

    async def _one_vehicle(self, request: Request) -> Any:
        return {"response": self.sim.summary(self._vehicle(request))}

    def _vehicle(self, request: Request) -> Any:
        tag = request.path_params["tag"]
        if self.region is None and len(tag) != 17:
            raise FleetError(400, "the proxy accepts VINs only")
        return self.sim.vehicle(tag)

    async def _data(self, request: Request) -> Any:
        v = self._vehicle(request)
        self.sim.take_slot(v, "data")
        self.sim.upstream()
        return {"response": self.sim.vehicle_data(v)}

    async def _wake(self, request: Request) -> Any:
        v = self._vehicle(request)
        self.sim.take_slot(v, "wake")
        self.sim.upstream()
        return {"response": self.sim.wake_up(v)}

    async def _command(self, request: Request) -> Any:
        v = self._vehicle(request)
        self.sim.take_slot(v, "command")
        self.sim.upstream()
        name = request.path_params["name"]
        body = await _json_body(request)
        return {"response": self.sim.command(v, name, body, signed=self.region is None)}

    # --- energy sites ---

    async def _products(self, request: Request) -> Any:
        items = self.sim.products()
        return {"response": items, "count": len(items)}

    async def _live(self, request: Request) -> Any:
        site = self.sim.site(request.path_params["site"])
        self.sim.upstream(site=True)
        return {"response": self.sim.live_status(site)}

    async def _info(self, request: Request) -> Any:
        site = self.sim.site(request.path_params["site"])
        self.sim.upstream(site=True)
        return {"response": self.sim.site_info(site)}

    async def _site_write(self, request: Request) -> Any:
        site = self.sim.site(request.path_params["site"])
        self.sim.upstream(site=True)
        body = await _json_body(request)
        return {"response": self.sim.site_write(site, request.path_params["what"], body)}

    # --- hidden doors ---

    async def _plug(self, request: Request) -> Response:
        try:
            plug = _Plug.model_validate_json(await request.body())
        except ValidationError as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        if plug.vin not in self.sim.vehicles:
            return JSONResponse({"error": f"no vehicle {plug.vin}"}, status_code=404)
        (self.sim.plug_in if plug.plugged else self.sim.unplug)(plug.vin)
        return JSONResponse({"vin": plug.vin, "plugged": plug.plugged})


def _scope_name(scope: str | None) -> str | None:
    if scope is None:
        return None
    if scope.startswith("site:"):
        return SITE_SCOPES[scope[5:]]
    return VEHICLE_SCOPES[scope]


def create_app(
    sim: FleetSimulator, region: str | None, region_urls: dict[str, str] | None = None
) -> Starlette:
    """The Fleet API of ``region`` (None: the signing proxy) over ``sim``."""
    app = _App(sim, region).app()
    app.state.region_urls = region_urls if region_urls is not None else {}
    return app


@dataclass(slots=True)
class ServedFleet:
    """A simulator being served: the regions' base URLs, the proxy's, the OAuth server's,
    and the certificate every listener presents (a client trusts ``tls.cert_pem``)."""

    sim: FleetSimulator
    region_urls: dict[str, str]
    proxy_url: str
    tls: SelfSigned = field(repr=False)
    _tasks: list[Any] = field(repr=False)

    @property
    def url(self) -> str:
        """The base URL of the account's own region."""
        return self.region_urls[self.sim.region]

    @property
    def auth_url(self) -> str:
        return self.url

    @property
    def fingerprint(self) -> str:
        return self.tls.fingerprint

    async def wait_closed(self) -> None:
        for task in self._tasks:
            await task


@contextlib.asynccontextmanager
async def running_simulator(
    sim: FleetSimulator | None = None,
    *,
    host: str = "127.0.0.1",
    ports: tuple[int, int, int] = (0, 0, 0),
) -> AsyncIterator[ServedFleet]:
    """Serve ``sim`` on ``host``: NA, EU and proxy listeners on ``ports`` (0: a free one)."""
    sim = sim if sim is not None else FleetSimulator()
    tls = self_signed(host, names=("localhost",))
    socks = [bind(host, port) for port in ports]
    urls = [f"https://{host}:{s.getsockname()[1]}" for s in socks]
    region_urls = {"na": urls[0], "eu": urls[1]}
    apps = [
        create_app(sim, "na", region_urls),
        create_app(sim, "eu", region_urls),
        create_app(sim, None, region_urls),
    ]
    async with contextlib.AsyncExitStack() as stack:
        tasks = [
            await stack.enter_async_context(serving(app, sock, server_context(tls)))
            for app, sock in zip(apps, socks, strict=True)
        ]
        yield ServedFleet(sim, region_urls, urls[2], tls, tasks)


def serve(
    sim: FleetSimulator,
    *,
    host: str = "127.0.0.1",
    ports: tuple[int, int, int] = (8450, 8451, 8452),
    ready: Callable[[ServedFleet], None] | None = None,
) -> None:
    """Serve until interrupted; ``ready`` is told the URLs once it listens."""
    serve_until_interrupted(lambda: running_simulator(sim, host=host, ports=ports), ready)
