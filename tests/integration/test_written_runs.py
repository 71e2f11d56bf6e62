"""The runs the ingest stage commits are handed to this process's analytics stage by where they
landed (pipelines/ingest/written.py): every (partition, offset) it records holds, on the broker,
the record of that very run, across several producer batches per transaction and the markers
between transactions. A wrong offset would give the analytics stage another run than the one
its ledger reads there."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from aiokafka import TopicPartition

import pipelines.ingest.stage as stage_module
from keywarden.kafka import make_consumer
from keywarden.settings import load_settings
from keywarden.synthetic import synthetic_traffic
from pipelines.ingest.minutes import build_minutes
from pipelines.ingest.stage import IngestStage
from pipelines.ingest.written import WrittenRuns
from pipelines.pricing import price
from schemas.events.usage_minute import UsageMinute
from schemas.pricing import load_catalog
from tests.support.kafka import new_topic


def runs_of(count: int, partition: int, first_offset: int) -> list[UsageMinute]:
    events = synthetic_traffic(count, seed=first_offset, spacing=timedelta(seconds=7),
                               start=datetime(2026, 11, 2, tzinfo=UTC))
    catalog = load_catalog()
    sources = {e.event_id: SimpleNamespace(topic="llm.requests.v1", partition=partition,
                                           offset=first_offset + i)
               for i, e in enumerate(events)}
    return build_minutes([price(e, catalog) for e in events], sources)


async def test_each_committed_run_is_recorded_at_the_offset_it_landed_at(
    kafka_broker, monkeypatch
) -> None:
    monkeypatch.setattr(stage_module, "RUNS_BATCH_BYTES", 4096)  # several batches per transaction
    settings = load_settings(kafka_bootstrap=kafka_broker.bootstrap)
    runs_topic = await new_topic(settings, "kw-written", partitions=1)
    written = WrittenRuns(max_events=100_000)
    stage = IngestStage(settings, SimpleNamespace(after_store=[]), None,  # type: ignore[arg-type]
                        group_id=f"kw-written-{uuid.uuid4().hex[:8]}.ingest", batch_rows=100,
                        batch_seconds=0.1, runs_topic=runs_topic, written=written)
    # the source partition whose position each transaction commits for the stage's group
    source = TopicPartition(await new_topic(settings, "kw-written-source", partitions=1), 0)
    first, second = runs_of(120, 0, 0), runs_of(80, 0, 120)
    try:
        await stage._transaction(source, first, 120)
        await stage._transaction(source, second, 200)
    finally:
        await stage._close()
    assert len(written) == len(first) + len(second) > 40

    consumer = make_consumer(runs_topic, group_id=None, settings=settings,
                             isolation_level="read_committed")
    await consumer.start()
    try:
        records = []
        while len(records) < len(written):
            batch = await consumer.getmany(timeout_ms=5000)
            assert batch, f"read {len(records)} of {len(written)} runs"
            records += [r for found in batch.values() for r in found]
    finally:
        await consumer.stop()
    taken = [written.take(r.topic, r.partition, r.offset) for r in records]
    assert taken == [UsageMinute.decode(r.value) for r in records]
    assert all(a is b for a, b in zip(taken, first + second, strict=True))
    assert len(written) == 0 and written.hits == len(records)
