"""The runs this process wrote, held for its analytics stage (pipelines/ingest/written.py):
what a hit hands over equals what decoding the record gives, a run is taken once, and the runs
held are bounded by their events, oldest dropped first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

from keywarden.synthetic import synthetic_traffic
from pipelines.ingest.minutes import build_minutes
from pipelines.ingest.written import WrittenRuns
from pipelines.pricing import price
from schemas.events.request import KeyTags, Outcome, RejectionReason
from schemas.events.usage_minute import UsageMinute
from schemas.pricing import load_catalog

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def varied_runs() -> list[UsageMinute]:
    """Runs of synthetic traffic plus what it lacks: refusals for budget, cancelled and failed
    requests, an unknown model, tags with extras."""
    events = synthetic_traffic(600, seed=3, spacing=timedelta(seconds=2), start=START)
    odd = []
    for index, event in enumerate(events[:40]):
        change = [
            {"outcome": Outcome.REJECTED, "rejection_reason": RejectionReason.BUDGET_EXCEEDED,
             "http_status": 429},
            {"outcome": Outcome.CLIENT_CANCELLED},
            {"requested_model": "no-such-model-xyz", "served_model": None},
            {"tags": KeyTags(team="t", extra={"tier": "gold", "region": "eu"})},
        ][index % 4]
        odd.append(event.model_copy(update=change))
    events = odd + events[40:]
    catalog = load_catalog()
    sources = {e.event_id: SimpleNamespace(topic="llm.requests.v1", partition=i % 3, offset=i)
               for i, e in enumerate(events)}
    return build_minutes([price(e, catalog) for e in events], sources)


def test_a_run_as_written_equals_the_run_decoded_from_its_record() -> None:
    runs = varied_runs()
    assert any(e.refused_for_budget for r in runs for e in r.events)
    assert any(r.unknown for r in runs) and any(r.tags.extra for r in runs)
    for run in runs:
        decoded = UsageMinute.decode(run.encode())
        assert decoded == run
        assert [e.cost_usd.as_tuple() for e in decoded.events if e.cost_usd is not None] == [
            e.cost_usd.as_tuple() for e in run.events if e.cost_usd is not None]
        assert all(type(e.cost_usd) in (Decimal, type(None)) for e in run.events)


def test_a_run_is_taken_once_at_its_own_place() -> None:
    runs = varied_runs()[:6]
    written = WrittenRuns(max_events=10_000)
    written.add("runs", 2, [(40, runs[:4]), (45, runs[4:])])  # a marker between: 44
    assert written.take("runs", 2, 44) is None
    assert written.take("runs", 1, 40) is None and written.take("other", 2, 40) is None
    assert [written.take("runs", 2, offset) for offset in (40, 41, 42, 43, 45, 46)] == runs
    assert written.take("runs", 2, 40) is None  # taken once: a batch analysed again decodes
    assert written.hits == 6 and len(written) == 0


def test_the_runs_held_are_bounded_by_their_events_oldest_dropped_first() -> None:
    runs = [run for run in varied_runs() if len(run.events) == 1][:10]
    written = WrittenRuns(max_events=4)
    written.add("runs", 0, [(0, runs[:3])])
    written.add("runs", 0, [(3, runs[3:6])])
    assert len(written) == 4
    assert [written.take("runs", 0, offset) for offset in range(6)] == [None, None, *runs[2:6]]
