"""Latency statistics for benchmark results: nearest-rank percentiles, the usual summary, and
added latency (a target's percentiles minus a baseline's)."""

from __future__ import annotations

import statistics
from typing import Any


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


def summarize(values: list[float]) -> dict[str, float | int]:
    """n, p50, p95, p99, mean and max of latencies in ms (zeros when there are none)."""
    if not values:
        return {"n": 0, "p50": 0.0, "p95": 0.0, "p99": 0.0, "mean": 0.0, "max": 0.0}
    return {
        "n": len(values),
        "p50": round(percentile(values, 50), 3),
        "p95": round(percentile(values, 95), 3),
        "p99": round(percentile(values, 99), 3),
        "mean": round(statistics.fmean(values), 3),
        "max": round(max(values), 3),
    }


def added(target: dict[str, Any], baseline: dict[str, Any]) -> dict[str, float]:
    """Per percentile, target minus baseline (ms)."""
    return {q: round(target[q] - baseline[q], 3) for q in ("p50", "p95", "p99")}
