"""How long to wait before retrying a delivery: exponential backoff with full jitter for 5xx and
network errors, Slack's Retry-After for 429. Pure; the sleeping happens in the channel worker.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .errors import DeliveryError, RateLimited


@dataclass(frozen=True)
class Backoff:
    """`delay(n)` for the n-th retry (1-based): uniform in [0, min(cap, base * 2**(n-1))]."""

    base_seconds: float = 1.0
    max_seconds: float = 60.0

    def ceiling(self, attempt: int) -> float:
        return min(self.max_seconds, self.base_seconds * 2 ** max(0, attempt - 1))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        # Full jitter (AWS architecture blog): spreads retries of many alerts across the window
        # so that a channel coming back is not hit by all of them at once.
        ceiling = self.ceiling(attempt)
        return (rng or random).uniform(ceiling / 2, ceiling)

    def wait_for(
        self, error: DeliveryError, attempt: int, rng: random.Random | None = None
    ) -> float:
        """Retry-After when Slack gave one (never less), else the jittered backoff."""
        if isinstance(error, RateLimited):
            return max(error.retry_after, 0.0)
        return self.delay(attempt, rng)


__all__ = ["Backoff"]
