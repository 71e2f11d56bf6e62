"""A busy key: 60,000 requests in one UTC hour (~17 a second) through the real broker, pipeline
worker and warehouse. The key-hour's counted ids outgrow one Kafka message (1 MB: an id takes ~21
bytes of a changelog record); kept in parts, the worker counts all of them and its spend is
exact. With one record per hour, the worker's changelog producer crashed at ~47,000."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from keywarden.kafka import ensure_topics
from keywarden.settings import load_settings
from keywarden.synthetic import produce
from schemas.events.request import Provider, Usage
from tests.support.analytics import Key, cost, latest_spend, query, unique, wait_for

HOUR = datetime(2026, 11, 2, 15, tzinfo=UTC)
EVENTS = 60_000


async def test_sixty_thousand_requests_of_one_key_in_one_hour_are_all_counted(
    kafka_broker, warehouse_db, run_pipeline
) -> None:
    settings = load_settings(kafka_bootstrap=kafka_broker.bootstrap)
    await ensure_topics(settings)
    key = Key(unique("busy"), Provider.OPENAI, "gpt-4o-mini",
              Usage(input_tokens=900, output_tokens=120))
    step = timedelta(hours=1) / EVENTS
    events = [key.event(HOUR + step * i) for i in range(EVENTS)]
    assert {e.occurred_at.hour for e in events} == {15}

    worker = run_pipeline(warehouse_db)
    assert await produce(events, settings) == EVENTS

    async def stored() -> bool:
        rows = await asyncio.to_thread(
            query, warehouse_db, "SELECT count() FROM request_events FINAL "
            "WHERE wrapped_key_id = {key:String}", key=key.wrapped_key_id)
        return rows[0][0] == EVENTS

    await wait_for(stored, 120, f"{EVENTS} stored rows")

    async def counted() -> dict:
        spend = (await latest_spend(kafka_broker.bootstrap, {key.wrapped_key_id})).get(
            key.wrapped_key_id, {})
        return spend if spend.get("requests_today") == EVENTS else {}

    try:
        spend = await wait_for(counted, 120, "the key's spend counting every request")
    except AssertionError:
        raise AssertionError(f"not every request counted; the worker's log:\n{worker.log()[-3000:]}"
                             ) from None
    assert Decimal(spend["spend_today_usd"]) == cost(events[0]) * EVENTS
