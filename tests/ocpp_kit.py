"""What the OCPP tests share: a central system on 127.0.0.1 with its registry, simulated
chargers running against it, a raw charger that sends exactly the frames a test writes, and
a wait for a condition to come true."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from surplus.integrations.ocpp.ca import CertificateAuthority
from surplus.integrations.ocpp.central import CentralSystem, running_central_system
from surplus.integrations.ocpp.chargepoint_sim import SimulatedChargePoint
from surplus.integrations.ocpp.options import ChargerOptions
from surplus.store import Store

# quick to settle: tests wait seconds, not the minutes a real charger gets
FAST = ChargerOptions(boot_grace_s=0.3, verify_timeout_s=3.0, verify_settle_s=0.6)


@dataclass
class Site:
    """A served central system, its store (with the registry) and a CA."""

    cs: CentralSystem
    store: Store
    ca: CertificateAuthority | None
    keys: dict[str, str] = field(default_factory=dict)

    def register(self, charger_id: str) -> str:
        key = self.store.chargers.add(charger_id).reveal()
        self.keys[charger_id] = key
        return key


@contextlib.asynccontextmanager
async def central(
    tmp_path: Path,
    *,
    profiles: tuple[int, ...] = (1,),
    options: ChargerOptions | Callable[[str], ChargerOptions] = FAST,
    ports: Mapping[int, int] | None = None,
    store: Store | None = None,
    ca: CertificateAuthority | None = None,
    **kwargs: Any,
) -> AsyncIterator[Site]:
    own_store = store is None
    store = store or Store.open(tmp_path / "surplus.db")
    if ca is None and any(p > 1 for p in profiles):
        ca = CertificateAuthority.ephemeral()
    chosen = options if callable(options) else (lambda _id: options)
    try:
        async with running_central_system(
            store.chargers,
            ports=ports or dict.fromkeys(profiles, 0),
            ca=ca,
            options=chosen,
            **kwargs,
        ) as cs:
            yield Site(cs, store, ca)
    finally:
        if own_store:
            store.close()


@contextlib.asynccontextmanager
async def running(
    sim: SimulatedChargePoint, *, wait: bool = True
) -> AsyncIterator[SimulatedChargePoint]:
    """``sim`` running (and, with ``wait``, booted) until the block ends."""
    task = asyncio.create_task(sim.run())
    try:
        if wait:
            await sim.wait_connected(10)
        yield sim
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def simulated(site: Site, charger_id: str, profile: int = 1, **kwargs: Any) -> SimulatedChargePoint:
    """A registered simulated charger for ``site`` on ``profile`` (fast clock by default),
    with its Basic key unless ``key`` is given (None: none, as on profile 3)."""
    key = site.keys.get(charger_id) or site.register(charger_id)
    kwargs.setdefault("key", key)
    kwargs.setdefault("speed", 10.0)
    kwargs.setdefault("redial_s", 0.2)
    return SimulatedChargePoint(charger_id, site.cs.urls[profile], **kwargs)


async def eventually(check: Callable[[], bool], timeout_s: float = 5.0, what: str = "") -> None:
    """Until ``check()`` is true; AssertionError after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what or check}")
        await asyncio.sleep(0.02)


async def served(site: Site, charger_id: str) -> None:
    """Prove the central system still serves ``charger_id``: a call there and back."""
    assert await site.cs.charger(charger_id).trigger_message("Heartbeat") == "Accepted"


def basic(charger_id: str, key: str) -> dict[str, str]:
    token = base64.b64encode(f"{charger_id}:{key}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class RawCharger:
    """A charger that is only a WebSocket: the test writes its CALLs and its answers.

    CALLs from the central system are answered by ``answer(action, payload)`` (None: left
    unanswered) and recorded in ``received``.
    """

    def __init__(
        self,
        ws: ClientConnection,
        answer: Callable[[str, dict[str, Any]], Any] | None = None,
    ) -> None:
        self.ws = ws
        self.answer = answer or _default_answer
        self.received: list[tuple[str, dict[str, Any]]] = []
        self._ids = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[list[Any]]] = {}
        self._replies: set[asyncio.Task[None]] = set()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(
        cls,
        url: str,
        charger_id: str,
        key: str | None,
        *,
        path_id: str | None = None,
        answer: Callable[[str, dict[str, Any]], Any] | None = None,
    ) -> AsyncIterator[RawCharger]:
        headers = basic(charger_id, key) if key is not None else {}
        async with connect(
            f"{url}/{path_id or charger_id}",
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            additional_headers=headers,
        ) as ws:
            raw = cls(ws, answer)
            try:
                yield raw
            finally:
                raw._reader.cancel()

    async def _read(self) -> None:
        async for frame in self.ws:
            message = json.loads(frame)
            if message[0] == 2:
                self.received.append((message[2], message[3]))
                reply = asyncio.create_task(self._reply(message))
                self._replies.add(reply)
                reply.add_done_callback(self._replies.discard)
            elif message[1] in self._waiting:
                self._waiting.pop(message[1]).set_result(message)

    async def _reply(self, message: list[Any]) -> None:
        result = self.answer(message[2], message[3])
        if asyncio.iscoroutine(result):
            result = await result
        if result is None:
            return
        if isinstance(result, tuple):  # a CALLERROR: (code, description)
            await self.ws.send(json.dumps([4, message[1], result[0], result[1], {}]))
        else:
            await self.ws.send(json.dumps([3, message[1], result]))

    async def call(self, action: str, payload: dict[str, Any], timeout_s: float = 5.0) -> list[Any]:
        """Send a CALL; the whole answer frame (CALLRESULT or CALLERROR)."""
        unique_id = f"raw-{next(self._ids)}"
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._waiting[unique_id] = future
        await self.ws.send(json.dumps([2, unique_id, action, payload]))
        return await asyncio.wait_for(future, timeout_s)

    async def result(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """The CALLRESULT payload of a CALL (failing on a CALLERROR)."""
        frame = await self.call(action, payload)
        assert frame[0] == 3, frame
        answer: dict[str, Any] = frame[2]
        return answer

    async def boot(self) -> dict[str, Any]:
        return await self.result(
            "BootNotification", {"chargePointVendor": "raw", "chargePointModel": "raw"}
        )


def _default_answer(action: str, payload: dict[str, Any]) -> dict[str, Any]:
    if action == "GetConfiguration":
        return {"configurationKey": [], "unknownKey": payload.get("key", [])}
    if action == "GetCompositeSchedule":
        return {"status": "Rejected"}
    if action == "UnlockConnector":
        return {"status": "Unlocked"}
    return {"status": "Accepted"}
