"""The seasonal spike rule end to end: eight days of business-hours traffic (busy weekday
mornings, quiet nights and weekends) and one night-time surge go through Kafka, the pipeline
worker and ClickHouse with the default settings; exactly one spike alert comes out, for the
surge, saying what it compared, and `anomalies` records the history it was compared with."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta

from keywarden.kafka import ensure_topics
from keywarden.settings import load_settings
from keywarden.synthetic import produce
from schemas import topics
from schemas.events.request import Provider, RequestEvent, Usage
from tests.support.analytics import Key, query, read_topic, unique, wait_for

DAY1 = datetime(2026, 10, 5, tzinfo=UTC)  # a Monday
SURGE = DAY1 + timedelta(days=8, hours=2)  # the Tuesday after, 02:00-04:00 UTC


def per_hour(at: datetime) -> float:
    """~1,000 requests a weekday: 2.7x the mean 09-17 UTC, 0.15x at night, weekends 30%."""
    hour = at.hour + 0.5
    distance = min(abs(hour - 13), 24 - abs(hour - 13))
    shape = 0.15 + 0.85 / (1 + math.exp((distance - 4.5) * 1.6))
    return 1000 / 24 * shape * 2.3 * (0.3 if at.weekday() >= 5 else 1.0)


def traffic(key: Key, hours: int) -> list[RequestEvent]:
    events = []
    for index in range(hours):
        hour = DAY1 + timedelta(hours=index)
        surging = SURGE <= hour < SURGE + timedelta(hours=2)
        count = round(per_hour(hour) * (4 if surging else 1))
        events += [key.event(hour + timedelta(seconds=3600 * i / count + 1))
                   for i in range(count)]
    return events


async def test_a_night_surge_after_a_seasonal_week_is_exactly_one_spike_alert(
    kafka_broker, warehouse_db, run_pipeline
) -> None:
    settings = load_settings(kafka_bootstrap=kafka_broker.bootstrap)
    await ensure_topics(settings)
    key = Key(unique("seasonal"), Provider.OPENAI, "gpt-4o-mini",
              Usage(input_tokens=700, output_tokens=150))
    events = traffic(key, 8 * 24 + 10)  # to Tuesday 10:00: the surge and the morning peak
    run_pipeline(warehouse_db)  # default detection settings
    assert await produce(events, settings) == len(events)

    async def stored() -> bool:
        rows = await asyncio.to_thread(
            query, warehouse_db, "SELECT count() FROM request_events FINAL "
            "WHERE wrapped_key_id = {k:String}", k=key.wrapped_key_id)
        return rows[0][0] == len(events)

    await wait_for(stored, 90, f"{len(events)} stored rows")

    async def resolved() -> list:
        alerts = await read_topic(kafka_broker.bootstrap, topics.ALERTS, {key.wrapped_key_id},
                                  idle_ms=700)
        return alerts if any(a["state"] == "resolved" for a in alerts) else []

    alerts = await wait_for(resolved, 60, "the spike alert and its resolution")
    opened = [a for a in alerts if a["state"] == "open"]
    assert [a["kind"] for a in opened] == ["spike"], [a["title"] for a in opened]
    spike = opened[0]
    detected = datetime.fromisoformat(spike["detected_at"])
    assert SURGE < detected <= SURGE + timedelta(minutes=45)
    assert "what this key usually does on a weekday" in spike["summary"]
    assert spike["details"]["baseline_mode"] == "seasonal"

    rows = await asyncio.to_thread(
        query, warehouse_db, "SELECT baseline_mode, day_kind, length(history), p_value "
        "FROM anomalies FINAL WHERE wrapped_key_id = {k:String} AND metric = 'requests'",
        k=key.wrapped_key_id)
    assert len(rows) == 1
    mode, kind, days, p_value = rows[0]
    assert (mode, kind, days) == ("seasonal", "weekday", 6)  # Mon-Fri and Monday before
    assert p_value is not None and p_value < 1e-4
