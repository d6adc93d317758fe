"""One poller per device: read at an interval, within a timeout, backing off on failure.

The poller keeps the latest reading and says what state the device is in. The error
branch a client raises (``domain.errors``) decides the reaction:

- ``UnavailableError`` or a timeout: the data is stale; retry after a jittered backoff.
- ``RateLimitedError``: wait at least its ``retry_after_s``.
- ``AuthenticationError``: "needs re-authentication"; stop polling (a login loop locks
  accounts and gateways); the other pollers run on.
- ``NotSupportedError``: the capability is dropped; stop polling.

Time comes from injectable ``clock`` and ``sleep`` so tests run in no time.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Generic, TypeVar

from surplus.domain.errors import (
    AuthenticationError,
    NotSupportedError,
    RateLimitedError,
    UnavailableError,
)
from surplus.runtime.backoff import Backoff

T = TypeVar("T")
_log = logging.getLogger(__name__)


class Health(StrEnum):
    STARTING = "starting"
    OK = "ok"
    STALE = "stale"  # failing for now; retried
    RATE_LIMITED = "rate limited"
    NEEDS_REAUTH = "needs re-authentication"
    NOT_SUPPORTED = "not supported"


@dataclass(frozen=True, slots=True)
class PollState:
    """What the service says about a device."""

    health: Health = Health.STARTING
    detail: str = ""
    last_ok_at: datetime | None = None
    failures: int = 0  # in a row


class Poller(Generic[T]):
    """Polls ``read`` every ``interval_s`` until cancelled or told to stop by the device."""

    def __init__(
        self,
        name: str,
        read: Callable[[], Awaitable[T]],
        interval_s: float,
        timeout_s: float,
        backoff: Backoff | None = None,
        on_reading: Callable[[T], None] | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
    ) -> None:
        if interval_s <= 0 or timeout_s <= 0:
            raise ValueError("interval_s and timeout_s must be positive")
        self.name = name
        self._read = read
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.backoff = backoff or Backoff()
        self._on_reading = on_reading
        self._sleep = sleep
        self._now = now
        self._rng = rng or random.Random()
        self.latest: T | None = None
        self.state = PollState()

    async def run(self) -> None:
        """Poll until cancelled, or until the device refuses our credentials or the call."""
        while True:
            wait = await self.poll_once()
            if wait is None:
                return
            await self._sleep(wait)

    async def poll_once(self) -> float | None:
        """One read; returns how long to wait before the next, or None to stop."""
        started = time.monotonic()
        try:
            # not ``wait_for``: on 3.11 it can swallow a cancel that meets the read's end,
            # and a service then never stops
            async with asyncio.timeout(self.timeout_s):
                value = await self._read()
        except AuthenticationError as err:
            self._fail(Health.NEEDS_REAUTH, str(err))
            _log.error("%s: needs re-authentication: %s", self.name, err)
            return None
        except NotSupportedError as err:
            self._fail(Health.NOT_SUPPORTED, str(err))
            _log.warning("%s: not supported, no longer polled: %s", self.name, err)
            return None
        except RateLimitedError as err:
            self._fail(Health.RATE_LIMITED, str(err))
            return self.backoff.delay_s(self.state.failures, self._rng, err.retry_after_s)
        except (UnavailableError, TimeoutError) as err:
            what = str(err) or f"no answer within {self.timeout_s:g} s"
            self._fail(Health.STALE, what)
            _log.info("%s: unavailable (%d in a row): %s", self.name, self.state.failures, what)
            return self.backoff.delay_s(self.state.failures, self._rng)
        self.latest = value
        self.state = PollState(Health.OK, "", self._now(), 0)
        if self._on_reading is not None:
            self._on_reading(value)
        return max(0.0, self.interval_s - (time.monotonic() - started))

    def _fail(self, health: Health, detail: str) -> None:
        self.state = replace(
            self.state, health=health, detail=detail, failures=self.state.failures + 1
        )
