"""Volumes of traffic (requests, tokens, cost) and their averages: the figures every rule reads."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

ZERO = Decimal(0)
METRICS = ("requests", "tokens", "cost_usd")


@dataclass(frozen=True)
class Volume:
    """What a key did in some span of event time. `cost_usd` counts priced requests only."""

    requests: int = 0
    tokens: int = 0
    cost_usd: Decimal = ZERO

    def __add__(self, other: Volume) -> Volume:
        return Volume(
            self.requests + other.requests,
            self.tokens + other.tokens,
            self.cost_usd + other.cost_usd,
        )

    def metric(self, name: str) -> Decimal:
        return Decimal(getattr(self, name))


@dataclass(frozen=True)
class Average:
    """A per-period average of each metric (fractional, so Decimal throughout)."""

    requests: Decimal = ZERO
    tokens: Decimal = ZERO
    cost_usd: Decimal = ZERO

    @classmethod
    def of(cls, total: Volume, periods: int) -> Average:
        count = Decimal(periods)
        return cls(
            Decimal(total.requests) / count,
            Decimal(total.tokens) / count,
            total.cost_usd / count,
        )

    def metric(self, name: str) -> Decimal:
        return Decimal(getattr(self, name))
