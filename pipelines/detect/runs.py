"""The analytics stage's batch processor: runs from `llm.usage.minutes.v1` -> the per-key state
and rules (`AnalyticsStep`). A record that is not a valid run is dead-lettered like a request."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
from pydantic import ValidationError

from pipelines.detect.agents import AnalyticsStep
from pipelines.ingest.agents import IngestProcessor, RawRecord
from pipelines.ingest.batches import UndecodableBatch
from pipelines.ingest.decode import DeadLetter
from pipelines.ingest.written import WrittenRuns
from schemas.events.usage_minute import UsageMinute

# Runs decoded between two turns of the event loop (~15 events each: a few ms); a read-ahead
# batch holds thousands, and the ingest stage's transactions wait for turns of the same loop.
DECODE_SLICE = 200


@dataclass
class RunsStats:
    received: int = 0  # runs handed to the analytics stage
    analysed: int = 0  # events in them


@dataclass
class RunsProcessor:
    step: AnalyticsStep
    dead_letters: IngestProcessor
    stats: RunsStats
    written: WrittenRuns | None = None  # runs this process wrote (pipelines/ingest/written.py)

    async def process(self, records: Sequence[RawRecord]) -> None:
        runs: list[UsageMinute] = []
        bad: list[tuple[RawRecord, DeadLetter]] = []
        written = self.written
        decoded = 0
        for record in records:
            run = (written.take(record.topic, record.partition, record.offset)
                   if written is not None else None)
            if run is not None:
                runs.append(run)
                continue
            decoded += 1
            if not decoded % DECODE_SLICE:
                await asyncio.sleep(0)
            try:
                runs.append(UsageMinute.decode(record.value or b""))
            except (orjson.JSONDecodeError, ValidationError, ValueError, KeyError,
                    TypeError) as error:
                bad.append((record, DeadLetter("invalid_run", f"{type(error).__name__}: {error}")))
        if bad:
            await self.dead_letters.dead_letter(bad)
        await self.step(runs)
        self.stats.received += len(runs)
        self.stats.analysed += sum(len(run.events) for run in runs)

    async def dead_letter_batches(self, batches: Sequence[UndecodableBatch]) -> None:
        await self.dead_letters.dead_letter_batches(batches)
