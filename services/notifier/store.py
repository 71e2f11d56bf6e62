"""The durable record of what the notifier has delivered: one entry per (alert id, state), with
the Slack channel and ts the open alert was posted as, so a resolution can reply in its thread.

Why a compacted Kafka topic (`alerts.delivered.v1`, key `<alert_id>:<state>`) and not a
ClickHouse table: the notifier must keep delivering while ClickHouse is down (delivery rows are
buffered then), so its dedup state cannot live there; Kafka is already a hard dependency, a
produce with acks=all is durable before we commit the alerts.v1 offset, and compaction keeps one
entry per key so reading the topic at start (and at every partition assignment) rebuilds the
exact set. An entry is written only after Slack answered ok — or after a permanent error was
dead-lettered, so a redelivery does not dead-letter it twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from keywarden.kafka import KafkaUnavailable, ensure_topics, make_consumer, make_producer
from keywarden.settings import Settings
from schemas.topics import TopicSpec

log = logging.getLogger(__name__)

DELIVERED = "delivered"
DEAD_LETTERED = "dead_lettered"
POSTING = "posting"  # written before a post when the transport can read back (see dispatcher)


@dataclass(frozen=True)
class DeliveryRecord:
    """What happened to one alert state; `slack_channel`/`ts` locate the Slack message."""

    alert_id: str
    state: str
    outcome: str  # delivered | dead_lettered | posting (an attempt began; see dispatcher)
    channel: str  # the routed channel name
    slack_channel: str = ""  # the channel id Slack answered with (needed by chat.update)
    ts: str = ""
    thread_ts: str = ""
    recorded_at: str = ""

    @property
    def key(self) -> str:
        return record_key(self.alert_id, self.state)

    def to_json_bytes(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json_bytes(cls, raw: bytes) -> DeliveryRecord:
        return cls(**json.loads(raw))


def record_key(alert_id: uuid.UUID | str, state: str) -> str:
    return f"{alert_id}:{state}"


class DeliveredStore(Protocol):
    """Lookup and durable write of delivery records."""

    def get(self, alert_id: uuid.UUID | str, state: str) -> DeliveryRecord | None: ...

    async def record(self, record: DeliveryRecord) -> None: ...

    async def catch_up(self) -> None: ...


class MemoryDeliveredStore:
    """A store that lives as long as the process (console demos and unit tests)."""

    def __init__(self, records: Iterable[DeliveryRecord] = ()) -> None:
        self.records = {record.key: record for record in records}

    def get(self, alert_id: uuid.UUID | str, state: str) -> DeliveryRecord | None:
        return self.records.get(record_key(alert_id, state))

    async def record(self, record: DeliveryRecord) -> None:
        self.records[record.key] = _stamped(record)

    async def catch_up(self) -> None:
        return None


def _stamped(record: DeliveryRecord) -> DeliveryRecord:
    if record.recorded_at:
        return record
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
    return DeliveryRecord(**{**asdict(record), "recorded_at": stamp})


class KafkaDeliveredStore:
    """Delivery records on a compacted topic, mirrored in memory.

    `start()` creates the topic if needed and reads it to the end; `catch_up()` reads what other
    notifier replicas wrote since (called when partitions of alerts.v1 are assigned to us);
    `record()` returns once the broker acknowledged the write (acks=all).
    """

    def __init__(self, settings: Settings, topic: str | None = None) -> None:
        self._settings = settings
        self.topic = topic or settings.notifier_delivered_topic
        self._records: dict[str, DeliveryRecord] = {}
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []
        self._lock = asyncio.Lock()

    def __len__(self) -> int:
        return len(self._records)

    async def start(self) -> None:
        if self._producer is not None:
            return
        await ensure_topics(self._settings, [TopicSpec(self.topic, compacted=True)])
        producer = make_producer(self._settings)
        consumer = make_consumer(group_id=None, settings=self._settings)
        try:
            await producer.start()
            await consumer.start()
            # The producer waits for the topic's metadata (it may have just been created).
            partitions = [
                TopicPartition(self.topic, p)
                for p in sorted(await producer.partitions_for(self.topic))
            ]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
        except KafkaError as error:
            await _close_quietly(producer, consumer)
            raise KafkaUnavailable(f"cannot open {self.topic}: {type(error).__name__}") from None
        except BaseException:
            await _close_quietly(producer, consumer)
            raise
        self._producer, self._consumer, self._partitions = producer, consumer, partitions
        try:
            await self.catch_up()
        except BaseException:
            await self.stop()
            raise
        log.info("delivered-alert store: %d records read from %s", len(self._records), self.topic)

    async def stop(self) -> None:
        producer, consumer = self._producer, self._consumer
        self._producer = self._consumer = None
        await _close_quietly(producer, consumer)

    async def __aenter__(self) -> KafkaDeliveredStore:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def get(self, alert_id: uuid.UUID | str, state: str) -> DeliveryRecord | None:
        return self._records.get(record_key(alert_id, state))

    async def catch_up(self) -> None:
        """Read the topic up to its current end offsets."""
        consumer = self._consumer
        if consumer is None:
            raise RuntimeError("KafkaDeliveredStore.catch_up() before start()")
        async with self._lock:
            ends = await consumer.end_offsets(self._partitions)
            while True:
                behind = [tp for tp, end in ends.items() if await consumer.position(tp) < end]
                if not behind:
                    break
                batches = await consumer.getmany(*self._partitions, timeout_ms=500)
                for messages in batches.values():
                    for message in messages:
                        self._apply(message.key, message.value)

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        if value is None:  # a tombstone: the entry was deleted
            self._records.pop(key.decode(), None)
            return
        try:
            record = DeliveryRecord.from_json_bytes(value)
        except (ValueError, TypeError):
            log.warning("skipping an unreadable record on %s (key %r)", self.topic, key[:80])
            return
        self._records[record.key] = record

    async def record(self, record: DeliveryRecord) -> None:
        producer = self._producer
        if producer is None:
            raise RuntimeError("KafkaDeliveredStore.record() before start()")
        record = _stamped(record)
        try:
            await producer.send_and_wait(
                self.topic, key=record.key.encode(), value=record.to_json_bytes()
            )
        except KafkaError as error:
            raise KafkaUnavailable(f"cannot record delivery on {self.topic}: {error!r}") from None
        self._records[record.key] = record


async def _close_quietly(*clients: AIOKafkaProducer | AIOKafkaConsumer | None) -> None:
    for client in clients:
        if client is not None:
            try:
                await client.stop()
            except KafkaError as error:  # stopping must not mask the error that got us here
                log.warning("error while closing a Kafka client: %r", error)


__all__ = [
    "DEAD_LETTERED",
    "DELIVERED",
    "DeliveredStore",
    "DeliveryRecord",
    "KafkaDeliveredStore",
    "MemoryDeliveredStore",
    "POSTING",
    "record_key",
]
