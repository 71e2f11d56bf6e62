"""Record batches this process cannot decode are reported and stepped over, never fatal.

aiokafka decompresses and parses a record batch only when its records are iterated, inside the
caller's `getmany`: a batch with a codec it lacks (`UnsupportedCodecError`), a corrupt payload
or a CRC mismatch raises there, faust's fetcher dies, and after a restart the same batch raises
again (a crash loop; see issue 17). `install(reporter)` wraps the batches every aiokafka fetcher
of this process hands to its record iterator: each data batch is decoded up front; one that
cannot be is reported (topic, partition, offset range, reason) and presented to aiokafka as a
batch to step over (as it steps over transaction markers), so the fetch position moves past it
and the records after it keep flowing. The ingest agent dead-letters the reports before its
offset ledger moves past them (pipelines/ingest/agents.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aiokafka.consumer.fetcher import PartitionRecords
from aiokafka.errors import CorruptRecordException, UnsupportedCodecError

log = logging.getLogger(__name__)

_original_init = PartitionRecords.__init__


@dataclass(frozen=True)
class UndecodableBatch:
    """Offsets `first_offset`..`last_offset` of a partition: one batch nobody can read."""

    topic: str
    partition: int
    first_offset: int
    last_offset: int
    reason: str  # unsupported_codec | crc_mismatch | corrupt_batch
    detail: str


class UndecodableBatches:
    """The batches the fetchers of this process stepped over, until someone takes them."""

    def __init__(self) -> None:
        self._pending: list[UndecodableBatch] = []
        self._lock = threading.Lock()  # reports come from the event loop; reads may not
        self._markers: dict[tuple[str, int], dict[int, int]] = {}
        self.total = 0

    def report(self, batch: UndecodableBatch) -> None:
        log.error(
            "UNDECODABLE RECORD BATCH %s[%d] offsets %d..%d skipped (%s): %s. Its records are "
            "dead-lettered as a range; install the codec or re-publish them.",
            batch.topic, batch.partition, batch.first_offset, batch.last_offset, batch.reason,
            batch.detail,
        )
        with self._lock:
            self._pending.append(batch)
            self.total += 1

    def take(self, topic: str | None = None) -> list[UndecodableBatch]:
        """The reports not taken yet (each report is taken once), of `topic` or of all."""
        with self._lock:
            if topic is None:
                pending, self._pending = self._pending, []
            else:
                pending = [b for b in self._pending if b.topic == topic]
                self._pending = [b for b in self._pending if b.topic != topic]
        return pending

    def marker(self, topic: str, partition: int, start: int, end: int) -> None:
        """A control batch (a transaction marker) at offsets start..end - 1: no record there."""
        with self._lock:
            self._markers.setdefault((topic, partition), {})[start] = end

    def markers(self, topic: str, partition: int) -> dict[int, int]:
        """start -> end of the markers seen on a partition (the caller prunes what it passed)."""
        with self._lock:
            return self._markers.setdefault((topic, partition), {})

    def put_back(self, batches: list[UndecodableBatch]) -> None:
        """Reports whose dead letters could not be stored: taken again next time."""
        with self._lock:
            self._pending[:0] = batches


def _reason(error: Exception) -> str:
    if isinstance(error, UnsupportedCodecError):
        return "unsupported_codec"
    if isinstance(error, CorruptRecordException) and "CRC" in str(error):
        return "crc_mismatch"
    return "corrupt_batch"


class _DecodedBatch:
    """A batch whose records were decoded up front; iterates them, answers like the batch."""

    def __init__(self, batch: Any, records: list[Any]) -> None:
        self._batch = batch
        self._records = records

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batch, name)

    def validate_crc(self) -> bool:
        return True  # checked before decoding

    def __iter__(self) -> Iterator[Any]:
        return iter(self._records)


class _SteppedOver:
    """What aiokafka sees instead of an undecodable batch: a control batch with no producer,
    which its record iterator skips, moving the fetch position to the batch's end."""

    is_control_batch = True
    is_transactional = False
    producer_id = None

    def __init__(self, batch: Any) -> None:
        self.base_offset = batch.base_offset
        self.next_offset = batch.next_offset

    def validate_crc(self) -> bool:
        return True

    def __iter__(self) -> Iterator[Any]:
        return iter(())


class _CheckedRecords:
    """aiokafka's MemoryRecords of one fetched partition, with each batch decoded up front."""

    def __init__(self, tp: Any, records: Any, reporter: UndecodableBatches) -> None:
        self._tp = tp
        self._records = records
        self._reporter = reporter

    def has_next(self) -> bool:
        return bool(self._records.has_next())

    def size_in_bytes(self) -> int:
        return int(self._records.size_in_bytes())

    def next_batch(self) -> Any:
        batch = self._records.next_batch()
        if batch is None:
            return batch
        if batch.is_control_batch:
            self._reporter.marker(self._tp.topic, self._tp.partition, batch.base_offset,
                                  batch.next_offset)
            return batch
        try:
            if not batch.validate_crc():
                raise CorruptRecordException("CRC mismatch: the batch's bytes are damaged")
            return _DecodedBatch(batch, list(batch))
        except Exception as error:  # any failure to decode is this batch's, reported below
            self._reporter.report(UndecodableBatch(
                topic=self._tp.topic, partition=self._tp.partition,
                first_offset=batch.base_offset, last_offset=batch.next_offset - 1,
                reason=_reason(error), detail=f"{type(error).__name__}: {error}"[:2000],
            ))
            return _SteppedOver(batch)


_reporter: UndecodableBatches | None = None


def _guarded_init(self: PartitionRecords, tp: Any, records: Any, *args: Any, **kw: Any) -> None:
    _original_init(self, tp, records, *args, **kw)
    if _reporter is not None:
        # The record iterator is a generator that reads self._records on its first step.
        self._records = _CheckedRecords(tp, records, _reporter)


def install(reporter: UndecodableBatches) -> None:
    """Make every aiokafka consumer of this process step over undecodable batches, reporting
    them to `reporter` (the last installed reporter gets every report)."""
    global _reporter
    _reporter = reporter
    if PartitionRecords.__init__ is not _guarded_init:
        PartitionRecords.__init__ = _guarded_init  # type: ignore[method-assign]
