"""A simulated OCPP 1.6J charge point on the network, for tests and ``surplus sim
ocpp-charger``.

It connects like a charger (security profile 1, 2 or 3; it closes a connection that does
not speak ocpp1.6), boots first and honours the answer (Accepted; Pending and Rejected:
again after ``interval``), announces its connectors, sends Heartbeats and, during a
transaction, MeterValues every ``MeterValueSampleInterval``. What it does with the car is
``sim_charger``'s. Transaction messages that cannot be sent wait in the offline queue,
replayed in order once connected again, without a new BootNotification.

Every charger fault of reference C.6 is a switch (``quirks``). ``drop()`` cuts the network
and ``freeze()`` hangs the firmware, for testing what the central system survives.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Unpack
from urllib.parse import quote

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from surplus.integrations.ocpp._lib import OCPPError, call
from surplus.integrations.ocpp.sim_charger import Hardware, SimulatedCharger
from surplus.integrations.ocpp.sim_link import Link
from surplus.integrations.ocpp.sim_queue import Queued
from surplus.integrations.ocpp.tls import client_context
from surplus.security.vault import Secret

__all__ = ["SimulatedChargePoint"]

log = logging.getLogger(__name__)
# websockets logs every request header at DEBUG, the Basic credentials among them
transport_log = logging.getLogger("surplus.ocpp.sim.transport")
transport_log.setLevel(logging.INFO)

SUBPROTOCOL = "ocpp1.6"


class SimulatedChargePoint(SimulatedCharger):
    """One simulated charger on the network; ``await run()`` until cancelled. The keyword
    arguments after ``subprotocols`` are the hardware's (``SimulatedCharger``)."""

    def __init__(
        self,
        charger_id: str,
        url: str,
        *,
        key: str | Secret | None = None,
        ca_file: Path | None = None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        subprotocols: tuple[str, ...] = (SUBPROTOCOL,),
        response_timeout_s: float = 30.0,
        redial_s: float = 2.0,
        on_call: Callable[[str, Mapping[str, Any]], None] | None = None,
        **hardware: Unpack[Hardware],
    ) -> None:
        super().__init__(charger_id, **hardware)
        self.url = url.rstrip("/") + "/" + quote(charger_id, safe="")
        self._key = key.reveal() if isinstance(key, Secret) else key
        self._ca_file, self._cert_file, self._key_file = ca_file, cert_file, key_file
        self.subprotocols = subprotocols
        self.response_timeout_s = response_timeout_s
        self.redial_s = redial_s
        self.on_call = on_call
        self.registered = False  # boot Accepted since the last power-up
        self.connections = 0  # connections opened
        self.link: Link | None = None
        self._frozen = False
        self._redial_after: float | None = None  # set by drop()
        self._rebooting = False
        self._connected = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._skip_validation = bool(
            self.quirks.active & {"missing_timestamps", "schema_violations"}
        )

    # --- for tests and the command line ---

    async def wait_connected(self, timeout_s: float = 10.0) -> None:
        """Until connected and registered (boot Accepted)."""
        await asyncio.wait_for(self._connected.wait(), timeout_s)

    def drop(self, redial_after_s: float | None = None) -> None:
        """Cut the network at once, without a closing handshake; redial after
        ``redial_after_s`` seconds of real time (default: as the quirks say)."""
        self._redial_after = redial_after_s
        link = self.link
        if link is not None:
            link.transport_abort()

    def freeze(self) -> None:
        """Hang: connected, but nothing is sent or answered any more (pings still are)."""
        self._frozen = True

    @property
    def frozen(self) -> bool:
        return self._frozen

    def spawn(self, job: Awaitable[None]) -> None:
        async def guarded() -> None:
            try:
                await job
            except (ConnectionClosed, asyncio.CancelledError):
                pass
            except Exception:
                log.exception("%s: a background job failed", self.id)

        task = asyncio.create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- the connection ---

    async def run(self) -> None:
        """Connect, serve, redial; returns when the charger gives up (no_redial)."""
        try:
            while True:
                established = await self._connect_once()
                if established and not self._rebooting:
                    delay = self._redial_delay()
                    if delay is None:
                        self.say("connection lost; not redialing (no_redial)")
                        return
                else:
                    delay = self.redial_s
                self._rebooting = False
                await asyncio.sleep(delay)
        finally:
            for task in list(self._tasks):
                task.cancel()

    def _redial_delay(self) -> float | None:
        if self._redial_after is not None:
            delay, self._redial_after = self._redial_after, None
            return delay
        if "no_redial" in self.quirks:
            return self.quirks.redial_after_s
        return self.redial_s

    async def _connect_once(self) -> bool:
        headers = {}
        if self._key is not None:
            token = base64.b64encode(f"{self.id}:{self._key}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        ssl = None
        if self.url.startswith("wss://"):
            ssl = client_context(self._ca_file, cert_file=self._cert_file, key_file=self._key_file)
        try:
            ws = await connect(
                self.url,
                subprotocols=list(self.subprotocols),  # type: ignore[arg-type]
                additional_headers=headers,
                ssl=ssl,
                open_timeout=10,
                compression=None,
                logger=transport_log,
            )
        except InvalidStatus as e:
            self.say(f"refused by the central system: HTTP {e.response.status_code}")
            return False
        except (OSError, InvalidHandshake, TimeoutError) as e:
            self.say(f"cannot connect to {self.url}: {e or type(e).__name__}")
            return False
        if ws.subprotocol != SUBPROTOCOL:
            self.say("the central system did not echo ocpp1.6; closing")
            await ws.close(1002, "ocpp1.6 required")
            return False
        self.connections += 1
        self.say(f"connected to {self.url}")
        await self._serve(ws)
        return True

    async def _serve(self, ws: ClientConnection) -> None:
        link = Link(self, ws, self.response_timeout_s)
        self.link = link
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(link.start())
                group.create_task(self._online(link))
        except* ConnectionClosed:
            pass
        finally:
            self.link = None
            self._connected.clear()
            self.say("disconnected")

    async def _online(self, link: Link) -> None:
        if self.registered:
            self.say("reconnected; no new BootNotification")
        else:
            await self._boot(link)
            await self._announce()
        self._connected.set()
        await asyncio.gather(self._heartbeats(), self._sample(), self._replay(link))

    async def _replay(self, link: Link) -> None:
        if not self.queue:
            return

        async def send(payload: Any) -> Any:
            return await link.call(
                payload, suppress=False, skip_schema_validation=self._skip_validation
            )

        async def retry() -> None:
            await self.clock.sleep(self.config.number("TransactionMessageRetryInterval"))

        def give_up(item: Queued, error: Exception) -> None:
            name = type(item.payload).__name__
            self.say(f"gave up on a queued {name} ({type(error).__name__})")

        await self.queue.replay(
            send,
            attempts=self.config.number("TransactionMessageAttempts"),
            retry=retry,
            learn=self._learn_id,
            give_up=give_up,
            failures=(TimeoutError, OCPPError),
        )
        self.say("offline queue replayed")

    def _learn_id(self, placeholder: int, real: int) -> None:
        for connector in self.connectors.values():
            if connector.tx_id == placeholder:
                connector.tx_id = real
        self.say(f"the transaction started offline is {real}")

    async def _boot(self, link: Link) -> None:
        while True:
            payload = self.boot_notification()
            self.boots += 1
            try:
                answer = await link.call(
                    payload, suppress=False, skip_schema_validation=self._skip_validation
                )
            except (TimeoutError, OCPPError) as e:
                self.say(f"BootNotification failed ({type(e).__name__}); again in 30 s")
                await self.clock.sleep(30)
                continue
            interval = int(answer.interval) if answer.interval else 0
            if answer.status == "Accepted":
                if interval > 0:
                    self.config.set("HeartbeatInterval", str(interval))
                self.registered = True
                self.say(f"boot accepted; heartbeat every {interval} s")
                return
            self.say(f"boot {answer.status}; again in {interval or 60} s")
            await self.clock.sleep(interval or 60)

    async def _announce(self) -> None:
        await self.status(0, "Available")
        for connector in self.connectors.values():
            await self.status(connector.id, connector.status)

    # --- sending ---

    async def send(
        self, payload: Any, *, transactional: bool = False, placeholder: int | None = None
    ) -> Any:
        link = self.link
        if transactional and (link is None or self.queue or self._frozen):
            self.queue.append(payload, placeholder)
            return None
        if link is None or self._frozen:
            return None
        try:
            return await link.call(
                payload, suppress=False, skip_schema_validation=self._skip_validation
            )
        except (ConnectionClosed, TimeoutError):
            if transactional:
                self.queue.append(payload, placeholder)
            return None
        except OCPPError as e:
            self.say(f"{type(payload).__name__} answered with {e.code}")
            return None

    async def send_raw(self, frame: str) -> None:
        link = self.link
        if link is not None:
            with contextlib.suppress(ConnectionClosed):
                await link.send_frame(frame)

    # --- periodic ---

    async def _heartbeats(self) -> None:
        while True:
            await self.clock.sleep(max(self.config.number("HeartbeatInterval"), 1))
            if self._frozen:
                continue
            if "invalid_json" in self.quirks:
                await self.send_raw(f'[2,"{uuid.uuid4()}","Heartbeat",{{')
            await self.send(call.Heartbeat())

    async def _sample(self) -> None:
        while True:
            await self.clock.sleep(max(self.config.number("MeterValueSampleInterval"), 1))
            if self._frozen:
                continue
            for connector in self.connectors.values():
                if connector.tx_id is not None:
                    await self.refresh(connector)
                    await self.meter_values(connector, "Sample.Periodic")

    async def reboot(self, reason: str) -> None:
        """Power-cycle: stop the transactions, drop the connection, boot again."""
        for connector in self.connectors.values():
            await self.stop_transaction(connector, reason)
        self.registered = False
        self._rebooting = True
        self.say(f"rebooting ({reason})")
        link = self.link
        if link is not None:
            await link.close()
