"""Reading a compacted topic from the beginning, without a consumer group, into in-memory state:
`TopicFollower` keeps applying records in the background (and says when it has caught up),
`read_to_end` reads once up to the current end (for the CLI). aiokafka errors stay in here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from keywarden.background import BackgroundTask
from keywarden.kafka import KafkaUnavailable, ensure_topics, make_consumer
from keywarden.settings import Settings
from schemas.topics import TOPICS

log = logging.getLogger(__name__)

RecordHandler = Callable[[bytes | None, bytes | None], None]


async def _open(
    topic: str, settings: Settings, timeout: float
) -> tuple[AIOKafkaConsumer, list[TopicPartition]]:
    """A started consumer assigned to every partition of `topic`, at the beginning."""
    await ensure_topics(settings, [spec for spec in TOPICS if spec.name == topic], timeout=timeout)
    consumer = make_consumer(
        group_id=None,
        settings=settings,
        # The broker answers a fetch as soon as a record arrives; this only bounds how often an
        # idle topic is asked again (each fetch is a socket round trip on the gateway's loop).
        fetch_max_wait_ms=500,
        request_timeout_ms=10_000,
        retry_backoff_ms=200,
    )
    try:
        await asyncio.wait_for(consumer.start(), timeout)
        # Without a group, a subscription is assigned every partition as soon as the topic's
        # metadata arrives (it is fetched right away, unlike partitions_for_topic's cache).
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout
        polls = 0
        while not consumer.assignment():
            if time.monotonic() > deadline:
                raise KafkaUnavailable(f"topic {topic} has no partitions yet")
            polls += 1
            if polls % 10 == 0:
                # A topic created a moment ago is missing from the first metadata answer, and
                # aiokafka would otherwise wait metadata_max_age_ms before asking again.
                consumer._client.force_metadata_update()
            await asyncio.sleep(0.02)
        assigned = sorted(consumer.assignment())
        await consumer.seek_to_beginning(*assigned)
    except BaseException:
        with contextlib.suppress(Exception):
            await consumer.stop()
        raise
    return consumer, assigned


async def _caught_up(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for partition, end in ends.items():
        if await consumer.position(partition) < end:
            return False
    return True


async def read_to_end(
    topic: str, settings: Settings, handle: RecordHandler, timeout: float = 15.0
) -> int:
    """Apply every record now on `topic` to `handle`; return how many. Raises KafkaUnavailable."""
    try:
        consumer, assigned = await _open(topic, settings, timeout)
    except (TimeoutError, KafkaError, OSError) as error:
        raise KafkaUnavailable(f"cannot read {topic}: {type(error).__name__}") from None
    count = 0
    try:
        ends = await consumer.end_offsets(assigned)
        deadline = time.monotonic() + timeout
        while not await _caught_up(consumer, ends):
            if time.monotonic() > deadline:
                raise KafkaUnavailable(f"timed out reading {topic} to its end")
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    handle(record.key, record.value)
                    count += 1
    except KafkaError as error:
        raise KafkaUnavailable(f"cannot read {topic}: {type(error).__name__}") from None
    finally:
        await consumer.stop()
    return count


class TopicFollower(BackgroundTask):
    """Applies every record of `topic` to `handle`, from the beginning, until stopped.

    `ready` is set once the records present at start have been applied; `last_ok` is the
    monotonic time of the last successful poll (for staleness decisions).
    """

    def __init__(
        self, topic: str, settings: Settings, handle: RecordHandler, *, retry_s: float = 1.0
    ) -> None:
        self.topic = topic
        self._settings = settings
        self._handle = handle
        self._retry_s = retry_s
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
        offsets: dict[TopicPartition, int] = {}  # resume where we were after a reconnect
        while True:
            consumer: AIOKafkaConsumer | None = None
            try:
                consumer, assigned = await _open(self.topic, self._settings, timeout=10.0)
                for partition in assigned:
                    if partition in offsets:
                        consumer.seek(partition, offsets[partition])
                ends = await consumer.end_offsets(assigned)
                while True:
                    batches = await consumer.getmany(timeout_ms=200)
                    self.last_ok = time.monotonic()
                    for partition, records in batches.items():
                        for record in records:
                            self._apply(record.key, record.value)
                            offsets[partition] = record.offset + 1
                    if not self.ready.is_set() and await _caught_up(consumer, ends):
                        self.ready.set()
                        log.info("%s loaded: %d records", self.topic, self.applied)
            except asyncio.CancelledError:
                raise
            except (TimeoutError, KafkaError, KafkaUnavailable, OSError) as error:
                log.warning(
                    "following %s: %s; retrying in %.1fs",
                    self.topic,
                    type(error).__name__,
                    self._retry_s,
                )
            finally:
                if consumer is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(consumer.stop(), 5.0)
            await asyncio.sleep(self._retry_s)

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        try:
            self._handle(key, value)
            self.applied += 1
        except ValueError as error:  # pydantic ValidationError included: skip, say so, no payload
            log.warning("skipped an invalid record on %s: %s", self.topic, type(error).__name__)


__all__ = ["TopicFollower", "read_to_end"]
