"""The closed days' cumulative sums (`KeyStateStore.day_window_volumes`) give the figures the
hour-by-hour walk (`window_volumes`) gives, down to the Decimal exponent of the cost (which shows
in an alert's history text): inside a day, across midnight, over stripped buckets, and after a
late event is counted into an hour of a day whose sums were cached."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from pipelines.rollups.state import HourBucket, KeyStateStore
from pipelines.rollups.tables import StateTables
from pipelines.rollups.volume import Volume

DAY0 = datetime(2026, 3, 1, tzinfo=UTC)
WATERMARK = DAY0 + timedelta(days=6)  # days 0-4 are closed
# costs of different exponents, and unpriced events: a difference of day sums gets the smallest
# exponent of the day so far, the hour-by-hour sum only that of its own hours
COSTS = (Decimal("0.5"), Decimal("0.25"), Decimal("0.000001"), Decimal(1), None,
         Decimal("0.10"), Decimal("3E+1"))
STARTS = [timedelta(minutes=m) for m in (-180, -15, 0, 5, 55, 60, 115)]
ENDS = [timedelta(minutes=m) for m in (120, 180, 600, 1435, 1440)]


def _store(tables: StateTables | None = None) -> KeyStateStore:
    return KeyStateStore(tables or StateTables(hours={}, keys={}),  # type: ignore[arg-type]
                         allowed_lateness=timedelta(hours=1))


def _filled() -> StateTables:
    """Five days of one key's events at random minutes, the hours of day 1 stripped."""
    rng = random.Random(5)
    store = _store()
    for _ in range(600):
        at = DAY0 + timedelta(minutes=rng.randrange(5 * 24 * 60))
        if at.hour in (3, 4, 17):
            continue  # hours without a bucket
        store.count(0, "a", uuid.UUID(int=rng.getrandbits(128)), at, rng.randrange(100),
                    rng.choice(COSTS))
    store.flush()
    tables = store.tables
    for key in list(tables.hours):
        if key.decode().rsplit("|", 1)[1].startswith("2026-03-02"):
            bucket = HourBucket.decode(tables.hours[key])
            bucket.strip()
            tables.hours[key] = bucket.encode()
    return tables


def _exact(volumes: list[list[Volume]]) -> list[list[tuple[int, int, str]]]:
    """The figures with the cost as text (its exponent counts)."""
    return [[(v.requests, v.tokens, str(v.cost_usd)) for v in day] for day in volumes]


def _walked(store: KeyStateStore, days: list[datetime], end: timedelta,
            watermark: datetime = WATERMARK) -> list[list[tuple[int, int, str]]]:
    return _exact([store.window_volumes(0, "a", [day + start for start in STARTS], day + end,
                                        watermark) for day in days])


def test_day_sums_give_the_hour_by_hour_figures() -> None:
    tables = _filled()
    days = [DAY0 + timedelta(days=d) for d in (1, 2, 3, 4)]
    store = _store(tables)
    rescaled = 0
    for end in ENDS:
        from_days = _exact(store.day_window_volumes(0, "a", days, STARTS, end, WATERMARK))
        walked = _walked(_store(tables), days, end)
        assert from_days == walked, end
        assert store._closed_day_sums  # the day path was taken
        rescaled += sum(  # windows whose exponent is not that of the day's sum at their end
            Decimal(cost).as_tuple().exponent
            != store._closed_day_sums[(0, "a", day)].exponent[end // timedelta(minutes=5)]
            for day, windows in zip(days, walked, strict=True) for *_, cost in windows)
    assert rescaled  # some windows' exponents differ from the plain difference's


def test_a_day_not_closed_is_walked_hour_by_hour() -> None:
    tables = _filled()
    store = _store(tables)
    watermark = DAY0 + timedelta(days=5, minutes=30)  # day 4 is open (lateness 1 h)
    days = [DAY0 + timedelta(days=d) for d in (3, 4)]
    end = timedelta(hours=3)
    assert _exact(store.day_window_volumes(0, "a", days, STARTS, end, watermark)) == \
        _walked(_store(tables), days, end, watermark)
    assert (0, "a", DAY0 + timedelta(days=4)) not in store._closed_day_sums


def test_a_late_event_into_a_cached_day_is_counted() -> None:
    tables = _filled()
    store = _store(tables)
    days = [DAY0 + timedelta(days=2), DAY0 + timedelta(days=3)]
    end = timedelta(hours=2)
    store.day_window_volumes(0, "a", days, STARTS, end, WATERMARK)  # caches days 1-3
    late = DAY0 + timedelta(days=2, minutes=50)  # in the windows ending at 02:00 of day 2
    early = DAY0 + timedelta(days=2, hours=23, minutes=10)  # day 2 late, before day 3's windows
    assert store.count(0, "a", uuid.uuid4(), late, 7, Decimal("0.0003"))
    assert store.count(0, "a", uuid.uuid4(), early, 9, Decimal(2))
    again = _exact(store.day_window_volumes(0, "a", days, STARTS, end, WATERMARK))
    assert again == _walked(store, days, end)
    store.flush()
    assert again == _walked(_store(tables), days, end)
