"""A pipeline worker SIGKILLed mid-stream twice in a row (restarted in between and after): every
event stored once (ClickHouse FINAL counts and exact cost sums), and no alert published twice."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from keywarden.kafka import ensure_topics
from keywarden.settings import load_settings
from keywarden.synthetic import produce
from schemas import topics
from schemas.events.request import Provider, Usage
from tests.faults.support import distinct_ids, exact_totals, kill_mid_stream, stored_totals
from tests.support.analytics import (
    Key,
    cost,
    latest_spend,
    read_topic,
    register_key,
    unique,
    wait_for,
)

pytestmark = pytest.mark.slow

DAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)
PER_KEY = 900


async def test_sigkill_twice_mid_batch_keeps_sums_exact_and_alerts_single(
    kafka_broker, warehouse_db, run_pipeline
) -> None:
    settings = load_settings(kafka_bootstrap=kafka_broker.bootstrap)
    await ensure_topics(settings)
    usage = Usage(input_tokens=2400, cached_input_tokens=600, output_tokens=500)
    keys = [Key(unique("kill_a"), Provider.OPENAI, "gpt-4.1-mini", usage),
            Key(unique("kill_b"), Provider.ANTHROPIC, "claude-haiku-4-5", usage)]
    names = {key.wrapped_key_id for key in keys}
    events = sorted((key.event(DAY + timedelta(seconds=90 * i + 3)) for key in keys
                     for i in range(PER_KEY)), key=lambda e: e.occurred_at)
    capped = keys[0]
    capped_total = sum(cost(e) for e in events if e.wrapped_key_id == capped.wrapped_key_id)
    # 50%, 80% and 100% of the daily cap are crossed on DAY: three alerts, each exactly once.
    await register_key(settings, capped.wrapped_key_id, daily=capped_total * Decimal("0.9"),
                       created_at=DAY - timedelta(days=40))

    app_id = f"kw-kill-{uuid.uuid4().hex[:8]}"
    env = {"KEYWARDEN_SINK_MAX_BATCH_ROWS": "50",
           "KEYWARDEN_PIPELINE_SESSION_TIMEOUT_SECONDS": "6"}
    worker = run_pipeline(warehouse_db, app_id=app_id, **env)

    # Killed while traffic arrives when a third is stored, restarted, killed again when it has
    # caught up and stored five sixths, restarted; the last part arrives while it is down.
    total = len(events)
    assert await produce(events[:total // 6], settings) == total // 6
    kills = []
    for start, mark, end in ((total // 6, total // 3, total * 2 // 3),
                             (total * 2 // 3, total * 5 // 6, total)):
        kills.append(await kill_mid_stream(worker, settings, events, warehouse_db,
                                           start=start, mark=mark, end=end))
        worker.start()

    expected = exact_totals(events)

    async def complete() -> bool:
        return await stored_totals(warehouse_db, names) == expected

    try:
        await wait_for(complete, 120, "every event stored exactly once")
    except AssertionError:
        print(worker.log())
        raise
    distinct, rows = await distinct_ids(warehouse_db, names)
    assert distinct == rows == len(events)
    print(f"killed with {kills} distinct rows stored")

    # Per-key state (the faust tables, as published on usage.spend.v1) counts each event once.
    # Checked before the alerts: the analytics stage reads the runs after the rows are stored,
    # so exact spend is also the sign that it has analysed every event.
    observed: dict = {}

    async def spend_exact() -> dict:
        last = await latest_spend(kafka_broker.bootstrap, names)
        observed.update({k: (v.get("day"), v.get("requests_today"), v.get("spend_today_usd"))
                         for k, v in last.items()})
        ok = all(last.get(k, {}).get("requests_today") == expected[k][0] for k in names)
        return last if ok else {}

    try:
        last = await wait_for(spend_exact, 60, "per-key state (usage.spend.v1) counting once")
    except AssertionError:
        raise AssertionError(f"per-key state after SIGKILL x2: expected {expected}, last "
                             f"usage.spend.v1 records {observed}") from None
    for key in names:
        assert Decimal(last[key]["spend_today_usd"]) == expected[key][1]

    await asyncio.sleep(2)  # let any duplicate alert from the last restart land
    alerts = await read_topic(kafka_broker.bootstrap, topics.ALERTS, names)
    repeated = {pair: n for pair, n in Counter((a["alert_id"], a["state"]) for a in alerts)
                .items() if n > 1}
    assert not repeated, f"alerts published more than once: {repeated}"
    budget = sorted(Decimal(a["threshold"]) for a in alerts
                    if a["kind"] == "budget_threshold" and a["state"] == "open")
    assert budget == [50, 80, 100]

