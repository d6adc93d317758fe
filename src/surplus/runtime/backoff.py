"""How long to wait after a failure: exponential, jittered, never sooner than Retry-After.

Jitter spreads the retries of many devices (and of many surplus installations behind one
vendor cloud) so they do not come back in step.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """``initial_s`` after the first failure, times ``factor`` after each further one, at
    most ``max_s``, each delay moved by up to +-``jitter`` (a fraction) at random."""

    initial_s: float = 2.0
    factor: float = 2.0
    max_s: float = 300.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.initial_s <= 0 or self.factor < 1 or self.max_s < self.initial_s:
            raise ValueError("need initial_s > 0, factor >= 1 and max_s >= initial_s")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter is a fraction in [0, 1)")

    def delay_s(
        self, failures: int, rng: random.Random, retry_after_s: float | None = None
    ) -> float:
        """The wait after ``failures`` failures in a row (1 for the first)."""
        steps = max(0, failures - 1)
        base = min(self.max_s, self.initial_s * self.factor**steps)
        jittered = base * (1.0 + rng.uniform(-self.jitter, self.jitter))
        return max(jittered, retry_after_s or 0.0)
