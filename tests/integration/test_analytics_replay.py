"""Eight days of replayed traffic through the real broker, pipeline worker and warehouse:
spikes, first use of a model and budget thresholds are each alerted exactly once, in event time."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from keywarden.kafka import ensure_topics
from keywarden.settings import load_settings
from keywarden.synthetic import produce
from schemas import topics
from schemas.events.request import Provider, Usage
from tests.support.analytics import (
    Key,
    cost,
    hourly_traffic,
    latest_spend,
    query,
    read_topic,
    register_key,
    unique,
    wait_for,
)

DAY1 = datetime(2026, 10, 5, tzinfo=UTC)  # a Monday: days 6-7 are the weekend, day 8 a Monday
DAY8 = DAY1 + timedelta(days=7)
ENV = {
    "KEYWARDEN_ANALYTICS_SPIKE_MIN_REQUESTS_HOUR": "10",
    "KEYWARDEN_ANALYTICS_SPIKE_MIN_REQUESTS_DAY": "50",
}


async def test_eight_days_replayed_alert_the_surge_the_new_model_and_the_budget_once(
    kafka_broker, warehouse_db, run_pipeline
) -> None:
    settings = load_settings(kafka_bootstrap=kafka_broker.bootstrap)
    await ensure_topics(settings)
    usage = Usage(input_tokens=1200, cached_input_tokens=400, output_tokens=300)
    steady_a = Key(unique("steady_a"), Provider.OPENAI, "gpt-4o-mini", usage)
    steady_b = Key(unique("steady_b"), Provider.ANTHROPIC, "claude-haiku-4-5", usage)
    surging = Key(unique("surging"), Provider.OPENAI, "gpt-4o", usage)
    budgeted = Key(unique("budgeted"), Provider.GOOGLE, "gemini-2.5-flash", usage)
    keys = [steady_a, steady_b, surging, budgeted]
    names = {key.wrapped_key_id for key in keys}

    events = []
    for key in (steady_a, steady_b):
        events += hourly_traffic(key, DAY1, 8 * 24, base=4)
    events += hourly_traffic(surging, DAY1, 8 * 24, base=4, surge_from=DAY8, surge=3)
    new_model = steady_a.event(DAY8 + timedelta(hours=10, minutes=30), model="gpt-4.1")
    events.append(new_model)
    budget_events = [budgeted.event(DAY8 + timedelta(minutes=15 * i + 1)) for i in range(40)]
    events += budget_events
    # With the cap at spend/0.85, event k reaches p% when k >= p/100 * 40 / 0.85: 50% at the
    # 24th event (23.5), 80% at the 38th (37.6); all 40 stay under 100%.
    cap = (sum(cost(e) for e in budget_events) / Decimal("0.85")).quantize(Decimal("0.000001"))
    await register_key(settings, budgeted.wrapped_key_id, daily=cap, created_at=DAY1)
    events.sort(key=lambda e: e.occurred_at)

    run_pipeline(warehouse_db, **ENV)
    assert await produce(events, settings) == len(events)

    async def stored() -> bool:
        rows = await asyncio.to_thread(
            query, warehouse_db, "SELECT count() FROM request_events FINAL "
            "WHERE wrapped_key_id IN {keys:Array(String)}", keys=sorted(names))
        return rows[0][0] == len(events)

    await wait_for(stored, 60, f"{len(events)} stored rows")

    # each key's requests on its own last day: what its newest usage.spend.v1 record says once
    # the analytics stage has counted all of its events
    last_day = {key: max(e.occurred_at.date() for e in events if e.wrapped_key_id == key)
                for key in names}
    expected_today = Counter(e.wrapped_key_id for e in events
                             if e.occurred_at.date() == last_day[e.wrapped_key_id])

    async def spend_settled() -> dict:
        # wait on the figures themselves, for every key: each key's partition is processed at
        # its own pace, and the alerts read below must all have been raised by then
        last = await latest_spend(kafka_broker.bootstrap, names)
        observed.update({k: (v.get("day"), v.get("requests_today")) for k, v in last.items()})
        done = all(last.get(key, {}).get("requests_today") == count
                   for key, count in expected_today.items())
        return last if done else {}

    # The analytics stage reads the per-key-minute runs after their rows are stored, so under
    # load it can trail the rows by a while: a bound on the wait, not a timing assertion.
    observed: dict = {}
    t0 = asyncio.get_running_loop().time()
    try:
        spend = await wait_for(spend_settled, 90, "every key's spend on usage.spend.v1")
    except AssertionError:
        raise AssertionError(f"usage.spend.v1 after the replay: {observed} (expected "
                             f"these requests on each key's last day: {dict(expected_today)})"
                             ) from None
    print(f"\nper-key state settled {asyncio.get_running_loop().time() - t0:.1f}s after rows")
    budget_spend = sum(cost(e) for e in budget_events)
    assert Decimal(spend[budgeted.wrapped_key_id]["spend_today_usd"]) == budget_spend
    day8_surge = sum(cost(e) for e in events
                     if e.wrapped_key_id == surging.wrapped_key_id and e.occurred_at >= DAY8)
    assert Decimal(spend[surging.wrapped_key_id]["spend_today_usd"]) == day8_surge

    alerts = await read_topic(kafka_broker.bootstrap, topics.ALERTS, names)
    pairs = Counter((a["alert_id"], a["state"]) for a in alerts)
    assert all(n == 1 for n in pairs.values()), pairs  # nothing published twice
    opened = [a for a in alerts if a["state"] == "open"]

    spikes = [a for a in opened if a["kind"] == "spike"]
    assert {a["wrapped_key_id"] for a in spikes} == {surging.wrapped_key_id}
    by_grain = Counter(a["details"]["grain"] for a in spikes)
    assert by_grain == {"day": 1, "hour": 1}, spikes
    day_spike = next(a for a in spikes if a["details"]["grain"] == "day")
    assert day_spike["period"] == f"day:{DAY8:%Y-%m-%d}"
    assert Decimal(day_spike["ratio"]) >= 2

    first_uses = [a for a in opened if a["kind"] == "first_model_use"]
    assert [(a["wrapped_key_id"], a["model"]) for a in first_uses] == [
        (steady_a.wrapped_key_id, "gpt-4.1")]

    budget = [a for a in opened if a["kind"] == "budget_threshold"]
    assert sorted(Decimal(a["threshold"]) for a in budget) == [50, 80]
    eighty = next(a for a in budget if Decimal(a["threshold"]) == 80)
    assert eighty["wrapped_key_id"] == budgeted.wrapped_key_id
    assert eighty["detected_at"].startswith(f"{budget_events[37].occurred_at:%Y-%m-%dT%H:%M}")

    # The warehouse holds the same alerts, the anomaly figures and the baselines.
    rows = await asyncio.to_thread(
        query, warehouse_db, "SELECT toString(alert_id), state FROM alerts FINAL "
        "WHERE wrapped_key_id IN {keys:Array(String)}", keys=sorted(names))
    assert Counter(rows) == pairs
    anomalies = await asyncio.to_thread(
        query, warehouse_db, "SELECT DISTINCT wrapped_key_id, grain FROM anomalies FINAL "
        "WHERE wrapped_key_id IN {keys:Array(String)}", keys=sorted(names))
    assert sorted(anomalies) == [(surging.wrapped_key_id, "day"), (surging.wrapped_key_id, "hour")]
    baseline = await asyncio.to_thread(
        query, warehouse_db, "SELECT history_days, avg_daily_requests FROM key_baselines FINAL "
        "WHERE wrapped_key_id = {key:String} AND day = {day:Date}",
        key=surging.wrapped_key_id, day=DAY8.date())
    week = [e for e in events if e.wrapped_key_id == surging.wrapped_key_id
            and e.occurred_at < DAY8]
    assert baseline == [(7, (Decimal(len(week)) / 7).quantize(Decimal("0.000000001")))]

    # Rollups equal the deduplicated events, to the last digit.
    async def rollups_match() -> bool:
        truth = await asyncio.to_thread(
            query, warehouse_db, "SELECT wrapped_key_id, count(), sum(cost_usd) FROM "
            "request_events FINAL WHERE wrapped_key_id IN {keys:Array(String)} GROUP BY 1 "
            "ORDER BY 1", keys=sorted(names))
        results = []
        for table in ("usage_rollup_minute", "usage_rollup_hour", "usage_rollup_day"):
            results.append(await asyncio.to_thread(
                query, warehouse_db, f"SELECT wrapped_key_id, sum(requests), sum(cost_usd) FROM "
                f"{table} FINAL WHERE wrapped_key_id IN {{keys:Array(String)}} GROUP BY 1 "
                "ORDER BY 1", keys=sorted(names)))
        return all(result == truth for result in results)

    await wait_for(rollups_match, 20, "rollups equal to request_events FINAL")
