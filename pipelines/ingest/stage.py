"""The ingest stage: `llm.requests.v1` -> rows in ClickHouse + per-key-minute runs, on aiokafka.

No faust on this path: a plain consumer (group `<app id>.ingest`) takes `getmany` batches of
thousands, and `IngestProcessor` decodes, prices and stores them (one insert per batch). The
runs of each source partition then go out in one Kafka transaction per partition, with that
partition's offsets, so runs and offsets are atomic. Order, each batch:
  1. dead-letter the record batches the fetcher could not decode (then offsets may pass them);
  2. insert the rows (idempotent: request_events is a ReplacingMergeTree by event_id) and
     dead-letter what cannot be stored;
  3. per source partition: begin, send its runs to the same partition of
     `llm.usage.minutes.v1`, send the offsets to the transaction, commit.
A crash between 2 and 3 redoes both (the rows collapse; the aborted runs are never read by the
analytics stage, which reads read_committed, and their ids are counted once anyway).
Two batches overlap: a batch's rows are stored while the transactions of the batch before it
commit (issue 16: those round trips to the broker were a fifth of a batch's time). The
transactions stay in fetch order: a batch commits only after the one before it committed, and
commits nothing when that one failed (both are read again from the earlier one's start).
Each source partition has its own transactional producer, `transactional_id =
<group>.<topic>.<partition>`: whoever is assigned the partition next fences the previous
owner's producer and aborts its open transaction as it starts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from clickhouse_connect.driver.exceptions import ClickHouseError

from keywarden.kafka import (
    KafkaUnavailable,
    TransactionFenced,
    fill_batches,
    kafka_errors,
    make_consumer,
    make_producer,
)
from keywarden.settings import Settings
from pipelines.ingest.agents import IngestProcessor, PreparedBatch, RawRecord
from pipelines.ingest.batches import UndecodableBatch, UndecodableBatches
from pipelines.ingest.minutes import build_minutes
from pipelines.ingest.written import WrittenRuns
from pipelines.pricing import PricedRequest
from pipelines.watchdog import slow_step
from schemas import topics as names

log = logging.getLogger(__name__)

# The runs producers' batch size: a whole batch's runs of one partition in one or two producer
# batches (a run is ~100 B plus 16 B per event id; Kafka's default message.max.bytes is 1 MiB).
RUNS_BATCH_BYTES = 512 * 1024
# Records decoded and priced between two turns of the event loop (~10 ms of CPU).
PREPARE_SLICE = 500


@dataclass
class IngestStageStats:
    batches: int = 0
    transactions: int = 0
    runs: int = 0
    redone: int = 0  # batches whose transaction failed and were read again


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, stage: IngestStage) -> None:
        self.stage = stage

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.stage.release(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.stage.acquire(set(assigned))


@dataclass
class _InFlight:
    """A batch handed to `_store_and_commit`: `stored` is set once its rows and runs are stored;
    `done` ends once its transactions ended (after those of every batch before it), with the
    offsets to read again (empty when everything up to this batch is committed)."""

    starts: dict[TopicPartition, int]
    stored: asyncio.Future[None]
    done: asyncio.Future[dict[TopicPartition, int]] = field(init=False)


@dataclass
class IngestStage:
    """The loop described in the module docstring; `run()` until `stop()`."""

    settings: Settings
    processor: IngestProcessor
    undecodable: UndecodableBatches
    group_id: str
    batch_rows: int
    batch_seconds: float
    runs_topic: str  # this deployment's (schemas.topics.usage_minutes_topic)
    source_topic: str = names.REQUESTS
    transaction_timeout_ms: int = 60_000
    stats: IngestStageStats = field(default_factory=IngestStageStats)
    _consumer: AIOKafkaConsumer | None = None
    _producers: dict[TopicPartition, AIOKafkaProducer] = field(default_factory=dict)
    _stopping: bool = False
    _runs: list[Any] = field(default_factory=list)
    _stored: dict[TopicPartition, int] = field(default_factory=dict)  # committed positions
    # first offset fetched per partition since its assignment: the lag of a partition that has
    # records but no commit yet is measured from there
    _first_fetched: dict[TopicPartition, int] = field(default_factory=dict)
    _in_flight: _InFlight | None = None  # the newest batch being stored or committed
    _generation: int = 0  # rebalances so far
    _acquiring: asyncio.Lock = field(default_factory=asyncio.Lock)
    crashed: BaseException | None = None  # set by whoever runs the stage when run() raised
    written: WrittenRuns | None = None  # the committed runs, for this process's analytics stage

    def __post_init__(self) -> None:
        self.processor.after_store.append(self._collect)

    async def _collect(self, stored: Sequence[PricedRequest],
                       sources: Mapping[Any, RawRecord]) -> None:
        """After the rows are stored (never before): the runs of the stored events."""
        self._runs.extend(build_minutes(stored, sources))

    def _consumer_for(self) -> AIOKafkaConsumer:
        session_ms = int(self.settings.pipeline_session_timeout_seconds * 1000)
        return make_consumer(
            group_id=self.group_id, settings=self.settings,
            max_poll_records=self.batch_rows,
            max_partition_fetch_bytes=self.settings.pipeline_fetch_partition_bytes,
            fetch_max_bytes=4 * self.settings.pipeline_fetch_partition_bytes,
            session_timeout_ms=session_ms,
            request_timeout_ms=max(40_000, session_ms + 5_000),
            heartbeat_interval_ms=int(min(3.0, self.settings.pipeline_session_timeout_seconds / 3)
                                      * 1000),
            max_poll_interval_ms=3_600_000,  # a ClickHouse outage is waited out inside a batch
            isolation_level="read_committed",
        )

    # -- partitions and their producers ---------------------------------------------------
    async def acquire(self, assigned: set[TopicPartition]) -> None:
        # One call at a time: the rebalance listener starts the producers one by one while the
        # loop may already store a batch of a partition it has not reached (`_transaction` then
        # acquires that one itself). Two producers of one transactional id fence each other: the
        # one kept could be the fenced one, and the other was dropped without a stop.
        async with self._acquiring:
            for tp in sorted(assigned):
                if tp in self._producers:
                    continue
                producer = make_producer(
                    self.settings, transactional_id=f"{self.group_id}.{tp.topic}.{tp.partition}",
                    transaction_timeout_ms=self.transaction_timeout_ms, linger_ms=0,
                    max_batch_size=RUNS_BATCH_BYTES)
                await producer.start()  # init_transactions: fences the partition's previous owner
                self._producers[tp] = producer

    async def release(self, revoked: set[TopicPartition]) -> None:
        self._generation += 1  # a batch fetched before this rebalance is not stored
        in_flight = self._in_flight
        if in_flight is not None:  # the batches in flight finish (or fail) first
            await asyncio.wait([in_flight.done])
        for tp in revoked:
            self._stored.pop(tp, None)
            self._first_fetched.pop(tp, None)
            producer = self._producers.pop(tp, None)
            if producer is not None:
                await producer.stop()

    # -- the loop -------------------------------------------------------------------------
    async def run(self) -> None:
        """Fetch, decode and price a batch while the previous one is stored and the one before
        that committed (stored and committed in fetch order)."""
        consumer = self._consumer = self._consumer_for()
        consumer.subscribe([self.source_topic], listener=_Rebalance(self))
        await consumer.start()
        try:
            while not self._stopping:
                try:
                    with kafka_errors("ingest round"):
                        await self._round(consumer)
                except KafkaUnavailable as error:  # e.g. a partition revoked while it was read
                    log.warning("%s; reading its batch again", error)
                    await asyncio.sleep(0.5)
            await self._settle_in_flight()
        finally:
            if self._in_flight is not None:  # (it cancels the batch before it)
                self._in_flight.done.cancel()
                await asyncio.wait([self._in_flight.done])
            await self._close()

    async def _round(self, consumer: AIOKafkaConsumer) -> None:
        """One batch: fetch, prepare, wait for the batch in flight, then put this one in flight."""
        batch = await consumer.getmany(timeout_ms=int(self.batch_seconds * 1000),
                                       max_records=self.batch_rows)
        generation = self._generation
        starts = {tp: records[0].offset for tp, records in batch.items() if records}
        for tp, offset in starts.items():
            self._first_fetched.setdefault(tp, offset)
        stepped = self.undecodable.take(self.source_topic)
        try:
            touched = {tp for tp, records in batch.items() if records}
            touched |= {TopicPartition(b.topic, b.partition) for b in stepped}
            touched &= consumer.assignment()
            positions = {tp: await consumer.position(tp) for tp in touched}
            records = [record for tp in sorted(batch) for record in batch[tp]]
            prepared = await self._prepare(records) if records else None
        except BaseException:
            self.undecodable.put_back(stepped)
            if generation == self._generation:  # else: the new assignment starts from the
                self._rewind(consumer, starts)  # committed offsets, which is right
            raise
        # the batch before this one must be stored first (its transactions may still run)
        failed = await self._settle_in_flight(stored_only=True)
        if failed is not None or generation != self._generation:
            # a rebalance meanwhile: the new assignment starts from the committed offsets
            self.undecodable.put_back(stepped)
            if failed is not None and generation == self._generation:  # read both again
                self._rewind(consumer, _earliest(failed, starts))
            if failed is not None:
                await asyncio.sleep(1.0)
            return
        if touched:
            loop = asyncio.get_running_loop()
            flight = _InFlight(starts, loop.create_future())
            flight.done = asyncio.ensure_future(self._store_and_commit(
                flight, self._in_flight, stepped, prepared, positions))
            self._in_flight = flight

    async def _prepare(self, records: list[Any]) -> PreparedBatch:
        """Decode and price `records` a slice at a time, letting the loop run between slices:
        the analytics stage's changelog acknowledgements and this stage's own transactions
        wait for turns of the same loop."""
        batch = PreparedBatch()
        for start in range(0, len(records), PREPARE_SLICE):
            if start:
                await asyncio.sleep(0)
            self.processor.prepare(records[start:start + PREPARE_SLICE], batch)
        return batch

    async def _settle_in_flight(self, stored_only: bool = False,
                                ) -> dict[TopicPartition, int] | None:
        """Wait for the batches in flight to be stored and committed (`stored_only`: for the
        newest one's rows to be stored, unless it failed); None when that went well, else the
        offsets to read the failed partitions again from."""
        flight = self._in_flight
        if flight is None:
            return None
        # `_in_flight` stays set until the batches are done: a rebalance (`release`) waits for
        # them before it stops the partitions' producers, which would leave a commit hanging.
        done = flight.done
        if stored_only:
            await asyncio.wait([flight.stored, done], return_when=asyncio.FIRST_COMPLETED)
            if not done.done():
                return None
        failed = await asyncio.shield(done)
        if self._in_flight is flight:
            self._in_flight = None
        return failed or None

    async def _store_and_commit(
        self, flight: _InFlight, before: _InFlight | None, stepped: list[UndecodableBatch],
        prepared: PreparedBatch | None, positions: dict[TopicPartition, int],
    ) -> dict[TopicPartition, int]:
        """Steps 1-3 of the module docstring for one batch, its transactions after those of the
        batch `before` it; returns the offsets to read again, or nothing.

        Cancelled, it cancels the batch before it too (it waits for it unshielded)."""
        try:
            with kafka_errors("ingest batch"):
                runs = await self._store(stepped, prepared)
        except (ClickHouseError, OSError) as error:  # KafkaUnavailable is an OSError
            _failed(error)
            runs = None
        else:
            flight.stored.set_result(None)
        earlier = await before.done if before is not None else {}
        if runs is None or earlier:  # nothing of this batch is committed
            return _earliest(earlier, flight.starts)
        try:
            with kafka_errors("ingest batch"):
                return await self._commit_all(runs, positions, flight.starts)
        except (ClickHouseError, OSError) as error:
            _failed(error)
            return dict(flight.starts)

    async def _store(self, stepped: list[UndecodableBatch],
                     prepared: PreparedBatch | None) -> list[Any]:
        """Steps 1 and 2 of the module docstring: the batch's runs, once its rows are stored."""
        # 1. batches nobody can decode: dead-lettered before any offset passes them.
        if stepped:
            try:
                async with slow_step("dead-letter undecodable batches"):
                    await self.processor.dead_letter_batches(stepped)
            except BaseException:
                self.undecodable.put_back(stepped)
                raise
        # 2. rows (idempotent), dead letters; the stored events' runs (after the rows)
        self._runs = []
        if prepared is not None:
            await self.processor.store(prepared)  # hands the stored events to _collect
        self.stats.batches += 1
        runs, self._runs = self._runs, []
        return runs

    async def _commit_all(self, runs: list[Any], positions: dict[TopicPartition, int],
                          starts: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        """Step 3 of the module docstring; returns the partitions whose transaction failed, with
        the offset to read them again from."""
        by_partition: dict[int, list[Any]] = {}
        for run in runs:
            by_partition.setdefault(run.source_partition, []).append(run)
        order = sorted(positions)
        results = await asyncio.gather(
            *(self._commit(tp, by_partition.get(tp.partition, []), positions[tp])
              for tp in order),
            return_exceptions=True)
        failed: dict[TopicPartition, int] = {}
        for tp, error in zip(order, results, strict=True):
            if not isinstance(error, BaseException):
                continue
            if isinstance(error, asyncio.CancelledError):
                raise error
            # read the partition's batch again: rows collapse, the aborted runs are never read
            log.warning("%s; reading the batch again", error)
            if isinstance(error, TransactionFenced):  # another worker owns it now
                producer = self._producers.pop(tp, None)
                if producer is not None:
                    await producer.stop()
                continue
            if tp in starts:
                failed[tp] = starts[tp]
        return failed

    def _rewind(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        assigned = consumer.assignment()
        for tp, offset in offsets.items():
            if tp in assigned:
                try:
                    with kafka_errors(f"rewinding {tp}"):
                        consumer.seek(tp, offset)
                except (KafkaUnavailable, AssertionError) as error:  # unassigned meanwhile
                    log.info("%s not rewound (%s): its next owner reads it", tp, error)
        self.stats.redone += 1

    async def _commit(self, tp: TopicPartition, runs: Sequence[Any], position: int) -> None:
        with kafka_errors(f"{tp}: transaction"):
            await self._transaction(tp, runs, position)

    async def _transaction(self, tp: TopicPartition, runs: Sequence[Any], position: int) -> None:
        producer = self._producers.get(tp)
        if producer is None:
            await self.acquire({tp})
            producer = self._producers[tp]
        await producer.begin_transaction()
        try:
            parts = _run_batches(producer, runs)
            sends = [await producer.send_batch(batch, self.runs_topic, partition=tp.partition)
                     for batch, _ in parts]
            await producer.send_offsets_to_transaction(
                {tp: OffsetAndMetadata(position, "")}, self.group_id)
            landed = await asyncio.gather(*sends)  # each batch's metadata: its base offset
            await producer.commit_transaction()
        except BaseException:
            try:
                with kafka_errors("abort"):
                    await asyncio.shield(producer.abort_transaction())
            except KafkaUnavailable as error:
                log.warning("%s: abort failed (%s); the next owner aborts it", tp, error)
            raise
        self.stats.transactions += 1
        self.stats.runs += len(runs)
        self._stored[tp] = position
        if self.written is not None:  # committed: the runs are on the topic where it says
            self.written.add(self.runs_topic, tp.partition, (
                (metadata.offset, [runs[index] for index in members])
                for metadata, (_, members) in zip(landed, parts, strict=True)))

    def lag(self) -> dict[TopicPartition, int | None]:
        """Per assigned source partition: highwater minus the offset committed with its runs
        (before a first commit: minus the first offset fetched; None when neither is known)."""
        consumer = self._consumer
        if consumer is None:
            return {}
        result: dict[TopicPartition, int | None] = {}
        for tp in consumer.assignment():
            stored = self._stored.get(tp, self._first_fetched.get(tp))
            end = consumer.highwater(tp)
            result[tp] = None if stored is None or end is None else max(end - stored, 0)
        return result

    # -- stopping ---------------------------------------------------------------------------
    async def stop(self) -> None:
        self._stopping = True

    async def _close(self) -> None:
        consumer, self._consumer = self._consumer, None
        producers, self._producers = list(self._producers.values()), {}
        for producer in producers:
            try:
                with kafka_errors("stopping a transactional producer"):
                    await producer.stop()
            except KafkaUnavailable as error:
                log.warning("a transactional producer did not stop cleanly: %s", error)
        if consumer is not None:
            await consumer.stop()


def _run_batches(producer: AIOKafkaProducer, runs: Sequence[Any]
                 ) -> list[tuple[Any, list[int]]]:
    """The runs in as few producer batches as hold them, in order, each batch with the indexes
    of its runs: one `send_batch` each instead of one `send()` per run. A `send()` per run cost
    a coroutine chain each, and with 16 KiB batches the producer's wait for each full one to
    drain: 0.1-0.5 s for ~330 runs, against a few ms for the rest of the transaction (issue 16)."""
    parts, left_out = fill_batches(
        producer, [(run.wrapped_key_id.encode(), run.encode()) for run in runs])
    if left_out:
        # never dropped: the transaction fails and the batch is read again
        raise ValueError(f"{len(left_out)} run(s) do not fit in one producer batch "
                         f"({RUNS_BATCH_BYTES} bytes)")
    return parts


def _failed(error: Exception) -> None:
    log.warning("ingest batch failed (%s: %s); reading it again", type(error).__name__, error)


def _earliest(*offsets: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
    merged: dict[TopicPartition, int] = {}
    for found in offsets:
        for tp, offset in found.items():
            merged[tp] = min(offset, merged.get(tp, offset))
    return merged
