"""The per-key hour bucket: an event id counts once, and survives the changelog encoding."""

from __future__ import annotations

from decimal import Decimal

from pipelines.rollups.state import HourBucket
from schemas.ids import uuid7


def test_a_redelivered_event_id_is_counted_once_even_after_recovery() -> None:
    bucket = HourBucket()
    first = uuid7()
    assert bucket.add(first, 5, 100, Decimal("0.000000007"))
    recovered = HourBucket.decode(bucket.encode())  # what the changelog gives back
    assert not recovered.add(first, 5, 100, Decimal("0.000000007"))
    assert recovered.add(uuid7(), 59, 50, None)
    assert (recovered.requests, recovered.tokens, recovered.cost_usd, recovered.unpriced) == (
        2, 150, Decimal("0.000000007"), 1)
    assert recovered.minutes_volume(0, 30).requests == 1
