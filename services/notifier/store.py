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
import logging
import uuid
from collections.abc import Iterable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Protocol

from aiokafka import AIOKafkaProducer

from keywarden.compacted import TopicReader
from keywarden.kafka import KafkaUnavailable, ensure_topics, kafka_errors, make_producer
from keywarden.settings import Settings
from schemas.events.delivery import (
    DEAD_LETTERED,
    DELIVERED,
    POSTING,
    DeliveryRecord,
    record_key,
)
from schemas.topics import ALERTS_DELIVERED, spec_of

log = logging.getLogger(__name__)


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
        self._reader: TopicReader | None = None
        self._lock = asyncio.Lock()

    def __len__(self) -> int:
        return len(self._records)

    async def start(self) -> None:
        if self._producer is not None:
            return
        await ensure_topics(self._settings, [spec_of(self.topic, like=ALERTS_DELIVERED)])
        producer = make_producer(self._settings)
        reader = TopicReader(self.topic, self._settings, poll_ms=500)
        try:
            with kafka_errors(f"cannot open {self.topic}"):
                await producer.start()
            await reader.start(timeout=30.0)
        except BaseException:
            await _close_quietly(producer, reader)
            raise
        self._producer, self._reader = producer, reader
        try:
            await self.catch_up()
        except BaseException:
            await self.stop()
            raise
        log.info("delivered-alert store: %d records read from %s", len(self._records), self.topic)

    async def stop(self) -> None:
        producer, reader = self._producer, self._reader
        self._producer = self._reader = None
        await _close_quietly(producer, reader)

    async def __aenter__(self) -> KafkaDeliveredStore:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def get(self, alert_id: uuid.UUID | str, state: str) -> DeliveryRecord | None:
        return self._records.get(record_key(alert_id, state))

    async def catch_up(self) -> None:
        """Read the topic up to its current end offsets."""
        reader = self._reader
        if reader is None:
            raise RuntimeError("KafkaDeliveredStore.catch_up() before start()")
        async with self._lock:
            await reader.read_to_end(self._apply)

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
        with kafka_errors(f"cannot record delivery on {self.topic}"):
            await producer.send_and_wait(
                self.topic, key=record.key.encode(), value=record.to_json_bytes()
            )
        self._records[record.key] = record


async def _close_quietly(producer: AIOKafkaProducer | None, reader: TopicReader | None) -> None:
    if reader is not None:
        await reader.stop()
    if producer is not None:
        try:
            with kafka_errors("closing a Kafka producer"):
                await producer.stop()
        except KafkaUnavailable as error:  # stopping must not mask the error that got us here
            log.warning("error while closing a Kafka client: %s", error)


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
