"""Publishing request events without holding up responses: `publish()` only enqueues; one
background task sends batches to Kafka, and when Kafka cannot take them, appends them to the
durable spool and keeps serving. The spool is drained in order once Kafka is back.

Order of work for each batch taken from the queue:
  1. if the spool holds anything, the batch goes behind it in the spool (keeps order);
  2. else it is sent; records Kafka did not acknowledge are appended to the spool;
  3. a non-empty spool is drained oldest first, at most once a second while Kafka is down;
     a drained batch is acknowledged in the spool only after Kafka acknowledged every record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer

from keywarden.kafka import (
    KafkaUnavailable,
    ensure_topics,
    fill_batches,
    kafka_errors,
    key_partition,
    make_producer,
)
from keywarden.settings import Settings
from schemas.events.request import RequestEvent
from schemas.topics import REQUESTS, TOPICS
from services.gateway.metrics import GatewayMetrics
from services.gateway.spool import Spool

log = logging.getLogger(__name__)

Record = tuple[str, bytes | None, bytes]
DRAIN_RETRY_S = 1.0
PARTITION_CACHE_KEYS = 100_000


class EventPublisher:
    def __init__(self, settings: Settings, spool: Spool, metrics: GatewayMetrics) -> None:
        self._settings = settings
        self._spool = spool
        self._metrics = metrics
        self._timeout = settings.gateway_publish_timeout_s
        self._batch = settings.gateway_spool_batch
        self._queue: asyncio.Queue[Record] = asyncio.Queue(
            maxsize=settings.gateway_publish_queue_size
        )
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._next_drain = 0.0
        self._idle = asyncio.Event()
        self._topic_ready = False
        self._overflow: list[Record] = []  # the queue was full: on its way to the spool
        self._spill_task: asyncio.Task[None] | None = None
        # per topic: its partitions as the producer last saw them, and each key's partition
        self._partitions: dict[str, tuple[tuple[int, ...], dict[bytes, int]]] = {}
        metrics.spool_backlog.set(spool.backlog)

    # --- the hot path ---------------------------------------------------------------------

    def publish(self, event: RequestEvent) -> None:
        """Enqueue; never waits (see `publish_json`)."""
        self.publish_json(event.wrapped_key_id, event.to_json_bytes())

    def publish_json(self, wrapped_key_id: str, value: bytes) -> None:
        """Enqueue a serialized request event; never waits. A full queue spills into the spool
        (still durable) from a worker thread, so its write and fsync never stall the loop."""
        record = (REQUESTS, wrapped_key_id.encode(), value)
        self._idle.clear()
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            self._overflow.append(record)
            if self._spill_task is None or self._spill_task.done():
                self._spill_task = asyncio.create_task(self._spill(), name="request-event-spill")

    async def _spill(self) -> None:
        """Appends what overflowed the queue to the spool, in arrival order, off the loop."""
        while self._overflow:
            records, self._overflow = self._overflow, []
            await asyncio.to_thread(self._spool.append, records)
            self._metrics.events_spooled.inc(len(records))

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="request-event-publisher")

    async def stop(self) -> None:
        """Send (or spool) everything queued, then close the producer. Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            self._stopping = True
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), self._timeout * 3)
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._finish_spill()
            leftover = []
            while not self._queue.empty():
                leftover.append(self._queue.get_nowait())
            await asyncio.to_thread(self._spool.append, leftover)
        await self._finish_spill()
        await self._close_producer()

    async def _finish_spill(self) -> None:
        spill, self._spill_task = self._spill_task, None
        if spill is not None:
            await spill
        if self._overflow:
            await self._spill()

    async def __aenter__(self) -> EventPublisher:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def wait_idle(self, timeout: float) -> bool:
        """True once the queue is empty and the spool drained (for tests and shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (
                self._queue.empty()
                and not self._overflow
                and not self._spool.pending
                and self._idle.is_set()
            ):
                return True
            await asyncio.sleep(0.05)
        return False

    # --- the worker ---------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            if batch:
                if self._spool.pending:
                    await self._to_spool(batch)  # 1.
                else:
                    failed = await self._send(batch)  # 2.
                    if failed:
                        await self._to_spool(failed)
            if self._spool.pending and time.monotonic() >= self._next_drain:
                await self._drain()  # 3.
            self._metrics.spool_backlog.set(self._spool.backlog)
            if self._queue.empty() and not self._spool.pending:
                self._idle.set()
                if self._stopping:
                    return
            elif self._stopping and self._queue.empty() and time.monotonic() < self._next_drain:
                return  # Kafka is down at shutdown: the spool keeps the rest for next start

    async def _next_batch(self) -> list[Record]:
        try:
            first = await asyncio.wait_for(self._queue.get(), 0.2 if self._stopping else 0.5)
        except TimeoutError:
            return []
        batch = [first]
        while len(batch) < self._batch and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    async def _to_spool(self, records: list[Record]) -> None:
        await asyncio.to_thread(self._spool.append, records)
        self._metrics.events_spooled.inc(len(records))

    async def _drain(self) -> None:
        while self._spool.pending:
            spooled = await asyncio.to_thread(self._spool.peek, self._batch)
            if not spooled:
                return
            failed = await self._send([(r.topic, r.key, r.value) for r in spooled])
            if len(failed) == len(spooled):
                self._next_drain = time.monotonic() + DRAIN_RETRY_S
                return
            # Acknowledge the batch; the few Kafka refused go to the back (sent once, late).
            await asyncio.to_thread(self._spool.ack, spooled[-1], len(spooled))
            if failed:
                await self._to_spool(failed)
                self._next_drain = time.monotonic() + DRAIN_RETRY_S
                return
            log.info("sent %d spooled request events; %d left", len(spooled), self._spool.backlog)

    async def _send(self, batch: list[Record]) -> list[Record]:
        """Send and wait for acknowledgements; return the records that were not acknowledged,
        in batch order.

        The records go to the producer as one batch per partition (`create_batch` and
        `send_batch`, on the partition `send(key=...)` would have chosen) rather than one
        `send()` each: a `send()` costs a coroutine chain, a partitioner call and a future per
        event on the request loop's CPU, a batch costs an append per event."""
        producer = await self._ensure_producer()
        if producer is None:
            return batch
        handed: list[tuple[asyncio.Future[object], list[int]]] = []
        groups: dict[tuple[str, int], list[int]] = {}
        try:
            # One deadline for handing the whole batch over; send_batch() only waits while the
            # partition's previous batch is still in the producer's buffer.
            with kafka_errors("Kafka did not take request events"):
                async with asyncio.timeout(self._timeout):
                    partitioners: dict[str, Callable[[bytes | None], int]] = {}
                    for index, (topic, key, _) in enumerate(batch):
                        partition_of = partitioners.get(topic)
                        if partition_of is None:
                            partition_of = partitioners[topic] = await self._partitioner(
                                producer, topic
                            )
                        groups.setdefault((topic, partition_of(key)), []).append(index)
                    for (topic, partition), indexes in groups.items():
                        for builder, members in self._fill(producer, batch, indexes):
                            future = await producer.send_batch(builder, topic, partition=partition)
                            handed.append((future, members))
        except KafkaUnavailable as error:
            log.warning("%s", error)
        results = await asyncio.gather(*(future for future, _ in handed), return_exceptions=True)
        acknowledged = set()
        for (_, members), result in zip(handed, results, strict=True):
            if not isinstance(result, BaseException):
                acknowledged.update(members)
        failed = [record for index, record in enumerate(batch) if index not in acknowledged]
        sent = len(batch) - len(failed)
        if sent:
            self._metrics.events_published.inc(sent)
        if failed:
            self._metrics.publish_failures.inc()
            await self._close_producer()  # start afresh: no retries of abandoned batches
        return failed

    @staticmethod
    def _fill(
        producer: AIOKafkaProducer, batch: list[Record], indexes: list[int]
    ) -> list[tuple[Any, list[int]]]:
        """The records at `indexes` in as few producer batches as hold them; a record no empty
        batch can hold is left out, so not sent (and spooled as not acknowledged)."""
        parts, _ = fill_batches(producer, [(batch[i][1], batch[i][2]) for i in indexes])
        return [(builder, [indexes[i] for i in members]) for builder, members in parts]

    async def _partitioner(
        self, producer: AIOKafkaProducer, topic: str
    ) -> Callable[[bytes | None], int]:
        """Key -> the partition `send(topic, key=key)` would choose with the producer's current
        view of the topic; remembered per key until the topic's partitions change."""
        partitions = tuple(sorted(await producer.partitions_for(topic)))
        known = self._partitions.get(topic)
        if known is None or known[0] != partitions or len(known[1]) >= PARTITION_CACHE_KEYS:
            known = self._partitions[topic] = (partitions, {})
        remembered = known[1]

        def partition_of(key: bytes | None) -> int:
            if key is None:  # never for request events, which are keyed by wrapped key id
                return key_partition(key, partitions)
            found = remembered.get(key)
            if found is None:
                found = remembered[key] = key_partition(key, partitions)
            return found

        return partition_of

    async def _ensure_producer(self) -> AIOKafkaProducer | None:
        if self._producer is not None:
            return self._producer
        # Not idempotent on purpose: an idempotent producer retries forever; this one gives up
        # after the timeout so that the events move to the durable spool instead.
        producer = make_producer(
            self._settings,
            enable_idempotence=False,
            acks="all",
            request_timeout_ms=int(self._timeout * 1000),
            retry_backoff_ms=100,
            max_batch_size=1024 * 1024,
            # Each produce request is a socket write and a broker round trip on this loop's CPU:
            # waiting 20 ms to gather events costs no client anything (publishing is off the
            # request path) and cuts those writes several-fold at a few hundred requests/s.
            linger_ms=20,
        )
        try:
            if not self._topic_ready:
                specs = [spec for spec in TOPICS if spec.name == REQUESTS]
                await ensure_topics(self._settings, specs, timeout=self._timeout)
                self._topic_ready = True
            with kafka_errors("starting the request-event producer"):
                await asyncio.wait_for(producer.start(), self._timeout)
        except KafkaUnavailable as error:
            log.warning("Kafka unreachable for request events (%s); spooling", error)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 1.0)
            self._next_drain = time.monotonic() + DRAIN_RETRY_S
            return None
        self._producer = producer
        return producer

    async def _close_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), self._timeout)


__all__ = ["EventPublisher"]
