"""SIGKILL the pipeline worker in the middle of the stream and start it again: no event lost,
none counted twice (ClickHouse sums, rollups, and the faust tables as published on
usage.spend.v1), no alert published twice."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from keywarden.kafka import ensure_topics
from keywarden.settings import load_settings
from keywarden.synthetic import produce
from schemas import topics
from schemas.events.request import Provider, Usage
from tests.faults.support import distinct_ids, kill_mid_stream
from tests.support.analytics import (
    Key,
    cost,
    latest_spend,
    query,
    read_topic,
    register_key,
    unique,
    wait_for,
)

DAY = datetime(2026, 10, 20, tzinfo=UTC)
PER_KEY = 1000


async def test_sigkill_mid_stream_loses_nothing_and_counts_nothing_twice(
    kafka_broker, warehouse_db, run_pipeline
) -> None:
    settings = load_settings(kafka_bootstrap=kafka_broker.bootstrap)
    await ensure_topics(settings)
    usage = Usage(input_tokens=2000, cached_input_tokens=500, cache_write_tokens=300,
                  output_tokens=400)
    keys = [Key(unique("crash_a"), Provider.ANTHROPIC, "claude-sonnet-4-5", usage),
            Key(unique("crash_b"), Provider.OPENAI, "gpt-4.1-mini", usage),
            Key(unique("crash_c"), Provider.GOOGLE, "gemini-2.5-pro", usage)]
    names = {key.wrapped_key_id for key in keys}
    events = sorted(
        (key.event(DAY + timedelta(seconds=80 * i + 7)) for key in keys for i in range(PER_KEY)),
        key=lambda e: e.occurred_at)
    capped = keys[0]
    capped_total = sum(cost(e) for e in events if e.wrapped_key_id == capped.wrapped_key_id)
    await register_key(settings, capped.wrapped_key_id, daily=capped_total * Decimal("0.9"),
                       created_at=DAY - timedelta(days=40))  # 50, 80 and 100% are all crossed

    app_id = f"kw-crash-{uuid.uuid4().hex[:8]}"
    env = {"KEYWARDEN_SINK_MAX_BATCH_ROWS": "100",
           "KEYWARDEN_PIPELINE_SESSION_TIMEOUT_SECONDS": "6"}  # the killed member leaves fast
    worker = run_pipeline(warehouse_db, app_id=app_id, **env)
    # A sixth of the stream first; the rest arrives at a steady rate, and the worker is killed
    # when a third is stored.
    total = len(events)
    assert await produce(events[:total // 6], settings) == total // 6
    killed_at = await kill_mid_stream(worker, settings, events, warehouse_db,
                                      start=total // 6, mark=total // 3, end=total)

    worker.start()  # same app id: same consumer group, state recovered from the changelogs
    # A gateway retry after the restart: the same events (same ids) again, then a marker.
    marker = capped.event(DAY + timedelta(hours=23, minutes=59))
    assert await produce([*events[:50], marker], settings) == 51
    expected = [*events, marker]

    async def all_stored() -> bool:
        return (await distinct_ids(warehouse_db, names))[0] == len(expected)

    await wait_for(all_stored, 180, f"{len(expected)} distinct stored events")
    inserted = await asyncio.to_thread(
        query, warehouse_db, "SELECT count() FROM request_events "
        "WHERE wrapped_key_id IN {keys:Array(String)}", keys=sorted(names))
    print(f"killed at {killed_at} distinct rows; rows inserted before merges: {inserted[0][0]}")
    totals = await asyncio.to_thread(
        query, warehouse_db, "SELECT wrapped_key_id, count(), sum(cost_usd) FROM request_events "
        "FINAL WHERE wrapped_key_id IN {keys:Array(String)} GROUP BY 1 ORDER BY 1",
        keys=sorted(names))
    exact = {key: (sum(1 for e in expected if e.wrapped_key_id == key),
                   sum(cost(e) for e in expected if e.wrapped_key_id == key)) for key in names}
    assert {key: (count, total) for key, count, total in totals} == exact

    # The faust tables, as published: today's spend and request count per key, exactly.
    observed: dict = {}

    async def spend_settled() -> dict:
        last = await latest_spend(kafka_broker.bootstrap, names)
        observed.update({k: (v.get("day"), v.get("requests_today")) for k, v in last.items()})
        done = all(last.get(key, {}).get("requests_today") == exact[key][0] for key in names)
        return last if done else {}

    try:
        last = await wait_for(spend_settled, 90, "spend records counting every event once")
    except AssertionError:
        print(worker.log())
        raise AssertionError(f"per-key state: expected {exact}, last usage.spend.v1 records "
                             f"(day, requests_today) {observed}") from None
    for key in names:
        assert Decimal(last[key]["spend_today_usd"]) == exact[key][1]
        assert Decimal(last[key]["spend_month_usd"]) == exact[key][1]
        assert last[key]["day"] == f"{DAY:%Y-%m-%d}"

    alerts = await read_topic(kafka_broker.bootstrap, topics.ALERTS, names)
    pairs = Counter((a["alert_id"], a["state"]) for a in alerts)
    assert all(n == 1 for n in pairs.values()), pairs
    thresholds = sorted(Decimal(a["threshold"]) for a in alerts
                        if a["kind"] == "budget_threshold" and a["state"] == "open")
    assert thresholds == [50, 80, 100]

    async def rollups_match() -> bool:
        hourly = await asyncio.to_thread(
            query, warehouse_db, "SELECT wrapped_key_id, sum(requests), sum(cost_usd) FROM "
            "usage_rollup_hour FINAL WHERE wrapped_key_id IN {keys:Array(String)} GROUP BY 1",
            keys=sorted(names))
        return {key: (count, total) for key, count, total in hourly} == exact

    await wait_for(rollups_match, 20, "hourly rollups equal to the exact sums")
