"""A simulated Envoy and Enlighten cloud over HTTP: the Starlette apps and their runners.

``running_simulator()`` serves an ``EnvoySimulator`` on 127.0.0.1 (port 0 picks a free one)
as asyncio tasks, for tests; ``serve()`` blocks, for ``surplus sim envoy``. The gateway
speaks HTTPS with a fresh self-signed certificate (CN ``envoy``) from firmware 7 on, plain
HTTP below it (with Digest authentication on ``/api/v1/production/inverters``); the cloud
listens on a second port, over HTTPS with a certificate of its own for ``127.0.0.1``, which
a client trusts through ``ServedEnvoy.cloud_ca_pem``.

``/stream/meter`` sends a ``data:`` frame every ``stream_interval_s`` and never ends by
itself; the runner ends open streams when it stops.

Hidden doors, for driving it from outside the process: ``/sim/faults`` (GET, or POST
``{"add": [...], "remove": [...]}``) injects faults (the cloud's too); ``POST /sim/reboot``
reboots the gateway (503, then zero readings, then normal).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from surplus.integrations.envoy import models as m
from surplus.integrations.envoy.simcloud import CloudError
from surplus.integrations.envoy.simstate import (
    VALID_TOKEN_PAGE,
    EnvoySimulator,
    SimError,
    unauthorized,
    unavailable,
)
from surplus.integrations.powerwall.tls import SelfSigned, self_signed
from surplus.sim.serving import (
    bind,
    faults_route,
    serve_until_interrupted,
    server_context,
    serving,
)

__all__ = ["GATEWAY_NAMES", "EnvoySimulator", "ServedEnvoy", "running_simulator", "serve"]

GATEWAY_NAMES = ("envoy", "envoy.local")
CLOUD_NAMES = ("localhost",)
SESSION_COOKIE = "sessionId"
CLOUD_SESSION_COOKIE = "_enlighten_4_session"
DIGEST_REALM = "enphaseenergy.com"
_DIGEST_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]*))')

Handler = Callable[[Request], Awaitable[Response]]


def _json(data: BaseModel | list[Any], status: int = 200) -> JSONResponse:
    if isinstance(data, list):
        return JSONResponse([x.model_dump(mode="json", exclude_none=True) for x in data], status)
    return JSONResponse(data.model_dump(mode="json", exclude_none=True), status)


def _bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else None


class _Gateway:
    """The gateway's routes over ``sim``; ``closing`` ends the open streams."""

    def __init__(self, sim: EnvoySimulator, closing: asyncio.Event) -> None:
        self.sim = sim
        self.closing = closing
        self._nonces: set[str] = set()

    def app(self) -> Starlette:
        get = ["GET"]
        s = self.sim
        routes = [
            self._route("/info", self._info, get, auth=False),
            self._route("/auth/check_jwt", self._check_jwt, ["GET", "POST"], auth=False),
            self._route("/production.json", self._production, get),
            self._route("/api/v1/production", self._reader(s.api_v1_production), get),
            self._route("/api/v1/production/inverters", self._inverters, get),
            self._route("/ivp/meters", self._reader(s.meters), get),
            self._route("/ivp/meters/readings", self._reader(s.meter_readings), get),
            self._route("/ivp/livedata/status", self._reader(s.livedata), get),
            self._route("/ivp/livedata/stream", self._livedata_stream, ["POST"]),
            self._route("/ivp/ensemble/inventory", self._reader(s.inventory), get),
            self._route("/ivp/ensemble/secctrl", self._reader(s.secctrl), get),
            self._route("/ivp/ensemble/power", self._ensemble_power, get),
            self._route("/stream/meter", self._stream, get),
            faults_route(self.sim.faults),
            Route("/sim/reboot", self._sim_reboot, methods=["POST"]),
        ]
        return Starlette(routes=routes)

    def _route(
        self, path: str, handler: Handler, methods: list[str], *, auth: bool = True
    ) -> Route:
        sim = self.sim

        async def endpoint(request: Request) -> Response:
            sim.requests[f"{request.method} {path}"] += 1
            delay = sim.latency()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                if auth:
                    sim.admit(path, _bearer(request), request.cookies.get(SESSION_COOKIE))
                elif sim.down:
                    raise unavailable()
                error = sim.error_instead(path)
                if error is not None:
                    return JSONResponse({"error": error})
                return await handler(request)
            except SimError as e:
                headers = {}
                if e.status == 401 and not sim.tokens_required:
                    headers["www-authenticate"] = self._digest_challenge()
                return Response(e.body, e.status, headers, media_type=e.media_type)

        return Route(path, endpoint, methods=methods)

    def _reader(self, read: Callable[[], BaseModel | list[Any]]) -> Handler:
        async def handler(request: Request) -> Response:
            return _json(read())

        return handler

    async def _info(self, request: Request) -> Response:
        info = m.info_xml(self.sim.info(), int(self.sim.clock().timestamp()))
        return Response(info, media_type="text/xml")

    async def _check_jwt(self, request: Request) -> Response:
        session_id = self.sim.check_jwt(_bearer(request))
        response = Response(VALID_TOKEN_PAGE, media_type="text/html")
        response.set_cookie(SESSION_COOKIE, session_id, httponly=True, secure=True)
        return response

    async def _production(self, request: Request) -> Response:
        details = request.query_params.get("details") == "1"
        return _json(self.sim.production(details=details))

    async def _ensemble_power(self, request: Request) -> Response:
        return JSONResponse(self.sim.ensemble_power().dump())

    async def _livedata_stream(self, request: Request) -> Response:
        try:
            enable = bool((await request.json()).get("enable"))
        except (ValueError, AttributeError):
            return JSONResponse({"error": 'expected {"enable": 0|1}'}, 400)
        return JSONResponse({"sc_stream": self.sim.set_livedata(enable)})

    async def _inverters(self, request: Request) -> Response:
        if not self.sim.tokens_required and not self._digest_ok(request):
            raise unauthorized()
        return _json(self.sim.inverters())

    async def _stream(self, request: Request) -> Response:
        sim, closing = self.sim, self.closing
        if not sim.tokens_required:  # old firmware: installer Digest, which this one refuses
            raise unauthorized()

        async def frames() -> AsyncIterator[bytes]:
            while not closing.is_set() and not sim.down:
                yield f"data: {sim.stream_frame().dump_json()}\n\n".encode()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(closing.wait(), sim.stream_interval_s)

        return StreamingResponse(
            frames(), media_type="text/event-stream", headers={"cache-control": "no-cache"}
        )

    # --- Digest (firmware < 7) ---

    def _digest_challenge(self) -> str:
        nonce = secrets.token_hex(16)
        self._nonces.add(nonce)
        return f'Digest realm="{DIGEST_REALM}", qop="auth", nonce="{nonce}", algorithm=MD5'

    def _digest_ok(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("digest "):
            return False
        p = {k: quoted or bare for k, quoted, bare in _DIGEST_PARAM.findall(header[7:])}
        password = self.sim.check_digest_user(p.get("username", ""))
        if password is None or p.get("nonce") not in self._nonces:
            return False

        def md5(text: str) -> str:
            return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()

        ha1 = md5(f"{p['username']}:{DIGEST_REALM}:{password}")
        ha2 = md5(f"{request.method}:{p.get('uri', '')}")
        if p.get("qop"):
            parts = (ha1, p["nonce"], p.get("nc", ""), p.get("cnonce", ""), p["qop"], ha2)
            expected = md5(":".join(parts))
        else:
            expected = md5(f"{ha1}:{p['nonce']}:{ha2}")
        return hmac.compare_digest(expected, p.get("response", ""))

    # --- hidden doors ---

    async def _sim_reboot(self, request: Request) -> Response:
        self.sim.reboot()
        return JSONResponse({"rebooted": True})


def _cloud_app(sim: EnvoySimulator) -> Starlette:
    cloud = sim.cloud

    async def login(request: Request) -> Response:
        # A form parsed by hand: Starlette's own parser needs python-multipart.
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        email, password = form.get("user[email]", [""])[0], form.get("user[password]", [""])[0]
        if not email or not password:
            raise CloudError(400, "user[email] and user[password] are required")
        answer = cloud.login(email, password)
        response = _json(answer)
        if answer.session_id:
            response.set_cookie(CLOUD_SESSION_COOKIE, answer.session_id, httponly=True)
        return response

    async def tokens(request: Request) -> Response:
        try:
            body = m.TokenRequest.model_validate_json(await request.body())
        except ValidationError:
            raise CloudError(400, "session_id, serial_num and username are required") from None
        return PlainTextResponse(cloud.token_by_entrez(body))

    async def entrez_auth_token(request: Request) -> Response:
        serial = request.query_params.get("serial_num", "")
        return _json(cloud.token_by_enlighten(request.cookies.get(CLOUD_SESSION_COOKIE), serial))

    def route(path: str, handler: Handler, method: str) -> Route:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except CloudError as e:
                return JSONResponse({"message": e.message}, e.status)

        return Route(path, endpoint, methods=[method])

    return Starlette(
        routes=[
            route("/login/login.json", login, "POST"),
            route("/tokens", tokens, "POST"),
            route("/entrez-auth-token", entrez_auth_token, "GET"),
        ]
    )


@dataclass(slots=True)
class ServedEnvoy:
    """A simulator being served: its state, the bound URLs and the certificates.

    ``fingerprint`` and ``tls`` are None on firmware < 7 (plain HTTP).
    """

    sim: EnvoySimulator
    url: str
    cloud_url: str
    fingerprint: str | None
    tls: SelfSigned | None = field(repr=False)
    cloud_tls: SelfSigned = field(repr=False)
    _task: asyncio.Task[None] = field(repr=False)

    @property
    def cloud_ca_pem(self) -> bytes:
        """The cloud's certificate, to trust as a CA (the config's ``cloud_ca_file``)."""
        return self.cloud_tls.cert_pem

    async def wait_closed(self) -> None:
        """Until the gateway stops (on SIGINT or SIGTERM when it runs in the main thread)."""
        await asyncio.shield(self._task)


@contextlib.asynccontextmanager
async def running_simulator(
    sim: EnvoySimulator | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    cloud_port: int = 0,
    tls: SelfSigned | None = None,
) -> AsyncIterator[ServedEnvoy]:
    """Serve ``sim`` (a default one if None) on ``host:port`` and its cloud on
    ``host:cloud_port`` in this event loop. The gateway's certificate is ``tls`` (a gateway
    rebooting keeps its own), else a new one."""
    sim = sim if sim is not None else EnvoySimulator()
    closing = asyncio.Event()
    gateway_tls = None
    if sim.tokens_required:
        gateway_tls = tls if tls is not None else self_signed(host, names=GATEWAY_NAMES)
    cloud_tls = self_signed(host, names=CLOUD_NAMES)
    sock = bind(host, port)
    scheme = "https" if gateway_tls is not None else "http"
    url = f"{scheme}://{host}:{sock.getsockname()[1]}"
    # Servers stop in the reverse order they started: uvicorn restores the signal handlers
    # it replaced when a server stops.
    async with contextlib.AsyncExitStack() as stack:
        ctx = server_context(gateway_tls) if gateway_tls is not None else None
        task = await stack.enter_async_context(serving(_Gateway(sim, closing).app(), sock, ctx))
        cloud_sock = bind(host, cloud_port)
        cloud_url = f"https://{host}:{cloud_sock.getsockname()[1]}"
        await stack.enter_async_context(
            serving(_cloud_app(sim), cloud_sock, server_context(cloud_tls))
        )
        stack.callback(closing.set)  # first of all: the streams end, so the servers can
        yield ServedEnvoy(
            sim,
            url,
            cloud_url,
            gateway_tls.fingerprint if gateway_tls is not None else None,
            gateway_tls,
            cloud_tls,
            task,
        )


def serve(
    sim: EnvoySimulator | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8445,
    cloud_port: int = 8446,
    ready: Callable[[ServedEnvoy], None] | None = None,
) -> None:
    """Serve until interrupted; ``ready`` is told the URLs and certificates once it listens."""
    serve_until_interrupted(
        lambda: running_simulator(sim, host=host, port=port, cloud_port=cloud_port), ready
    )
