"""What every device simulator shares: injectable faults, HTTPS serving on loopback, the
/sim/faults door.

``Faults`` holds the faults a simulator's state checks; ``server_context``, ``bind`` and
``serving`` run a Starlette app with uvicorn over TLS in the caller's event loop; and
``faults_route`` is the hidden ``/sim/faults`` door (GET, or POST
``{"add": [...], "remove": [...], "times": n}``) for driving the faults from outside.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import tempfile
from collections.abc import AsyncIterator, Callable, Collection, Iterable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

import uvicorn
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

if TYPE_CHECKING:
    from surplus.integrations.powerwall.tls import SelfSigned

__all__ = [
    "Faults",
    "bind",
    "faults_route",
    "serve_until_interrupted",
    "server_context",
    "serving",
]


class Faults:
    """Faults injected by tests (or ``/sim/faults``), among the ``known`` names.

    Each holds until discarded, except that one added with ``times`` holds for that many
    ``take``s, and a ``one_shot`` one (added without ``times``) for the next ``take`` only.
    ``in`` only looks; ``take`` uses one up.
    """

    def __init__(self, known: Iterable[str], *, one_shot: Iterable[str] = ()) -> None:
        self.known = frozenset(known)
        self.one_shot = frozenset(one_shot)
        if not self.one_shot <= self.known:
            raise ValueError(f"unknown one-shot faults {sorted(self.one_shot - self.known)}")
        self._left: dict[str, int | None] = {}  # name -> takes left; None: until discarded

    def add(self, *names: str, times: int | None = None) -> None:
        unknown = set(names) - self.known
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {sorted(self.known)}")
        for name in names:
            if times is None and name in self.one_shot:
                self._left[name] = 1
            else:
                self._left[name] = times

    def discard(self, *names: str) -> None:
        for name in names:
            self._left.pop(name, None)

    def clear(self) -> None:
        self._left.clear()

    def take(self, name: str) -> bool:
        """Whether ``name`` is active; one of its ``times`` (a one-shot's only one) is used."""
        if name not in self._left:
            return False
        left = self._left[name]
        if left is not None:
            if left <= 1:
                del self._left[name]
            else:
                self._left[name] = left - 1
        return True

    @property
    def active(self) -> frozenset[str]:
        return frozenset(self._left)

    def __contains__(self, name: object) -> bool:
        return name in self._left


def server_context(tls: SelfSigned, *, names: Collection[str] | None = None) -> ssl.SSLContext:
    """A TLS server context presenting ``tls``; with ``names``, a TLS SNI name outside them
    is refused (a client connecting by IP sends none, which is accepted)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as tmp:  # load_cert_chain reads only files
        cert, key = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        cert.write_bytes(tls.cert_pem)
        key.write_bytes(tls.key_pem)
        ctx.load_cert_chain(cert, key)
    if names is not None:
        accepted = frozenset(names)

        def check_sni(sock: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> int | None:
            if name is None or name in accepted:
                return None
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME

        ctx.sni_callback = check_sni
    return ctx


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (0 picks a free port), not yet listening."""
    # With the protocol named, asyncio turns Nagle off on accepted connections (it checks
    # ``proto``); otherwise each TLS answer waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


@contextlib.asynccontextmanager
async def serving(
    app: ASGIApp, sock: socket.socket, ssl_context: ssl.SSLContext | None
) -> AsyncIterator[asyncio.Task[None]]:
    """``app`` served by uvicorn on ``sock`` (over TLS with ``ssl_context``, if given) in this
    event loop until the block ends; the block gets the server's task once it listens.

    Servers must stop in the reverse order they started (nest them, or use an exit stack):
    uvicorn restores the signal handlers it replaced when a server stops.
    """
    ctx = ssl_context
    config = uvicorn.Config(
        app,
        ssl_context_factory=None if ctx is None else lambda _config, _default: ctx,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the simulator stopped while starting")
            await asyncio.sleep(0.01)
        yield task
    finally:
        server.should_exit = True
        await task
        sock.close()


class _FaultChange(BaseModel):
    add: list[str] = []
    remove: list[str] = []
    times: int | None = None


def faults_route(faults: Faults) -> Route:
    """``/sim/faults``: GET the active faults, or POST ``{"add": [...], "remove": [...],
    "times": n}`` (each optional) to change them first; 400 ``{"error": ...}`` for a malformed
    change or an unknown fault."""

    async def endpoint(request: Request) -> Response:
        if request.method == "POST":
            try:
                change = _FaultChange.model_validate_json(await request.body())
                faults.add(*change.add, times=change.times)
            except (ValidationError, ValueError) as e:
                return JSONResponse({"error": str(e)}, status_code=400)
            faults.discard(*change.remove)
        return JSONResponse({"active": sorted(faults.active)})

    return Route("/sim/faults", endpoint, methods=["GET", "POST"])


class Served(Protocol):
    """A simulator being served, as its runner yields it."""

    async def wait_closed(self) -> None: ...


_S = TypeVar("_S", bound=Served)


def serve_until_interrupted(
    running: Callable[[], AbstractAsyncContextManager[_S]],
    ready: Callable[[_S], None] | None = None,
) -> None:
    """Run ``running()`` (a simulator's runner) in a new event loop until it stops or Ctrl-C;
    ``ready`` is told what is served once it listens."""

    async def main() -> None:
        async with running() as served:
            if ready is not None:
                ready(served)
            await served.wait_closed()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
