"""The llm.request.v1 contract: model validation and the published JSON Schema."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from schemas.events.request import RequestEvent, Usage
from schemas.export import EXPORTED, JSONSCHEMA_DIR, render
from schemas.ids import stable_id, uuid7


def minimal(**overrides: object) -> dict[str, object]:
    document: dict[str, object] = {
        "schema": "llm.request.v1",
        "event_id": str(uuid7()),
        "occurred_at": "2026-11-27T10:00:00.123Z",
        "wrapped_key_id": "wk_team_a",
        "provider": "openai",
        "endpoint": "chat.completions",
        "outcome": "accepted",
        "http_status": 200,
    }
    document.update(overrides)
    return document


@pytest.mark.parametrize("name", sorted(EXPORTED))
def test_published_json_schema_matches_the_model(name: str) -> None:
    published = (JSONSCHEMA_DIR / f"{name}.json").read_text(encoding="utf-8")
    assert published == render(name, EXPORTED[name]), (
        f"schemas/jsonschema/{name}.json is stale: run `python -m schemas.export`"
    )


def test_event_round_trips_through_json_bytes() -> None:
    event = RequestEvent.model_validate(minimal(usage={"input_tokens": 10, "output_tokens": 5}))
    assert RequestEvent.from_json_bytes(event.to_json_bytes()) == event
    assert json.loads(event.to_json_bytes())["schema"] == "llm.request.v1"


def test_event_time_is_normalised_to_utc() -> None:
    event = RequestEvent.model_validate(minimal(occurred_at="2026-11-27T12:00:00+02:00"))
    assert event.occurred_at == datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    assert event.occurred_at.utcoffset() == timedelta(0)


def test_naive_event_time_is_refused() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        RequestEvent.model_validate(minimal(occurred_at="2026-11-27T10:00:00"))


def test_rejected_event_needs_a_reason_and_accepted_event_must_not_have_one() -> None:
    with pytest.raises(ValidationError, match="rejection_reason is required"):
        RequestEvent.model_validate(minimal(outcome="rejected", http_status=429))
    with pytest.raises(ValidationError, match="only allowed"):
        RequestEvent.model_validate(minimal(rejection_reason="rate_limited"))
    refused = RequestEvent.model_validate(
        minimal(outcome="rejected", rejection_reason="budget_exceeded", http_status=429)
    )
    assert refused.rejection_reason == "budget_exceeded"


def test_usage_parts_cannot_exceed_totals() -> None:
    with pytest.raises(ValidationError, match="must not exceed input_tokens"):
        Usage(input_tokens=10, cached_input_tokens=8, cache_write_tokens=3)
    with pytest.raises(ValidationError, match="reasoning_tokens must not exceed"):
        Usage(output_tokens=1, reasoning_tokens=2)
    with pytest.raises(ValidationError, match="must not exceed cache_write_tokens"):
        Usage(input_tokens=10, cache_write_tokens=5, cache_write_5m_tokens=3,
              cache_write_1h_tokens=3)


def test_a_record_from_before_the_cache_lifetime_split_stays_valid_and_unsplit() -> None:
    usage = {"input_tokens": 100, "cache_write_tokens": 40, "output_tokens": 5}
    event = RequestEvent.model_validate(minimal(usage=usage))
    assert (event.usage.cache_write_5m_tokens, event.usage.cache_write_1h_tokens) == (0, 0)
    split = RequestEvent.model_validate(
        minimal(usage={**usage, "cache_write_5m_tokens": 10, "cache_write_1h_tokens": 30})
    )
    assert split.usage.cache_write_1h_tokens == 30


def test_unknown_fields_and_schema_versions_are_refused() -> None:
    with pytest.raises(ValidationError):
        RequestEvent.model_validate(minimal(surprise=1))
    with pytest.raises(ValidationError):
        RequestEvent.model_validate(minimal(schema="llm.request.v2"))


def test_client_ip_is_validated_and_normalised() -> None:
    assert RequestEvent.model_validate(minimal(client_ip="2001:DB8::1")).client_ip == "2001:db8::1"
    with pytest.raises(ValidationError):
        RequestEvent.model_validate(minimal(client_ip="not-an-ip"))


def test_uuid7_is_time_ordered_and_versioned() -> None:
    first, second = uuid7(1_700_000_000_000), uuid7(1_700_000_000_001)
    assert first.version == 7 and first.variant == uuid.RFC_4122
    assert first < second
    assert uuid7(0).int >> 80 == 0


def test_stable_id_is_deterministic() -> None:
    assert stable_id("a", "b") == stable_id("a", "b")
    assert stable_id("a", "b") != stable_id("ab")


def test_event_time_in_other_zone_keeps_the_instant() -> None:
    tokyo = timezone(timedelta(hours=9))
    event = RequestEvent.model_validate(minimal(occurred_at=datetime(2026, 1, 1, 9, tzinfo=tokyo)))
    assert event.occurred_at == datetime(2026, 1, 1, 0, tzinfo=UTC)
