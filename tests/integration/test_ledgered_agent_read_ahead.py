"""The ledgered faust agent's read-ahead (pipelines/ingest/agents.py, `ReadAhead` in
pipelines/ingest/offsets.py) against the session broker.

A task reads the agent's assigned partitions on from the ledger in batches of its own, and
pauses faust's delivery of them. Here faust delivers nothing of partition 1 from the start
(paused by the test, and the catch-up wait is longer than the test): its records are processed
anyway, soon, in log order, once each, past the transaction markers between them, and committed
for the group. Partition 0's records, which faust may still deliver before the read-ahead pauses
it, are processed once each. Without the read-ahead partition 1 is not processed at all."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from keywarden.settings import load_settings
from pipelines.app import create_app, read_committed
from pipelines.ingest.agents import RawRecord, register_ledgered_agent
from pipelines.ingest.offsets import GapReader, OffsetLedger, ReadAhead, group_committed
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


async def test_read_ahead_processes_what_faust_does_not_deliver_once_in_log_order(
    kafka_broker, tmp_path
) -> None:
    read_committed()  # as the worker reads its runs (written in transactions)
    settings = load_settings(kafka_bootstrap=kafka_broker.bootstrap, home=tmp_path,
                             pipeline_store="memory://")
    topic = await new_topic(settings, "read-ahead", partitions=2)
    app = create_app(settings, f"kw-read-ahead-{uuid.uuid4().hex[:8]}")
    source = app.topic(topic, partitions=2)
    recorder = Recorder()
    ledger = OffsetLedger(topic)

    async def committed(tps: set[Any]) -> dict[Any, int | None]:
        return await group_committed(settings, app.conf.id, tps)

    register_ledgered_agent(app, source, "keywarden.test.read_ahead", recorder, batch_rows=50,
                            batch_seconds=0.2, committed_offsets=committed,
                            gap_reader=GapReader(settings, chunk_records=7), ledger=ledger,
                            catch_up_every=0.5, catch_up_after=600.0,
                            read_ahead=ReadAhead(settings, max_records=15))
    app.finalize()
    await app.start()
    plain = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all")
    transactional = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap,
                                     transactional_id=f"read-ahead-{uuid.uuid4().hex[:8]}")
    await plain.start()
    await transactional.start()
    try:
        await wait_until(lambda: len(app.consumer.assignment()) >= 2 and not app.rebalancing,
                         60, "both partitions assigned")
        paused = next(tp for tp in app.consumer.assignment()
                      if tp.topic == topic and tp.partition == 1)
        app.consumer.pause_partitions([paused])  # faust fetches nothing more of partition 1

        # partition 1: two transactions of 20 records; a commit marker follows each
        for first in (0, 20):
            async with transactional.transaction():
                for i in range(first, first + 20):
                    await transactional.send(topic, f"b-{i}".encode(), partition=1)
        expected_1 = [*range(0, 20), *range(21, 41)]  # offsets 20 and 41 are markers
        for i in range(40):
            await plain.send_and_wait(topic, f"a-{i}".encode(), partition=0)

        await wait_until(lambda: len(recorder.offsets[0]) >= 40, 30, "partition 0")
        await wait_until(lambda: len(recorder.offsets[1]) >= 40, 30,
                         "partition 1, never delivered by faust, read ahead")
        await asyncio.sleep(1.0)  # faust's own deliveries of partition 0 have come meanwhile
        assert recorder.offsets == {0: list(range(40)), 1: expected_1}
        assert ledger.committable(paused) == 42  # past the last marker
        assert ledger.tails_read == 0  # not the catch-up

        async def group_commit() -> int | None:
            return (await committed({paused}))[paused]

        deadline = time.monotonic() + 20  # faust commits every second (broker_commit_interval)
        while await group_commit() != 42 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert await group_commit() == 42  # committed, though faust never delivered a record
    finally:
        await transactional.stop()
        await plain.stop()
        await app.stop()
