"""The ingest stage starts one transactional producer per source partition, even when the
rebalance listener and a batch of that partition ask for it at the same time."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition

import pipelines.ingest.stage as stage_module
from keywarden.settings import load_settings
from pipelines.ingest.stage import IngestStage


class SlowStartingProducer:
    """Starts like a transactional producer: init_transactions takes a round trip."""

    started: list[SlowStartingProducer] = []

    def __init__(self, *_args: Any, **options: Any) -> None:
        self.transactional_id = options["transactional_id"]

    async def start(self) -> None:
        await asyncio.sleep(0.05)
        SlowStartingProducer.started.append(self)


async def test_the_listener_and_a_batch_acquiring_one_partition_start_one_producer(
    monkeypatch,
) -> None:
    monkeypatch.setattr(stage_module, "make_producer", SlowStartingProducer)
    SlowStartingProducer.started = []
    stage = IngestStage(load_settings(), SimpleNamespace(after_store=[]), None,  # type: ignore[arg-type]
                        group_id="kw-test.ingest", batch_rows=10, batch_seconds=0.1,
                        runs_topic="llm.usage.minutes.v1.kw-test")
    assigned = {TopicPartition("llm.requests.v1", p) for p in range(3)}
    batch_partition = TopicPartition("llm.requests.v1", 0)  # the one the listener is starting

    await asyncio.gather(stage.acquire(assigned), stage.acquire({batch_partition}))

    assert sorted(p.transactional_id for p in SlowStartingProducer.started) == [
        f"kw-test.ingest.llm.requests.v1.{p}" for p in range(3)]
    assert stage._producers[batch_partition] in SlowStartingProducer.started


class _Run:
    def __init__(self, index: int, size: int) -> None:
        self.wrapped_key_id = f"wk_{index}"
        self._value = index.to_bytes(4, "big") * (size // 4)

    def encode(self) -> bytes:
        return self._value


def _decoded(batches: list[Any]) -> list[tuple[bytes, bytes]]:
    from aiokafka.record.default_records import DefaultRecordBatch

    found = []
    for batch in batches:
        for record in DefaultRecordBatch(bytearray(batch._build())):
            found.append((bytes(record.key), bytes(record.value)))
    return found


async def test_a_transactions_runs_go_in_few_producer_batches_in_order_and_none_is_dropped(
) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", max_batch_size=4096)
    runs = [_Run(index, 400) for index in range(30)]  # 12 KB: more than one 4 KiB batch
    parts = stage_module._run_batches(producer, runs)
    assert 3 <= len(parts) <= 4
    assert _decoded([batch for batch, _ in parts]) == [
        (r.wrapped_key_id.encode(), r.encode()) for r in runs]
    # each batch names its runs, in order (where the ingest stage says its runs landed)
    assert [index for _, members in parts for index in members] == list(range(len(runs)))
    # A run larger than a batch gets a batch of its own (an empty batch takes any one record).
    big = [_Run(1, 400), _Run(2, 8000), _Run(3, 400)]
    parts = stage_module._run_batches(producer, big)
    assert _decoded([batch for batch, _ in parts]) == [
        (r.wrapped_key_id.encode(), r.encode()) for r in big]
    assert [members for _, members in parts] == [[0], [1], [2]]
