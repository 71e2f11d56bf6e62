"""Kafka down: the gateway keeps serving, spools request events durably, and sends every one
exactly once, in order, when the broker is back."""

from __future__ import annotations

import httpx

from services.gateway.server import GatewayServer
from tests.support.gateway import collect_request_events, unique_scope, wait_for_key
from tests.support.waiting import wait_until_async

CHAT = "/v1/chat/completions"
BODY = {"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
SENT_DURING_OUTAGE = 15


async def test_events_spooled_while_kafka_is_down_arrive_once(
    kafka_broker, gateway_settings_factory, key_admin, provider_keys
):
    settings = gateway_settings_factory(gateway_publish_timeout_s=1.0)
    server = GatewayServer(settings)
    await server.start(wait_ready=20)
    try:
        issued, record = await key_admin.create_key(unique_scope("outage"))
        await wait_for_key(server, record.key_id)
        async with httpx.AsyncClient(
            base_url=server.base_url, headers={"authorization": f"Bearer {issued.value}"}
        ) as client:
            assert (await client.post(CHAT, json=BODY)).status_code == 200
            assert await server.gateway.publisher.wait_idle(10)
            await kafka_broker.kafka.stop()
            try:
                statuses = [
                    (await client.post(CHAT, json=BODY)).status_code
                    for _ in range(SENT_DURING_OUTAGE)
                ]
                assert statuses == [200] * SENT_DURING_OUTAGE
                # The first failed send takes up to the publish timeout.
                await wait_until_async(lambda: server.gateway.spool.backlog, 10,
                                       f"{SENT_DURING_OUTAGE} events spooled",
                                       done=lambda backlog: backlog >= SENT_DURING_OUTAGE)
            finally:
                await kafka_broker.kafka.start()
        assert await server.gateway.publisher.wait_idle(30)
        events = await collect_request_events(
            settings, {record.key_id}, expected=SENT_DURING_OUTAGE + 1
        )
    finally:
        await server.stop()
    ids = [e.event_id for e in events]
    assert len(ids) == SENT_DURING_OUTAGE + 1
    assert len(set(ids)) == len(ids), "an event arrived twice"
    assert ids == sorted(ids), "spooled events were sent out of order"  # UUIDv7: time-ordered
    assert server.gateway.metrics.events_spooled.value() >= SENT_DURING_OUTAGE
