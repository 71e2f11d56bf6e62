"""The pipeline's read-only view of the key registry (compacted `keys.registry.v1`).

Every worker reads the whole topic (no consumer group: the registry is small and every worker
needs every key's caps, tags and provider keys), replays it from the beginning, and keeps the
latest state of each entity. `ready` is set once the replay reached the end offsets seen at start.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from keywarden.background import BackgroundTask
from keywarden.kafka import make_consumer
from keywarden.settings import Settings
from schemas import topics
from schemas.events.keys import ProviderKeyRecord, RegistryEvent, WrappedKeyRecord

log = logging.getLogger(__name__)


@dataclass
class RegistryView(BackgroundTask):
    """Latest wrapped keys and provider keys by id; `start()`/`stop()` run the reader."""

    settings: Settings
    topic: str = topics.KEYS_REGISTRY
    wrapped_keys: dict[str, WrappedKeyRecord] = field(default_factory=dict)
    provider_keys: dict[str, ProviderKeyRecord] = field(default_factory=dict)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def apply(self, event: RegistryEvent) -> None:
        if event.wrapped_key is not None:
            self.wrapped_keys[event.wrapped_key.key_id] = event.wrapped_key
        if event.provider_key is not None:
            self.provider_keys[event.provider_key.provider_key_id] = event.provider_key

    def wrapped_key(self, key_id: str) -> WrappedKeyRecord | None:
        return self.wrapped_keys.get(key_id)

    def _task_name(self) -> str:
        return "registry-view"

    async def wait_ready(self, timeout: float) -> bool:
        """Wait for the initial replay; False (and a warning) if it takes longer than `timeout`."""
        if self.ready.is_set():
            return True
        try:
            await asyncio.wait_for(self.ready.wait(), timeout)
            return True
        except TimeoutError:
            log.warning("key registry not replayed after %.1fs; budgets use what is known", timeout)
            return False

    async def _run(self) -> None:
        while True:
            consumer = make_consumer(group_id=None, settings=self.settings)
            try:
                await consumer.start()
                partitions = await self._partitions(consumer)
                consumer.assign(partitions)
                await consumer.seek_to_beginning(*partitions)
                end = await consumer.end_offsets(partitions)
                if all(offset == 0 for offset in end.values()):
                    self.ready.set()
                while True:
                    batch = await consumer.getmany(timeout_ms=500)
                    for records in batch.values():
                        for record in records:
                            self._apply_raw(record.value)
                    if not self.ready.is_set():
                        positions = [await consumer.position(tp) for tp in end]
                        if all(p >= end[tp] for p, tp in zip(positions, end, strict=True)):
                            self.ready.set()
            except KafkaError as error:
                log.warning("registry reader: %s; reconnecting in 2s", type(error).__name__)
                await asyncio.sleep(2)
            finally:
                await consumer.stop()

    async def _partitions(self, consumer: object) -> list[TopicPartition]:
        for _ in range(50):
            found = consumer.partitions_for_topic(self.topic)  # type: ignore[attr-defined]
            if found:
                return [TopicPartition(self.topic, p) for p in sorted(found)]
            await consumer._client.force_metadata_update()  # type: ignore[attr-defined]
            await asyncio.sleep(0.2)
        raise KafkaError(f"topic {self.topic} has no partitions")

    def _apply_raw(self, value: bytes | None) -> None:
        if not value:
            return  # a tombstone: compaction removes the entity; keep the last state we know
        try:
            self.apply(RegistryEvent.from_json_bytes(value))
        except ValidationError as error:
            log.warning("skipping an invalid registry record: %s", error.error_count())
