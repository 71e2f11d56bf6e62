"""The alert emitter against the real broker and warehouse: an alert published by a worker that
died before it wrote the alert's row is not published again by the next worker."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from keywarden.clickhouse import get_client
from keywarden.kafka import ensure_topics, make_producer
from keywarden.settings import load_settings
from pipelines.alerts import build
from pipelines.alerts.emitter import AlertEmitter, recently_published
from schemas.events.alert import AlertEvent
from schemas.events.request import KeyTags
from schemas.topics import TopicSpec
from tests.support.analytics import read_topic


def first_use(key: str, model: str) -> AlertEvent:
    return build.first_use_alert(wrapped_key_id=key, key_scope=key, tags=KeyTags(team="t"),
                                 model=model, provider="openai",
                                 at=datetime(2026, 11, 2, 9, tzinfo=UTC))


async def test_a_restarted_emitter_does_not_republish_what_the_topic_already_holds(
    kafka_broker, warehouse_db
) -> None:
    settings = load_settings(kafka_bootstrap=kafka_broker.bootstrap)
    topic = f"alerts-test-{uuid.uuid4().hex[:8]}"
    await ensure_topics(settings, [TopicSpec(topic, partitions=3)])
    key = f"wk_emit_{uuid.uuid4().hex[:8]}"
    producer = make_producer(settings)
    await producer.start()

    async def publish(k: bytes, value: bytes) -> None:
        await (await producer.send(topic, key=k, value=value))

    def client() -> Any:
        return get_client(warehouse_db)

    try:
        assert await recently_published(settings, topic, timedelta(minutes=5)) == set()
        # The first worker published two alerts and was killed before it wrote their rows.
        dead = [first_use(key, "gpt-4o"), first_use(key, "gpt-4.1")]
        for alert in dead:
            await publish(str(alert.alert_id).encode(), alert.to_json_bytes())

        async def recent() -> set[tuple[str, str]]:
            return await recently_published(settings, topic, timedelta(minutes=5))

        # The redelivered batch raises the same two alerts, plus one that is new; the new
        # worker read the topic's tail as it started, before any alert.
        emitter = AlertEmitter(publish, client, recent)
        await emitter.prefetch()
        new = first_use(key, "o3")
        published = await emitter.emit([*dead, new])
        assert [a.alert_id for a in published] == [new.alert_id]
        # Without the topic's tail (the previous behaviour) both would have gone out again.
        naive = AlertEmitter(publish, client)
        assert {a.alert_id for a in await naive.emit(dead)} == {a.alert_id for a in dead}
    finally:
        await producer.stop()
    on_topic = await read_topic(kafka_broker.bootstrap, topic, {key})
    ids = [record["alert_id"] for record in on_topic]
    assert sorted(ids) == sorted(
        [str(a.alert_id) for a in dead] * 2 + [str(new.alert_id)])


async def test_the_window_excludes_older_records(kafka_broker) -> None:
    settings = load_settings(kafka_bootstrap=kafka_broker.bootstrap)
    topic = f"alerts-test-{uuid.uuid4().hex[:8]}"
    await ensure_topics(settings, [TopicSpec(topic, partitions=2)])
    producer = make_producer(settings)
    await producer.start()
    old, fresh = first_use("wk_a", "m1"), first_use("wk_a", "m2")
    try:
        hour_ago = int((datetime.now(UTC) - timedelta(hours=1)).timestamp() * 1000)
        await (await producer.send(topic, key=b"a", value=old.to_json_bytes(),
                                   timestamp_ms=hour_ago))
        await (await producer.send(topic, key=b"b", value=fresh.to_json_bytes()))
        await (await producer.send(topic, key=b"c", value=b"not json"))
    finally:
        await producer.stop()
    assert await recently_published(settings, topic, timedelta(minutes=10)) == {
        (str(fresh.alert_id), "open")}
