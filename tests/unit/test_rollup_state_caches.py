"""The per-event caches of the key state give the figures a fresh computation gives: an hour's
5-minute sums after more counts or a strip, and counting into the cached current hour when events
cross an hour or a day, come late, or repeat an id in another hour."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from pipelines.rollups.state import HourBucket, KeyStateStore
from pipelines.rollups.tables import StateTables
from pipelines.rollups.volume import Volume


def _fresh_sums(bucket: HourBucket) -> tuple[tuple[object, ...], ...]:
    return HourBucket.decode(bucket.encode()).slot_sums()  # a copy without the cached sums


def test_slot_sums_follow_counts_and_strip() -> None:
    bucket = HourBucket()
    bucket.add(uuid.uuid4().bytes, 3, 10, Decimal("0.5"))
    assert bucket.slot_sums()[0][12] == 1
    bucket.add(uuid.uuid4().bytes, 58, 5, None)  # after the sums were read
    assert bucket.slot_sums() == _fresh_sums(bucket)
    assert bucket.slot_sums()[0][12] == 2
    assert not bucket.add(bucket.seen.copy().pop(), 7, 99, Decimal(1))  # a repeat: no change
    assert bucket.slot_sums() == _fresh_sums(bucket)
    bucket.strip()
    bucket.add(uuid.uuid4().bytes, 31, 1, Decimal("0.25"))
    assert bucket.slot_sums() == _fresh_sums(bucket)
    assert bucket.slot_sums()[2][12] == Decimal("0.75")


def _store() -> KeyStateStore:
    return KeyStateStore(StateTables(hours={}, keys={}),  # type: ignore[arg-type]
                         allowed_lateness=timedelta(hours=1))


def _hours(store: KeyStateStore, key: str, start: datetime, hours: int) -> list[Volume]:
    return [store.volume(0, key, start + timedelta(hours=h), start + timedelta(hours=h + 1))
            for h in range(hours)]


def test_counting_across_hours_days_late_events_and_keys() -> None:
    store = _store()
    base = datetime(2026, 3, 1, 22, 50, tzinfo=UTC)
    repeated = uuid.uuid4().bytes
    steps = [  # (key, minutes after base, id)
        ("a", 0, uuid.uuid4().bytes), ("a", 5, repeated),
        ("a", 12, uuid.uuid4().bytes),  # 23:02, the next hour
        ("a", 71, uuid.uuid4().bytes),  # 00:01, the next day
        ("a", 9, uuid.uuid4().bytes),  # late: back in 22:xx
        ("a", 72, repeated),  # the same id in another hour: counted there too
        ("b", 72, uuid.uuid4().bytes),  # another key, the same hour
        ("a", 73, uuid.uuid4().bytes),
    ]
    for key, minutes, event_id in steps:
        assert store.count(0, key, event_id, base + timedelta(minutes=minutes), 10, Decimal(1))
    assert not store.count(0, "a", repeated, base + timedelta(minutes=6), 10, Decimal(1))
    start = datetime(2026, 3, 1, 22, tzinfo=UTC)
    assert [v.requests for v in _hours(store, "a", start, 3)] == [3, 1, 3]
    assert [v.requests for v in _hours(store, "b", start, 3)] == [0, 0, 1]
    store.flush()  # written, then read back from the tables in a new batch
    assert store.count(0, "a", uuid.uuid4().bytes, base + timedelta(minutes=74), 1, None)
    assert [v.requests for v in _hours(store, "a", start, 3)] == [3, 1, 4]
    store.reset(abandoned=True)  # the batch is abandoned: its count is gone
    assert [v.requests for v in _hours(store, "a", start, 3)] == [3, 1, 3]
    assert store.count(0, "a", uuid.uuid4().bytes, base + timedelta(minutes=75), 1, None)
    assert [v.requests for v in _hours(store, "a", start, 3)] == [3, 1, 4]


def test_windows_read_together_equal_windows_read_alone() -> None:
    def filled() -> KeyStateStore:
        store = _store()
        base = datetime(2026, 3, 1, 20, tzinfo=UTC)
        for minute in (1, 7, 33, 64, 65, 128, 179, 241):  # 20:01 .. 22:59, 00:01: none at 23:xx
            store.count(0, "a", uuid.uuid4().bytes, base + timedelta(minutes=minute), minute,
                        Decimal(minute) / 1000)
        return store

    end = datetime(2026, 3, 2, 0, 5, tzinfo=UTC)
    starts = [end - timedelta(minutes=m) for m in (15, 60, 180, 240, 5)]
    for watermark in (end, end + timedelta(hours=3)):  # windows still open, then closed (cached)
        together = filled()
        assert together.window_volumes(0, "a", starts, end, watermark) == [
            filled().window_volume(0, "a", start, end, watermark) for start in starts]
        again = together.window_volumes(0, "a", starts, end, watermark)
        assert [volume.requests for volume in again] == [1, 1, 4, 7, 1]
