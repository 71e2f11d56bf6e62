"""Whether a broker answers: a client fetches cluster metadata listing at least one broker."""

from __future__ import annotations

import asyncio


async def bootstrap_answers(bootstrap: str, **client_options: object) -> bool:
    """True when an aiokafka client (`client_options`: its security settings) can fetch cluster
    metadata listing at least one broker."""
    from aiokafka.client import AIOKafkaClient

    from keywarden.kafka import KafkaUnavailable, kafka_errors

    client = AIOKafkaClient(
        bootstrap_servers=bootstrap, request_timeout_ms=5000, **client_options  # type: ignore[arg-type]
    )
    try:
        with kafka_errors("probing the broker"):
            await asyncio.wait_for(client.bootstrap(), timeout=5.0)
            metadata = await asyncio.wait_for(client.fetch_all_metadata(), timeout=5.0)
        return bool(metadata.brokers())
    except KafkaUnavailable:
        return False
    finally:
        await client.close()
