"""Keeping within the account's limits: a token bucket per kind of call, and an exponential
backoff with jitter after the cloud said "too many"."""

from __future__ import annotations

import random

__all__ = ["Backoff", "TokenBucket"]


class TokenBucket:
    """``per_minute`` calls a minute, at most ``burst`` at once; times in seconds."""

    def __init__(self, per_minute: float, *, burst: float = 1.0, now: float = 0.0) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("a bucket needs a positive rate and a burst of at least 1")
        self.rate_s = per_minute / 60.0
        self.burst = burst
        self._tokens = burst
        self._at = now

    def _fill(self, now: float) -> None:
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate_s)
        self._at = max(self._at, now)

    def wait_s(self, now: float) -> float:
        """How long until a call may be made."""
        self._fill(now)
        return max(0.0, (1.0 - self._tokens) / self.rate_s)

    def take(self, now: float) -> bool:
        """Spend a call if one is available."""
        self._fill(now)
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class Backoff:
    """Delays of ``base_s`` doubling per failure up to ``cap_s``, each ±20 % at random."""

    def __init__(self, base_s: float, cap_s: float, *, seed: int | None = None) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.failures = 0
        self.until = 0.0
        self._rng = random.Random(seed)

    def fail(self, now: float, at_least_s: float = 0.0) -> float:
        """Record a failure at ``now``; the delay before the next try."""
        delay: float = min(self.cap_s, self.base_s * 2.0**self.failures)
        delay = max(at_least_s, delay * self._rng.uniform(0.8, 1.2))
        self.failures += 1
        self.until = now + delay
        return delay

    def succeed(self) -> None:
        self.failures = 0
        self.until = 0.0

    def left_s(self, now: float) -> float:
        return max(0.0, self.until - now)
