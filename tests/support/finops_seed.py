"""Hand-made warehouse rows with answers worked out by hand, for the FinOps queries and reports.

November 2026 (UTC). Spend per team: payments 3.350150001, search 3.333333333, growth 0.75;
total 7.433483334. One event is written twice (a redelivery) and one is restated from unpriced
to priced, so a query that forgets FINAL gets a different answer. The registry (audit_log)
knows wrapped keys created and never used, a revoked key, and provider keys due for rotation.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from clickhouse_connect.driver import Client

from pipelines.sinks.clickhouse import REQUEST_COLUMNS
from schemas.events.keys import KeyPolicy, ProviderKeyRecord, ProviderKeyStatus, WrappedKeyRecord
from schemas.events.request import KeyTags, Provider

AUDIT_COLUMNS = (
    "event_id", "occurred_at", "actor", "action", "entity_kind", "entity_id",
    "registry_event_id", "before", "after", "details", "ingested_at",
)  # fmt: skip


def at(text: str) -> datetime:
    """`2026-11-02 10:00[:00.000]` as an aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


KEYS: dict[str, dict[str, str]] = {
    "k_pay_prod": dict(key_scope="payments-chatbot-prod", team="payments", service="chatbot",
                       environment="prod", cost_center="CC-100", provider="openai",
                       provider_key_id="pk_openai_1"),
    "k_pay_dev": dict(key_scope="payments-chatbot-dev", team="payments", service="chatbot",
                      environment="dev", cost_center="CC-100", provider="openai",
                      provider_key_id="pk_openai_1"),
    "k_search_prod": dict(key_scope="search-rerank-prod", team="search", service="rerank",
                          environment="prod", cost_center="CC-200", provider="anthropic",
                          provider_key_id="pk_anthropic_1"),
    "k_growth_stg": dict(key_scope="growth-summaries-staging", team="growth",
                         service="summaries", environment="staging", cost_center="CC-300",
                         provider="google", provider_key_id="pk_google_1"),
    "k_old": dict(key_scope="search-legacy-prod", team="search", service="legacy",
                  environment="prod", cost_center="CC-200", provider="openai",
                  provider_key_id="pk_openai_1"),
}  # fmt: skip


def request_row(
    key: str,
    occurred_at: str,
    model: str,
    cost: str | None,
    *,
    event_id: uuid.UUID | None = None,
    outcome: str = "accepted",
    rejection_reason: str = "",
    http_status: int = 200,
    input_tokens: int = 0,
    output_tokens: int = 0,
    cached_input_tokens: int = 0,
    reasoning_tokens: int = 0,
    latency_ms: float = 100.0,
    ttft_ms: float | None = None,
    pricing_status: str | None = None,
    row_version: int = 1,
) -> tuple[Any, ...]:
    """One `request_events` row in the pipeline sink's column order."""
    tags = KEYS[key]
    values: dict[str, Any] = {
        "event_id": event_id or uuid.uuid4(),
        "occurred_at": at(occurred_at),
        "wrapped_key_id": key,
        "key_scope": tags["key_scope"],
        "provider": tags["provider"],
        "provider_key_id": "" if outcome == "rejected" else tags["provider_key_id"],
        "endpoint": "chat.completions",
        "requested_model": model,
        "served_model": "" if outcome == "rejected" else model,
        "model": model,
        "outcome": outcome,
        "rejection_reason": rejection_reason,
        "http_status": http_status,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cached_input_tokens": cached_input_tokens,
        "cache_write_tokens": 0,
        "reasoning_tokens": reasoning_tokens,
        "cost_usd": None if cost is None else Decimal(cost),
        "pricing_status": pricing_status or _pricing_status(cost),
        "catalog_version": "2026-11-01",
        "price_entry_id": "",
        "latency_ms": latency_ms,
        "time_to_first_token_ms": ttft_ms,
        "streaming": ttft_ms is not None,
        "client_ip": "10.0.0.7",
        "request_id": "",
        "gateway_id": "gw-test",
        "team": tags["team"],
        "service": tags["service"],
        "environment": tags["environment"],
        "cost_center": tags["cost_center"],
        "tags": {},
        "ingested_at": at(occurred_at),
        "row_version": row_version,
        "cache_write_5m_tokens": 0,
        "cache_write_1h_tokens": 0,
        "price_layer": "" if cost is None else "genai-prices",
        "price_layer_version": "" if cost is None else "0.2.3",
    }
    return tuple(values[column] for column in REQUEST_COLUMNS)


def _pricing_status(cost: str | None) -> str:
    if cost is None:
        return "unknown_model"
    return "not_billable" if cost == "0" else "priced"


E2 = uuid.UUID("00000000-0000-7000-8000-000000000002")
E3 = uuid.UUID("00000000-0000-7000-8000-000000000003")

REQUESTS: list[tuple[Any, ...]] = [
    request_row("k_pay_prod", "2026-11-02 10:00:00", "gpt-4o", "1.250000000",
                input_tokens=1000, output_tokens=200, latency_ms=100),
    # e2 first arrives unpriced (row_version 1), then is restated priced (row_version 2).
    request_row("k_pay_prod", "2026-11-02 11:00:00", "gpt-4o-mini", None, event_id=E2,
                input_tokens=500, output_tokens=100, latency_ms=200),
    request_row("k_pay_prod", "2026-11-10 09:00:00", "gpt-4o", "2.000000001", event_id=E3,
                input_tokens=2000, output_tokens=400, cached_input_tokens=500, latency_ms=300,
                ttft_ms=80),
    request_row("k_pay_dev", "2026-11-03 12:00:00", "gpt-4o-mini", "0.100000000",
                input_tokens=300, output_tokens=50, latency_ms=400),
    request_row("k_pay_dev", "2026-11-17 08:00:00", "gpt-4o", "0", outcome="rejected",
                rejection_reason="model_not_allowed", http_status=403, latency_ms=1),
    request_row("k_search_prod", "2026-11-05 14:00:00", "claude-sonnet-4-5", "3.333333333",
                input_tokens=4000, output_tokens=1000, reasoning_tokens=300, latency_ms=500),
    request_row("k_search_prod", "2026-11-06 14:00:00", "claude-sonnet-4-5", "0",
                outcome="upstream_error", http_status=529, latency_ms=50),
    request_row("k_search_prod", "2026-11-05 15:00:00", "claude-mystery", None,
                input_tokens=100, output_tokens=10, latency_ms=700),
    request_row("k_growth_stg", "2026-11-20 10:00:00", "gemini-2.5-flash", "0.500000000",
                input_tokens=800, output_tokens=80, latency_ms=600),
    request_row("k_growth_stg", "2026-11-30 23:59:59.999", "gemini-2.5-flash", "0.250000000",
                input_tokens=400, output_tokens=40, latency_ms=800),
    # Outside November on either side, by one millisecond.
    request_row("k_growth_stg", "2026-12-01 00:00:00.000", "gemini-2.5-flash", "7.000000000",
                input_tokens=1, output_tokens=1),
    request_row("k_pay_prod", "2026-10-31 23:59:59.999", "gpt-4o", "9.000000000",
                input_tokens=1, output_tokens=1),
    # k_old: last real use in September; in November only a refused authentication.
    request_row("k_old", "2026-09-15 10:00:00", "gpt-4o-mini", "0.010000000",
                input_tokens=10, output_tokens=10),
    request_row("k_old", "2026-11-20 10:00:00", "", "0", outcome="rejected",
                rejection_reason="auth_failed", http_status=401, latency_ms=1),
]  # fmt: skip

# Written in later inserts (separate parts): a redelivery of e3, and e2's restatement.
LATE_REQUESTS: list[tuple[Any, ...]] = [
    request_row("k_pay_prod", "2026-11-10 09:00:00", "gpt-4o", "2.000000001", event_id=E3,
                input_tokens=2000, output_tokens=400, cached_input_tokens=500, latency_ms=300,
                ttft_ms=80),
    request_row("k_pay_prod", "2026-11-02 11:00:00", "gpt-4o-mini", "0.000150000", event_id=E2,
                input_tokens=500, output_tokens=100, latency_ms=200, row_version=2),
]  # fmt: skip


def _wrapped(key_id: str, created: str, *, revoked: str | None = None,
             policy: KeyPolicy | None = None, cost_center: str | None = None) -> WrappedKeyRecord:
    tags = KEYS.get(key_id, dict(key_scope=key_id.replace("_", "-"), team="search",
                                 service="unused", environment="prod", cost_center="CC-200"))
    return WrappedKeyRecord(
        key_id=key_id, scope=tags["key_scope"].replace("_", "-"), secret_hash="0" * 64,
        tags=KeyTags(team=tags["team"], service=tags["service"],
                     environment=tags["environment"],
                     cost_center=cost_center or tags["cost_center"]),
        policy=policy or KeyPolicy(), created_at=at(created), created_by="alice",
        revoked_at=at(revoked) if revoked else None,
    )  # fmt: skip


def _provider(key_id: str, provider: str, created: str, rotation_days: int,
              status: str = "active") -> ProviderKeyRecord:
    return ProviderKeyRecord(
        provider_key_id=key_id, provider=Provider(provider), status=ProviderKeyStatus(status),
        sealed=None if status == "retired" else {"kek_version": 1, "nonce_b64": "A" * 16,
                                                  "ciphertext_b64": "c2VhbGVk"},
        created_at=at(created), created_by="ops", rotation_days=rotation_days,  # type: ignore[arg-type]
        grace_until=at("2026-12-01 00:00:00") if status == "grace" else None,
        retired_at=at("2026-09-01 00:00:00") if status == "retired" else None,
    )  # fmt: skip


def _audit(occurred: str, actor: str, action: str, record: Any, before: Any = None,
           event_id: uuid.UUID | None = None) -> tuple[Any, ...]:
    kind = "wrapped_key" if isinstance(record, WrappedKeyRecord) else "provider_key"
    entity = f"wk:{record.key_id}" if kind == "wrapped_key" else f"pk:{record.provider_key_id}"
    return (
        event_id or uuid.uuid4(), at(occurred), actor, action, kind, entity, None,
        json.dumps(before.public_view()) if before is not None else "",
        json.dumps(record.public_view()), {}, at(occurred),
    )  # fmt: skip


PAY_PROD_CREATED = _wrapped("k_pay_prod", "2026-08-01 09:00:00")
PAY_PROD_BUDGET = _wrapped("k_pay_prod", "2026-08-01 09:00:00",
                           policy=KeyPolicy(monthly_budget_usd=Decimal("500")))
PAY_PROD_RETAGGED = _wrapped("k_pay_prod", "2026-08-01 09:00:00",
                             policy=KeyPolicy(monthly_budget_usd=Decimal("500")),
                           cost_center="CC-101")
POLICY_EVENT = uuid.UUID("00000000-0000-7000-8000-0000000000a2")
OPENAI_0_ACTIVE = _provider("pk_openai_0", "openai", "2026-05-01 00:00:00", 90)

AUDIT: list[tuple[Any, ...]] = [
    _audit("2026-08-01 09:00:00", "alice", "key_created", PAY_PROD_CREATED),
    _audit("2026-09-01 09:00:00", "bob", "key_policy_changed", PAY_PROD_BUDGET,
           before=PAY_PROD_CREATED, event_id=POLICY_EVENT),
    _audit("2026-10-01 09:00:00", "carol", "key_tags_changed", PAY_PROD_RETAGGED,
           before=PAY_PROD_BUDGET),
    _audit("2026-09-01 00:00:00", "alice", "key_created",
           _wrapped("k_never", "2026-09-01 00:00:00")),
    _audit("2026-11-25 00:00:00", "alice", "key_created",
           _wrapped("k_new", "2026-11-25 00:00:00")),
    _audit("2026-08-01 00:00:00", "alice", "key_created",
           _wrapped("k_revoked", "2026-08-01 00:00:00")),
    _audit("2026-10-01 00:00:00", "alice", "key_revoked",
           _wrapped("k_revoked", "2026-08-01 00:00:00", revoked="2026-10-01 00:00:00")),
    _audit("2026-05-01 00:00:00", "ops", "provider_key_added", OPENAI_0_ACTIVE),
    _audit("2026-08-01 00:00:00", "ops", "provider_key_rotated",
           _provider("pk_openai_0", "openai", "2026-05-01 00:00:00", 90, status="grace"),
           before=OPENAI_0_ACTIVE),
    _audit("2026-09-01 00:00:00", "ops", "provider_key_retired",
           _provider("pk_openai_0", "openai", "2026-05-01 00:00:00", 90, status="retired")),
    _audit("2026-08-01 00:00:00", "ops", "provider_key_added",
           _provider("pk_openai_1", "openai", "2026-08-01 00:00:00", 90)),
    _audit("2026-10-15 00:00:00", "ops", "provider_key_added",
           _provider("pk_anthropic_1", "anthropic", "2026-10-15 00:00:00", 30)),
    _audit("2026-11-01 00:00:00", "ops", "provider_key_added",
           _provider("pk_google_1", "google", "2026-11-01 00:00:00", 90)),
    _audit("2026-09-05 00:00:00", "ops", "provider_key_added",
           _provider("pk_google_2", "google", "2026-09-05 00:00:00", 90)),
]  # fmt: skip

# A redelivered audit event: same event_id, written again in a later insert.
LATE_AUDIT = [
    _audit("2026-09-01 09:00:00", "bob", "key_policy_changed", PAY_PROD_BUDGET,
           before=PAY_PROD_CREATED, event_id=POLICY_EVENT),
]


def seed_finops(client: Client) -> None:
    """Insert the hand-made rows; the late ones in separate inserts (separate parts)."""
    client.insert("request_events", REQUESTS, column_names=list(REQUEST_COLUMNS))
    for row in LATE_REQUESTS:
        client.insert("request_events", [row], column_names=list(REQUEST_COLUMNS))
    client.insert("audit_log", AUDIT, column_names=list(AUDIT_COLUMNS))
    client.insert("audit_log", LATE_AUDIT, column_names=list(AUDIT_COLUMNS))


__all__ = ["AUDIT", "KEYS", "LATE_REQUESTS", "REQUESTS", "at", "request_row", "seed_finops"]
