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
* a batch is processed only through the offsets that follow on without a hole; a hole means the
  consumer skipped records, so the worker seeks the partition back to the first missing offset
  and leaves the records after the hole for when they are delivered again, in order (records
  delivered twice are harmless anyway: every sink and the state dedup by event_id);
* the offset faust commits for a source partition is the ledger's, never more.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from faust.transport.consumer import Consumer

from keywarden.kafka import make_admin
from keywarden.settings import Settings

log = logging.getLogger(__name__)

_original_new_offset = Consumer._new_offset


@dataclass
class PartitionProgress:
    next_offset: int  # the first offset not yet stored
    seek_requested_at: float | None = None  # monotonic time of the last seek back
    seeks: int = 0  # seeks back to next_offset so far


@dataclass
class OffsetLedger:
    """Per source partition: the next offset the pipeline has not stored (see module docstring)."""

    topic: str
    reseek_after_seconds: float = 10.0
    # A hole still there after this many re-reads is in the log itself (transaction markers,
    # compaction): the ledger steps over it rather than stall the partition.
    max_seeks: int = 3
    partitions: dict[Any, PartitionProgress] = field(default_factory=dict)
    holes: int = 0  # seeks back
    deferred: int = 0  # records left for after a seek back

    def knows(self, tp: Any) -> bool:
        return tp in self.partitions

    def begin(self, tp: Any, start: int) -> None:
        self.partitions[tp] = PartitionProgress(next_offset=start)

    def forget_all(self) -> None:
        """On every (re)assignment: partitions start again from their committed offsets."""
        self.partitions.clear()

    def admit(self, tp: Any, offsets: Iterable[int]) -> tuple[set[int], int | None]:
        """Which of `offsets` (of one batch) to process now, and where to seek back to.

        Admitted: the offsets that follow on from the ledger without a hole. Offsets below it
        were stored already; offsets after a hole wait until the records of the hole were read
        again (they are delivered again after the seek back), so that events are processed in
        log order and the event-time state does not take re-read events for late ones."""
        progress = self.partitions[tp]
        expected = progress.next_offset
        admitted: set[int] = set()
        hole_end: int | None = None
        for offset in sorted(set(offsets)):
            if offset < expected:
                continue  # stored already (a redelivery, or read again after a seek back)
            if offset > expected:
                if progress.seeks < self.max_seeks:
                    hole_end = offset
                    break  # a hole: the consumer skipped expected..offset-1
                log.error("%s: offsets %d..%d never arrived in %d re-reads; stepping over "
                          "them (not records: transaction markers or compaction)", tp,
                          expected, offset - 1, progress.seeks)
            admitted.add(offset)
            expected = offset + 1
        self.deferred += sum(1 for offset in set(offsets) if offset >= expected)
        if hole_end is None:
            return admitted, None
        now = time.monotonic()
        if (progress.seek_requested_at is not None
                and now - progress.seek_requested_at < self.reseek_after_seconds):
            return admitted, None
        progress.seek_requested_at = now
        progress.seeks += 1
        self.holes += 1
        log.warning("%s: the consumer skipped offsets %d..%d; seeking back to %d (re-read %d)",
                    tp, expected, hole_end - 1, expected, progress.seeks)
        return admitted, expected

    def stored(self, tp: Any, admitted: Iterable[int]) -> None:
        """The admitted offsets of a batch are stored (rows, state): the ledger moves on."""
        last = max(admitted, default=None)
        progress = self.partitions[tp]
        if last is not None and last >= progress.next_offset:
            progress.next_offset = last + 1
            progress.seek_requested_at = None
            progress.seeks = 0

    def committable(self, tp: Any) -> int | None:
        progress = self.partitions.get(tp)
        return progress.next_offset if progress is not None else None


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


def install(consumer: Consumer, ledger: OffsetLedger) -> None:
    """Make `consumer` commit `ledger.topic` partitions at the ledger's offsets."""
    consumer._keywarden_ledger = ledger  # type: ignore[attr-defined]
    if Consumer._new_offset is not _guarded_new_offset:
        Consumer._new_offset = _guarded_new_offset  # type: ignore[method-assign]
