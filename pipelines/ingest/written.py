"""The runs this process wrote, handed to its analytics stage without decoding their bytes again.

The ingest stage writes each batch's per-key-minute runs (`schemas/events/usage_minute.py`) to
the runs topic in a Kafka transaction, and the analytics stage of the same process usually reads
them back a moment later: decoding a run it has just encoded cost about 3% of a worker's CPU
(issue 16). Once a transaction has committed, the stage records where its runs landed
(partition and offset); the analytics stage takes the run at that place instead of decoding the
record. The topic stays the one source of truth: the analytics stage reads, orders and commits
the records as before, and a run it does not find here (written by another worker, before a
restart, or left out by the bound) is decoded from the record.

A run is taken once: a batch analysed again after a failure decodes fresh runs. The runs held are
bounded by their events, oldest dropped first (runs of partitions this process's analytics stage
does not own are never taken).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from schemas.events.usage_minute import UsageMinute


@dataclass
class WrittenRuns:
    """Committed runs by (runs topic, partition, offset), holding at most `max_events` events;
    `hits` counts the runs taken."""

    max_events: int
    hits: int = 0
    _runs: dict[tuple[str, int, int], UsageMinute] = field(default_factory=dict)
    _events: int = 0

    def add(self, topic: str, partition: int,
            batches: Iterable[tuple[int, Sequence[UsageMinute]]]) -> None:
        """The runs of a committed transaction: (base offset, runs in offset order) per record
        batch written."""
        runs = self._runs
        for base, members in batches:
            for index, run in enumerate(members):
                runs[(topic, partition, base + index)] = run
                self._events += len(run.events)
        while self._events > self.max_events and runs:
            oldest = next(iter(runs))
            self._events -= len(runs.pop(oldest).events)

    def take(self, topic: str, partition: int, offset: int) -> UsageMinute | None:
        run = self._runs.pop((topic, partition, offset), None)
        if run is not None:
            self._events -= len(run.events)
            self.hits += 1
        return run

    def __len__(self) -> int:
        return len(self._runs)
