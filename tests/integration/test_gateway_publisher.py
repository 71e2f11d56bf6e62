"""The gateway's publisher hands Kafka whole batches per partition: every request event must still
land on the partition a plain `producer.send(key=wrapped_key_id)` picks (the pipeline's per-key
state depends on it), in order per key, each exactly once."""

from __future__ import annotations

import itertools

from keywarden.kafka import make_consumer, make_producer
from schemas.topics import REQUESTS
from services.gateway.metrics import GatewayMetrics
from services.gateway.publisher import EventPublisher
from services.gateway.spool import Spool
from tests.support.waiting import wait_until_async

KEYS = [f"wk_partition_probe_{n:03d}" for n in range(24)]
PER_KEY = 5


async def test_request_events_land_on_the_partition_send_would_choose(gateway_settings_factory):
    settings = gateway_settings_factory()
    assert settings.kafka_topic_partitions > 1
    publisher = EventPublisher(settings, Spool(settings.gateway_spool_dir), GatewayMetrics())
    sent: dict[str, list[bytes]] = {key: [] for key in KEYS}
    async with publisher:
        for round_, key in itertools.product(range(PER_KEY), KEYS):
            value = f'{{"probe":"{key}","n":{round_}}}'.encode()
            sent[key].append(value)
            publisher.publish_json(key, value)
        assert await publisher.wait_idle(20)

    # What aiokafka's own send() chooses for each key, on the same topic.
    producer = make_producer(settings)
    await producer.start()
    try:
        expected = {
            key: (await producer.send_and_wait(REQUESTS, b"{}", key=key.encode())).partition
            for key in KEYS
        }
    finally:
        await producer.stop()
    assert len(set(expected.values())) > 1, "every probe key hashed to one partition"

    consumer = make_consumer(REQUESTS, group_id=None, settings=settings, fetch_max_wait_ms=100)
    await consumer.start()
    found: dict[str, list[tuple[int, bytes]]] = {key: [] for key in KEYS}

    async def read_more() -> tuple[int, bool]:
        """(records found so far, whether this read came back empty)."""
        batches = await consumer.getmany(timeout_ms=200)
        for records in batches.values():
            for record in records:
                key = (record.key or b"").decode(errors="replace")
                if key in found and record.value != b"{}":
                    found[key].append((record.partition, record.value))
        return sum(map(len, found.values())), not batches

    try:  # every record, then one empty read: a duplicate would have come with them
        await wait_until_async(read_more, 20, f"{len(KEYS) * PER_KEY} records, then quiet",
                               done=lambda read: read[0] >= len(KEYS) * PER_KEY and read[1],
                               interval=0)
    finally:
        await consumer.stop()
    for key in KEYS:
        assert [value for _, value in found[key]] == sent[key], key  # once each, in order
        assert {partition for partition, _ in found[key]} == {expected[key]}, key
