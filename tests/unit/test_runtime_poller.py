"""The poller's reaction to each error branch, and the backoff it waits."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest

from surplus.domain.errors import (
    AuthenticationError,
    NotSupportedError,
    RateLimitedError,
    UnavailableError,
)
from surplus.runtime.backoff import Backoff
from surplus.runtime.poller import Health, Poller

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
NO_JITTER = Backoff(initial_s=2.0, factor=2.0, max_s=60.0, jitter=0.0)


@pytest.mark.parametrize(
    ("failures", "retry_after", "expected"),
    [
        pytest.param(1, None, 2.0, id="first-failure"),
        pytest.param(2, None, 4.0, id="doubles"),
        pytest.param(5, None, 32.0, id="fifth"),
        pytest.param(9, None, 60.0, id="capped"),
        pytest.param(1, 30.0, 30.0, id="retry-after-is-honoured"),
        pytest.param(9, 30.0, 60.0, id="never-sooner-than-the-backoff"),
    ],
)
def test_backoff_doubles_to_a_cap_and_honours_retry_after(
    failures: int, retry_after: float | None, expected: float
) -> None:
    assert NO_JITTER.delay_s(failures, random.Random(1), retry_after) == expected


def test_backoff_jitter_stays_within_its_fraction_and_spreads() -> None:
    backoff = Backoff(initial_s=10.0, jitter=0.2)
    rng = random.Random(7)
    delays = [backoff.delay_s(1, rng) for _ in range(200)]
    assert all(8.0 <= d <= 12.0 for d in delays)
    assert max(delays) - min(delays) > 2.0  # not all in step


@pytest.mark.parametrize(
    "kwargs",
    [{"initial_s": 0}, {"factor": 0.5}, {"max_s": 1.0, "initial_s": 2.0}, {"jitter": 1.0}],
)
def test_backoff_refuses_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)


def _script(*steps: object) -> Callable[[], Awaitable[object]]:
    """A read that returns or raises each step in turn."""
    queue = list(steps)

    async def read() -> object:
        step = queue.pop(0)
        if isinstance(step, BaseException):
            raise step
        return step

    return read


async def _no_sleep(_: float) -> None:
    return None


def _poller(read: Callable[[], Awaitable[object]], **kw: object) -> Poller[object]:
    return Poller(
        "gateway",
        read,
        interval_s=10.0,
        timeout_s=5.0,
        backoff=NO_JITTER,
        sleep=_no_sleep,
        now=lambda: NOW,
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("error", "health", "wait"),
    [
        pytest.param(UnavailableError("502 empty body"), Health.STALE, 2.0, id="unavailable"),
        pytest.param(TimeoutError(), Health.STALE, 2.0, id="timeout"),
        pytest.param(
            RateLimitedError("429", retry_after_s=300.0), Health.RATE_LIMITED, 300.0, id="429"
        ),
        pytest.param(AuthenticationError("bad credentials"), Health.NEEDS_REAUTH, None, id="auth"),
        pytest.param(NotSupportedError("no such endpoint"), Health.NOT_SUPPORTED, None, id="404"),
    ],
)
async def test_each_error_branch_has_its_reaction(
    error: Exception, health: Health, wait: float | None
) -> None:
    poller = _poller(_script(error))
    assert await poller.poll_once() == wait
    assert poller.state.health is health
    assert poller.state.failures == 1
    assert poller.latest is None


async def test_stale_then_recovered_keeps_the_last_good_reading() -> None:
    seen: list[object] = []
    poller = _poller(
        _script({"w": 1}, UnavailableError("busy"), UnavailableError("busy"), {"w": 2}),
        on_reading=seen.append,
    )
    waits = [await poller.poll_once() for _ in range(4)]
    assert waits[1:3] == [2.0, 4.0]  # backing off
    assert poller.state.health is Health.OK and poller.state.failures == 0
    assert poller.state.last_ok_at == NOW
    assert seen == [{"w": 1}, {"w": 2}] and poller.latest == {"w": 2}


async def test_run_stops_on_an_authentication_failure_without_retrying() -> None:
    calls = 0

    async def read() -> object:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise UnavailableError("starting")
        raise AuthenticationError("bad credentials")

    poller = _poller(read)
    await poller.run()  # returns instead of looping
    assert calls == 3
    assert poller.state.health is Health.NEEDS_REAUTH
    assert "bad credentials" in poller.state.detail


async def test_a_read_slower_than_the_timeout_is_stale() -> None:
    async def slow() -> object:
        await asyncio.sleep(1.0)
        return 1

    poller = Poller("slow", slow, interval_s=1.0, timeout_s=0.05, backoff=NO_JITTER)
    assert await poller.poll_once() == 2.0
    assert poller.state.health is Health.STALE
    assert "0.05" in poller.state.detail
