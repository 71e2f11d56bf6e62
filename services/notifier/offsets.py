"""Which Kafka offsets may be committed: a record is done when it was delivered and recorded (or
skipped, or dead-lettered); a partition's committable offset is its lowest record not yet done.
Records finish out of order (one channel retries while others deliver), so commits only advance
over a finished prefix, and a restart redelivers — and then skips — whatever was past it.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field


@dataclass
class _Partition:
    pending: set[int] = field(default_factory=set)
    high: int = -1  # highest offset started
    committed: int | None = None  # last value handed out by committable()


class OffsetTracker:
    """Started and finished offsets per partition (any hashable key, e.g. a TopicPartition).

    Records are started in fetch order, so every offset below the highest started one either
    was started or does not exist (transaction markers, compaction): the commit point is the
    lowest pending offset, or one past the highest when none is pending.
    """

    def __init__(self) -> None:
        self._partitions: dict[Hashable, _Partition] = {}

    def started(self, partition: Hashable, offset: int) -> None:
        state = self._partitions.setdefault(partition, _Partition())
        state.pending.add(offset)
        state.high = max(state.high, offset)

    def finished(self, partition: Hashable, offset: int) -> None:
        state = self._partitions.get(partition)
        if state is not None:
            state.pending.discard(offset)

    def committable(self) -> dict[Hashable, int]:
        """`{partition: next offset to read}` for partitions whose commit point moved."""
        result: dict[Hashable, int] = {}
        for partition, state in self._partitions.items():
            if state.high < 0:
                continue
            position = min(state.pending) if state.pending else state.high + 1
            if position != state.committed:
                state.committed = position
                result[partition] = position
        return result

    def forget(self, partitions: Iterable[Hashable]) -> None:
        """Drop revoked partitions (their unfinished records are redelivered to the new owner)."""
        for partition in partitions:
            self._partitions.pop(partition, None)

    @property
    def in_flight(self) -> int:
        return sum(len(state.pending) for state in self._partitions.values())


__all__ = ["OffsetTracker"]
