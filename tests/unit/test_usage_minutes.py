"""Per-key-minute runs (pipelines/ingest/minutes.py, schemas/events/usage_minute.py): runs follow
each key's offset order, split at minute and tag changes, and survive encoding exactly."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pipelines.ingest.minutes import build_minutes, usage_event
from pipelines.pricing import price
from schemas.events.request import KeyTags, Outcome, RequestEvent, Usage
from schemas.events.usage_minute import UsageMinute
from schemas.ids import uuid7
from schemas.pricing import load_catalog

CATALOG = load_catalog()
START = datetime(2026, 11, 2, 10, 0, 5, 123456, tzinfo=UTC)


@dataclass(frozen=True)
class Source:
    topic: str
    partition: int
    offset: int


def event(key: str, at: datetime, model: str = "gpt-4o-mini", **overrides: Any) -> RequestEvent:
    fields: dict[str, Any] = dict(
        event_id=uuid7(int(at.timestamp() * 1000)), occurred_at=at, wrapped_key_id=key,
        key_scope="team-a", provider="openai", endpoint="chat.completions",
        requested_model=model, served_model=model, outcome=Outcome.ACCEPTED, http_status=200,
        usage=Usage(input_tokens=1234, output_tokens=567))
    fields.update(overrides)
    return RequestEvent(**fields)


def test_runs_follow_each_keys_offsets_and_split_at_minutes_and_tags() -> None:
    events = [event("wk_a", START), event("wk_b", START + timedelta(seconds=1)),
              event("wk_a", START + timedelta(seconds=2)),
              event("wk_a", START + timedelta(minutes=1)),
              event("wk_a", START + timedelta(minutes=1, seconds=1),
                    tags=KeyTags(team="other")),
              event("wk_a", START + timedelta(seconds=3))]  # late: back in the first minute
    priced = [price(e, CATALOG) for e in events]
    sources = {e.event_id: Source("llm.requests.v1", 3, 100 + i) for i, e in enumerate(events)}
    runs = build_minutes(list(reversed(priced)), sources)
    assert [(r.wrapped_key_id, r.first_offset, r.last_offset, len(r.events)) for r in runs] == [
        ("wk_a", 100, 102, 2), ("wk_b", 101, 101, 1), ("wk_a", 103, 103, 1),
        ("wk_a", 104, 104, 1), ("wk_a", 105, 105, 1)]
    assert runs[3].tags == KeyTags(team="other")


def test_a_run_survives_encoding_exactly_with_a_deterministic_id() -> None:
    events = [event("wk_a", START + timedelta(seconds=i)) for i in range(3)]
    events.append(event("wk_a", START + timedelta(seconds=4), model="no-such-model-xyz"))
    priced = [price(e, CATALOG) for e in events]
    sources = {e.event_id: Source("llm.requests.v1", 0, i) for i, e in enumerate(events)}
    [run] = build_minutes(priced, sources)
    decoded = UsageMinute.decode(run.encode())
    assert decoded.aggregate_id == run.aggregate_id
    assert decoded.events == [usage_event(p) for p in priced]
    costs = [e.cost_usd for e in decoded.events]
    assert all(isinstance(c, Decimal) for c in costs[:3]) and costs[3] is None
    assert [u.subject for u in decoded.unknown] == ["openai/no-such-model-xyz"]
    again = build_minutes(priced, sources)[0]
    assert again.aggregate_id == run.aggregate_id
