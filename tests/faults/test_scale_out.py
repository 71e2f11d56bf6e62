"""Two pipeline workers in one consumer group on the 6-partition request topic, one SIGKILLed
mid-stream: the survivor takes over its partitions, and every event is stored and counted once
(ClickHouse FINAL counts and exact cost sums per key, the per-key state on usage.spend.v1)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from aiokafka.errors import KafkaError

from keywarden.kafka import ensure_topics, make_admin
from keywarden.settings import Settings, load_settings
from keywarden.synthetic import produce
from schemas.events.request import Provider, Usage
from tests.faults.support import distinct_ids, exact_totals, kill_mid_stream, stored_totals
from tests.support.analytics import Key, latest_spend, unique, wait_for

pytestmark = pytest.mark.slow

DAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
KEYS = 24  # enough keys that every partition of the request topic gets some
PER_KEY = 150


async def group_members(settings: Settings, group_id: str) -> int:
    """How many members the consumer group has right now (0 when it does not exist)."""
    admin = make_admin(settings)
    await admin.start()
    try:
        responses = await admin.describe_consumer_groups([group_id])
    except KafkaError:  # no coordinator yet (a fresh broker creates its offsets topic first)
        return 0
    finally:
        await admin.close()
    for response in responses:
        for group in response.groups:
            if group[1] == group_id and group[2] == "Stable":
                return len(group[5])
    return 0


async def test_survivor_takes_over_a_killed_workers_partitions_exactly(
    kafka_broker, warehouse_db, run_pipeline
) -> None:
    settings = load_settings(kafka_bootstrap=kafka_broker.bootstrap)
    await ensure_topics(settings)
    usage = Usage(input_tokens=1200, cached_input_tokens=200, output_tokens=300)
    keys = [Key(unique(f"scale_{n}"), Provider.OPENAI, "gpt-4.1-mini", usage)
            for n in range(KEYS)]
    names = {key.wrapped_key_id for key in keys}
    events = sorted((key.event(DAY + timedelta(seconds=60 * i + n)) for n, key in enumerate(keys)
                     for i in range(PER_KEY)), key=lambda e: e.occurred_at)

    app_id = f"kw-scale-{uuid.uuid4().hex[:8]}"
    env = {"KEYWARDEN_SINK_MAX_BATCH_ROWS": "100",
           "KEYWARDEN_PIPELINE_SESSION_TIMEOUT_SECONDS": "6"}
    survivor = run_pipeline(warehouse_db, app_id=app_id, **env)
    victim = run_pipeline(warehouse_db, app_id=app_id, **env)

    async def both_members() -> bool:
        return await group_members(settings, app_id) == 2

    try:
        await wait_for(both_members, 90, "two members in the consumer group")
    except AssertionError:
        print(survivor.log(), victim.log())
        raise
    # A sixth of the stream first; the rest arrives at a steady rate, and the victim is killed
    # when a third is stored.
    total = len(events)
    assert await produce(events[:total // 6], settings) == total // 6
    at_kill = await kill_mid_stream(victim, settings, events, warehouse_db,
                                    start=total // 6, mark=total // 3, end=total)

    expected = exact_totals(events)

    async def complete() -> bool:
        return await stored_totals(warehouse_db, names) == expected

    try:
        await wait_for(complete, 120, "every event stored exactly once by the survivor")
    except AssertionError:
        print(survivor.log())
        raise
    distinct, rows = await distinct_ids(warehouse_db, names)
    assert distinct == rows == len(events)

    # The killed member leaves the group when its session times out (6 s here), which may be
    # after the survivor has stored everything (when the victim's partitions were already done);
    # wait for it.
    async def survivor_alone() -> bool:
        return await group_members(settings, app_id) == 1

    await wait_for(survivor_alone, 60, "the killed worker gone from the group")

    # The per-key state of the killed worker's partitions, recovered by the survivor from the
    # changelogs, counts each event once.
    async def spend_exact() -> dict:
        last = await latest_spend(kafka_broker.bootstrap, names)
        exact = all(last.get(k, {}).get("requests_today") == expected[k][0] for k in names)
        return last if exact else {}

    try:
        last = await wait_for(spend_exact, 60, "per-key state (usage.spend.v1) counting once")
    except AssertionError:
        print(survivor.log())
        raise
    for key in names:
        assert Decimal(last[key]["spend_today_usd"]) == expected[key][1]
    print(f"killed one of two workers with {at_kill} of {len(events)} events stored")
