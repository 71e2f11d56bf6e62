"""The ingest worker's gap reader (pipelines/ingest/offsets.py) against the session broker: it
reads exactly an offset range of one partition, in order and in chunks, and finishes a range
whose last offsets hold no record (a transaction's commit marker); it tells where a partition
ends for a read_committed reader."""

from __future__ import annotations

import uuid
from typing import NamedTuple

import pytest
from aiokafka import AIOKafkaProducer

from keywarden.settings import load_settings
from pipelines.ingest.offsets import Gap, GapReader
from tests.support.kafka import new_topic

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


class TP(NamedTuple):
    topic: str
    partition: int


async def read_all(reader: GapReader, tp: TP, gap: Gap) -> list[list[int]]:
    return [[record.offset for record in chunk] async for chunk in reader.read(tp, gap)]


async def test_reads_a_range_in_order_in_chunks_and_past_transaction_markers(kafka_broker) -> None:
    settings = load_settings(kafka_bootstrap=kafka_broker.bootstrap)
    topic = await new_topic(settings, "gap", partitions=2)

    plain = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all")
    await plain.start()
    try:
        for i in range(10):  # offsets 0..9 of partition 1
            await plain.send_and_wait(topic, f"plain-{i}".encode(), partition=1)
    finally:
        await plain.stop()
    transactional = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap,
                                     transactional_id=f"gap-{uuid.uuid4().hex[:8]}")
    await transactional.start()
    try:
        async with transactional.transaction():  # offsets 10..12, the commit marker at 13
            for i in range(3):
                await transactional.send(topic, f"tx-{i}".encode(), partition=1)
    finally:
        await transactional.stop()

    reader = GapReader(settings, chunk_records=4)
    tp = TP(topic, 1)
    try:
        chunks = await read_all(reader, tp, Gap(3, 8))
        assert [offset for chunk in chunks for offset in chunk] == [3, 4, 5, 6, 7]
        assert max(len(chunk) for chunk in chunks) <= 4

        # Through the end of the log, whose last offset is the marker: all records, then done.
        chunks = await read_all(reader, tp, Gap(8, 14))
        assert [offset for chunk in chunks for offset in chunk] == [8, 9, 10, 11, 12]
        values = [record.value for record in
                  [r async for chunk in reader.read(tp, Gap(11, 13)) for r in chunk]]
        assert values == [b"tx-1", b"tx-2"]

        # The same reader serves another partition next (the worker reuses one consumer).
        assert await read_all(reader, TP(topic, 0), Gap(0, 0)) == []

        # Where each partition ends for a read_committed reader: after the commit marker, and
        # not past a transaction still open (its records may yet be aborted).
        assert await reader.ends([tp, TP(topic, 0)]) == {tp: 14, TP(topic, 0): 0}
        open_tx = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap,
                                   transactional_id=f"gap-{uuid.uuid4().hex[:8]}")
        await open_tx.start()
        try:
            await open_tx.begin_transaction()
            await (await open_tx.send(topic, b"pending", partition=1))
            assert await reader.ends([tp]) == {tp: 14}
            await open_tx.commit_transaction()
            assert await reader.ends([tp]) == {tp: 16}
        finally:
            await open_tx.stop()
    finally:
        await reader.stop()
