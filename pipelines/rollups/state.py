"""Per-key state documents and their store over the faust tables.

Exactness under redelivery: counters and the ids of the events counted in them live in ONE table
value (`HourBucket`: a key-hour, or a part of a busy one, see PART_IDS), written as one changelog
record. After a SIGKILL either that record reached the changelog (then the recovered bucket already
lists the redelivered event ids and counting them again is a no-op) or it did not (then the count
was lost with it and counting again is right). The bucket is written only in the after-store step,
so an id is never marked seen before its row is in ClickHouse. Everything else (`KeyRecord`:
watermark, models seen, alert state) is idempotent to re-apply. Day, month and 7-day figures are
sums of hour buckets; the seasonal spike baseline reads 5-minute-aligned windows of past days
(`window_volume`), which stay exact after the per-minute detail is coarsened to 5-minute slots
(`HourBucket.strip`).
"""

from __future__ import annotations

import base64
import functools
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pipelines.rollups.tables import StateTables
from pipelines.rollups.volume import ZERO, Volume

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
SEEN_IDS_DAYS = 8  # ids are kept for the 7-day window plus a day; counters for the retention
SLOT_MINUTES = 5  # the spike rule's event-time grid; stripped buckets keep counters per slot
_CLOSED_CACHE_LIMIT = 200_000  # closed hours' slot sums kept per process (a bounded cache)
# closed days' cumulative sums kept per process (a bounded cache: 289 entries each, so fewer;
# a 28-day lookback of about 180 keys)
_CLOSED_DAY_SUMS_LIMIT = 5_000
_DAY_SLOTS = 24 * 60 // SLOT_MINUTES
_SLOT = timedelta(minutes=SLOT_MINUTES)
_UNREAD: Any = object()  # not in a cache (whose values may be None)
# A key-hour's counted events go into parts of at most PART_IDS ids, each part its own table
# value holding the counters of exactly the events it counted, so a changelog record stays far
# under Kafka's default 1 MB message limit however busy the key (an id takes ~21 bytes in a
# record: one record per hour failed the worker at ~47,000 events in a key-hour, ~13 a second).
# Part 0 is the hour's key, part n > 0 `<hour key>#<n>`; a part is created only once the one
# before it is full, and the parts of a batch are written in order, so the parts in the tables
# are always 0..n without a gap (a crash loses a suffix of a changelog partition, never a middle).
PART_IDS = 20_000


def hour_start(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def day_start(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def month_start(at: datetime) -> datetime:
    return day_start(at).replace(day=1)


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def _parse(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@dataclass
class HourBucket:
    """One key's counters for one UTC hour, per minute, with the ids of the events counted."""

    requests: int = 0
    tokens: int = 0
    cost_usd: Decimal = ZERO
    unpriced: int = 0
    # minute of the hour -> [requests, tokens, cost]
    minutes: dict[int, list[Any]] = field(default_factory=dict)
    seen: set[bytes] = field(default_factory=set)
    # `slot_sums()` of the counters as they are (None: not computed since the last change): the
    # spike rule reads the open hours' sums once per window per 5-minute point, so a sparse key
    # would otherwise re-sum the same hour for every event
    _sums: tuple[tuple[Any, ...], ...] | None = field(
        default=None, init=False, repr=False, compare=False)

    def add(self, event_id: uuid.UUID | bytes, minute: int, tokens: int,
            cost: Decimal | None) -> bool:
        """Count one event (its id as a UUID or its 16 bytes); False (and nothing changes) when
        its id was counted already."""
        raw = event_id if type(event_id) is bytes else event_id.bytes  # type: ignore[union-attr]
        if raw in self.seen:
            return False
        self.seen.add(raw)
        self._sums = None
        self.requests += 1
        self.tokens += tokens
        slot = self.minutes.setdefault(minute, [0, 0, ZERO])
        slot[0] += 1
        slot[1] += tokens
        if cost is None:
            self.unpriced += 1
        else:
            self.cost_usd += cost
            slot[2] += cost
        return True

    def counted(self, event_id: uuid.UUID | bytes) -> bool:
        return (event_id if type(event_id) is bytes else event_id.bytes) in self.seen  # type: ignore[union-attr]

    @property
    def volume(self) -> Volume:
        return Volume(self.requests, self.tokens, self.cost_usd)

    def minutes_volume(self, first: int, last: int) -> Volume:
        """The volume of minutes first..last inclusive."""
        total = Volume()
        for minute, (requests, tokens, cost) in self.minutes.items():
            if first <= minute <= last:
                total = total + Volume(requests, tokens, cost)
        return total

    def strip(self) -> None:
        """Drop the seen ids once the hour left the 7-day window, and coarsen the per-minute
        counters to 5-minute slots (keyed by their first minute): every 5-minute-aligned window
        the spike baseline reads keeps its exact volume for the whole retention."""
        slots: dict[int, list[Any]] = {}
        for minute, (requests, tokens, cost) in self.minutes.items():
            slot = slots.setdefault(minute - minute % SLOT_MINUTES, [0, 0, ZERO])
            slot[0] += requests
            slot[1] += tokens
            slot[2] += cost
        self.minutes = slots
        self._sums = None
        self.seen.clear()

    def slot_sums(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[Decimal, ...]]:
        """Cumulative (requests, tokens, cost) at each 5-minute boundary of the hour: entry i is
        the volume of minutes [0, 5 * i), so entry 12 is the whole hour."""
        if self._sums is not None:
            return self._sums  # type: ignore[return-value]
        per_slot: list[list[Any]] = [[0, 0, ZERO] for _ in range(60 // SLOT_MINUTES)]
        for minute, (requests, tokens, cost) in self.minutes.items():
            slot = per_slot[minute // SLOT_MINUTES]
            slot[0] += requests
            slot[1] += tokens
            slot[2] += cost
        requests_at, tokens_at, cost_at = [0], [0], [ZERO]
        for requests, tokens, cost in per_slot:
            requests_at.append(requests_at[-1] + requests)
            tokens_at.append(tokens_at[-1] + tokens)
            cost_at.append(cost_at[-1] + cost)
        self._sums = tuple(requests_at), tuple(tokens_at), tuple(cost_at)
        return self._sums  # type: ignore[return-value]

    def encode(self) -> bytes:
        return json.dumps({
            "r": self.requests, "t": self.tokens, "c": str(self.cost_usd), "u": self.unpriced,
            "m": {str(m): [r, t, str(c)] for m, (r, t, c) in self.minutes.items()},
            "ids": base64.b64encode(b"".join(sorted(self.seen))).decode(),
        }, separators=(",", ":")).encode()

    @classmethod
    def merged(cls, parts: Sequence[HourBucket]) -> HourBucket:
        """One bucket with the counters and ids of `parts` (an hour's parts, see PART_IDS)."""
        total = cls()
        for part in parts:
            total.requests += part.requests
            total.tokens += part.tokens
            total.cost_usd += part.cost_usd
            total.unpriced += part.unpriced
            for minute, (requests, tokens, cost) in part.minutes.items():
                slot = total.minutes.setdefault(minute, [0, 0, ZERO])
                slot[0] += requests
                slot[1] += tokens
                slot[2] += cost
            total.seen |= part.seen
        return total

    @classmethod
    def decode(cls, raw: bytes) -> HourBucket:
        doc = json.loads(raw)
        ids = base64.b64decode(doc["ids"])
        return cls(
            requests=doc["r"], tokens=doc["t"], cost_usd=Decimal(doc["c"]), unpriced=doc["u"],
            minutes={int(m): [r, t, Decimal(c)] for m, (r, t, c) in doc["m"].items()},
            seen={ids[i:i + 16] for i in range(0, len(ids), 16)},
        )


@dataclass
class KeyRecord:
    """Idempotent per-key state: event-time watermark, models seen and the state of its alerts."""

    first_seen: datetime | None = None
    watermark: datetime | None = None
    models: dict[str, str] = field(default_factory=dict)  # model -> first use (ISO event time)
    open_alerts: dict[str, dict[str, str]] = field(default_factory=dict)  # slot -> alert facts
    resolved_at: dict[str, str] = field(default_factory=dict)  # slot -> last resolution
    fired: dict[str, list[int]] = field(default_factory=dict)  # budget period -> thresholds
    baseline_day: str = ""
    tags: dict[str, str] = field(default_factory=dict)  # latest scope and tags, for alerts
    spike_episode: dict[str, str] = field(default_factory=dict)  # {"day", "id"}: first spike
    spike_point: str = ""  # the spike rule's current 5-minute event-time point (ISO)

    def observe(self, at: datetime) -> None:
        self.first_seen = min(self.first_seen, at) if self.first_seen else at
        self.watermark = max(self.watermark, at) if self.watermark else at

    def encode(self) -> bytes:
        return json.dumps({
            "first": _iso(self.first_seen), "wm": _iso(self.watermark), "models": self.models,
            "open": self.open_alerts, "resolved": self.resolved_at, "fired": self.fired,
            "baseline_day": self.baseline_day, "tags": self.tags, "episode": self.spike_episode,
            "point": self.spike_point,
        }, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> KeyRecord:
        doc = json.loads(raw)
        return cls(
            first_seen=_parse(doc["first"]), watermark=_parse(doc["wm"]), models=doc["models"],
            open_alerts=doc["open"], resolved_at=doc["resolved"], fired=doc["fired"],
            baseline_day=doc["baseline_day"], tags=doc.get("tags", {}),
            spike_episode=doc.get("episode", {}), spike_point=doc.get("point", ""),
        )


@functools.lru_cache(maxsize=65536)  # formatting the hour is a strftime, once per event
@functools.cache
def _unit(exponent: int) -> Decimal:
    return Decimal((0, (1,), exponent))


@dataclass(frozen=True, slots=True)
class _DaySums:
    """A closed UTC day's cumulative 5-minute sums: entry i of `requests`, `tokens` and `cost`
    is the volume of the day's first 5 * i minutes, so the spike rule's history window inside
    the day is one subtraction instead of a walk over its hours.

    The value is the same as hour by hour, its Decimal exponent need not be: summed hour by hour
    a window's cost gets the smallest exponent of its hours' sums from each hour's start, a
    difference of day sums also that of costs earlier in the day, and `str()` of a history
    figure shows it (the alert's history text). So the exponents are kept too: `exponent[i]`
    is `cost[i]`'s, `hour_exponent_at[i]` that of the hour's own sum up to entry i (0 where
    the hour has none) and `hour_exponent[h]` that of hour h whole."""

    requests: tuple[int, ...]
    tokens: tuple[int, ...]
    cost: tuple[Decimal, ...]
    exponent: tuple[int, ...]
    hour_exponent_at: tuple[int, ...]
    hour_exponent: tuple[int, ...]

    def exponent_between(self, first: int, last: int) -> int:
        """The exponent of the cost of entries first..last (first < last) summed hour by hour:
        the hours before the one `last` ends in count whole, that one up to `last`."""
        low = self.hour_exponent_at[last]
        whole = self.hour_exponent[first // 12:(last - 1) // 12]
        return min(low, *whole) if whole else low


def _hour_key(partition: int, wrapped_key_id: str, hour: datetime) -> bytes:
    return f"{partition}|{wrapped_key_id}|{hour:%Y-%m-%dT%H}".encode()


def _part_key(hour_key: bytes, part: int) -> bytes:
    return hour_key if part == 0 else b"%s#%d" % (hour_key, part)


def _record_key(partition: int, wrapped_key_id: str) -> bytes:
    return f"{partition}|{wrapped_key_id}".encode()


class KeyStateStore:
    """Reads and writes the state tables through a per-batch cache; `flush()` writes it back.

    Writes reach the tables only in `flush()`: hour buckets first, key records after.
    """

    def __init__(self, tables: StateTables, allowed_lateness: timedelta,
                 retention: timedelta = timedelta(days=35)) -> None:
        self.tables = tables
        self.allowed_lateness = allowed_lateness
        self.retention = retention
        # per hour key: the hour (all its parts merged; part 0 itself while it is the only one)
        self._hours: dict[bytes, HourBucket | None] = {}
        self._parts: dict[bytes, list[HourBucket]] = {}  # per hour key: its parts, in order
        self._records: dict[bytes, KeyRecord] = {}
        self._dirty_hours: dict[bytes, int] = {}  # per hour key: the first part changed
        self._dirty_records: set[bytes] = set()
        self._closed_days: dict[tuple[int, str, datetime], Volume] = {}
        self._closed_hours: dict[tuple[int, str, datetime], tuple[tuple[Any, ...], ...]] = {}
        self._closed_windows: dict[tuple[int, str, datetime, datetime], Volume] = {}
        self._closed_day_sums: dict[tuple[int, str, datetime], _DaySums] = {}
        self.clock: datetime | None = None  # newest event time this process has counted
        # the hour `count` wrote last: (partition, key, hour, next hour, bucket key), reused
        # while a key's events stay in that hour (no hour_start or key per event)
        self._counting: tuple[int, str, datetime, datetime, bytes] | None = None

    # -- reading -------------------------------------------------------------------------
    def record(self, partition: int, wrapped_key_id: str) -> KeyRecord:
        key = _record_key(partition, wrapped_key_id)
        if key not in self._records:
            raw = self.tables.keys.get(key)
            self._records[key] = KeyRecord.decode(raw) if raw else KeyRecord()
        return self._records[key]

    def bucket(self, partition: int, wrapped_key_id: str, hour: datetime) -> HourBucket | None:
        key = _hour_key(partition, wrapped_key_id, hour)
        if key not in self._hours:
            self._load(key)
        return self._hours[key]

    def _load(self, key: bytes) -> None:
        parts: list[HourBucket] = []
        while raw := self.tables.hours.get(_part_key(key, len(parts))):
            parts.append(HourBucket.decode(raw))
        self._parts[key] = parts
        self._hours[key] = (None if not parts else parts[0] if len(parts) == 1
                            else HourBucket.merged(parts))

    def volume(self, partition: int, wrapped_key_id: str, start: datetime, end: datetime) -> Volume:
        """The counted volume of the whole hours in [start, end)."""
        total = Volume()
        hour = hour_start(start)
        while hour < end:
            found = self.bucket(partition, wrapped_key_id, hour)
            if found is not None:
                total = total + found.volume
            hour += HOUR
        return total

    def day_volume(self, partition: int, wrapped_key_id: str, day: datetime,
                   watermark: datetime) -> Volume:
        """A UTC day's volume; days no late event can reach any more are cached."""
        cache_key = (partition, wrapped_key_id, day)
        if cache_key in self._closed_days:
            return self._closed_days[cache_key]
        total = self.volume(partition, wrapped_key_id, day, day + DAY)
        if day + DAY + self.allowed_lateness < watermark:
            if len(self._closed_days) >= _CLOSED_CACHE_LIMIT:
                self._closed_days.clear()
            self._closed_days[cache_key] = total
        return total

    def month_volume(self, partition: int, wrapped_key_id: str, now: datetime) -> Volume:
        total = Volume()
        day = month_start(now)
        while day <= now:
            total = total + self.day_volume(partition, wrapped_key_id, day, now)
            day += DAY
        return total

    def trailing_hour(self, partition: int, wrapped_key_id: str, now: datetime) -> Volume:
        """The volume of the 60 minutes ending with the minute of `now`."""
        current = hour_start(now)
        total = Volume()
        this_hour = self.bucket(partition, wrapped_key_id, current)
        if this_hour is not None:
            total = total + this_hour.minutes_volume(0, now.minute)
        previous = self.bucket(partition, wrapped_key_id, current - HOUR)
        if previous is not None:
            total = total + previous.minutes_volume(now.minute + 1, 59)
        return total

    def _slot_sums(self, partition: int, wrapped_key_id: str, hour: datetime,
                   watermark: datetime) -> tuple[tuple[Any, ...], ...] | None:
        """An hour's cumulative 5-minute sums; hours no late event can reach are cached."""
        cache_key = (partition, wrapped_key_id, hour)
        if cache_key in self._closed_hours:
            return self._closed_hours[cache_key]
        found = self.bucket(partition, wrapped_key_id, hour)
        sums = found.slot_sums() if found is not None and found.requests else None
        if hour + HOUR + self.allowed_lateness < watermark:
            if len(self._closed_hours) >= _CLOSED_CACHE_LIMIT:
                self._closed_hours.clear()
            self._closed_hours[cache_key] = sums
        return sums

    def _day_sums(self, partition: int, wrapped_key_id: str, day: datetime,
                  watermark: datetime) -> _DaySums:
        """A closed day's cumulative 5-minute sums (the caller checked it is closed), from its
        hours' `_slot_sums` (so the same figures), cached until an event is counted in it."""
        cache_key = (partition, wrapped_key_id, day)
        found = self._closed_day_sums.get(cache_key)
        if found is not None:
            return found
        requests_at, tokens_at, cost_at = [0], [0], [ZERO]
        hour_exponent_at, hour_exponent = [0], []
        closed = self._closed_hours
        hour = day
        for _ in range(24):
            sums = closed.get((partition, wrapped_key_id, hour), _UNREAD)
            if sums is _UNREAD:
                sums = self._slot_sums(partition, wrapped_key_id, hour, watermark)
            requests, tokens, cost = requests_at[-1], tokens_at[-1], cost_at[-1]
            if sums is None:
                requests_at.extend([requests] * 12)
                tokens_at.extend([tokens] * 12)
                cost_at.extend([cost] * 12)
                hour_exponent_at.extend([0] * 12)
                hour_exponent.append(0)
            else:
                for index in range(1, 13):
                    requests_at.append(requests + sums[0][index])
                    tokens_at.append(tokens + sums[1][index])
                    cost_at.append(cost + sums[2][index])
                    hour_exponent_at.append(int(sums[2][index].as_tuple().exponent))
                hour_exponent.append(hour_exponent_at[-1])
            hour += HOUR
        found = _DaySums(tuple(requests_at), tuple(tokens_at), tuple(cost_at),
                         tuple(int(value.as_tuple().exponent) for value in cost_at),
                         tuple(hour_exponent_at), tuple(hour_exponent))
        if len(self._closed_day_sums) >= _CLOSED_DAY_SUMS_LIMIT:
            self._closed_day_sums.clear()
        self._closed_day_sums[cache_key] = found
        return found

    def day_window_volumes(self, partition: int, wrapped_key_id: str, days: Sequence[datetime],
                           starts: Sequence[timedelta], end: timedelta,
                           watermark: datetime) -> list[list[Volume]]:
        """For each of `days`, `window_volumes` of the windows [day + start, day + end): the
        spike rule's history windows, which have the same place in each past day. In a closed
        day (and the closed day before, for a window across midnight) a window is a difference
        of the day's cumulative sums (`_DaySums`), not a walk over its hours; elsewhere (a day
        not closed yet, a window off the 5-minute grid or longer than a day) it is summed hour
        by hour. The figures are the same either way."""
        last = end // _SLOT
        firsts = [start // _SLOT for start in starts]
        on_days = (end % _SLOT == timedelta(0) and 0 < last <= _DAY_SLOTS
                   and all(start % _SLOT == timedelta(0) for start in starts)
                   and all(-_DAY_SLOTS <= first < last for first in firsts))
        closed_before = watermark - self.allowed_lateness - DAY  # day < this: the day is closed
        cached = self._closed_day_sums
        volumes: list[list[Volume]] = []
        for day in days:
            if not on_days or day >= closed_before:
                volumes.append(self.window_volumes(
                    partition, wrapped_key_id, [day + start for start in starts], day + end,
                    watermark))
                continue
            sums = (cached.get((partition, wrapped_key_id, day))
                    or self._day_sums(partition, wrapped_key_id, day, watermark))
            requests_end, tokens_end = sums.requests[last], sums.tokens[last]
            cost_end, exponent_end = sums.cost[last], sums.exponent[last]
            # the cost's exponent is already the hour-by-hour one when the hour `end` falls in
            # has the day's smallest so far (the whole hours between have none smaller)
            rescale = sums.hour_exponent_at[last] != exponent_end
            windows = []
            for first in firsts:
                if first >= 0:
                    cost = cost_end - sums.cost[first]
                    if rescale:
                        exponent = sums.exponent_between(first, last)
                        if exponent != exponent_end:
                            cost = cost.quantize(_unit(exponent))  # exact: the same value
                    windows.append(Volume(requests_end - sums.requests[first],
                                          tokens_end - sums.tokens[first], cost))
                    continue
                # across midnight: the rest of the day before, then this day up to `end`
                before = (cached.get((partition, wrapped_key_id, day - DAY))
                          or self._day_sums(partition, wrapped_key_id, day - DAY, watermark))
                first += _DAY_SLOTS
                cost = before.cost[-1] - before.cost[first] + cost_end
                exponent = min(before.exponent_between(first, _DAY_SLOTS),
                               sums.exponent_between(0, last))
                if exponent != min(before.exponent[-1], exponent_end):
                    cost = cost.quantize(_unit(exponent))
                windows.append(Volume(before.requests[-1] - before.requests[first] + requests_end,
                                      before.tokens[-1] - before.tokens[first] + tokens_end,
                                      cost))
            volumes.append(windows)
        return volumes

    def window_volume(self, partition: int, wrapped_key_id: str, start: datetime,
                      end: datetime, watermark: datetime) -> Volume:
        """The counted volume of [start, end), both on the 5-minute grid (exact whether or not
        the buckets were stripped). Windows no late event can reach any more are cached."""
        return self.window_volumes(partition, wrapped_key_id, (start,), end, watermark)[0]

    def window_volumes(self, partition: int, wrapped_key_id: str, starts: Sequence[datetime],
                       end: datetime, watermark: datetime) -> list[Volume]:
        """`window_volume` of [start, end) for each of `starts`, each hour read once for all
        of them (the spike rule's windows of one point share their end). Each window sums its
        own hours in the same order as alone, so its figures are the same."""
        closed_windows = self._closed_windows
        volumes: list[Volume | None] = [
            closed_windows.get((partition, wrapped_key_id, start, end)) for start in starts]
        todo = [index for index, found in enumerate(volumes) if found is None]
        if not todo:
            return volumes  # type: ignore[return-value]
        totals = {index: [0, 0, ZERO] for index in todo}
        closed = self._closed_hours  # read here first: the spike rule reads ~30 windows a point
        hour = hour_start(min(starts[index] for index in todo))
        while hour < end:
            next_hour = hour + HOUR
            sums = closed.get((partition, wrapped_key_id, hour), _UNREAD)
            if sums is _UNREAD:
                sums = self._slot_sums(partition, wrapped_key_id, hour, watermark)
            if sums is not None:
                last = 12 if end >= next_hour else (end - hour) // _SLOT
                for index, total in totals.items():
                    start = starts[index]
                    if start >= next_hour:
                        continue  # this window begins in a later hour
                    first = 0 if start <= hour else (start - hour) // _SLOT
                    total[0] += sums[0][last] - sums[0][first]
                    total[1] += sums[1][last] - sums[1][first]
                    total[2] += sums[2][last] - sums[2][first]
            hour = next_hour
        for index, (requests, tokens, cost) in totals.items():
            volume = volumes[index] = Volume(requests, tokens, cost)
            if end + self.allowed_lateness < watermark:
                if len(closed_windows) >= _CLOSED_CACHE_LIMIT:
                    closed_windows.clear()
                closed_windows[(partition, wrapped_key_id, starts[index], end)] = volume
        return volumes  # type: ignore[return-value]

    # -- writing -------------------------------------------------------------------------
    def count(self, partition: int, wrapped_key_id: str, event_id: uuid.UUID | bytes,
              at: datetime, tokens: int, cost: Decimal | None) -> bool:
        """Count one event in its own hour (event time); False if it was counted before."""
        counting = self._counting
        if (counting is not None and counting[2] <= at < counting[3]
                and counting[1] == wrapped_key_id and counting[0] == partition):
            hour, key = counting[2], counting[4]
            found = self._hours[key]
            assert found is not None
        else:
            hour = hour_start(at)
            key = _hour_key(partition, wrapped_key_id, hour)
            found = self.bucket(partition, wrapped_key_id, hour)
            if found is None:
                found = self._hours[key] = HourBucket()
                self._parts[key] = [found]
            self._counting = (partition, wrapped_key_id, hour, hour + HOUR, key)
        parts = self._parts[key]
        last = parts[-1]  # where a new event's id goes; `found` itself while it is the only part
        if len(last.seen) >= PART_IDS and not found.counted(event_id):  # full: a new part
            if last is found:  # the hour gets its own object, the parts merged
                found = self._hours[key] = HourBucket.merged(parts)
            last = HourBucket()
            parts.append(last)
        if not found.add(event_id, at.minute, tokens, cost):
            return False
        if last is not found:
            last.add(event_id, at.minute, tokens, cost)
        if key not in self._dirty_hours:  # the first count in this hour in this batch
            self._dirty_hours[key] = len(parts) - 1
            day = hour.replace(hour=0)
            self._closed_days.pop((partition, wrapped_key_id, day), None)
            self._closed_day_sums.pop((partition, wrapped_key_id, day), None)
            self._closed_hours.pop((partition, wrapped_key_id, hour), None)
        self.clock = max(self.clock, at) if self.clock else at
        return True

    def touch(self, partition: int, wrapped_key_id: str) -> None:
        self._dirty_records.add(_record_key(partition, wrapped_key_id))

    def flush(self) -> None:
        """Write dirty buckets, then dirty key records, to the tables (and so the changelogs)."""
        for key in sorted(self._dirty_hours):
            parts = self._parts[key]
            for index in range(self._dirty_hours[key], len(parts)):  # in order (see PART_IDS)
                self.tables.hours[_part_key(key, index)] = parts[index].encode()
        for key in sorted(self._dirty_records):
            self.tables.keys[key] = self._records[key].encode()
        self.reset()

    def reset(self, abandoned: bool = False) -> None:
        """Forget the batch cache (after a flush, or when a batch is abandoned: then also the
        closed days and hours derived from counts that never reached the tables)."""
        if abandoned:
            self._closed_days.clear()
            self._closed_hours.clear()
            self._closed_windows.clear()
            self._closed_day_sums.clear()
        self._hours.clear()
        self._parts.clear()
        self._counting = None
        self._records.clear()
        self._dirty_hours.clear()
        self._dirty_records.clear()

    def expire(self, partitions: set[int]) -> tuple[int, int]:
        """Delete buckets past the retention and strip ids from buckets past 8 days, for the
        given (actively assigned) partitions. Returns (deleted, stripped)."""
        if self.clock is None:
            return 0, 0
        drop_before = f"{hour_start(self.clock - self.retention):%Y-%m-%dT%H}"
        strip_before = f"{hour_start(self.clock - timedelta(days=SEEN_IDS_DAYS)):%Y-%m-%dT%H}"
        deleted = stripped = 0
        for key in list(self.tables.hours.keys()):
            text = key.decode()
            partition, hour = text.split("|", 1)[0], text.rsplit("|", 1)[1]
            if int(partition) not in partitions:
                continue
            if hour < drop_before:
                del self.tables.hours[key]
                deleted += 1
            elif hour < strip_before:
                bucket = HourBucket.decode(self.tables.hours[key])
                if bucket.seen:
                    bucket.strip()
                    self.tables.hours[key] = bucket.encode()
                    stripped += 1
        return deleted, stripped
