"""Unknown model price: one alert per provider/model the catalog cannot price, ever."""

from __future__ import annotations

from collections.abc import Collection, Iterable

from schemas.events.usage_minute import UnknownPrice, UsageMinute


def first_unknown_prices(
    runs: Iterable[UsageMinute], announced: Collection[str]
) -> list[tuple[UnknownPrice, UsageMinute]]:
    """The first unpriced request of each `provider/model` not announced before, with its run,
    in source order (partition, then offset)."""
    found = sorted(((unknown, run) for run in runs for unknown in run.unknown),
                   key=lambda pair: (pair[1].source_partition, pair[0].source_offset))
    first: dict[str, tuple[UnknownPrice, UsageMinute]] = {}
    for unknown, run in found:
        if unknown.subject not in announced:
            first.setdefault(unknown.subject, (unknown, run))
    return list(first.values())
