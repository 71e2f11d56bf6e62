"""The ledgered faust agent (pipelines/ingest/agents.py) against the session broker: a partition
assigned to it whose records its faust consumer never delivers (paused here, as faust can leave
a partition after a rebalance: faust-streaming #166, #629) is read directly to its end once it has
stood still for the catch-up wait, in log order, and its offset is committed for the group; the
other partition goes on as delivered. Without the catch-up the paused partition's records are
never processed."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from keywarden.settings import load_settings
from pipelines.app import create_app
from pipelines.ingest.agents import RawRecord, register_ledgered_agent
from pipelines.ingest.offsets import GapReader, OffsetLedger, group_committed
from tests.support.kafka import new_topic

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


class Recorder:
    """A processor that remembers what it was handed, per partition, in order."""

    def __init__(self) -> None:
        self.offsets: dict[int, list[int]] = {0: [], 1: []}

    async def process(self, records: Sequence[RawRecord]) -> None:
        for record in records:
            self.offsets[record.partition].append(record.offset)

    async def dead_letter_batches(self, batches: Sequence[Any]) -> None:
        return None


async def wait_until(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds:.0f} s: {what}")
        await asyncio.sleep(0.1)


async def test_a_partition_the_consumer_never_delivers_is_read_to_its_end(
    kafka_broker, tmp_path
) -> None:
    settings = load_settings(kafka_bootstrap=kafka_broker.bootstrap, home=tmp_path,
                             pipeline_store="memory://")
    topic = await new_topic(settings, "catch-up", partitions=2)
    app = create_app(settings, f"kw-catch-up-{uuid.uuid4().hex[:8]}")
    source = app.topic(topic, partitions=2)
    recorder = Recorder()
    ledger = OffsetLedger(topic)

    async def committed(tps: set[Any]) -> dict[Any, int | None]:
        return await group_committed(settings, app.conf.id, tps)

    register_ledgered_agent(app, source, "keywarden.test.catch_up", recorder, batch_rows=50,
                            batch_seconds=0.2, committed_offsets=committed,
                            gap_reader=GapReader(settings, chunk_records=7), ledger=ledger,
                            catch_up_every=0.5, catch_up_after=2.0)
    app.finalize()
    await app.start()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all")
    await producer.start()
    try:
        await wait_until(lambda: len(app.consumer.assignment()) >= 2 and not app.rebalancing,
                         60, "both partitions assigned")
        paused = next(tp for tp in app.consumer.assignment()
                      if tp.topic == topic and tp.partition == 1)
        app.consumer.pause_partitions([paused])  # faust fetches nothing more of partition 1

        for i in range(40):
            await producer.send_and_wait(topic, f"a-{i}".encode(), partition=0)
            await producer.send_and_wait(topic, f"b-{i}".encode(), partition=1)

        await wait_until(lambda: len(recorder.offsets[0]) == 40, 30, "partition 0 as delivered")
        started = time.monotonic()
        await wait_until(lambda: len(recorder.offsets[1]) == 40, 30,
                         "partition 1, never delivered, read directly")
        assert time.monotonic() - started >= 1.0  # not before the catch-up wait
        assert recorder.offsets == {0: list(range(40)), 1: list(range(40))}
        assert ledger.tails_read >= 1
        assert ledger.committable(paused) == 40

        async def group_commit() -> int | None:
            return (await committed({paused}))[paused]

        deadline = time.monotonic() + 20  # faust commits every second (broker_commit_interval)
        while await group_commit() != 40 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert await group_commit() == 40  # committed, though faust never delivered a record

        # More records while it stays paused: read again, after another wait, once each.
        for i in range(40, 45):
            await producer.send_and_wait(topic, f"b-{i}".encode(), partition=1)
        await wait_until(lambda: len(recorder.offsets[1]) == 45, 30, "the next records")
        assert recorder.offsets[1] == list(range(45))
    finally:
        await producer.stop()
        await app.stop()
