"""The broker restarted under traffic, and the gateway restarted with a full spool: every request
answered, every request event on llm.requests.v1 exactly once by event_id."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from services.gateway.server import GatewayServer
from tests.support.gateway import collect_request_events, unique_scope, wait_for_key

pytestmark = pytest.mark.slow

CHAT = "/v1/chat/completions"
BODY = {"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}


async def _traffic(client: httpx.AsyncClient, stop: asyncio.Event, ids: list[str],
                   statuses: list[int], interval: float = 0.05) -> None:
    while not stop.is_set():
        response = await client.post(CHAT, json=BODY)
        statuses.append(response.status_code)
        ids.append(response.headers.get("x-keywarden-request-id", ""))
        await asyncio.sleep(interval)


async def test_kafka_restart_under_traffic_keeps_serving_and_delivers_each_event_once(
    kafka_broker, gateway_settings_factory, key_admin, provider_keys
) -> None:
    settings = gateway_settings_factory(gateway_publish_timeout_s=1.0)
    async with GatewayServer(settings) as server:
        await server.gateway.registry_follower.wait_ready(20)
        issued, record = await key_admin.create_key(unique_scope("kafka-restart"))
        await wait_for_key(server, record.key_id)
        ids: list[str] = []
        statuses: list[int] = []
        stop = asyncio.Event()
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10, headers={
                "authorization": f"Bearer {issued.value}"}) as client:
            traffic = asyncio.create_task(_traffic(client, stop, ids, statuses))
            await asyncio.sleep(1.0)
            await kafka_broker.kafka.stop()
            during_from = len(statuses)
            await asyncio.sleep(2.0)
            await kafka_broker.kafka.start()
            during = len(statuses) - during_from
            await asyncio.sleep(2.0)
            stop.set()
            await traffic
        assert during > 5, "no traffic flowed while the broker was down"
        assert set(statuses) == {200}, f"requests failed during the restart: {set(statuses)}"
        assert await server.gateway.publisher.wait_idle(40), "the spool did not drain"
        events = await collect_request_events(settings, {record.key_id}, expected=len(ids),
                                              timeout=40)
    arrived = [str(e.event_id) for e in events]
    assert len(arrived) == len(set(arrived)), "an event arrived twice"
    assert sorted(arrived) == sorted(ids), (
        f"{len(set(ids) - set(arrived))} events lost, {len(set(arrived) - set(ids))} unknown")


async def test_gateway_restarted_with_a_full_spool_sends_each_spooled_event_once(
    kafka_broker, gateway_settings_factory, key_admin, provider_keys
) -> None:
    settings = gateway_settings_factory(gateway_publish_timeout_s=1.0)
    server = GatewayServer(settings)
    await server.start(wait_ready=20)
    issued, record = await key_admin.create_key(unique_scope("spool-restart"))
    ids: list[str] = []
    try:
        await wait_for_key(server, record.key_id)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10, headers={
                "authorization": f"Bearer {issued.value}"}) as client:
            await kafka_broker.kafka.stop()
            try:
                for _ in range(20):
                    response = await client.post(CHAT, json=BODY)
                    assert response.status_code == 200
                    ids.append(response.headers["x-keywarden-request-id"])
            finally:
                await server.stop()  # stopped while Kafka is down: the events stay spooled
                spooled = server.gateway.spool.backlog
                await kafka_broker.kafka.start()
    finally:
        await server.stop()
    assert spooled == len(ids), f"{spooled} of {len(ids)} events in the spool at shutdown"

    restarted = GatewayServer(settings)  # same gateway id, same spool folder
    await restarted.start(wait_ready=30)
    try:
        assert await restarted.gateway.publisher.wait_idle(40), "the spool did not drain"
        assert restarted.gateway.spool.backlog == 0
        events = await collect_request_events(settings, {record.key_id}, expected=len(ids),
                                              timeout=30)
    finally:
        await restarted.stop()
    arrived = [str(e.event_id) for e in events]
    assert len(arrived) == len(set(arrived)), "a spooled event was sent twice"
    assert sorted(arrived) == sorted(ids)
