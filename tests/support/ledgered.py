"""The ledgered faust agent (pipelines/ingest/agents.py `register_ledgered_agent`) in tests: an
app over a fresh two-partition topic whose processor remembers which offsets of which partition
it was handed, in order, so a test can assert log order and exactly-once."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust

from keywarden.settings import Settings, load_settings
from pipelines.app import create_app
from pipelines.ingest.agents import RawRecord, register_ledgered_agent
from pipelines.ingest.offsets import GapReader, OffsetLedger, ReadAhead, group_committed
from tests.support.kafka import new_topic
from tests.support.waiting import wait_until_async


class Recorder:
    """The offsets handed to it, per partition (0 and 1), in the order handed."""

    def __init__(self) -> None:
        self.offsets: dict[int, list[int]] = {0: [], 1: []}

    async def process(self, records: Sequence[RawRecord]) -> None:
        for record in records:
            self.offsets[record.partition].append(record.offset)

    async def dead_letter_batches(self, batches: Sequence[Any]) -> None:
        return None


@dataclass
class LedgeredApp:
    settings: Settings
    topic: str
    app: faust.App  # finalized, not started
    recorder: Recorder
    ledger: OffsetLedger

    async def pause_when_assigned(self, partition: int) -> Any:
        """Wait until the app has both partitions, then stop faust fetching `partition` (as
        faust can leave a partition after a rebalance: faust-streaming #166, #629)."""
        app = self.app
        await wait_until_async(lambda: len(app.consumer.assignment()) >= 2
                               and not app.rebalancing, 60, "both partitions assigned")
        paused = next(tp for tp in app.consumer.assignment()
                      if tp.topic == self.topic and tp.partition == partition)
        app.consumer.pause_partitions([paused])
        return paused

    async def committed(self, tps: set[Any]) -> dict[Any, int | None]:
        """The group's committed offsets, as the broker has them."""
        return await group_committed(self.settings, self.app.conf.id, tps)


async def ledgered_app(bootstrap: str, home: Path, name: str,
                       read_ahead_records: int | None = None, **agent_options: Any) -> LedgeredApp:
    """An app with one ledgered agent (batches of 50 within 0.2 s, gaps read 7 records at a time,
    stalled partitions checked every 0.5 s; reading ahead `read_ahead_records` at a time when
    given) over a new topic `name-…` of two partitions."""
    settings = load_settings(kafka_bootstrap=bootstrap, home=home, pipeline_store="memory://")
    topic = await new_topic(settings, name, partitions=2)
    app = create_app(settings, f"kw-{name}-{uuid.uuid4().hex[:8]}")
    made = LedgeredApp(settings, topic, app, Recorder(), OffsetLedger(topic))
    register_ledgered_agent(app, app.topic(topic, partitions=2), f"keywarden.test.{name}",
                            made.recorder, batch_rows=50, batch_seconds=0.2,
                            committed_offsets=made.committed,
                            gap_reader=GapReader(settings, chunk_records=7), ledger=made.ledger,
                            catch_up_every=0.5,
                            read_ahead=None if read_ahead_records is None
                            else ReadAhead(settings, max_records=read_ahead_records),
                            **agent_options)
    app.finalize()
    return made
