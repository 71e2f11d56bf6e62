"""A producer this project did not write: confluent-kafka (librdkafka, the C client behind most
non-Java gateways), with any compression codec, for tests of what the pipeline accepts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaException, Producer

from schemas.events.request import RequestEvent

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")


def librdkafka_publish(
    bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes]], codec: str,
    *, linger_ms: int = 50,
) -> list[tuple[int, int]]:
    """Publish (key, value) records with `compression.type=codec`, idempotent, and wait for every
    acknowledgement; returns the (partition, offset) of each (raises on the first failure).

    A linger of 50 ms puts many records in one compressed batch, as a busy gateway would;
    murmur2 is the partitioner of the Java client and aiokafka (docs/producing-events.md)."""
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "compression.type": codec,
        "enable.idempotence": True,
        "partitioner": "murmur2_random",
        "linger.ms": linger_ms,
        "batch.num.messages": 1000,
    })
    acknowledged: list[tuple[int, int]] = []
    errors: list[str] = []

    def delivered(error: object, message: Any) -> None:
        if error is None:
            acknowledged.append((message.partition(), message.offset()))
        else:
            errors.append(str(error))

    for key, value in records:
        producer.produce(topic, value=value, key=key, on_delivery=delivered)
        producer.poll(0)
    remaining = producer.flush(30)
    if errors or remaining:
        raise KafkaException(f"{remaining} records unacknowledged; errors: {errors[:3]}")
    return acknowledged


def as_records(events: Iterable[RequestEvent]) -> list[tuple[bytes | None, bytes]]:
    """Events as a gateway publishes them: keyed by wrapped_key_id, JSON values."""
    return [(event.wrapped_key_id.encode(), event.to_json_bytes()) for event in events]
