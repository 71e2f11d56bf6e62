"""`keywarden.compacted`: where a reader starts, where it stops, and how a follower resumes,
against an in-memory stand-in for aiokafka's consumer (the real broker: tests/integration)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError

from keywarden import compacted
from keywarden.compacted import TopicFollower, TopicReader
from keywarden.settings import load_settings

TOPIC = "usage.spend.v1"


class FakeConsumer:
    """A topic's partitions as lists of (key, value, timestamp_ms); `fail_after` records
    handed out, the next fetch raises as a lost connection does."""

    def __init__(self, log: dict[int, list[tuple[bytes, bytes | None, int]]],
                 fail_after: int | None = None) -> None:
        self.log, self.fail_after, self.handed = log, fail_after, 0
        self.positions: dict[TopicPartition, int] = {}
        self.subscribed = False

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def topics(self) -> set[str]:
        return {TOPIC}

    def subscribe(self, topics: list[str]) -> None:
        self.subscribed = True

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(TOPIC, p) for p in self.log} if self.subscribed else set()

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        for tp in partitions:
            self.positions[tp] = 0

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self.log[tp.partition]) for tp in partitions}

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    async def offsets_for_times(
        self, times: dict[TopicPartition, int]
    ) -> dict[TopicPartition, Any]:
        found = {}
        for tp, since in times.items():
            at = [i for i, (_, _, ts) in enumerate(self.log[tp.partition]) if ts >= since]
            found[tp] = SimpleNamespace(offset=at[0]) if at else None
        return found

    async def getmany(self, timeout_ms: int = 0) -> dict[TopicPartition, list[Any]]:
        if self.fail_after is not None and self.handed >= self.fail_after:
            raise KafkaConnectionError("connection to broker 1 lost")
        batches = {}
        for tp, at in self.positions.items():
            records = self.log[tp.partition][at:at + 2]  # two at a time: several polls
            if records:
                batches[tp] = [SimpleNamespace(key=k, value=v, offset=at + i)
                               for i, (k, v, _) in enumerate(records)]
                self.positions[tp] = at + len(records)
                self.handed += len(records)
        await asyncio.sleep(0)
        return batches


# One fixed "now" for the log's timestamps and the readers' `since`: the log is built when the
# module is imported, which can be many minutes before a test runs.
NOW = datetime.now(UTC)


def now_ms(minutes_ago: int) -> int:
    return int((NOW - timedelta(minutes=minutes_ago)).timestamp() * 1000)


LOG = {
    0: [(b"a", b"1", now_ms(60)), (b"b", b"2", now_ms(50)), (b"a", None, now_ms(1))],
    1: [(b"c", b"3", now_ms(40))],
}


def consumers(monkeypatch: pytest.MonkeyPatch, *made: FakeConsumer) -> list[FakeConsumer]:
    queue = list(made)
    monkeypatch.setattr(compacted, "make_consumer", lambda **_options: queue.pop(0))
    return list(made)


async def test_read_to_end_applies_every_record_tombstones_included_and_notes_where_it_stopped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumers(monkeypatch, FakeConsumer(LOG))
    seen: list[tuple[bytes | None, bytes | None]] = []
    async with TopicReader(TOPIC, load_settings()) as reader:
        assert await reader.read_to_end(lambda k, v: seen.append((k, v))) == 4
        assert reader.next_offsets == {0: 3, 1: 1}
    assert sorted(seen, key=str) == sorted([(b"a", b"1"), (b"b", b"2"), (b"a", None),
                                            (b"c", b"3")], key=str)


async def test_a_reader_since_a_time_starts_at_the_first_record_that_recent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumers(monkeypatch, FakeConsumer(LOG))
    seen: list[bytes | None] = []
    reader = TopicReader(TOPIC, load_settings())
    await reader.start(since=NOW - timedelta(minutes=45), must_exist=False)
    await reader.read_to_end(lambda _k, v: seen.append(v))
    await reader.stop()
    assert seen == [None, b"3"] or seen == [b"3", None]  # partition 0's old records skipped


async def test_a_follower_resumes_where_it_was_after_a_lost_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, second = consumers(monkeypatch, FakeConsumer(LOG, fail_after=3), FakeConsumer(LOG))
    monkeypatch.setattr(compacted, "ensure_topics", lambda *_a, **_kw: asyncio.sleep(0))
    applied: list[bytes | None] = []
    follower = TopicFollower(TOPIC, load_settings(), lambda _k, v: applied.append(v),
                             retry_s=0.01)
    async with follower:
        assert await follower.wait_ready(5)
    assert (first.handed, second.handed) == (3, 1)  # the second read only what was left
    assert sorted(applied, key=str) == sorted([b"1", b"2", None, b"3"], key=str)  # none twice
    assert follower.applied == 4
