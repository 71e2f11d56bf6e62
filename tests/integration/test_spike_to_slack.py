"""A spike in synthetic traffic, end to end: Kafka -> pipeline worker (state, spike rule) ->
alerts.v1 -> notifier -> the fake Slack, as one message (later figures of the same day's spike
reply in its thread), with the time from the spiking events to the Slack call measured."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

from keywarden.kafka import ensure_topics
from keywarden.settings import load_settings
from keywarden.synthetic import produce
from schemas.events.request import Provider, Usage
from services.fakes.slack import DEFAULT_TOKEN, FakeSlack
from services.notifier import Notifier
from tests.support.analytics import (
    Key,
    hourly_traffic,
    latest_spend,
    query,
    unique,
    wait_for,
)

DAY1 = datetime(2026, 9, 7, tzinfo=UTC)  # a Monday
DAY8 = DAY1 + timedelta(days=7)
ENV = {
    "KEYWARDEN_ANALYTICS_SPIKE_MIN_REQUESTS_HOUR": "10",
    "KEYWARDEN_ANALYTICS_SPIKE_MIN_REQUESTS_DAY": "50",
}


def spike_posts(slack: FakeSlack, key: str) -> list:
    return [call for call in slack.posts() if call.ok and key in call.all_text()
            and call.metadata.get("event_payload", {}).get("kind") == "spike"]


async def test_a_spike_reaches_slack_as_one_message(
    kafka_broker, warehouse_db, run_pipeline, fake_slack: FakeSlack
) -> None:
    settings = load_settings(kafka_bootstrap=kafka_broker.bootstrap)
    await ensure_topics(settings)
    usage = Usage(input_tokens=900, output_tokens=200)
    surging = Key(unique("e2e_surging"), Provider.OPENAI, "gpt-4o-mini", usage)
    steady = Key(unique("e2e_steady"), Provider.OPENAI, "gpt-4o-mini", usage)
    history = hourly_traffic(surging, DAY1, 7 * 24, base=4) + hourly_traffic(
        steady, DAY1, 8 * 24, base=4)
    surge = hourly_traffic(surging, DAY8, 24, base=4, surge_from=DAY8, surge=3)

    run_pipeline(warehouse_db, **ENV)
    notifier_settings = load_settings(
        kafka_bootstrap=kafka_broker.bootstrap, clickhouse_url=warehouse_db,
        slack_bot_token=DEFAULT_TOKEN, slack_base_url=fake_slack.api_url,
        notifier_routes='{"t": "#team-t-alerts"}', notifier_default_channel="#alerts",
        notifier_group_id=f"notifier-e2e-{uuid.uuid4().hex[:8]}",
        notifier_delivered_topic=f"alerts.delivered.v1.e2e{uuid.uuid4().hex[:8]}",
        notifier_digest_threshold=1000,
    )
    async with Notifier(notifier_settings):
        await produce(sorted(history, key=lambda e: e.occurred_at), settings)

        async def history_stored() -> bool:
            rows = query(warehouse_db, "SELECT count() FROM request_events FINAL WHERE "
                         "wrapped_key_id IN {k:Array(String)}",
                         k=[surging.wrapped_key_id, steady.wrapped_key_id])
            return rows[0][0] == len(history)

        await wait_for(history_stored, 60, "seven days of history stored")

        # The clock starts once the analytics stage has also digested the history (its per-key
        # state, published on usage.spend.v1, counts each key's last history day), so the
        # latency below is the surge's own, not the time to work through a week of backlog.
        last_day = {key.wrapped_key_id: max(e.occurred_at.date() for e in history
                                            if e.wrapped_key_id == key.wrapped_key_id)
                    for key in (surging, steady)}
        expected = {key_id: (day.isoformat(), sum(
            1 for e in history if e.wrapped_key_id == key_id and e.occurred_at.date() == day))
            for key_id, day in last_day.items()}

        async def history_analysed() -> bool:
            last = await latest_spend(kafka_broker.bootstrap, set(expected))
            return {k: (r["day"], r["requests_today"]) for k, r in last.items()} == expected

        await wait_for(history_analysed, 60, "seven days of history analysed")
        assert spike_posts(fake_slack, surging.wrapped_key_id) == []

        sent_at = time.monotonic()
        await produce(surge, settings)

        async def posted() -> list:
            return spike_posts(fake_slack, surging.wrapped_key_id)

        first = (await wait_for(posted, 60, "the spike message in Slack"))[0]
        latency = first.at - sent_at
        print(f"\nspiking events published -> Slack chat.postMessage: {latency:.2f} s")

        async def day_headline() -> list:
            calls = spike_posts(fake_slack, surging.wrapped_key_id)
            return calls if len(calls) >= 2 else []

        calls = await wait_for(day_headline, 60, "the day-grain headline")

    top_level = [call for call in calls if not call.thread_ts]
    replies = [call for call in calls if call.thread_ts]
    assert len(top_level) == 1, [c.text for c in calls]
    assert "team-t-alerts" in top_level[0].channel  # routed by the key's team tag
    assert replies and all(reply.thread_ts == top_level[0].ts for reply in replies)
    assert all(steady.wrapped_key_id not in call.all_text() for call in fake_slack.posts())
    assert latency < 30
