"""The gateway builds request events without pydantic on its hot path: its bytes must be exactly
what `RequestEvent` accepts and would have produced, and valid against the published JSON
Schema; values outside the contract still raise as building the model did."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from schemas.events.keys import KeyPolicy, WrappedKeyRecord
from schemas.events.request import KeyTags, Outcome, RejectionReason, RequestEvent, Usage
from schemas.export import JSONSCHEMA_DIR
from schemas.ids import uuid7
from services.gateway.event import request_event_fields, request_event_json

SCHEMA = json.loads((JSONSCHEMA_DIR / "llm.request.v1.json").read_text(encoding="utf-8"))
NOW = datetime(2026, 12, 2, 16, 0, 1, 234567, tzinfo=UTC)


def key_record() -> WrappedKeyRecord:
    return WrappedKeyRecord(
        key_id="wk_0123456789abcdef",
        scope="team-a-chat-prod",
        secret_hash="0" * 64,
        tags=KeyTags(team="team-a", service="chat", environment="prod", cost_center="CC-1",
                     extra={"owner": "ana", "région": "eu-west"}),
        policy=KeyPolicy(daily_budget_usd=Decimal("5"), allowed_models=["gpt-4o-mini"]),
        created_at=NOW,
        created_by="test",
    )


def fields(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "event_id": uuid7(),
        "occurred_at": NOW,
        "key": key_record(),
        "provider": "openai",
        "provider_key_id": "pk_openai_1",
        "endpoint": "chat.completions",
        "requested_model": "gpt-4o-mini",
        "served_model": "gpt-4o-mini-2024-07-18",
        "outcome": str(Outcome.ACCEPTED),
        "rejection_reason": None,
        "http_status": 200,
        "usage": Usage(input_tokens=12, output_tokens=20, cached_input_tokens=4,
                       reasoning_tokens=3),
        "latency_ms": 1.234567,
        "time_to_first_token_ms": None,
        "streaming": False,
        "client_ip": "203.0.113.7",
        "request_id": "req-1",
        "gateway_id": "gw-1",
    }
    values.update(overrides)
    return request_event_fields(**values)


def model_of(document: dict[str, Any]) -> RequestEvent:
    """What the gateway built before: the validating model, from the same values."""
    return RequestEvent.model_validate(document)


CASES = {
    "accepted": {},
    "streaming with time to first token": {"streaming": True, "time_to_first_token_ms": 0.5},
    "rejected, known key": {"outcome": str(Outcome.REJECTED), "served_model": None,
                            "rejection_reason": str(RejectionReason.BUDGET_EXCEEDED),
                            "http_status": 429, "usage": Usage()},
    "rejected, no key": {"key": None, "outcome": str(Outcome.REJECTED), "requested_model": None,
                         "served_model": None, "provider_key_id": None, "usage": Usage(),
                         "rejection_reason": str(RejectionReason.AUTH_FAILED),
                         "http_status": 401, "client_ip": None},
    "upstream error, ipv6 client, whole second": {
        "outcome": str(Outcome.UPSTREAM_ERROR), "http_status": 502, "client_ip": "2001:db8::1",
        "occurred_at": NOW.replace(microsecond=0), "usage": Usage()},
    "client cancelled, non-ASCII model": {"outcome": str(Outcome.CLIENT_CANCELLED),
                                         "requested_model": "modèle-ü", "served_model": None},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_event_bytes_are_what_the_model_accepts_and_would_have_written(case: str) -> None:
    document = fields(**CASES[case])
    raw = request_event_json(document)
    parsed = RequestEvent.from_json_bytes(raw)
    expected = model_of(document)
    assert parsed == expected
    assert json.loads(raw) == json.loads(expected.to_json_bytes())
    assert list(json.loads(raw)) == list(json.loads(expected.to_json_bytes()))  # field order


@pytest.mark.parametrize("case", sorted(CASES))
def test_event_bytes_validate_against_the_published_json_schema(case: str) -> None:
    Draft202012Validator(SCHEMA).validate(json.loads(request_event_json(fields(**CASES[case]))))


@pytest.mark.parametrize("bad", [
    {"requested_model": "m" * 300},
    {"served_model": "m" * 257},
    {"http_status": 99},
    {"outcome": str(Outcome.REJECTED)},  # without a reason
    {"rejection_reason": str(RejectionReason.RATE_LIMITED)},  # accepted with a reason
])
def test_values_outside_the_contract_raise_as_the_model_does(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        request_event_json(fields(**bad))


def test_the_event_id_is_the_one_given() -> None:
    event_id = uuid.UUID(int=uuid7().int)
    assert json.loads(request_event_json(fields(event_id=event_id)))["event_id"] == str(event_id)
