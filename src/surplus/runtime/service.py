"""The running service: store, vault, devices, pollers, control loop and API in one loop.

``Service.run`` opens the store (``<data_dir>/surplus.db``) and the vault
(``<data_dir>/secrets.vault``, key file ``<data_dir>/vault.key``, created on first run),
installs a ``SecretFilter`` holding every secret on every logging handler, builds each
device through the registry and then runs, in one ``asyncio.TaskGroup``, a poller per
device, the control loop, the store's retention pruning (at start, then hourly) and the API
(uvicorn, in this event loop). Cancelling ``run`` stops them all and then closes the
clients and the store (flushing the recorder).

``until_signalled`` runs a coroutine until SIGINT or SIGTERM and returns normally then.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import socket
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn

from surplus.api.app import create_app
from surplus.config import ServiceConfig
from surplus.domain.errors import ConfigError, SurplusError
from surplus.integrations.ocpp.ca import CertificateAuthority
from surplus.integrations.ocpp.central import CentralSystem, running_central_system
from surplus.integrations.ocpp.config import OcppDeviceConfig
from surplus.integrations.push.models import PushedReading
from surplus.integrations.push.receiver import Sink, push_routes
from surplus.integrations.registry import is_polled
from surplus.runtime.datadir import open_store, open_vault
from surplus.runtime.devices import RECHECK_S, Device, build_devices
from surplus.runtime.loop import ControlLoop
from surplus.runtime.maintenance import PRUNE_INTERVAL_S, prune_periodically
from surplus.runtime.sessions import SessionTracker
from surplus.security.redact import SecretFilter
from surplus.security.vault import Vault
from surplus.store import Store

__all__ = ["DEFAULT_TICK_S", "Service", "until_signalled"]

log = logging.getLogger(__name__)

DEFAULT_TICK_S = 10.0  # the control tick without any device to take the interval from


class Service:
    """The service of one config file; ``data_dir`` and ``api_port`` override the file's
    (``api_port`` 0 picks a free port). ``on_ready`` is told the API's URL once it listens;
    the store is pruned every ``prune_interval_s``, starting at once; a device needing
    re-authentication looks for new credentials every ``recheck_s``."""

    def __init__(
        self,
        config: ServiceConfig,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        data_dir: Path | None = None,
        api_port: int | None = None,
        on_ready: Callable[[str], None] | None = None,
        prune_interval_s: float = PRUNE_INTERVAL_S,
        recheck_s: float = RECHECK_S,
    ) -> None:
        host = config.service.api_host
        if not _is_loopback(host):
            raise ConfigError(
                [
                    (
                        "service.api_host",
                        "must be a loopback address (127.0.0.1 or ::1) for now: the API has"
                        " no authentication yet",
                    )
                ]
            )
        self.config = config
        self.data_dir = data_dir if data_dir is not None else config.service.data_dir
        self._host = host
        self._port = api_port if api_port is not None else config.service.api_port
        self._now = now
        self._on_ready = on_ready
        self._prune_interval_s = prune_interval_s
        self._recheck_s = recheck_s
        self.ocpp_urls: dict[int, str] = {}  # security profile -> URL, once listening

    async def run(self) -> None:
        """Run until cancelled; a ``SurplusError`` if the store, vault or port is unusable."""
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        store = open_store(self.data_dir)
        try:
            vault = open_vault(self.data_dir)
            redactor = SecretFilter()
            vault.attach(redactor)
            _install_everywhere(redactor)
            async with contextlib.AsyncExitStack() as stack:
                central = None
                if any(isinstance(d, OcppDeviceConfig) for d in self.config.devices):
                    central = await stack.enter_async_context(self._central_system(store, vault))
                devices = build_devices(
                    self.config.devices,
                    vault,
                    store.pins,
                    store.recorder,
                    self._now,
                    lambda held: redactor.add(*(secret.reveal() for secret in held)),
                    reopen_vault=lambda: _attached(open_vault(self.data_dir), redactor),
                    recheck_s=self._recheck_s,
                    central=central,
                )
                await self._run(store, devices)
        finally:
            store.close()
            log.info("stopped; the store at %s is closed", store.path)

    async def _run(self, store: Store, devices: list[Device]) -> None:
        polled = [d for d in self.config.devices if is_polled(d)]
        tick_s = min((d.poll_interval_s for d in polled), default=DEFAULT_TICK_S)
        loop = ControlLoop(
            self.config.site_settings(),
            self.config.loadpoints,
            devices,
            store.log,
            tick_s,
            self._now,
            self.config.tariff,
            sessions=SessionTracker(store.sessions),
        )
        pushes = push_routes(store.push_keys, store.push_messages, _push_sink(devices), self._now)
        app = create_app(devices, loop, store.series, self._now, pushes, store.sessions)
        try:
            with _listening(self._host, self._port) as sock, one_error():
                async with asyncio.TaskGroup() as tasks:
                    for device in devices:
                        tasks.create_task(device.run(), name=f"poll {device.name}")
                    tasks.create_task(loop.run(), name="control loop")
                    tasks.create_task(
                        prune_periodically(store, self._now, self._prune_interval_s),
                        name="retention",
                    )
                    tasks.create_task(self._serve(app, sock), name="api")
        finally:
            for device in devices:
                try:
                    await device.aclose()
                except Exception:
                    log.warning("%s: closing its client failed", device.name, exc_info=True)

    @contextlib.asynccontextmanager
    async def _central_system(self, store: Store, vault: Vault) -> AsyncIterator[CentralSystem]:
        """The OCPP central system the ``[ocpp]`` table describes; its URLs in ``ocpp_urls``."""
        section = self.config.ocpp
        ports = section.ports()
        ca = None
        if 2 in ports or 3 in ports:
            try:
                ca = CertificateAuthority.load(self.data_dir, vault)
            except FileNotFoundError as err:
                raise ConfigError([("ocpp", f"profiles 2 and 3 need the OCPP CA: {err}")]) from None
        try:
            async with running_central_system(
                store.chargers, ports=ports, ca=ca, host=section.host, path=section.path
            ) as central:
                self.ocpp_urls = dict(central.urls)
                for profile, url in sorted(central.urls.items()):
                    log.info("OCPP central system (security profile %d) on %s", profile, url)
                yield central
        except OSError as err:
            raise SurplusError(
                f"the OCPP central system cannot listen on {section.host}: {err.strerror or err}"
            ) from err

    async def _serve(self, app: Any, sock: socket.socket) -> None:
        config = uvicorn.Config(
            app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=1
        )
        server = _ApiServer(config)
        host, port = sock.getsockname()[:2]
        url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            while not server.started:
                if task.done():
                    await task
                    raise SurplusError(f"the API on {url} stopped while starting")
                await asyncio.sleep(0.01)
            log.info("API listening on %s", url)
            if self._on_ready is not None:
                self._on_ready(url)
            await asyncio.shield(task)
        finally:
            server.should_exit = True
            await task


class _ApiServer(uvicorn.Server):
    """uvicorn without its own signal handlers: a signal stops the whole service, which
    then stops the server (``until_signalled``)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def until_signalled(work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` until it returns or SIGINT/SIGTERM cancels it; then return normally."""
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(work)
    signalled = False

    def stop() -> None:
        nonlocal signalled
        signalled = True
        task.cancel()

    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop)
    try:
        await task
    except asyncio.CancelledError:
        if not signalled:
            raise
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def _install_everywhere(redactor: SecretFilter) -> None:
    """Put ``redactor`` on the root logger's handlers and on those of every other logger
    (uvicorn's, when it configured its own): a filter on a logger would miss its children."""
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if redactor not in handler.filters:
                handler.addFilter(redactor)


@contextlib.contextmanager
def one_error() -> Iterator[None]:
    """A task group's failure as the one error inside it, when there is one: the command
    line then says it on one line instead of printing the group."""
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = list(_leaves(group))
        if len(leaves) == 1:
            raise leaves[0] from None
        raise


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            yield from _leaves(error)
        else:
            yield error


def _attached(vault: Vault, redactor: SecretFilter) -> Vault:
    """``vault`` with ``redactor`` told every secret in it, and every one set from now on
    (a renewed token)."""
    vault.attach(redactor)
    return vault


def _push_sink(devices: Sequence[Device]) -> Sink:
    """Where the push API hands what a source pushed: that source's device."""
    feeds = {d.name: d.feed for d in devices if d.feed is not None}

    def sink(source: str, reading: PushedReading | None, flags: frozenset[str]) -> None:
        feed = feeds.get(source)
        if feed is None:
            log.warning(
                "%s pushed readings, but no [[devices]] table of type push has that name;"
                " they are stored, not used",
                source,
            )
            return
        feed.receive(reading, "it pushed an error instead of readings")

    return sink


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def _listening(host: str, port: int) -> Iterator[socket.socket]:
    family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    # IPPROTO_TCP named: asyncio turns Nagle's algorithm off only on such sockets, and with
    # it on every small answer waits for the client's delayed ACK (about 40 ms)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen()
    except OSError as err:
        sock.close()
        raise SurplusError(
            f"the API cannot listen on {host}:{port}: {err.strerror or err}"
        ) from err
    with sock:
        yield sock
