"""Events flow end to end: aiokafka -> real broker -> pipeline worker -> embedded ClickHouse."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from aiokafka import AIOKafkaConsumer

from keywarden.clickhouse import get_client
from keywarden.kafka import ensure_topics, make_producer
from keywarden.settings import load_settings
from keywarden.synthetic import DEFAULT_KEYS, SyntheticKey, produce, synthetic_traffic
from schemas import topics
from schemas.events.request import Usage
from schemas.pricing import load_catalog
from tests.support.waiting import wait_until, wait_until_async

CATALOG = load_catalog()


def unique_keys() -> list[SyntheticKey]:
    """The default keys under ids no other test uses, so assertions see only this test's rows."""
    suffix = uuid.uuid4().hex[:8]
    return [
        SyntheticKey(**{**key.__dict__, "wrapped_key_id": f"{key.wrapped_key_id}_{suffix}"})
        for key in DEFAULT_KEYS
    ]


def stored(url: str, keys: list[SyntheticKey]) -> tuple[int, Decimal, int]:
    count, total, unique = select(
        url, "SELECT count(), sum(cost_usd), uniqExact(event_id) FROM request_events FINAL "
        "WHERE wrapped_key_id IN {keys:Array(String)}",
        keys=[key.wrapped_key_id for key in keys])[0]
    return int(count), Decimal(total or 0), int(unique)


def select(url: str, sql: str, **parameters: object) -> list[tuple]:
    client = get_client(url)
    try:
        return client.query(sql, parameters=parameters).result_rows
    finally:
        client.close()


async def test_produced_events_are_all_stored_priced_to_the_exact_decimal(
    kafka_broker, warehouse_db, run_pipeline
) -> None:
    settings = load_settings(kafka_bootstrap=kafka_broker.bootstrap)
    await ensure_topics(settings)
    keys = unique_keys()
    events = synthetic_traffic(300, keys=keys, seed=11)
    expected = sum(
        (CATALOG.price(e.provider.value, e.model, e.usage, e.occurred_at).cost_usd for e in events),
        Decimal(0),
    )
    run_pipeline(warehouse_db)
    assert await produce(events, settings) == 300

    count, total, unique = await asyncio.to_thread(
        wait_until,
        lambda: (r := stored(warehouse_db, keys))[0] == 300 and r,
        60,
        what="300 rows in request_events",
    )
    assert (count, unique) == (300, 300)
    assert total == expected
    assert total.as_tuple().exponent == -9  # Decimal(18, 9), never a float


async def test_a_hand_priced_event_is_stored_with_the_layer_that_priced_it(
    kafka_broker, warehouse_db, run_pipeline
) -> None:
    settings = load_settings(kafka_bootstrap=kafka_broker.bootstrap)
    await ensure_topics(settings)
    key = unique_keys()[2]  # anthropic
    event = synthetic_traffic(1, keys=[key])[0].model_copy(
        update={
            "served_model": "claude-sonnet-4-5-20250929",
            "usage": Usage(
                input_tokens=1000, cached_input_tokens=200, cache_write_tokens=300,
                cache_write_5m_tokens=100, cache_write_1h_tokens=200, output_tokens=77,
            ),
        }
    )
    run_pipeline(warehouse_db)
    await produce([event], settings)

    def row() -> tuple | None:
        client = get_client(warehouse_db)
        try:
            rows = client.query(
                "SELECT cost_usd, pricing_status, price_entry_id, catalog_version, price_layer, "
                "price_layer_version, cache_write_5m_tokens, cache_write_1h_tokens, occurred_at "
                "FROM request_events FINAL WHERE event_id = {id:UUID}",
                parameters={"id": str(event.event_id)},
            ).result_rows
            return rows[0] if rows else None
        finally:
            client.close()

    cost, status, entry, version, layer, layer_version, w5m, w1h, occurred_at = (
        await asyncio.to_thread(wait_until, row, 60, what="the hand-priced row")
    )
    # 500 uncached*3 + 200 reads*0.30 + 100 5-minute writes*3.75 + 200 1-hour writes*6
    # + 77 output*15 = 4290 per 1M tokens
    assert cost == Decimal("0.004290000")
    assert (status, entry, version, layer, layer_version, w5m, w1h) == (
        "priced",
        "genai-prices:anthropic/claude-sonnet-4-5",
        CATALOG.catalog_version,
        "genai-prices",
        "0.2.3",
        100,
        200,
    )
    assert occurred_at.replace(tzinfo=UTC) == event.occurred_at.replace(
        microsecond=event.occurred_at.microsecond // 1000 * 1000
    )


async def test_malformed_records_are_dead_lettered_and_the_stream_keeps_going(
    kafka_broker, warehouse_db, run_pipeline
) -> None:
    settings = load_settings(kafka_bootstrap=kafka_broker.bootstrap)
    await ensure_topics(settings)
    keys = unique_keys()
    good = synthetic_traffic(20, keys=keys, seed=5)
    marker = f"bad-{uuid.uuid4().hex[:8]}".encode()
    bad_values = [
        b"{not json",
        b'{"schema": "llm.request.v9"}',
        json.dumps({"schema": "llm.request.v1", "event_id": "nope"}).encode(),
    ]
    producer = make_producer(settings)
    await producer.start()
    try:
        deliveries = []
        for index, event in enumerate(good):
            deliveries.append(
                await producer.send(
                    topics.REQUESTS, event.to_json_bytes(), key=event.wrapped_key_id.encode()
                )
            )
            if index % 7 == 3:  # bad records between good ones, on the same partition key
                deliveries.append(
                    await producer.send(topics.REQUESTS, bad_values[index % 3], key=marker)
                )
        await asyncio.gather(*deliveries)
    finally:
        await producer.stop()
    run_pipeline(warehouse_db)

    count, _total, _unique = await asyncio.to_thread(
        wait_until,
        lambda: (r := stored(warehouse_db, keys))[0] == 20 and r,
        60,
        what="the 20 good rows",
    )
    assert count == 20

    consumer = AIOKafkaConsumer(
        topics.REQUESTS_DLQ,
        bootstrap_servers=kafka_broker.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    reasons: list[str] = []

    async def dead_letter_reasons() -> list[str]:
        for records in (await consumer.getmany(timeout_ms=500)).values():
            for record in records:
                if record.key == marker:
                    envelope = json.loads(record.value)
                    reasons.append(envelope["reason"])
                    assert envelope["source"]["topic"] == topics.REQUESTS
        return reasons

    try:
        await wait_until_async(dead_letter_reasons, 30, "three dead-letter envelopes",
                               done=lambda seen: len(seen) >= 3, interval=0)
    finally:
        await consumer.stop()
    assert sorted(reasons) == ["invalid_event", "not_json", "unknown_schema"]

    def dead_rows() -> int:
        client = get_client(warehouse_db)
        try:
            return int(
                client.command(
                    "SELECT count() FROM request_dead_letters FINAL "
                    "WHERE reason IN ('invalid_event', 'not_json', 'unknown_schema')"
                )
            )
        finally:
            client.close()

    assert await asyncio.to_thread(wait_until, dead_rows, 30, what="dead-letter rows") >= 3


async def test_the_same_event_delivered_twice_counts_once(
    kafka_broker, warehouse_db, run_pipeline
) -> None:
    settings = load_settings(kafka_bootstrap=kafka_broker.bootstrap)
    await ensure_topics(settings)
    keys = unique_keys()[:1]  # one key, one partition: the marker below is read after the rest
    events = synthetic_traffic(10, keys=keys, seed=3, start=datetime.now(UTC) - timedelta(hours=1))
    run_pipeline(warehouse_db)
    await produce(events, settings)
    await asyncio.to_thread(
        wait_until, lambda: stored(warehouse_db, keys)[0] == 10, 60, what="first delivery"
    )
    first_total = stored(warehouse_db, keys)[1]

    await produce(events[:4], settings)  # a redelivery, as after a crash before the commit
    marker = synthetic_traffic(1, keys=keys, seed=99)
    await produce(marker, settings)  # once this is stored, the redelivered ones were processed
    await asyncio.to_thread(
        wait_until, lambda: stored(warehouse_db, keys)[0] == 11, 60, what="marker row"
    )

    count, total, unique = stored(warehouse_db, keys)
    assert (count, unique) == (11, 11)
    marker_cost = CATALOG.price(
        marker[0].provider.value, marker[0].model, marker[0].usage, marker[0].occurred_at
    ).cost_usd
    assert total == first_total + marker_cost


async def test_an_unknown_model_is_stored_unpriced_and_raises_one_alert(
    kafka_broker, warehouse_db, run_pipeline
) -> None:
    """Issue 12, item 6: requests to a model no layer prices keep `cost_usd` NULL (never $0),
    carry `pricing_status = 'unknown_model'`, and the model is announced once, however many
    keys and requests use it."""
    settings = load_settings(kafka_bootstrap=kafka_broker.bootstrap)
    await ensure_topics(settings)
    keys = unique_keys()[:2]  # openai keys
    model = f"gpt-mystery-{uuid.uuid4().hex[:8]}"
    mystery = [event.model_copy(update={"model": model, "served_model": model})
               for event in synthetic_traffic(6, keys=keys, seed=5)]
    priced = synthetic_traffic(2, keys=keys, seed=6)
    run_pipeline(warehouse_db)
    assert await produce(mystery + priced, settings) == 8

    def rows() -> list[tuple] | None:
        found = select(warehouse_db, "SELECT model, cost_usd, pricing_status FROM request_events "
                       "FINAL WHERE wrapped_key_id IN {keys:Array(String)}",
                       keys=[key.wrapped_key_id for key in keys])
        return found if len(found) == 8 else None

    stored_rows = await asyncio.to_thread(wait_until, rows, 60, what="8 rows")
    unknown = [row for row in stored_rows if row[0] == model]
    assert len(unknown) == 6
    assert all(cost is None and status == "unknown_model" for _, cost, status in unknown)
    assert all(cost is not None and cost > 0 and status == "priced"
               for name, cost, status in stored_rows if name != model)

    def alerts() -> list[tuple] | None:
        return select(warehouse_db, "SELECT kind, model, wrapped_key_id FROM alerts "
                      "WHERE model = {m:String}", m=model) or None

    first = await asyncio.to_thread(wait_until, alerts, 90, what="the unknown-price alert")
    assert [(kind, name) for kind, name, _ in first] == [("unknown_model_price", model)]
    # announced once for the model (its id is the model's), from one of the keys that used it
    assert first[0][2] in {key.wrapped_key_id for key in keys}
