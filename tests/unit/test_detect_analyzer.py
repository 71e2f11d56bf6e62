"""The per-key analyzer on in-memory tables: what counts as using a model, and the budget's
hard stop announced as 100% when the gateway refuses for budget."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pipelines.detect.agents import KeyAnalyzer
from pipelines.detect.batch import BatchOutput, DetectConfig
from pipelines.pricing import price
from pipelines.rollups.state import KeyStateStore
from pipelines.rollups.tables import StateTables
from schemas.events.keys import KeyPolicy
from schemas.events.request import Outcome, RejectionReason, RequestEvent, Usage
from schemas.ids import uuid7
from schemas.pricing import canonical_model, load_catalog

CATALOG = load_catalog()
START = datetime(2026, 11, 2, tzinfo=UTC)


def event(at: datetime, model: str = "gpt-4o-mini", **overrides: Any) -> RequestEvent:
    fields: dict[str, Any] = dict(
        event_id=uuid7(int(at.timestamp() * 1000)), occurred_at=at, wrapped_key_id="wk_a",
        key_scope="team-a", provider="openai", endpoint="chat.completions",
        requested_model=model, served_model=model, outcome=Outcome.ACCEPTED, http_status=200,
        usage=Usage(input_tokens=1000, output_tokens=100))
    fields.update(overrides)
    return RequestEvent(**fields)


def analyzer(policy: KeyPolicy | None = None) -> KeyAnalyzer:
    store = KeyStateStore(StateTables(keys={}, hours={}), allowed_lateness=timedelta(hours=1))
    return KeyAnalyzer(store, DetectConfig(), lambda _key: policy)


def run(target: KeyAnalyzer, *events: RequestEvent) -> BatchOutput:
    out = BatchOutput()
    target.analyze(0, "wk_a", [price(e, CATALOG) for e in events], out)
    target.store.flush()
    return out


def kinds(out: BatchOutput) -> list[tuple[str, str | None]]:
    return [(a.kind.value, a.model) for a in out.alerts]


def test_a_snapshot_of_a_known_model_is_not_a_first_use() -> None:
    target = analyzer()
    run(target, event(START))
    later = START + timedelta(hours=3)
    out = run(target, event(later, requested_model="gpt-4o-mini",
                            served_model="gpt-4o-mini-2024-07-18"))
    assert ("first_model_use", "gpt-4o-mini") not in kinds(out)
    assert kinds(run(target, event(later + timedelta(minutes=1), model="gpt-4o"))) == [
        ("first_model_use", "gpt-4o")]


def test_a_refused_model_is_not_a_first_use() -> None:
    target = analyzer()
    run(target, event(START))
    refused = event(START + timedelta(hours=2), model="o3", outcome=Outcome.REJECTED,
                    rejection_reason=RejectionReason.MODEL_NOT_ALLOWED, http_status=403,
                    usage=Usage())
    assert [k for k, _ in kinds(run(target, refused))] == []


def test_a_budget_refusal_announces_the_hard_stop_once() -> None:
    cost = price(event(START), CATALOG).priced.cost_usd
    assert cost is not None
    target = analyzer(KeyPolicy(daily_budget_usd=cost * 3 + Decimal("0.0000001")))
    spent = run(target, *(event(START + timedelta(minutes=i)) for i in range(3)))
    assert sorted(a.threshold for a in spent.alerts) == [50, 80]  # just under 100%
    refusal = dict(outcome=Outcome.REJECTED, rejection_reason=RejectionReason.BUDGET_EXCEEDED,
                   http_status=429, usage=Usage())
    stop = run(target, event(START + timedelta(minutes=5), **refusal))
    assert [(a.kind.value, a.threshold, a.severity.value) for a in stop.alerts] == [
        ("budget_threshold", Decimal(100), "critical")]
    again = run(target, event(START + timedelta(minutes=6), **refusal))
    assert again.alerts == []


def test_canonical_model_strips_prefixes_and_snapshots() -> None:
    assert canonical_model("models/Gemini-2.5-Flash") == "gemini-2.5-flash"
    assert canonical_model("claude-sonnet-4-5-20250929") == "claude-sonnet-4-5"
    assert canonical_model("gpt-4o-2024-08-06") == "gpt-4o"
    assert canonical_model("gpt-4o-mini") == "gpt-4o-mini"
