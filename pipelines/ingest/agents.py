"""Decode, price and store a batch of `llm.requests.v1` records (`IngestProcessor`, driven by
the ingest stage, pipelines/ingest/stage.py), and the ledgered faust agent that hands a topic's
batches to a processor in log order (`register_ledgered_agent`: the analytics stage over the
per-key-minute runs).

`IngestProcessor.process` returns only when every record of the batch is stored in ClickHouse or
dead-lettered; the agent's processor returns only when the state derived from its batch is in
the changelogs, so faust acknowledges (and later commits) a record only after that; a batch whose
processing fails or is cancelled is never acknowledged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import faust
from clickhouse_connect.driver.exceptions import OperationalError
from faust.types import TP

from keywarden.kafka import kafka_errors
from pipelines.ingest import offsets
from pipelines.ingest.batches import UndecodableBatch, UndecodableBatches
from pipelines.ingest.decode import DeadLetter, DeadLetterRecord, decode
from pipelines.ingest.offsets import Gap, GapReader, OffsetLedger, ReadAhead, StalledTails
from pipelines.pricing import PricedRequest, price
from pipelines.sinks.clickhouse import (
    DEAD_LETTER_COLUMNS,
    ClickHouseSink,
    dead_letter_row,
    now_version,
    request_row,
)
from pipelines.watchdog import run_loop, slow_step
from schemas.pricing import PricingCatalog

log = logging.getLogger(__name__)

# request_dead_letters rows of a whole batch (an offset range), migration 0070.
BATCH_DEAD_LETTER_COLUMNS = (*DEAD_LETTER_COLUMNS, "source_last_offset")

# A hook gets the stored requests and, by event_id, the Kafka record each came from.
StoredHook = Callable[[Sequence[PricedRequest], Mapping[Any, "RawRecord"]], Awaitable[None]]


@dataclass(frozen=True)
class RawRecord:
    """The parts of a Kafka record the processor needs (decoupled from faust's Event)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass
class IngestStats:
    received: int = 0
    stored: int = 0
    dead_lettered: int = 0
    undecodable_batches: int = 0  # record batches dead-lettered as a range (never decoded)


@dataclass
class PreparedBatch:
    """A decoded and priced batch, not stored yet."""

    priced: list[PricedRequest] = field(default_factory=list)
    source_of: dict[Any, RawRecord] = field(default_factory=dict)
    dead: list[tuple[RawRecord, DeadLetter]] = field(default_factory=list)


@dataclass
class IngestProcessor:
    """Decode, price and store one batch. Hooks run after the batch is stored (step 3 of the
    sink's flush order), e.g. state updates that must never count an unstored event."""

    catalog: PricingCatalog
    request_sink: ClickHouseSink
    dead_letter_sink: ClickHouseSink
    publish_dead_letter: Callable[[bytes | None, bytes], Awaitable[None]]
    batch_dead_letter_sink: ClickHouseSink | None = None
    after_store: list[StoredHook] = field(default_factory=list)
    stats: IngestStats = field(default_factory=IngestStats)

    async def process(self, records: Sequence[RawRecord]) -> list[PricedRequest]:
        return await self.store(self.prepare(records))

    def prepare(self, records: Sequence[RawRecord],
                batch: PreparedBatch | None = None) -> PreparedBatch:
        """Decode and price (no I/O): what `store` writes, added to `batch` when given.
        Separate so that a caller may prepare the next batch while the previous one is being
        stored."""
        self.stats.received += len(records)
        batch = PreparedBatch() if batch is None else batch
        priced, source_of, dead = batch.priced, batch.source_of, batch.dead
        catalog = self.catalog
        for record in records:
            try:
                item = price(decode(record.value), catalog)
            except DeadLetter as letter:
                dead.append((record, letter))
                continue
            priced.append(item)
            source_of[item.event.event_id] = record
        return batch

    async def store(self, batch: PreparedBatch) -> list[PricedRequest]:
        """Store a prepared batch: rows, then dead letters, then the after-store hooks."""
        priced, source_of, dead = batch.priced, batch.source_of, batch.dead
        # 1. store the priced rows (idempotent); rows ClickHouse refuses become dead letters.
        version = now_version()
        ingested_at = datetime.now(UTC)
        async with slow_step("store request rows"):
            refused = await self.request_sink.write(
                [request_row(item, ingested_at, version) for item in priced]
            )
        if refused:
            refused_ids = {row[0] for row, _ in refused}
            dead.extend(
                (source_of[row[0]], DeadLetter("warehouse_rejected", message))
                for row, message in refused
            )
            priced = [item for item in priced if item.event.event_id not in refused_ids]

        # 2. dead letters: to the DLQ topic (with the original bytes) and to ClickHouse.
        if dead:
            async with slow_step("dead-letter"):
                await self.dead_letter(dead)

        self.stats.stored += len(priced)
        # 3. only now may anything treat these events as seen.
        for hook in self.after_store:
            await hook(priced, source_of)
        return priced

    async def dead_letter(self, dead: list[tuple[RawRecord, DeadLetter]]) -> None:
        """Records that cannot be stored: to the DLQ topic (original bytes) and to ClickHouse."""
        rows = []
        for record, letter in dead:
            meta = DeadLetterRecord(
                reason=letter.reason,
                detail=letter.detail,
                source_topic=record.topic,
                source_partition=record.partition,
                source_offset=record.offset,
            )
            envelope = {
                "schema": "llm.request.dead_letter.v1",
                "reason": meta.reason,
                "detail": meta.detail,
                "source": {"topic": meta.source_topic, "partition": meta.source_partition,
                           "offset": meta.source_offset},
                "value": (record.value or b"").decode("utf-8", errors="replace"),
            }
            await self.publish_dead_letter(record.key, json.dumps(envelope).encode())
            rows.append(dead_letter_row(meta, record.value))
            log.warning(
                "dead-lettered %s[%d]@%d: %s", record.topic, record.partition, record.offset,
                letter.reason,
            )
        refused = await self.dead_letter_sink.write(rows)
        for _row, message in refused:  # the DLQ topic still holds these records
            log.error("request_dead_letters refused a row: %s", message)
        self.stats.dead_lettered += len(dead)


    async def dead_letter_batches(self, batches: Sequence[UndecodableBatch]) -> None:
        """Record batches nobody could decode: one DLQ envelope and one `request_dead_letters`
        row (its offset range) each, stored before the caller moves past their offsets."""
        rows = []
        for batch in batches:
            envelope = {
                "schema": "llm.request.dead_letter.v1",
                "reason": batch.reason,
                "detail": batch.detail,
                "source": {"topic": batch.topic, "partition": batch.partition,
                           "offset": batch.first_offset, "last_offset": batch.last_offset},
                "value": "",
            }
            await self.publish_dead_letter(None, json.dumps(envelope).encode())
            meta = DeadLetterRecord(reason=batch.reason, detail=batch.detail,
                                    source_topic=batch.topic, source_partition=batch.partition,
                                    source_offset=batch.first_offset)
            rows.append((*dead_letter_row(meta, None), batch.last_offset))
        sink = self.batch_dead_letter_sink
        refused = await sink.write(rows) if sink is not None else []
        for _row, message in refused:  # the DLQ topic still holds the envelope
            log.error("request_dead_letters refused a batch row: %s", message)
        self.stats.undecodable_batches += len(batches)


Committed = Callable[[set[Any]], Awaitable[Mapping[Any, int | None]]]


def raw(message: Any) -> RawRecord:
    """A faust message or an aiokafka record, as the processor takes it."""
    return RawRecord(topic=message.topic, partition=message.partition, offset=message.offset,
                     key=message.key, value=message.value)


class BatchProcessor(Protocol):
    """What a ledgered agent hands its batches to (IngestProcessor, the analytics stage)."""

    async def process(self, records: Sequence[RawRecord]) -> Any: ...

    async def dead_letter_batches(self, batches: Sequence[UndecodableBatch]) -> None: ...


def register_ledgered_agent(
    app: faust.App, source: faust.TopicT, name: str, processor: BatchProcessor, batch_rows: int,
    batch_seconds: float, committed_offsets: Committed, gap_reader: GapReader,
    undecodable: UndecodableBatches | None = None, settle_every: float = 1.0,
    ledger: OffsetLedger | None = None, catch_up_every: float = 2.0,
    catch_up_after: float = 10.0, read_ahead: ReadAhead | None = None,
) -> faust.types.AgentT:
    """Attach an agent over `source` to `app` that hands batches to `processor` in log order
    and commits only what it processed (the offset ledger). Batches the fetchers could not
    decode (reported to `undecodable`) are dead-lettered before the ledger moves past them, by
    the agent or a timer. An assigned partition whose ledger stands below the partition's end
    for `catch_up_after` seconds (faust delivers none of it) is read directly.

    With `read_ahead`, a task reads the assigned partitions on from the ledger in `getmany`
    batches and faust's own delivery of them is paused: faust hands records over one at a time,
    each waiting for turns of an event loop other stages keep busy, and fell behind them. faust
    still assigns the partitions (and so the tables' partitions), recovers the tables and commits
    the ledger's offsets."""

    ledger = ledger or OffsetLedger(source.get_topic_name())
    batch_lock = asyncio.Lock()  # one batch, gap, catch-up or settlement at a time
    tails = StalledTails(catch_up_after)

    async def settle_undecodable() -> None:
        """Dead-letter the batches the fetchers stepped over; then the ledger may pass them."""
        if undecodable is None:
            return
        batches = undecodable.take(ledger.topic)
        if not batches:
            return
        try:
            async with slow_step("dead-letter undecodable batches"):
                await processor.dead_letter_batches(batches)
        except BaseException:
            undecodable.put_back(batches)
            raise
        for batch in batches:
            if batch.topic == ledger.topic:
                ledger.stepped_over(TP(batch.topic, batch.partition), batch.first_offset,
                                    batch.last_offset + 1)

    @app.timer(settle_every)
    async def settle_idle_partitions() -> None:
        # An undecodable batch at the end of a partition is followed by no record that would
        # bring the agent round: it is settled here (a timer that raises crashes the app).
        if undecodable is None or batch_lock.locked():
            return
        try:
            async with batch_lock:
                with kafka_errors("dead-lettering undecodable batches"):
                    await settle_undecodable()
        except (OperationalError, OSError) as exc:  # KafkaUnavailable is an OSError
            log.warning("undecodable batches not dead-lettered this round: %s", exc)

    check_failed = False  # the last round's check failed (one warning per outage)

    @app.timer(catch_up_every)
    async def catch_up_stalled_partitions() -> None:
        nonlocal check_failed
        if batch_lock.locked() or not settled():
            return
        try:
            with kafka_errors("checking the ends of the assigned partitions"):
                stalled = await find_stalled()  # (the broker's answer waited for unlocked)
                if stalled:
                    async with batch_lock:
                        await catch_up(stalled)
        except (OperationalError, OSError) as exc:  # KafkaUnavailable is an OSError
            if not check_failed:
                log.warning("stalled partitions not checked (%s); trying every %.0f s",
                            exc, catch_up_every)
            check_failed = True
        else:
            check_failed = False

    def settled() -> bool:
        """No rebalance under way and the tables recovered for the current assignment: the
        state of every assigned partition is loaded, so its records may be processed."""
        return not app.rebalancing and not app.in_recovery

    async def find_stalled() -> dict[Any, int]:
        """The assigned partitions whose ledger stood below their end too long, with the end."""
        tps = {tp for tp in app.consumer.assignment() if tp.topic == ledger.topic}
        if not tps:
            return {}
        if any(not ledger.knows(tp) for tp in tps):  # assigned, no batch of it delivered yet
            async with batch_lock:
                new = {tp for tp in tps if not ledger.knows(tp)}
                if new and settled():
                    await begin(new)
        ends = await gap_reader.ends(tps)
        now = time.monotonic()
        stalled = {}
        for tp in sorted(tps):
            position = ledger.committable(tp)
            if position is not None and tails.stalled(tp, position, ends[tp], now):
                stalled[tp] = ends[tp]
        return stalled

    async def catch_up(stalled: dict[Any, int]) -> None:
        for tp, end in stalled.items():
            position = ledger.committable(tp)
            if not settled() or position is None or position >= end:
                continue  # a rebalance began, or a batch came meanwhile
            read = await read_gap(tp, Gap(position, end), quiet=True)
            offsets.offer_commit(app.consumer, tp)
            if read:  # (else only a transaction marker stood between the position and the end)
                ledger.tails_read += 1
                log.warning("%s: %d records at offsets %d..%d were not delivered for %.0f s; "
                            "read them directly", tp, read, position, end - 1, catch_up_after)

    @app.on_partitions_assigned.connect
    async def restart_ledger(app: faust.App, assigned: Any = None, **_kw: Any) -> None:
        ledger.forget_all()
        tails.forget_all()

    @app.on_before_shutdown.connect
    async def stop_gap_reader(app: faust.App, **_kw: Any) -> None:
        await gap_reader.stop()
        if read_ahead is not None:
            await read_ahead.stop()

    async def begin(tps: set[Any]) -> None:
        consumer = app.consumer
        offsets.install(consumer, ledger)
        committed = await committed_offsets(tps)
        unknown = [tp for tp, offset in committed.items() if offset is None]
        earliest = await consumer.earliest_offsets(*unknown) if unknown else {}
        for tp in tps:
            ledger.begin(tp, committed[tp] if committed[tp] is not None else earliest[tp])

    async def read_gap(tp: Any, gap: Gap, quiet: bool = False) -> int:
        if not quiet:
            log.warning("%s: the consumer skipped offsets in %d..%d; reading them directly",
                        tp, gap.start, gap.end - 1)
        read = 0
        async for chunk in gap_reader.read(tp, gap):
            if not ledger.knows(tp):  # reassigned meanwhile: its new owner reads it
                log.info("%s was reassigned while its gap was read; leaving the rest", tp)
                return read
            read += len(chunk)
            await processor.process([raw(record) for record in chunk])
            await settle_undecodable()  # a batch the gap reader stepped over, before passing it
            ledger.stored_through(tp, chunk[-1].offset + 1)
        await settle_undecodable()
        ledger.stored_through(tp, gap.end)
        return read

    @app.agent(source, name=name)
    async def ingest(stream: faust.StreamT) -> None:
        async for events in stream.take_events(batch_rows, within=batch_seconds):
            async with batch_lock:
                await ingest_batch(events)

    async def ingest_batch(events: Sequence[Any]) -> None:
        # take_events acknowledges a batch in a `finally`, even when processing it failed or
        # was cancelled (a SIGTERM during a ClickHouse outage). That is harmless: offsets are
        # committed from the ledger, which moves only once a batch is stored.
        by_partition: dict[Any, list[int]] = {}
        for event in events:
            by_partition.setdefault(event.message.tp, []).append(event.message.offset)
        new = {tp for tp in by_partition if not ledger.knows(tp)}
        if new:
            await begin(new)
        # The fetcher reports a batch it stepped over before it delivers the records after
        # it: settled first, the ledger sees no hole where that batch was.
        await settle_undecodable()
        admitted: dict[Any, set[int]] = {}
        gaps: dict[Any, Gap] = {}
        for tp, offsets_of_tp in by_partition.items():
            fresh, gap = ledger.plan(tp, offsets_of_tp)
            admitted[tp] = set(fresh)
            if gap is not None:
                gaps[tp] = gap
        records = [raw(event.message) for event in events
                   if event.message.offset in admitted[event.message.tp]]
        if records:
            await processor.process(records)
        for tp, fresh_offsets in admitted.items():
            if fresh_offsets:
                ledger.stored_through(tp, max(fresh_offsets) + 1)
        for tp, gap in gaps.items():
            await read_gap(tp, gap)

    if read_ahead is not None:
        async def read_ahead_forever() -> None:
            while not app.should_stop:
                await read_ahead_once()

        @app.task
        async def read_ahead_loop() -> None:
            await run_loop("the analytics read-ahead", read_ahead_forever,
                           lambda error: setattr(read_ahead, "crashed", error))

        @app.on_partitions_revoked.connect
        async def finish_batch_before_revoking(app: faust.App, *_args: Any, **_kw: Any) -> None:
            # A batch read ahead is no faust event: faust's wait for its streams to go empty
            # does not wait for it. Its state must be in the changelogs before the partitions
            # go to another worker, which recovers them from there.
            timeout = app.conf.broker_session_timeout / 2
            try:
                await asyncio.wait_for(batch_lock.acquire(), timeout)
            except TimeoutError:
                log.warning("a batch was still being processed %.0f s into a rebalance",
                            timeout)
                return
            batch_lock.release()

    read_failed = False  # the last read failed (one warning per outage)

    async def read_ahead_once() -> None:
        """Read the assigned partitions on from the ledger (one `ReadAhead` batch, waiting up
        to `batch_seconds` for one), then process it under the batch lock, unless the ledger
        moved meanwhile (a faust batch, a gap, a rebalance: then read again from there).
        Stops faust's own delivery of the partitions: it would only bring records again."""
        nonlocal read_failed
        assert read_ahead is not None
        if not settled():
            await asyncio.sleep(batch_seconds)
            return
        assigned = {tp for tp in app.consumer.assignment() if tp.topic == ledger.topic}
        try:
            with kafka_errors("reading ahead"):
                if any(not ledger.knows(tp) for tp in assigned):
                    async with batch_lock:  # assigned, but nothing of it read yet
                        new = {tp for tp in assigned if not ledger.knows(tp)}
                        if new and settled():
                            await begin(new)
                positions = {tp: position for tp in assigned
                             if (position := ledger.committable(tp)) is not None}
                if not positions:
                    await asyncio.sleep(batch_seconds)
                    return
                records, after = await read_ahead.read(positions)
            async with batch_lock:
                if not settled() or any(ledger.committable(tp) != position
                                        for tp, position in positions.items()):
                    read_ahead.forget()
                    return
                paused = app.consumer._paused_partitions  # noqa: SLF001
                app.consumer.pause_partitions([tp for tp in positions if tp not in paused])
                with kafka_errors("analysing runs read ahead"):
                    if records:
                        await processor.process([raw(record) for record in records])
                    await settle_undecodable()  # one it stepped over, before the ledger passes
                for tp, end in after.items():
                    if end > positions[tp] and ledger.knows(tp):  # (else: reassigned meanwhile)
                        ledger.stored_through(tp, end)
                        offsets.offer_commit(app.consumer, tp)
        except OSError as exc:  # KafkaUnavailable is an OSError: read again from the ledger
            if not read_failed:
                log.warning("reading ahead failed (%s); trying every second", exc)
            read_failed = True
            read_ahead.forget()
            await asyncio.sleep(1.0)
            return
        read_failed = False

    return ingest
