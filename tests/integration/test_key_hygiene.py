"""The orphaned-key timer against the real broker (the key registry) and the warehouse: a key
idle for 30 days raises one alert, a second run repeats nothing, and revoking the key resolves
it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from keywarden.clickhouse import get_client
from keywarden.kafka import ensure_topics
from keywarden.settings import load_settings
from pipelines.alerts.emitter import AlertEmitter
from pipelines.detect.timers import KeyHygieneCheck
from pipelines.registry import RegistryView
from schemas.events.alert import AlertEvent
from schemas.events.keys import RegistryEvent, RegistryEventType, WrappedKeyRecord
from tests.support.analytics import publish_registry, wait_for


def record(key_id: str, created_at: datetime, revoked_at: datetime | None = None) -> Any:
    return WrappedKeyRecord(key_id=key_id, scope=key_id.replace("_", "-"), secret_hash="0" * 64,
                            created_at=created_at, created_by="test", revoked_at=revoked_at)


async def test_an_idle_key_alerts_once_and_revoking_it_resolves_the_alert(
    kafka_broker, warehouse_db
) -> None:
    settings = load_settings(kafka_bootstrap=kafka_broker.bootstrap)
    await ensure_topics(settings)
    now = datetime.now(UTC)
    suffix = uuid.uuid4().hex[:8]
    idle, fresh = f"wk_idle_{suffix}", f"wk_fresh_{suffix}"
    for key, created in ((idle, now - timedelta(days=40)), (fresh, now - timedelta(days=2))):
        await publish_registry(settings, RegistryEvent(occurred_at=created, actor="test",
                                              type=RegistryEventType.KEY_CREATED,
                                              wrapped_key=record(key, created)))
    published: list[tuple[str, str, str]] = []

    async def collect(_key: bytes, value: bytes) -> None:
        alert = AlertEvent.model_validate_json(value)
        if alert.wrapped_key_id in (idle, fresh):
            published.append((alert.wrapped_key_id, alert.kind.value, alert.state.value))

    def client() -> Any:
        return get_client(warehouse_db)

    registry = RegistryView(settings)
    async with registry:
        assert await registry.wait_ready(30)

        async def both_known() -> bool:
            return idle in registry.wrapped_keys and fresh in registry.wrapped_keys

        await wait_for(both_known, 10, "the registry view to hold both keys")
        check = KeyHygieneCheck(registry, AlertEmitter(collect, client), client, orphan_days=30)
        await check.run()
        assert published == [(idle, "orphaned_key", "open")]
        await check.run()  # a second round repeats nothing
        assert published == [(idle, "orphaned_key", "open")]

        await publish_registry(settings, RegistryEvent(
            occurred_at=now, actor="test", type=RegistryEventType.KEY_REVOKED,
            wrapped_key=record(idle, now - timedelta(days=40), revoked_at=now)))

        async def revoked() -> bool:
            return registry.wrapped_keys[idle].revoked_at is not None

        await wait_for(revoked, 10, "the revocation to reach the registry view")
        await check.run()
    assert published == [(idle, "orphaned_key", "open"), (idle, "orphaned_key", "resolved")]
    rows = get_client(warehouse_db).query(
        "SELECT state FROM alerts WHERE wrapped_key_id = {k:String} ORDER BY published_at",
        parameters={"k": idle}).result_rows
    assert [state for (state,) in rows] == ["open", "resolved"]
