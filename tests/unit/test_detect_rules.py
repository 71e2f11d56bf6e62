"""Budget, first use, orphaned key, rotation overdue and unknown price as pure functions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from pipelines.detect.budget import newly_crossed
from pipelines.detect.first_use import is_first_use
from pipelines.detect.orphan import idle_since
from pipelines.detect.rotation import overdue_age_days
from pipelines.detect.unknown_price import first_unknown_prices
from pipelines.ingest.minutes import build_minutes
from pipelines.pricing import price
from schemas.events.request import Outcome, Provider, RequestEvent, Usage
from schemas.pricing import PricingStatus, load_catalog

NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)
THRESHOLDS = (50, 80, 100)


def test_budget_thresholds_fire_once_each_per_period() -> None:
    cap = Decimal(100)
    assert newly_crossed(Decimal("49.999999999"), cap, THRESHOLDS, []) == []
    assert newly_crossed(Decimal(50), cap, THRESHOLDS, []) == [50]
    assert newly_crossed(Decimal(81), cap, THRESHOLDS, [50]) == [80]
    assert newly_crossed(Decimal(90), cap, THRESHOLDS, [50, 80]) == []
    assert newly_crossed(Decimal(100), cap, THRESHOLDS, [50, 80]) == [100]


def test_one_jump_past_several_thresholds_reports_all_crossed() -> None:
    assert newly_crossed(Decimal(105), Decimal(100), THRESHOLDS, []) == [50, 80, 100]


def test_no_cap_means_no_budget_alert() -> None:
    assert newly_crossed(Decimal(10**6), None, THRESHOLDS, []) == []


def test_first_use_after_the_grace_hour_only() -> None:
    first = NOW - timedelta(days=3)
    grace = timedelta(hours=1)
    assert is_first_use("gpt-4.1", {"gpt-4o"}, first_seen=first, at=NOW, grace=grace)
    assert not is_first_use("gpt-4o", {"gpt-4o"}, first_seen=first, at=NOW, grace=grace)
    assert not is_first_use("gpt-4.1", set(), first_seen=NOW - timedelta(minutes=5), at=NOW,
                            grace=grace)


def test_orphaned_after_thirty_idle_days_counted_from_the_last_request() -> None:
    created = NOW - timedelta(days=100)
    last = NOW - timedelta(days=30)
    assert idle_since(created_at=created, last_request_at=last, revoked=False, now=NOW,
                      idle_days=30) == last
    assert idle_since(created_at=created, last_request_at=last + timedelta(seconds=1),
                      revoked=False, now=NOW, idle_days=30) is None
    assert idle_since(created_at=created, last_request_at=None, revoked=False, now=NOW,
                      idle_days=30) == created
    assert idle_since(created_at=created, last_request_at=None, revoked=True, now=NOW,
                      idle_days=30) is None


def test_rotation_overdue_past_the_policy_for_active_keys_only() -> None:
    created = NOW - timedelta(days=61, hours=12)
    assert overdue_age_days(created_at=created, rotation_days=60, active=True,
                            now=NOW) == Decimal("61.5")
    assert overdue_age_days(created_at=created, rotation_days=90, active=True, now=NOW) is None
    assert overdue_age_days(created_at=created, rotation_days=30, active=False, now=NOW) is None


def _event(model: str, key: str = "wk", second: int = 0) -> RequestEvent:
    return RequestEvent(occurred_at=NOW + timedelta(seconds=second), wrapped_key_id=key,
                        provider=Provider.OPENAI, endpoint="chat", served_model=model,
                        outcome=Outcome.ACCEPTED, http_status=200,
                        usage=Usage(input_tokens=10, output_tokens=1))


@dataclass(frozen=True)
class _Source:
    topic: str
    partition: int
    offset: int


def test_one_unknown_price_alert_per_model_from_its_first_request() -> None:
    catalog = load_catalog()
    # (key, model, partition, offset): gpt-99 in two keys' runs, its first request at p0/5
    requests = [("wk_a", "gpt-99", 1, 2), ("wk_a", "gpt-4o", 1, 3), ("wk_b", "gpt-99", 0, 5),
                ("wk_b", "gpt-98", 0, 6), ("wk_a", "gpt-98", 1, 7)]
    priced = [price(_event(model, key, second), catalog)
              for second, (key, model, _, _) in enumerate(requests)]
    sources = {item.event.event_id: _Source("llm.requests.v1", partition, offset)
               for item, (_, _, partition, offset) in zip(priced, requests, strict=True)}
    runs = build_minutes(priced, sources)
    unpriced = [(p.priced.status, p.priced.cost_usd) for p in priced if p.event.model != "gpt-4o"]
    assert unpriced == [(PricingStatus.UNKNOWN_MODEL, None)] * 4  # unknown, never $0

    found = first_unknown_prices(runs, announced=set())
    assert [(u.subject, run.wrapped_key_id, run.source_partition, u.source_offset)
            for u, run in found] == [("openai/gpt-99", "wk_b", 0, 5),
                                     ("openai/gpt-98", "wk_b", 0, 6)]
    assert [u.subject for u, _ in first_unknown_prices(runs, {"openai/gpt-99"})] == [
        "openai/gpt-98"]
    assert first_unknown_prices(runs, {"openai/gpt-99", "openai/gpt-98"}) == []
