"""The source offsets the pipeline commits: only what it stored, contiguously.

faust commits, per partition, the first run of consecutive acknowledged offsets. It does not check
that the run starts where the last commit ended when the partition has no committed offset yet,
and its check is one offset lenient otherwise. Records that its fetch loop drops (a flow
suspension during a rebalance abandons the record but still advances its read offset) therefore
end up committed unprocessed: after the next restart they are gone (seen in our SIGKILL tests:
1,227 events of one partition skipped). The ledger here is the pipeline's own account:

* on the first batch of a partition after an assignment, the partition's start is the group's
  committed offset as the broker has it (faust's own copy may not be loaded yet: it resumes the
  stream before it seeks to the committed offsets), or its earliest offset when there is none;
* a batch whose offsets of a partition do not follow on from the ledger without a hole means the
  consumer skipped records: the worker reads that partition's range from the ledger through the
  batch's last offset itself (`GapReader`, a plain consumer outside the group) and processes it
  in log order. An earlier version seeked faust's consumer back instead; faust's fetch loop can
  then deliver records it had fetched before the seek, move its read offset past the hole again
  and drop the re-read, and a partition with no newer records never saw another batch to notice
  it (the likely cause of a worker that made no progress for 90 s after a restart, once in CI);
* the offset faust commits for a source partition is the ledger's, never more;
* a hole is seen only when a later record arrives. A partition whose records faust does not
  deliver at all (after a rebalance faust can leave an assigned partition unfetched, or fetched
  past records it dropped, with nothing newer to follow: faust-streaming issues #166 and #629;
  once in our scale-out test, a taken-over partition stood at its commit for good) shows no
  hole. So the ledger's position is also compared with the partition's end (its last stable
  offset) every few seconds: a partition whose position stays below its end for
  `StalledTails.after_seconds` is read directly, as a gap.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.transport.consumer import Consumer

from keywarden.kafka import KafkaUnavailable, kafka_errors, make_admin, make_consumer
from keywarden.settings import Settings

log = logging.getLogger(__name__)

_original_new_offset = Consumer._new_offset


@dataclass(frozen=True)
class Gap:
    """Offsets `start`..`end - 1` of a partition must be read directly (the batch's own records
    of that partition included): the consumer skipped some of them."""

    start: int
    end: int


@dataclass
class OffsetLedger:
    """Per source partition: the next offset the pipeline has not stored (see module docstring)."""

    topic: str
    partitions: dict[Any, int] = field(default_factory=dict)
    gaps: int = 0  # ranges read directly so far (holes in a batch)
    tails_read: int = 0  # stalled partitions read to their end (`StalledTails`)
    # Transaction markers seen by the fetchers (topic, partition -> {start: end}): offsets that
    # hold no record, so a hole exactly over one is no skipped record (batches.py reports them).
    markers: Callable[[str, int], dict[int, int]] | None = None

    def knows(self, tp: Any) -> bool:
        return tp in self.partitions

    def begin(self, tp: Any, start: int) -> None:
        self.partitions[tp] = start

    def forget_all(self) -> None:
        """On every (re)assignment: partitions start again from their committed offsets."""
        self.partitions.clear()

    def plan(self, tp: Any, offsets: Iterable[int]) -> tuple[list[int], Gap | None]:
        """The offsets of one batch's partition to process as delivered, or the gap to read.

        Offsets below the ledger were stored already (a redelivery). The rest is processed as
        delivered when it follows on from the ledger without a hole; otherwise nothing of the
        batch's partition is, and the range from the ledger through its last offset is read
        directly so that events are processed in log order."""
        expected = self.partitions[tp]
        fresh = sorted(offset for offset in set(offsets) if offset >= expected)
        if not fresh or fresh == list(range(expected, expected + len(fresh))):
            return fresh, None
        if self.markers is not None:
            markers = self.markers(tp.topic, tp.partition)
            position = expected
            for offset in fresh:
                while position < offset and position in markers:
                    position = markers[position]
                if position != offset:
                    break
                position += 1
            else:
                return fresh, None
        self.gaps += 1
        return [], Gap(expected, fresh[-1] + 1)

    def stored_through(self, tp: Any, end: int) -> None:
        """Every record of `tp` below `end` is stored (rows, state): the ledger moves on.

        A partition the ledger no longer knows was reassigned while its batch was processed; it
        starts again from the group's committed offset, so there is nothing to move."""
        if tp in self.partitions and end > self.partitions[tp]:
            self.partitions[tp] = end
            if self.markers is not None:
                markers = self.markers(tp.topic, tp.partition)
                for start in [start for start in list(markers) if start < end]:
                    markers.pop(start, None)

    def stepped_over(self, tp: Any, start: int, end: int) -> None:
        """Offsets `start`..`end - 1` are one undecodable batch, already dead-lettered: a ledger
        standing inside it moves to its end (one standing before it waits for the records in
        between, which are processed or read as a gap first)."""
        position = self.partitions.get(tp)
        if position is not None and start <= position < end:
            self.partitions[tp] = end

    def committable(self, tp: Any) -> int | None:
        return self.partitions.get(tp)


@dataclass
class StalledTails:
    """Which partitions' ledgers stand below their partition's end without moving.

    A partition is stalled once its position has stayed the same, below the end, for
    `after_seconds`: longer than any batch takes to arrive from a consumer that fetches it.
    A backlog being worked through moves the position, so it never counts as stalled."""

    after_seconds: float
    _since: dict[Any, tuple[int, float]] = field(default_factory=dict)

    def stalled(self, tp: Any, position: int, end: int, now: float) -> bool:
        if position >= end:
            self._since.pop(tp, None)
            return False
        seen = self._since.get(tp)
        if seen is None or seen[0] != position:
            self._since[tp] = (position, now)
            return False
        return now - seen[1] >= self.after_seconds

    def forget_all(self) -> None:
        self._since.clear()


@dataclass
class _DirectReader:
    """Reads with a consumer of its own, outside the group (no commits, `read_committed`),
    started at the first read."""

    settings: Settings
    _consumer: AIOKafkaConsumer | None = field(default=None, init=False)

    def _options(self) -> dict[str, Any]:
        """The consumer's options beyond those every direct reader has."""
        return {}

    async def _ensure(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = make_consumer(group_id=None, settings=self.settings,
                                     isolation_level="read_committed", **self._options())
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def stop(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()


@dataclass
class GapReader(_DirectReader):
    """Reads an offset range of a source partition with its own consumer (no group, no commits).

    A range is read through `end` even when some offsets in it hold no record (transaction
    markers, compaction): the consumer's position, not the last record, says when it is done.
    While the broker is unreachable it keeps trying: the worker cannot go on without the range."""

    chunk_records: int = 1000
    retry_seconds: float = 1.0

    async def read(self, tp: Any, gap: Gap) -> AsyncIterator[list[Any]]:
        """Yield the records of `tp` in `gap`, in log order, at most `chunk_records` at a time."""
        consumer = await self._ensure()
        partition = TopicPartition(tp.topic, tp.partition)
        consumer.assign([partition])
        consumer.seek(partition, gap.start)
        position = gap.start
        while position < gap.end:
            try:
                with kafka_errors(f"reading {tp}"):
                    fetched = await consumer.getmany(partition, timeout_ms=1000,
                                                     max_records=self.chunk_records)
                    after = await consumer.position(partition)
            except KafkaUnavailable as exc:
                log.warning("reading %s offsets %d..%d failed (%s); retrying", tp, position,
                            gap.end - 1, exc)
                await asyncio.sleep(self.retry_seconds)
                consumer.seek(partition, position)
                continue
            records = [r for r in fetched.get(partition, []) if r.offset < gap.end]
            if records:
                yield records
            position = after

    async def ends(self, tps: Iterable[Any]) -> dict[Any, int]:
        """Each partition's last stable offset: where a read_committed reader of it ends."""
        consumer = await self._ensure()
        wanted = {tp: TopicPartition(tp.topic, tp.partition) for tp in tps}
        found = await consumer.end_offsets(list(wanted.values()))
        return {tp: found[partition] for tp, partition in wanted.items()}

    def _options(self) -> dict[str, Any]:
        return {"max_poll_records": self.chunk_records}


@dataclass
class ReadAhead(_DirectReader):
    """Reads a topic's assigned partitions onwards from given positions, a batch of up to
    `max_records` records at a time, with its own consumer (no group, no commits,
    read_committed).

    What the agent's faust consumer delivers one message at a time, each message waiting for
    turns of the event loop that the ingest stage shares (a turn lasts up to tens of ms while it
    decodes and prices), this reads in `getmany` batches: the analytics stage keeps pace with the
    ingest stage instead of falling behind it and catching up at the end (docs/benchmarks.md,
    issue 16)."""

    max_records: int = 5000
    wait_ms: int = 500
    crashed: BaseException | None = None  # set by whoever runs the reads when they raised
    _at: dict[Any, int] = field(default_factory=dict)  # where the consumer stands, by partition

    def forget(self) -> None:
        """The next read seeks to the positions it is given (they moved elsewhere)."""
        self._at.clear()

    async def read(self, positions: dict[Any, int]) -> tuple[list[Any], dict[Any, int]]:
        """The records from `positions` on (each partition's in log order), and each partition's
        position after them: past the transaction markers read too, so it may stand beyond the
        last record. Waits up to `wait_ms` for the first record; none: all are read to their
        end (their last stable offset)."""
        consumer = await self._ensure()
        wanted = {tp: TopicPartition(tp.topic, tp.partition) for tp in positions}
        try:
            if consumer.assignment() != set(wanted.values()):
                consumer.assign(list(wanted.values()))
                self._at.clear()
            for tp, offset in positions.items():
                if self._at.get(tp) != offset:
                    consumer.seek(wanted[tp], offset)
            records: list[Any] = []
            timeout = self.wait_ms
            while len(records) < self.max_records:
                fetched = await consumer.getmany(*wanted.values(), timeout_ms=timeout,
                                                 max_records=self.max_records - len(records))
                if not fetched:
                    break
                for part in fetched.values():
                    records.extend(part)
                timeout = 0  # then only what has arrived already
            after = {tp: await consumer.position(partition) for tp, partition in wanted.items()}
        except BaseException:
            self.forget()
            raise
        self._at = dict(after)
        return records, after

    def _options(self) -> dict[str, Any]:
        fetch = self.settings.pipeline_fetch_partition_bytes  # as the ingest stage fetches
        return {"max_poll_records": self.max_records, "max_partition_fetch_bytes": fetch,
                "fetch_max_bytes": 4 * fetch}


async def group_committed(settings: Settings, group_id: str,
                          tps: Iterable[Any]) -> dict[Any, int | None]:
    """The group's committed offset of each partition, from the broker (None: none yet)."""
    tps = list(tps)
    admin = make_admin(settings)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(
            group_id, partitions=[TopicPartition(tp.topic, tp.partition) for tp in tps])
    finally:
        await admin.close()
    offsets = {(tp.topic, tp.partition): meta.offset for tp, meta in found.items()}
    result: dict[Any, int | None] = {}
    for tp in tps:
        offset = offsets.get((tp.topic, tp.partition))
        result[tp] = offset if offset is not None and offset >= 0 else None
    return result


def _guarded_new_offset(self: Consumer, tp: Any) -> int | None:
    proposed = _original_new_offset(self, tp)  # also trims faust's own bookkeeping
    ledger: OffsetLedger | None = getattr(self, "_keywarden_ledger", None)
    if ledger is None or tp.topic != ledger.topic:
        return proposed
    safe = ledger.committable(tp)
    if safe is None:
        return None
    if proposed is not None and proposed > safe:
        log.debug("commit of %s held at %d (faust proposed %d)", tp, safe, proposed)
    return safe


def offer_commit(consumer: Consumer, tp: Any) -> None:
    """Make faust's next commit include `tp`, at the ledger's offset: faust commits only the
    partitions it holds acknowledgements for, and a partition read directly because faust
    delivered none of it has none (its commit would otherwise stay where it was)."""
    consumer._acked.setdefault(tp, [])  # noqa: SLF001 - a defaultdict(list) in faust 0.15


def install(consumer: Consumer, ledger: OffsetLedger) -> None:
    """Make `consumer` commit `ledger.topic` partitions at the ledger's offsets."""
    consumer._keywarden_ledger = ledger  # type: ignore[attr-defined]
    if Consumer._new_offset is not _guarded_new_offset:
        Consumer._new_offset = _guarded_new_offset  # type: ignore[method-assign]
