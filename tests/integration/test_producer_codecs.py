"""Records from a producer we did not write (librdkafka via confluent-kafka) are accepted with
every compression codec: through the real broker and pipeline worker into ClickHouse, exactly."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest

from keywarden.kafka import ensure_topics, make_consumer
from keywarden.settings import load_settings
from keywarden.synthetic import DEFAULT_KEYS, SyntheticKey, synthetic_traffic
from schemas import topics
from schemas.topics import TopicSpec
from tests.support.analytics import cost, query
from tests.support.producers import CODECS, as_records, librdkafka_publish
from tests.support.waiting import wait_until, wait_until_async

PER_CODEC = 120


def keys_for(codec: str, suffix: str) -> list[SyntheticKey]:
    return [SyntheticKey(**{**key.__dict__,
                            "wrapped_key_id": f"{key.wrapped_key_id}_{codec}_{suffix}"})
            for key in DEFAULT_KEYS]


async def test_a_librdkafka_producer_s_events_are_stored_exactly_with_every_codec(
    kafka_broker, warehouse_db, run_pipeline
) -> None:
    settings = load_settings(kafka_bootstrap=kafka_broker.bootstrap)
    await ensure_topics(settings)
    suffix = uuid.uuid4().hex[:8]
    sent = {codec: synthetic_traffic(PER_CODEC, keys=keys_for(codec, suffix), seed=len(codec))
            for codec in CODECS}
    run_pipeline(warehouse_db)
    for codec, events in sent.items():
        acknowledged = await asyncio.to_thread(
            librdkafka_publish, kafka_broker.bootstrap, topics.REQUESTS, as_records(events), codec)
        assert len(acknowledged) == PER_CODEC

    everything = [key.wrapped_key_id for codec in CODECS for key in keys_for(codec, suffix)]

    def all_stored() -> bool:
        rows = query(warehouse_db, "SELECT count() FROM request_events FINAL "
                     "WHERE wrapped_key_id IN {keys:Array(String)}", keys=everything)
        return int(rows[0][0]) == PER_CODEC * len(CODECS)

    await asyncio.to_thread(wait_until, all_stored, 90, what="every codec's events stored")
    for codec, events in sent.items():
        rows = query(
            warehouse_db,
            "SELECT event_id, cost_usd, input_tokens, output_tokens, cached_input_tokens, "
            "cache_write_tokens, occurred_at, wrapped_key_id FROM request_events FINAL "
            "WHERE wrapped_key_id IN {keys:Array(String)}",
            keys=[key.wrapped_key_id for key in keys_for(codec, suffix)])
        stored = {row[0]: row[1:] for row in rows}
        assert len(rows) == PER_CODEC, codec
        for event in events:
            cost_usd, inp, out, cached, written, occurred_at, key = stored[event.event_id]
            assert (inp, out, cached, written, key) == (
                event.usage.input_tokens, event.usage.output_tokens,
                event.usage.cached_input_tokens, event.usage.cache_write_tokens,
                event.wrapped_key_id), codec
            assert cost_usd == cost(event), codec
            assert occurred_at == event.occurred_at.replace(  # DateTime64(3, 'UTC')
                microsecond=event.occurred_at.microsecond // 1000 * 1000), codec
        total = sum((row[1] for row in rows), Decimal(0))
        assert total == sum((cost(event) for event in events), Decimal(0)), codec


@pytest.mark.parametrize("codec", CODECS)
async def test_the_one_consumer_factory_every_service_uses_reads_each_codec(
    kafka_broker, codec: str
) -> None:
    """The notifier, audit sink, registry followers and the gateway's spend follower all build
    their consumers with keywarden.kafka.make_consumer (the pipeline's faust consumer is the
    same aiokafka client, covered above): it decodes a batch of every codec."""
    settings = load_settings(kafka_bootstrap=kafka_broker.bootstrap)
    topic = f"codec-check-{codec}-{uuid.uuid4().hex[:8]}"
    await ensure_topics(settings, [TopicSpec(topic, partitions=1)])
    values = [f"record {i} of {codec}".encode() * 20 for i in range(50)]
    await asyncio.to_thread(librdkafka_publish, kafka_broker.bootstrap, topic,
                            [(b"k", value) for value in values], codec)
    consumer = make_consumer(topic, group_id=None, settings=settings)
    await consumer.start()
    received: list[bytes] = []

    async def read_more() -> list[bytes]:
        batch = await consumer.getmany(timeout_ms=500)
        received.extend(record.value for records in batch.values() for record in records)
        return received

    try:
        await wait_until_async(read_more, 30, f"the {len(values)} {codec} records",
                               done=lambda got: len(got) >= len(values), interval=0)
    finally:
        await consumer.stop()
    assert received == values
