"""A busy key-hour's counted ids are written in parts (`PART_IDS`), so no changelog record grows
past Kafka's message limit, and the hour stays exact: read back, redelivered, after a crash that
lost any suffix of a batch's writes, and after its ids are stripped."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pipelines.rollups.state as state_module
from pipelines.rollups.state import KeyStateStore
from pipelines.rollups.tables import StateTables
from pipelines.rollups.volume import Volume

HOUR = datetime(2026, 11, 30, 14, tzinfo=UTC)
KAFKA_MESSAGE_LIMIT = 1_000_000  # the producer's max_request_size and the broker's default


class LoggedTable(dict):  # type: ignore[type-arg]
    """A table that remembers the order of its writes (what its changelog would hold)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.writes: list[tuple[bytes, bytes]] = []

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.writes.append((key, value))
        super().__setitem__(key, value)


def _store(hours: dict[bytes, bytes] | None = None) -> KeyStateStore:
    tables = StateTables(hours=LoggedTable(hours or {}), keys={})  # type: ignore[arg-type]
    return KeyStateStore(tables, allowed_lateness=timedelta(hours=1))


def _events(count: int, seed: int) -> list[tuple[bytes, datetime, int, Decimal | None]]:
    rng = random.Random(seed)
    return [(uuid.UUID(int=rng.getrandbits(128)).bytes,
             HOUR + timedelta(seconds=rng.randrange(3600)), rng.randrange(1, 900),
             None if rng.random() < 0.05 else Decimal(rng.randrange(1, 10**6)) / 10**7)
            for _ in range(count)]


def _count(store: KeyStateStore, events: list[Any]) -> int:
    return sum(store.count(3, "wk_busy", *event) for event in events)


def _exact(events: list[Any]) -> Volume:
    return Volume(len(events), sum(e[2] for e in events),
                  sum((e[3] for e in events if e[3] is not None), Decimal(0)))


def test_fifty_thousand_events_in_one_key_hour_stay_under_the_message_limit_and_exact() -> None:
    events = _events(50_000, seed=1)
    store = _store()
    for start in range(0, len(events), 5_000):  # batches, each flushed
        assert _count(store, events[start:start + 5_000]) == 5_000
        store.flush()
    hours = store.tables.hours
    assert len(hours) == 3  # 20,000 + 20,000 + 10,000 ids
    assert max(len(value) for value in hours.values()) < KAFKA_MESSAGE_LIMIT // 2

    recovered = _store(dict(hours))
    assert recovered.volume(3, "wk_busy", HOUR, HOUR + timedelta(hours=1)) == _exact(events)
    bucket = recovered.bucket(3, "wk_busy", HOUR)
    assert bucket is not None and len(bucket.seen) == 50_000
    # redelivered, every event is a no-op; and counting goes on into the last part
    assert _count(recovered, events) == 0
    more = _events(100, seed=2)
    assert _count(recovered, more) == 100
    recovered.flush()
    again = _store(dict(recovered.tables.hours))
    assert again.volume(3, "wk_busy", HOUR, HOUR + timedelta(hours=1)) == _exact(events + more)


def test_a_crash_losing_any_suffix_of_a_batchs_writes_leaves_the_hour_exact(monkeypatch) -> None:
    monkeypatch.setattr(state_module, "PART_IDS", 40)
    before = _events(70, seed=3)  # two parts, the second not full
    batch = _events(90, seed=4)  # fills it and two more parts
    store = _store()
    _count(store, before)
    store.flush()
    committed = dict(store.tables.hours)
    store = _store(committed)
    _count(store, batch)
    store.flush()
    writes = store.tables.hours.writes
    assert [key.rsplit(b"|", 1)[1] for key, _ in writes] == [
        b"2026-11-30T14#1", b"2026-11-30T14#2", b"2026-11-30T14#3"]
    for kept in range(len(writes) + 1):  # the changelog kept the first `kept` writes
        survived = {**committed, **dict(writes[:kept])}
        restarted = _store(survived)
        _count(restarted, before + batch)  # the batch is redelivered (and `before` too: no-ops)
        restarted.flush()
        read = _store(dict(restarted.tables.hours))
        assert read.volume(3, "wk_busy", HOUR, HOUR + timedelta(hours=1)) == _exact(
            before + batch), kept


def test_stripping_an_hours_parts_keeps_its_figures(monkeypatch) -> None:
    monkeypatch.setattr(state_module, "PART_IDS", 40)
    events = _events(100, seed=5)
    store = _store()
    _count(store, events)
    store.flush()
    late = HOUR + timedelta(days=9)  # the hour is past the 8 days its ids are kept for
    store.count(3, "wk_busy", uuid.uuid4().bytes, late, 1, None)
    store.flush()
    deleted, stripped = store.expire({3})
    assert (deleted, stripped) == (0, 3)
    read = _store(dict(store.tables.hours))
    bucket = read.bucket(3, "wk_busy", HOUR)
    assert bucket is not None and not bucket.seen
    assert read.volume(3, "wk_busy", HOUR, HOUR + timedelta(hours=1)) == _exact(events)
