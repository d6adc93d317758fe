"""The OCPP 1.6J central system: chargers connect to it, one port per security profile.

- profile 1: ``ws://``, HTTP Basic (charge point id, authorization key);
- profile 2: ``wss://`` with a server certificate from surplus's CA, and Basic;
- profile 3: ``wss://`` with mutual TLS: a client certificate from surplus's CA, CN = the id.

The id is the last segment of the URL path, percent-decoded. Before the WebSocket upgrade an
unknown id is answered 404, a missing or wrong key (or a CN that is not the id, or a revoked
charger) 401; a client certificate our CA did not issue fails the TLS handshake. The
subprotocol ``ocpp1.6`` is required: without it the handshake fails with 400.

Each connection is served in its own task by a ``Session``; nothing one charger does reaches
another. A charger that connects again replaces its older connection. A watchdog marks
silent chargers stale, asks a connected one for a Heartbeat and drops it if it cannot answer.

``running_central_system(registry, ca=..., ports={1: 0, 2: 0, 3: 0})`` serves it in this
event loop (port 0 picks a free one); ``cs.urls`` has the URL of each profile.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import logging
import urllib.parse
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime
from http import HTTPStatus

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidHeader
from websockets.headers import parse_authorization_basic
from websockets.http11 import Request, Response

from surplus.integrations.ocpp._lib import call
from surplus.integrations.ocpp.ca import CertificateAuthority
from surplus.integrations.ocpp.control import ChargerHandle
from surplus.integrations.ocpp.options import ChargerOptions
from surplus.integrations.ocpp.session import ChargerMemory, Session, TransactionIds
from surplus.integrations.ocpp.state import ChargePointState, Health
from surplus.integrations.ocpp.tls import peer_common_name, server_context
from surplus.integrations.ocpp.watchdog import assess
from surplus.store.chargers import ChargerRegistry, KeyCheck

__all__ = ["SUBPROTOCOL", "CentralSystem", "charger_id_from_path", "running_central_system"]

log = logging.getLogger(__name__)
# websockets logs every request header at DEBUG, the charger's Basic credentials among them
transport_log = logging.getLogger("surplus.ocpp.transport")
transport_log.setLevel(logging.INFO)

SUBPROTOCOL = "ocpp1.6"
MAX_MESSAGE_BYTES = 256 * 1024
OptionsSource = Mapping[str, ChargerOptions] | Callable[[str], ChargerOptions]


def charger_id_from_path(path: str) -> str | None:
    """The last non-empty segment of a request path, percent-decoded (the query dropped)."""
    segments = [s for s in path.split("?", 1)[0].split("/") if s]
    return urllib.parse.unquote(segments[-1]) if segments else None


def _now() -> datetime:
    return datetime.now(UTC)


class CentralSystem:
    """The chargers' states and commands; ``running_central_system`` puts it on the network."""

    def __init__(
        self,
        registry: ChargerRegistry,
        *,
        options: OptionsSource | None = None,
        response_timeout_s: float = 30.0,
    ) -> None:
        self.registry = registry
        self.urls: dict[int, str] = {}
        self._options = options
        self._response_timeout_s = response_timeout_s
        self._states: dict[str, ChargePointState] = {}
        self._memories: dict[str, ChargerMemory] = {}
        self._sessions: dict[str, Session] = {}
        self._admitted: dict[ServerConnection, str] = {}
        self._probing: set[str] = set()
        self._probes: set[asyncio.Task[None]] = set()
        self._transaction_ids = TransactionIds()

    # --- what the rest of surplus reads and calls ---

    def options(self, charger_id: str) -> ChargerOptions:
        if self._options is None:
            return ChargerOptions()
        if callable(self._options):
            return self._options(charger_id)
        return self._options.get(charger_id, ChargerOptions())

    def state(self, charger_id: str) -> ChargePointState | None:
        """A copy of what is known of ``charger_id``; None if it is not registered and never
        tried to connect."""
        held = self._states.get(charger_id)
        if held is not None:
            return copy.deepcopy(held)
        entry = self.registry.get(charger_id)
        if entry is None or not entry.active:
            return None
        return ChargePointState(charger_id, health=Health.STALE, health_reason="never connected")

    def connected(self) -> list[str]:
        return sorted(self._sessions)

    def charger(self, charger_id: str) -> ChargerHandle:
        return ChargerHandle(charger_id, self._sessions.get)

    # --- admission, before the upgrade ---

    def admission(self, profile: int) -> Callable[[ServerConnection, Request], Response | None]:
        def process_request(connection: ServerConnection, request: Request) -> Response | None:
            charger_id = charger_id_from_path(request.path)
            if charger_id is None:
                return connection.respond(HTTPStatus.NOT_FOUND, "no charge point id in the path\n")
            entry = self.registry.get(charger_id)
            if entry is None:
                log.warning("refused unknown charge point %r (profile %d)", charger_id, profile)
                return connection.respond(HTTPStatus.NOT_FOUND, "unknown charge point\n")
            reason = (
                self._check_certificate(connection, charger_id)
                if profile == 3
                else self._check_basic(request, charger_id)
            )
            if reason is not None:
                self._refused(charger_id, f"{reason} (profile {profile})")
                response = connection.respond(HTTPStatus.UNAUTHORIZED, "not authorized\n")
                if profile != 3:
                    response.headers["WWW-Authenticate"] = 'Basic realm="surplus OCPP"'
                return response
            self._admitted[connection] = charger_id
            return None

        return process_request

    def _check_basic(self, request: Request, charger_id: str) -> str | None:
        header = request.headers.get("Authorization")
        if header is None:
            return "no credentials"
        try:
            user, key = parse_authorization_basic(header)
        except InvalidHeader:
            return "malformed credentials"
        if user != charger_id:
            return "credentials of another id"
        verdict = self.registry.check_key(charger_id, key)
        return None if verdict is KeyCheck.OK else verdict.value.replace("_", " ")

    def _check_certificate(self, connection: ServerConnection, charger_id: str) -> str | None:
        common_name = peer_common_name(connection.transport.get_extra_info("ssl_object"))
        if common_name != charger_id:
            return "client certificate of another id"
        entry = self.registry.get(charger_id)
        return None if entry is not None and entry.active else "revoked"

    def _refused(self, charger_id: str, reason: str) -> None:
        log.warning("refused charge point %r: %s", charger_id, reason)
        state = self._state(charger_id)
        state.refused_at = _now()
        state.refused_reason = reason
        if not state.connected:
            state.health, state.health_reason = assess(state, self.options(charger_id), _now())

    def _state(self, charger_id: str) -> ChargePointState:
        state = self._states.get(charger_id)
        if state is None:
            state = self._states[charger_id] = ChargePointState(charger_id)
        return state

    # --- a connection ---

    async def serve_connection(self, connection: ServerConnection, profile: int) -> None:
        charger_id = self._admitted.pop(connection, None)
        if charger_id is None:
            return
        if connection.subprotocol != SUBPROTOCOL:
            await connection.close(1002, f"the subprotocol {SUBPROTOCOL} is required")
            return
        older = self._sessions.get(charger_id)
        if older is not None:
            log.info("%s connected again; its older connection is closed", charger_id)
            older.abort()
        state = self._state(charger_id)
        memory = self._memories.setdefault(charger_id, ChargerMemory())
        session = Session(
            charger_id,
            connection,
            state=state,
            memory=memory,
            options=self.options(charger_id),
            transaction_ids=self._transaction_ids,
            response_timeout_s=self._response_timeout_s,
        )
        self._sessions[charger_id] = session
        state.connected, state.security_profile = True, profile
        state.connected_at = state.last_seen = _now()
        state.health, state.health_reason = Health.OK, ""
        log.info("%s connected (security profile %d)", charger_id, profile)
        try:
            await session.run()
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("%s: its connection failed", charger_id)
        finally:
            if self._sessions.get(charger_id) is session:
                del self._sessions[charger_id]
                state.connected = False
                state.disconnected_at = _now()
                state.health, state.health_reason = assess(state, session.options, _now())
                log.info("%s disconnected", charger_id)

    # --- the watchdog ---

    def check_health(self) -> None:
        """Bring every charger's health up to date; probe the connected ones gone silent."""
        now = _now()
        for charger_id, state in self._states.items():
            health, reason = assess(state, self.options(charger_id), now)
            if health is not state.health:
                log.warning("%s is %s%s", charger_id, health.value, f": {reason}" if reason else "")
            state.health, state.health_reason = health, reason
            session = self._sessions.get(charger_id)
            if (
                health is Health.STALE
                and session is not None
                and charger_id not in self._probing
                and reason.startswith("silent")
            ):
                self._probing.add(charger_id)
                probe = asyncio.create_task(self._probe(charger_id, session))
                self._probes.add(probe)
                probe.add_done_callback(self._probes.discard)

    async def _probe(self, charger_id: str, session: Session) -> None:
        try:
            await session.call(call.TriggerMessage(requested_message="Heartbeat"), suppress=True)
        except TimeoutError:
            log.warning("%s does not answer; dropping its connection", charger_id)
            session.abort()
        except Exception as e:  # the connection is gone already
            log.info("%s: probe failed (%s)", charger_id, type(e).__name__)
        finally:
            self._probing.discard(charger_id)

    async def run_watchdog(self, period_s: float) -> None:
        while True:
            await asyncio.sleep(period_s)
            self.check_health()


@contextlib.asynccontextmanager
async def running_central_system(
    registry: ChargerRegistry,
    *,
    ports: Mapping[int, int] | None = None,
    ca: CertificateAuthority | None = None,
    host: str = "127.0.0.1",
    path: str = "/ocpp",
    server_names: Sequence[str] = (),
    options: OptionsSource | None = None,
    response_timeout_s: float = 30.0,
    watchdog_period_s: float = 5.0,
    ping_interval_s: float | None = 20.0,
) -> AsyncIterator[CentralSystem]:
    """Serve a central system on ``host``: ``ports`` maps a security profile (1, 2, 3) to its
    port (0 picks a free one; default: profile 1 only). Profiles 2 and 3 need ``ca``, which
    issues the server certificate (for ``host``, ``localhost`` and ``server_names``) and is
    the only issuer trusted for client certificates."""
    ports = {1: 0} if ports is None else dict(ports)
    if not ports or any(p not in (1, 2, 3) for p in ports):
        raise ValueError("ports maps security profiles 1, 2 and 3 to ports")
    if ca is None and (2 in ports or 3 in ports):
        raise ValueError("security profiles 2 and 3 need the certificate authority")
    cs = CentralSystem(registry, options=options, response_timeout_s=response_timeout_s)
    server_cert = None
    if ca is not None:
        server_cert = ca.issue_server([host, "localhost", *server_names])
    async with contextlib.AsyncExitStack() as stack:
        for profile, port in sorted(ports.items()):
            ssl = None
            if profile > 1:
                assert ca is not None and server_cert is not None
                client_ca = ca.cert_pem if profile == 3 else None
                ssl = server_context(server_cert, client_ca_pem=client_ca)
            server: Server = await stack.enter_async_context(
                serve(
                    functools.partial(cs.serve_connection, profile=profile),
                    host,
                    port,
                    ssl=ssl,
                    subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
                    process_request=cs.admission(profile),
                    compression=None,
                    max_size=MAX_MESSAGE_BYTES,
                    ping_interval=ping_interval_s,
                    ping_timeout=ping_interval_s,
                    logger=transport_log,
                )
            )
            bound = next(iter(server.sockets)).getsockname()[1]
            scheme = "ws" if profile == 1 else "wss"
            cs.urls[profile] = f"{scheme}://{host}:{bound}{path}"
        watchdog = asyncio.create_task(cs.run_watchdog(watchdog_period_s))
        try:
            yield cs
        finally:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
