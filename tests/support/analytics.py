"""Helpers for the analytics integration tests: hand-shaped traffic, registry records, and
readers of the pipeline's outputs (usage.spend.v1, alerts.v1, ClickHouse tables)."""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from aiokafka import AIOKafkaConsumer

from keywarden.clickhouse import get_client
from keywarden.kafka import make_producer
from keywarden.settings import Settings
from schemas import topics
from schemas.events.keys import KeyPolicy, RegistryEvent, RegistryEventType, WrappedKeyRecord
from schemas.events.request import KeyTags, Outcome, Provider, RequestEvent, Usage
from schemas.ids import uuid7
from schemas.pricing import load_catalog
from tests.support.waiting import wait_until_async

CATALOG = load_catalog()


@dataclass(frozen=True)
class Key:
    wrapped_key_id: str
    provider: Provider
    model: str
    usage: Usage

    def event(self, at: datetime, model: str | None = None) -> RequestEvent:
        return RequestEvent(
            event_id=uuid7(int(at.timestamp() * 1000)), occurred_at=at,
            wrapped_key_id=self.wrapped_key_id, key_scope=self.wrapped_key_id.replace("_", "-"),
            provider=self.provider, provider_key_id=f"pk_{self.provider.value}_1",
            endpoint="chat", requested_model=model or self.model, served_model=model or self.model,
            outcome=Outcome.ACCEPTED, http_status=200, usage=self.usage, gateway_id="test",
            tags=KeyTags(team="t", service=self.wrapped_key_id, environment="test"),
        )


def cost(event: RequestEvent) -> Decimal:
    priced = CATALOG.price(event.provider.value, event.model, event.usage, event.occurred_at)
    assert priced.cost_usd is not None
    return priced.cost_usd


def rhythm(hour: int, weekday: int) -> float:
    """Daily rhythm (1.5x at 14:00, 0.5x at 02:00) times a weekly one (weekends 0.8x)."""
    daily = 1 + 0.5 * math.sin(2 * math.pi * (hour - 8) / 24)
    return daily * (0.8 if weekday >= 5 else 1.0)


def hourly_traffic(key: Key, start: datetime, hours: int, base: float,
                   surge_from: datetime | None = None, surge: float = 1.0) -> list[RequestEvent]:
    """`round(base * rhythm)` events per hour, spread evenly inside each hour."""
    events = []
    for index in range(hours):
        hour = start + timedelta(hours=index)
        factor = surge if surge_from is not None and hour >= surge_from else 1.0
        count = round(base * rhythm(hour.hour, hour.weekday()) * factor)
        events.extend(key.event(hour + timedelta(seconds=3600 * i / count + 1))
                      for i in range(count))
    return events


def unique(name: str) -> str:
    return f"{name}_{uuid.uuid4().hex[:8]}"


async def register_key(settings: Settings, key_id: str, *, daily: Decimal | None = None,
                       monthly: Decimal | None = None, created_at: datetime) -> None:
    record = WrappedKeyRecord(
        key_id=key_id, scope=key_id.replace("_", "-").lower()[:60], secret_hash="0" * 64,
        policy=KeyPolicy(daily_budget_usd=daily, monthly_budget_usd=monthly),
        created_at=created_at, created_by="test")
    await publish_registry(settings, RegistryEvent(
        occurred_at=created_at, actor="test", type=RegistryEventType.KEY_CREATED,
        wrapped_key=record))


async def publish_registry(settings: Settings, event: RegistryEvent) -> None:
    """Put one change on keys.registry.v1 (as the key commands would) and wait for the ack."""
    producer = make_producer(settings)
    await producer.start()
    try:
        await (await producer.send(topics.KEYS_REGISTRY, event.to_json_bytes(),
                                   key=event.entity_id.encode()))
    finally:
        await producer.stop()


async def read_topic(bootstrap: str, topic: str, keys: set[str], idle_ms: int = 1500,
                     key_of: Any = None) -> list[dict[str, Any]]:
    """Every record of `topic` whose JSON names one of `keys` (by wrapped_key_id)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=idle_ms)
            if not batch:
                break
            for records in batch.values():
                for record in records:
                    document = json.loads(record.value)
                    if document.get("wrapped_key_id") in keys:
                        found.append(document)
    finally:
        await consumer.stop()
    return found


async def latest_spend(bootstrap: str, keys: set[str]) -> dict[str, dict[str, Any]]:
    """The newest usage.spend.v1 record of each of `keys` (the per-key state as last published)."""
    records = await read_topic(bootstrap, topics.SPEND, keys, idle_ms=700)
    return {r["wrapped_key_id"]: r for r in records}


def query(url: str, sql: str, **parameters: Any) -> list[tuple[Any, ...]]:
    client = get_client(url)
    try:
        return client.query(sql, parameters=parameters).result_rows
    finally:
        client.close()


async def wait_for(probe: Any, timeout: float, what: str) -> Any:
    """`wait_until_async` every half second: these tests' probes query ClickHouse or read a
    topic from its start, too heavy to repeat faster."""
    return await wait_until_async(probe, timeout, what, interval=0.5)
