"""A LiteLLM proxy (its own environment, its own process) with keywarden's callback in front of
the fake provider: every request through LiteLLM, plain, streaming or failed, becomes one priced
llm.request.v1 row keyed by the hashed virtual key, and the key's budget alert is raised."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from keywarden.kafka import ensure_topics
from keywarden.settings import load_settings
from schemas import topics
from tests.support.analytics import query, read_topic, register_key, wait_for
from tests.support.fake_provider import FAKE_OPENAI_KEY
from tests.support.litellm import litellm_proxy

pytestmark = pytest.mark.slow


async def raw_values(bootstrap: str, topic: str) -> list[bytes]:
    """Every record value of `topic` as bytes (other tests put malformed records there too)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    values: list[bytes] = []
    try:
        while batch := await consumer.getmany(timeout_ms=1500):
            values += [record.value or b"" for records in batch.values() for record in records]
    finally:
        await consumer.stop()
    return values

PLAIN, STREAMED, FAILED = 4, 3, 2


async def test_requests_through_litellm_become_priced_rows_and_the_right_alerts(
    kafka_broker, warehouse_db, run_pipeline, fake_provider, tmp_path
) -> None:
    settings = load_settings(kafka_bootstrap=kafka_broker.bootstrap)
    await ensure_topics(settings)
    master_key = f"sk-litellm-test-{uuid.uuid4().hex}"
    gateway_id = f"litellm-{uuid.uuid4().hex[:8]}"
    # Virtual keys need LiteLLM's database; its master key stands in. LiteLLM logs the hash of
    # a fixed alias for master-key calls (neither the key nor its hash), so that is the key id.
    key_id = f"litellm_{hashlib.sha256(b'litellm_proxy_master_key').hexdigest()}"
    # A daily cap the first answered request exceeds: one budget alert (100%), nothing else.
    await register_key(settings, key_id, daily=Decimal("0.000001"),
                       created_at=datetime.now(UTC) - timedelta(days=1))
    run_pipeline(warehouse_db)

    with litellm_proxy(tmp_path / "litellm", fake_provider.base_url, FAKE_OPENAI_KEY,
                       master_key, kafka_broker.bootstrap, gateway_id) as proxy:
        body = {"messages": [{"role": "user", "content": "How much did this cost?"}],
                "max_tokens": 8, "user": "alice",
                "metadata": {"service": "checkout-api", "environment": "prod"}}
        statuses = []
        async with httpx.AsyncClient(base_url=proxy.url, timeout=60, headers={
                "authorization": f"Bearer {master_key}"}) as client:
            for _ in range(PLAIN):
                reply = await client.post("/v1/chat/completions", json={**body,
                                                                       "model": "gpt-4o-mini"})
                statuses.append(reply.status_code)
            for _ in range(STREAMED):
                async with client.stream("POST", "/v1/chat/completions", json={
                        **body, "model": "gpt-4o-mini", "stream": True,
                        "stream_options": {"include_usage": True}}) as reply:
                    chunks = [line async for line in reply.aiter_lines() if line]
                    statuses.append(reply.status_code)
                    assert chunks[-1] == "data: [DONE]"
            for _ in range(FAILED):
                reply = await client.post("/v1/chat/completions", json={**body,
                                                                       "model": "broken"})
                statuses.append(reply.status_code)
        assert statuses == [200] * (PLAIN + STREAMED) + [400] * FAILED

        def rows() -> list[tuple]:
            return query(
                warehouse_db,
                "SELECT wrapped_key_id, outcome, http_status, streaming, pricing_status, cost_usd,"
                " input_tokens, output_tokens, service, environment, tags, provider, model "
                "FROM request_events FINAL WHERE gateway_id = {g:String}", g=gateway_id)

        async def all_rows() -> list[tuple]:
            found = await asyncio.to_thread(rows)
            return found if len(found) >= PLAIN + STREAMED + FAILED else []

        try:
            stored = await wait_for(all_rows, 90, "one row per LiteLLM request")
        except AssertionError:
            print(proxy.log())
            raise

    assert len(stored) == PLAIN + STREAMED + FAILED  # one each, none twice
    assert {row[0] for row in stored} == {key_id}  # the hashed virtual key, never the key
    answered = [row for row in stored if row[1] == "accepted"]
    failed = [row for row in stored if row[1] == "upstream_error"]
    assert len(answered) == PLAIN + STREAMED and len(failed) == FAILED
    assert sum(row[3] for row in answered) == STREAMED
    for (_key, _outcome, status, _streamed, pricing, cost, inp, out, service, environment, tags,
         provider, model) in answered:
        assert (status, pricing, provider) == (200, "priced", "openai")
        assert model.startswith("gpt-4o-mini")
        assert inp > 0 and out == 8  # the fake provider's deterministic usage, streams included
        assert cost > 0
        assert (service, environment) == ("checkout-api", "prod")
        assert tags["litellm_end_user"] == "alice"
    assert {(row[2], row[5] or 0) for row in failed} == {(400, 0)}

    published = b"\n".join(await raw_values(kafka_broker.bootstrap, topics.REQUESTS))
    assert key_id.encode() in published
    assert master_key.encode() not in published  # not the key, not its hash
    assert hashlib.sha256(master_key.encode()).hexdigest().encode() not in published

    # the analytics stage runs after the rows are stored: the alert may follow them
    async def opened_alerts() -> list[dict]:
        alerts = await read_topic(kafka_broker.bootstrap, topics.ALERTS, {key_id})
        return [a for a in alerts if a["state"] == "open"]

    opened = await wait_for(opened_alerts, 60, "the budget alert of the LiteLLM key")
    assert [(a["kind"], Decimal(a["threshold"])) for a in opened] == [
        ("budget_threshold", Decimal(100))]
