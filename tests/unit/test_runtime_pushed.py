"""A pushed source's feed: readings taken as they come, an error push and silence both
make it stale, and the next good push makes it ok again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from surplus.runtime.poller import Health
from surplus.runtime.pushed import PushedFeed

T0 = datetime(2024, 6, 10, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def test_a_feed_is_ok_after_a_push_and_stale_after_silence_or_an_error() -> None:
    clock, recorded = Clock(), []
    feed: PushedFeed[str] = PushedFeed("inverter", 180.0, clock, recorded.append)
    assert feed.state.health == Health.STARTING
    feed.check()
    assert feed.state.health == Health.STARTING  # no push yet: nothing to grow stale

    feed.receive("reading 1")
    assert (feed.state.health, feed.latest, recorded) == (Health.OK, "reading 1", ["reading 1"])
    clock.now += timedelta(seconds=180)
    feed.check()
    assert feed.state.health == Health.OK
    clock.now += timedelta(seconds=1)
    feed.check()
    assert feed.state.health == Health.STALE
    assert "no push for 181 s" in feed.state.detail

    feed.receive(None, "inverter offline")
    assert feed.state.health == Health.STALE
    assert "inverter offline" in feed.state.detail
    assert feed.latest == "reading 1"  # the last good reading is kept, and shown stale
    feed.receive("reading 2")
    assert (feed.state.health, feed.state.failures, feed.latest) == (Health.OK, 0, "reading 2")
    assert recorded == ["reading 1", "reading 2"]
