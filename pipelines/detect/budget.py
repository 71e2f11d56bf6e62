"""Budget rule: 50%, 80% and 100% (configurable) of a key's daily and monthly cap, each at most
once per period. When one event crosses several thresholds, every crossed threshold is marked
done and only the highest is announced (an owner at 105% needs one message, not three)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from decimal import Decimal


def newly_crossed(
    spend: Decimal, cap: Decimal | None, thresholds: Sequence[int], fired: Collection[int]
) -> list[int]:
    """The thresholds (percent) that `spend` has reached and that have not fired this period."""
    if cap is None or cap <= 0:
        return []
    return [
        percent for percent in sorted(thresholds)
        if percent not in fired and spend * 100 >= cap * percent
    ]


def day_period(day: str) -> str:
    return f"day:{day}"


def month_period(month: str) -> str:
    return f"month:{month}"
