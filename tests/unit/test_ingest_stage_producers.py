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
