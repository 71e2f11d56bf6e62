"""The ledgered faust agent (pipelines/ingest/agents.py) against the session broker: a partition
assigned to it whose records its faust consumer never delivers (paused here, as faust can leave
a partition after a rebalance: faust-streaming #166, #629) is read directly to its end once it has
stood still for the catch-up wait, in log order, and its offset is committed for the group; the
other partition goes on as delivered. Without the catch-up the paused partition's records are
never processed."""

from __future__ import annotations

import time

import pytest
from aiokafka import AIOKafkaProducer

from tests.support.ledgered import ledgered_app
from tests.support.waiting import wait_until_async

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


async def test_a_partition_the_consumer_never_delivers_is_read_to_its_end(
    kafka_broker, tmp_path
) -> None:
    made = await ledgered_app(kafka_broker.bootstrap, tmp_path, "catch-up",
                              catch_up_after=2.0)
    app, topic, recorder, ledger, committed = (made.app, made.topic, made.recorder, made.ledger,
                                               made.committed)
    await app.start()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all")
    await producer.start()
    try:
        paused = await made.pause_when_assigned(1)  # faust fetches nothing more of it

        for i in range(40):
            await producer.send_and_wait(topic, f"a-{i}".encode(), partition=0)
            await producer.send_and_wait(topic, f"b-{i}".encode(), partition=1)

        await wait_until_async(lambda: len(recorder.offsets[0]) == 40, 30,
                               "partition 0 as delivered")
        started = time.monotonic()
        await wait_until_async(lambda: len(recorder.offsets[1]) == 40, 30,
                               "partition 1, never delivered, read directly")
        assert time.monotonic() - started >= 1.0  # not before the catch-up wait
        assert recorder.offsets == {0: list(range(40)), 1: list(range(40))}
        assert ledger.tails_read >= 1
        assert ledger.committable(paused) == 40

        async def group_commit() -> int | None:
            return (await committed({paused}))[paused]

        # faust commits every second (broker_commit_interval)
        await wait_until_async(group_commit, 20, "the group's commit", done=lambda at: at == 40)
        assert await group_commit() == 40  # committed, though faust never delivered a record

        # More records while it stays paused: read again, after another wait, once each.
        for i in range(40, 45):
            await producer.send_and_wait(topic, f"b-{i}".encode(), partition=1)
        await wait_until_async(lambda: len(recorder.offsets[1]) == 45, 30, "the next records")
        assert recorder.offsets[1] == list(range(45))
    finally:
        await producer.stop()
        await app.stop()
