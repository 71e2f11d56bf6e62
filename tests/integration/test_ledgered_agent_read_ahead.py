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
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from pipelines.app import read_committed
from tests.support.ledgered import ledgered_app
from tests.support.waiting import wait_until_async

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


async def test_read_ahead_processes_what_faust_does_not_deliver_once_in_log_order(
    kafka_broker, tmp_path
) -> None:
    read_committed()  # as the worker reads its runs (written in transactions)
    made = await ledgered_app(kafka_broker.bootstrap, tmp_path, "read-ahead",
                              read_ahead_records=15, catch_up_after=600.0)
    app, topic, recorder, ledger, committed = (made.app, made.topic, made.recorder, made.ledger,
                                               made.committed)
    await app.start()
    plain = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all")
    transactional = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap,
                                     transactional_id=f"read-ahead-{uuid.uuid4().hex[:8]}")
    await plain.start()
    await transactional.start()
    try:
        paused = await made.pause_when_assigned(1)  # faust fetches nothing more of it

        # partition 1: two transactions of 20 records; a commit marker follows each
        for first in (0, 20):
            async with transactional.transaction():
                for i in range(first, first + 20):
                    await transactional.send(topic, f"b-{i}".encode(), partition=1)
        expected_1 = [*range(0, 20), *range(21, 41)]  # offsets 20 and 41 are markers
        for i in range(40):
            await plain.send_and_wait(topic, f"a-{i}".encode(), partition=0)

        await wait_until_async(lambda: len(recorder.offsets[0]) >= 40, 30, "partition 0")
        await wait_until_async(lambda: len(recorder.offsets[1]) >= 40, 30,
                               "partition 1, never delivered by faust, read ahead")
        await asyncio.sleep(1.0)  # faust's own deliveries of partition 0 have come meanwhile
        assert recorder.offsets == {0: list(range(40)), 1: expected_1}
        assert ledger.committable(paused) == 42  # past the last marker
        assert ledger.tails_read == 0  # not the catch-up

        async def group_commit() -> int | None:
            return (await committed({paused}))[paused]

        # faust commits every second (broker_commit_interval)
        await wait_until_async(group_commit, 20, "the group's commit", done=lambda at: at == 42)
        assert await group_commit() == 42  # committed, though faust never delivered a record
    finally:
        await transactional.stop()
        await plain.stop()
        await app.stop()
