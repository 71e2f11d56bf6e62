"""Per-key-minute runs (pipelines/ingest/minutes.py, schemas/events/usage_minute.py): runs follow
each key's offset order, split at minute and tag changes, and survive encoding exactly."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from pipelines.ingest.minutes import build_minutes, usage_event
from pipelines.pricing import price
from schemas.events.request import KeyTags, Outcome, RequestEvent, Usage
from schemas.events.usage_minute import UnknownPrice, UsageEvent, UsageMinute
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


# A record as a worker of the v1 encoding wrote it (per-event columns), e.g. still in the topic
# when a deployment upgrades: it must be read to the same run.
V1_RECORD = (
    b'{"schema":"llm.usage.minute.v1","aggregate_id":"a26c59d1-5e8e-5717-bcf1-622ae702459d",'
    b'"wrapped_key_id":"wk_a","minute":"2026-11-02T10:00:00+00:00","key_scope":"team-a",'
    b'"tags":{"team":"payments","service":"chatbot","environment":"prod","cost_center":"CC-100",'
    b'"extra":{"tier":"gold"}},"source":["llm.requests.v1",2,40,42],"requests":2,'
    b'"tokens":1801,"cost_usd":"0.0012345000","unpriced":1,"refused_for_budget":1,'
    b'"models_first_used":{"gpt-4o-mini":"2026-11-02T10:00:05.123456+00:00"},'
    b'"ids":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",'
    b'"at":[1793613605123456,1793613609123456],"tok":[1801,0],"cost":["0.0012345000",null],'
    b'"model":["gpt-4o-mini",""],"provider":["openai","openai"],"refused":[0,1],'
    b'"unknown":[["openai/x","x",1793613609123456,42]]}'
)


def _v1_run() -> UsageMinute:
    tags = KeyTags(team="payments", service="chatbot", environment="prod",
                   cost_center="CC-100", extra={"tier": "gold"})
    return UsageMinute(
        wrapped_key_id="wk_a", minute=START.replace(second=0, microsecond=0),
        key_scope="team-a", tags=tags, source_topic="llm.requests.v1", source_partition=2,
        first_offset=40, last_offset=42,
        events=[UsageEvent(bytes(range(16)), START, 1801, Decimal("0.0012345000"),
                           "gpt-4o-mini", "openai", False, "team-a", tags),
                UsageEvent(bytes(range(16, 32)), START.replace(second=9), 0, None, "",
                           "openai", True, "team-a", tags)],
        unknown=[UnknownPrice("openai/x", "x", START.replace(second=9), 42)])


def test_a_v1_record_is_still_read() -> None:
    decoded, expected = UsageMinute.decode(V1_RECORD), _v1_run()
    assert decoded == expected
    assert decoded.events[0].cost_usd.as_tuple() == Decimal("0.0012345000").as_tuple()


def test_v2_keeps_every_value_exactly_and_says_its_totals() -> None:
    run = _v1_run()
    raw = run.encode()
    document = json.loads(raw)
    assert document["schema"] == "llm.usage.minute.v2"
    assert (document["requests"], document["tokens"], document["cost_usd"],
            document["unpriced"], document["refused_for_budget"]) == (2, 1801, "0.0012345000", 1, 1)
    assert document["models_first_used"] == {"gpt-4o-mini": "2026-11-02T10:00:05.123456Z"}
    decoded = UsageMinute.decode(raw)
    assert decoded == run
    assert [e.cost_usd.as_tuple() for e in decoded.events if e.cost_usd is not None] == [
        Decimal("0.0012345000").as_tuple()]
    assert all(e.at.tzinfo is UTC and e.tags is decoded.tags for e in decoded.events)


def test_a_damaged_run_is_refused_with_a_reason() -> None:
    raw = _v1_run().encode()
    for damaged in (raw.replace(b'"wk_a"', b'"wk_b"'),  # no longer matches its aggregate id
                    raw.replace(b"minute.v2", b"minute.v9"), raw[:-3], b"[]"):
        with pytest.raises(ValueError):
            UsageMinute.decode(damaged)


def test_the_aggregate_id_is_the_uuid5_of_the_runs_source() -> None:
    import uuid

    from schemas.events.usage_minute import _NAMESPACE

    for index, key in enumerate(["wk_a", "wk-ünïcode-ключ", "x" * 128]):
        run = UsageMinute(wrapped_key_id=key, minute=START.replace(second=0, microsecond=0),
                          key_scope="s", tags=KeyTags(), source_topic="llm.requests.v1",
                          source_partition=index, first_offset=10 ** index,
                          last_offset=10 ** index + 7)
        name = (f"llm.requests.v1|{index}|{10 ** index}|{10 ** index + 7}|{key}|"
                f"{START:%Y-%m-%dT%H:%M}")
        assert run.aggregate_text() == str(uuid.uuid5(_NAMESPACE, name))
        assert run.aggregate_id == uuid.uuid5(_NAMESPACE, name)
