"""`fill_batches`: records handed to a producer as few batches, in order, none dropped unseen."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from aiokafka.record.default_records import DefaultRecordBatch

from keywarden.kafka import fill_batches


def _decoded(parts: list) -> list[tuple[bytes, bytes]]:
    found = []
    for batch, _ in parts:
        for record in DefaultRecordBatch(bytearray(batch._build())):
            found.append((bytes(record.key), bytes(record.value)))
    return found


def _records(sizes: list[int]) -> list[tuple[bytes, bytes]]:
    return [(f"k{i}".encode(), i.to_bytes(4, "big") * (size // 4)) for i, size in enumerate(sizes)]


async def test_records_fill_few_batches_in_order_and_each_batch_names_its_records() -> None:
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", max_batch_size=4096)
    records = _records([400] * 30)  # 12 KB: more than one 4 KiB batch
    parts, left_out = fill_batches(producer, records)
    assert 3 <= len(parts) <= 4 and left_out == []
    assert _decoded(parts) == records
    assert [i for _, members in parts for i in members] == list(range(30))


async def test_a_record_larger_than_a_batch_gets_one_of_its_own() -> None:
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", max_batch_size=4096)
    records = _records([400, 8000, 400])
    parts, left_out = fill_batches(producer, records)
    assert left_out == []  # aiokafka lets an empty batch take any one record
    assert _decoded(parts) == records
    assert [members for _, members in parts] == [[0], [1], [2]]
