"""The one reader of a whole Kafka topic without a consumer group (the key and admin registries,
spend, delivered alerts, the alerts tail a restarted emitter rereads): `TopicReader` reads from
the beginning (or a resume point, or a time) up to the end offsets of a moment; `TopicFollower`
keeps applying records in the background and says when it caught up; `read_to_end` reads once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition

from keywarden.background import BackgroundTask
from keywarden.kafka import KafkaUnavailable, ensure_topics, kafka_errors, make_consumer
from keywarden.settings import Settings
from schemas.topics import TOPICS, TopicSpec

log = logging.getLogger(__name__)

# Called with each record's key and value (None: no key, or a tombstone).
RecordHandler = Callable[[bytes | None, bytes | None], None]
EndOffsets = dict[TopicPartition, int]


def _specs(topic: str) -> list[TopicSpec]:
    """The topic's spec to create it with, when it is one of the project's topics."""
    return [spec for spec in TOPICS if spec.name == topic]


class TopicReader:
    """Every partition of `topic`, read by a consumer without a group.

    `start()` assigns all partitions and places each at `resume[partition]` when given, else at
    the first record at or after `since` when given, else at the beginning; `end_offsets()`
    notes where the topic ends now, `poll()` applies what arrived, `reached()` says whether the
    noted ends were passed. `next_offsets` is where each partition continues (for a resume).
    Errors leave as `KafkaUnavailable`.
    """

    def __init__(self, topic: str, settings: Settings, *, poll_ms: int = 200) -> None:
        self.topic = topic
        self._settings = settings
        self._poll_ms = poll_ms
        self._consumer: AIOKafkaConsumer | None = None
        self.next_offsets: dict[int, int] = {}

    async def start(
        self,
        timeout: float = 10.0,
        *,
        resume: Mapping[int, int] | None = None,
        since: datetime | None = None,
        must_exist: bool = True,
    ) -> None:
        """Open the consumer and place it; a topic that does not exist waits for its partitions
        until `timeout`, or is read as empty when `must_exist` is False."""
        if self._consumer is not None:
            return
        consumer = make_consumer(
            group_id=None,
            settings=self._settings,
            # The broker answers a fetch as soon as a record arrives; this only bounds how often
            # an idle topic is asked again (each fetch is a socket round trip on the loop).
            fetch_max_wait_ms=500,
            request_timeout_ms=10_000,
            retry_backoff_ms=200,
        )
        try:
            with kafka_errors(f"cannot read {self.topic}"):
                await asyncio.wait_for(consumer.start(), timeout)
                if must_exist or self.topic in await consumer.topics():
                    await self._assign_all(consumer, timeout)
                await self._place(consumer, resume or {}, since)
        except BaseException:
            with contextlib.suppress(Exception):
                await consumer.stop()
            raise
        self._consumer = consumer

    async def _assign_all(self, consumer: AIOKafkaConsumer, timeout: float) -> None:
        # Without a group, a subscription is assigned every partition as soon as the topic's
        # metadata arrives, and again whenever partitions are added.
        consumer.subscribe([self.topic])
        deadline = time.monotonic() + timeout
        polls = 0
        while not consumer.assignment():
            if time.monotonic() > deadline:
                raise KafkaUnavailable(f"topic {self.topic} has no partitions yet")
            polls += 1
            if polls % 10 == 0:
                # A topic created a moment ago is missing from the first metadata answer, and
                # aiokafka would otherwise ask again only after metadata_max_age_ms; subscribing
                # again (without a group) is its public way to ask now.
                consumer.subscribe([self.topic])
            await asyncio.sleep(0.02)

    async def _place(
        self, consumer: AIOKafkaConsumer, resume: Mapping[int, int], since: datetime | None
    ) -> None:
        assigned = sorted(consumer.assignment())
        starts: dict[TopicPartition, int] = {}
        if since is not None and assigned:
            since_ms = int(since.timestamp() * 1000)
            found = await consumer.offsets_for_times({tp: since_ms for tp in assigned})
            ends = await consumer.end_offsets(assigned)
            starts = {tp: ends[tp] if at is None else at.offset for tp, at in found.items()}
        for partition in assigned:
            if partition.partition in resume:
                consumer.seek(partition, resume[partition.partition])
            elif partition in starts:
                consumer.seek(partition, starts[partition])
            else:
                await consumer.seek_to_beginning(partition)

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):  # closing must not mask the error that got here
                await asyncio.wait_for(consumer.stop(), 5.0)

    async def __aenter__(self) -> TopicReader:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError(f"TopicReader({self.topic!r}) used before start()")
        return self._consumer

    async def end_offsets(self) -> EndOffsets:
        """Where each assigned partition ends now."""
        consumer = self._started()
        with kafka_errors(f"cannot read {self.topic}"):
            return dict(await consumer.end_offsets(sorted(consumer.assignment())))

    async def reached(self, ends: EndOffsets) -> bool:
        consumer = self._started()
        with kafka_errors(f"cannot read {self.topic}"):
            for partition, end in ends.items():
                if await consumer.position(partition) < end:
                    return False
        return True

    async def poll(self, handle: RecordHandler) -> int:
        """Apply the records that arrive within one poll; return how many."""
        consumer = self._started()
        with kafka_errors(f"cannot read {self.topic}"):
            batches = await consumer.getmany(timeout_ms=self._poll_ms)
        count = 0
        for partition, records in batches.items():
            for record in records:
                handle(record.key, record.value)
                self.next_offsets[partition.partition] = record.offset + 1
                count += 1
        return count

    async def read_to_end(self, handle: RecordHandler, timeout: float | None = None) -> int:
        """Apply every record up to where the topic ends now; return how many."""
        ends = await self.end_offsets()
        deadline = None if timeout is None else time.monotonic() + timeout
        count = 0
        while not await self.reached(ends):
            if deadline is not None and time.monotonic() > deadline:
                raise KafkaUnavailable(f"timed out reading {self.topic} to its end")
            count += await self.poll(handle)
        return count


async def read_to_end(
    topic: str, settings: Settings, handle: RecordHandler, timeout: float = 15.0
) -> int:
    """Apply every record now on `topic` to `handle`; return how many. Raises KafkaUnavailable."""
    await ensure_topics(settings, _specs(topic), timeout=timeout)
    async with TopicReader(topic, settings) as reader:
        return await reader.read_to_end(handle, timeout)


class TopicFollower(BackgroundTask):
    """Applies every record of `topic` to `handle`, from the beginning, until stopped; after a
    lost connection it resumes where it was.

    `ready` is set once the records present at start have been applied; `last_ok` is the
    monotonic time of the last successful poll (for staleness decisions). A record `handle`
    refuses with ValueError (pydantic's ValidationError included) is skipped with a warning.
    """

    def __init__(
        self,
        topic: str,
        settings: Settings,
        handle: RecordHandler,
        *,
        retry_s: float = 1.0,
        create: bool = True,
    ) -> None:
        self.topic = topic
        self._settings = settings
        self._handle = handle
        self._retry_s = retry_s
        self._create = create
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()
        self.last_ok: float | None = None
        self.applied = 0

    def _task_name(self) -> str:
        return f"follow-{self.topic}"

    async def wait_ready(self, timeout: float) -> bool:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.ready.wait(), timeout)
        return self.ready.is_set()

    async def _run(self) -> None:
        offsets: dict[int, int] = {}  # resume where we were after a reconnect
        while True:
            reader = TopicReader(self.topic, self._settings)
            try:
                if self._create:
                    await ensure_topics(self._settings, _specs(self.topic), timeout=10.0)
                await reader.start(10.0, resume=offsets)
                ends = await reader.end_offsets()
                while True:
                    await reader.poll(self._apply)
                    offsets.update(reader.next_offsets)
                    self.last_ok = time.monotonic()
                    if not self.ready.is_set() and await reader.reached(ends):
                        self.ready.set()
                        log.info("%s loaded: %d records", self.topic, self.applied)
            except KafkaUnavailable as error:
                log.warning("following %s: %s; retrying in %.1fs", self.topic, error, self._retry_s)
            finally:
                await reader.stop()
            await asyncio.sleep(self._retry_s)

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        try:
            self._handle(key, value)
            self.applied += 1
        except ValueError as error:  # pydantic ValidationError included: skip, say so, no payload
            log.warning("skipped an invalid record on %s: %s", self.topic, type(error).__name__)


__all__ = ["RecordHandler", "TopicFollower", "TopicReader", "read_to_end"]
