"""Per-request policies against the real broker: budget caps (50 concurrent requests against a
nearly spent key), RPM, model allowlist, CIDR allowlist with X-Forwarded-For spoofing, and
every refusal recorded as a rejected event."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from keywarden.kafka import ensure_topics, make_producer
from keywarden.settings import load_settings
from schemas.events.keys import KeyPolicy
from schemas.events.request import Outcome, RejectionReason
from schemas.events.spend import SpendEvent
from schemas.pricing import load_catalog
from schemas.topics import SPEND, TOPICS
from services.gateway.budget import BudgetLedger
from services.gateway.server import GatewayServer
from tests.support.gateway import collect_request_events, unique_scope, wait_for_key
from tests.support.waiting import wait_until_async

CHAT = "/v1/chat/completions"


def chat_body(model: str = "gpt-4o-mini", max_tokens: int | None = 20) -> dict:
    body: dict = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    if max_tokens:
        body["max_tokens"] = max_tokens
    return body


async def make_key(admin, server, **policy):
    issued, record = await admin.create_key(unique_scope("policy"), policy=KeyPolicy(**policy))
    await wait_for_key(server, record.key_id)
    return issued.value, record.key_id


def nearly_spent(cap: Decimal) -> tuple[Decimal, Decimal]:
    """(worst case of one chat_body() request, spend that leaves room for ten and a half)."""
    worst = BudgetLedger(load_catalog(), load_settings(), lambda: None).worst_case(
        "openai", "gpt-4o-mini", 1, 20, datetime.now(UTC)
    )
    return worst, cap - (worst * 10 + worst / 2)


async def publish_spend(settings, key_id: str, spent: Decimal) -> None:
    now = datetime.now(UTC)
    record = SpendEvent(
        wrapped_key_id=key_id,
        day=now.date(),
        month=now.strftime("%Y-%m"),
        spend_today_usd=spent,
        spend_month_usd=spent,
        requests_today=100,
        as_of=now,
        updated_at=now,
    )
    await ensure_topics(settings, [spec for spec in TOPICS if spec.name == SPEND])
    producer = make_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(SPEND, record.to_json_bytes(), key=key_id.encode())
    finally:
        await producer.stop()


async def fifty_concurrent_requests_stay_under_the_cap(
    base_url: str, value: str, key_id: str, cap: Decimal, spent: Decimal, settings
) -> None:
    """50 requests at once against a key with room for ten and a half worst cases: at least ten
    served, the rest refused with the budget error, and what was served never passes the cap."""
    async with httpx.AsyncClient(
        base_url=base_url, headers={"authorization": f"Bearer {value}"}
    ) as client:
        responses = await asyncio.gather(*(client.post(CHAT, json=chat_body()) for _ in range(50)))
    accepted = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert len(accepted) + len(refused) == 50
    assert 10 <= len(accepted) < 50
    error = refused[0].json()["error"]
    assert f"daily budget cap of ${cap}" in error["message"] and "resets at" in error["message"]
    assert error["code"] == "budget_exceeded"

    events = await collect_request_events(settings, {key_id}, expected=50)
    catalog = load_catalog()
    served = sum(
        (catalog.price("openai", e.model, e.usage, e.occurred_at).cost_usd or Decimal(0))
        for e in events
        if e.outcome is Outcome.ACCEPTED
    )
    assert spent + served <= cap, f"overshoot: {spent + served} > {cap}"
    assert sum(e.rejection_reason is RejectionReason.BUDGET_EXCEEDED for e in events) == len(
        refused
    )


async def test_budget_cap_holds_under_50_concurrent_requests(gateway, key_admin, gateway_settings):
    cap = Decimal("1.00")
    value, key_id = await make_key(key_admin, gateway, daily_budget_usd=cap)
    ledger = gateway.gateway.ledger
    worst, spent = nearly_spent(cap)
    assert worst == ledger.worst_case("openai", "gpt-4o-mini", 1, 20, datetime.now(UTC))
    await publish_spend(gateway_settings, key_id, spent)
    await wait_until_async(lambda: key_id in ledger.records, 5, "the spend record in the ledger",
                           interval=0.05)
    await fifty_concurrent_requests_stay_under_the_cap(
        gateway.base_url, value, key_id, cap, spent, gateway_settings
    )


async def test_rpm_limit_answers_429_with_retry_after(gateway, key_admin):
    value, _ = await make_key(key_admin, gateway, rpm=3)
    async with httpx.AsyncClient(
        base_url=gateway.base_url, headers={"authorization": f"Bearer {value}"}
    ) as client:
        statuses = [(await client.post(CHAT, json=chat_body())).status_code for _ in range(3)]
        limited = await client.post(CHAT, json=chat_body())
    assert statuses == [200, 200, 200]
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"


async def test_model_outside_allowlist_is_403_naming_model_and_allowed(
    gateway, key_admin, gateway_settings
):
    value, key_id = await make_key(key_admin, gateway, allowed_models=("gpt-4o-mini", "claude-*"))
    async with httpx.AsyncClient(
        base_url=gateway.base_url, headers={"authorization": f"Bearer {value}"}
    ) as client:
        ok = await client.post(CHAT, json=chat_body("gpt-4o-mini"))
        denied = await client.post(CHAT, json=chat_body("gpt-4o"))
        anthropic_denied = await client.post(
            "/v1/messages",
            headers={"x-api-key": value},
            json={
                "model": "gemini-2.5-pro",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
            },
        )
    assert ok.status_code == 200
    assert denied.status_code == 403
    message = denied.json()["error"]["message"]
    assert "'gpt-4o'" in message and "gpt-4o-mini" in message and "claude-*" in message
    assert anthropic_denied.status_code == 403
    assert anthropic_denied.json()["type"] == "error"  # answered in Anthropic's dialect
    events = await collect_request_events(gateway_settings, {key_id}, expected=3)
    reasons = sorted(str(e.rejection_reason) for e in events if e.outcome is Outcome.REJECTED)
    assert reasons == ["model_not_allowed", "model_not_allowed"]


@pytest.fixture
async def proxied_gateway(gateway_settings_factory, provider_keys):
    """A second gateway that trusts X-Forwarded-For from 127.0.0.1 (a local proxy)."""
    server = GatewayServer(gateway_settings_factory(gateway_trusted_proxies="127.0.0.1/32,::1/128"))
    await server.start(wait_ready=20)
    yield server
    await server.stop()


async def test_cidr_allowlist_and_forwarded_for_only_from_trusted_proxies(
    gateway, proxied_gateway, key_admin, gateway_settings
):
    value, key_id = await make_key(
        key_admin, gateway, allowed_cidrs=("10.0.0.0/8", "2001:db8::/32")
    )
    await wait_for_key(proxied_gateway, key_id)
    auth = {"authorization": f"Bearer {value}"}
    async with httpx.AsyncClient(headers=auth) as client:
        direct = await client.post(gateway.base_url + CHAT, json=chat_body())
        spoofed = await client.post(
            gateway.base_url + CHAT, json=chat_body(), headers={"x-forwarded-for": "10.1.2.3"}
        )
        via_proxy = await client.post(
            proxied_gateway.base_url + CHAT,
            json=chat_body(),
            headers={"x-forwarded-for": "10.1.2.3"},
        )
        via_proxy_v6 = await client.post(
            proxied_gateway.base_url + CHAT,
            json=chat_body(),
            headers={"x-forwarded-for": "2001:db8::7"},
        )
        # The client prepends a forged allowed address; the proxy appended the real one.
        forged_chain = await client.post(
            proxied_gateway.base_url + CHAT,
            json=chat_body(),
            headers={"x-forwarded-for": "10.9.9.9, 192.0.2.1"},
        )
    assert direct.status_code == 403 and "127.0.0.1" in direct.json()["error"]["message"]
    assert spoofed.status_code == 403
    assert via_proxy.status_code == 200
    assert via_proxy_v6.status_code == 200
    assert (
        forged_chain.status_code == 403 and "192.0.2.1" in forged_chain.json()["error"]["message"]
    )
    events = await collect_request_events(gateway_settings, {key_id}, expected=5)
    by_ip = {e.client_ip: e for e in events}
    assert by_ip["10.1.2.3"].outcome is Outcome.ACCEPTED
    assert by_ip["127.0.0.1"].rejection_reason is RejectionReason.SOURCE_IP_DENIED


async def test_health_readiness_and_metrics(gateway):
    async with httpx.AsyncClient(base_url=gateway.base_url) as client:
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
        metrics = (await client.get("/metrics")).text
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert "keywarden_gateway_requests_total{" in metrics
    assert "keywarden_gateway_upstream_latency_seconds_bucket{" in metrics
    assert 'keywarden_gateway_refusals_total{reason="' in metrics
    assert "keywarden_gateway_events_published_total" in metrics
