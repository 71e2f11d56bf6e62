"""Long outages, run side by side to save wall time (they share nothing):

* the ClickHouse endpoint unreachable for 30 s (a TCP proxy in front of the session warehouse is
  closed): a running worker backs off, keeps its place and catches up; a second worker is
  stopped gracefully (SIGTERM) while ClickHouse is down and started again after: the batch it
  was holding must not be lost (its offsets must not be committed unstored);
* Slack unreachable for 60 s: every alert is delivered exactly once afterwards.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from keywarden.kafka import ensure_topics, make_producer
from keywarden.settings import load_settings
from keywarden.synthetic import produce
from schemas.events.alert import AlertEvent, AlertKind, AlertState
from schemas.events.request import KeyTags, Provider, Usage
from schemas.topics import TopicSpec
from services.fakes.slack import DEFAULT_TOKEN
from services.notifier import Notifier
from tests.faults.support import (
    distinct_ids,
    exact_totals,
    stored_totals,
    via_port,
)
from tests.support.analytics import Key, unique, wait_for
from tests.support.kafka import committed_to_end
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.slow

CLICKHOUSE_DOWN_S = 30
SLACK_DOWN_S = 60
USAGE = Usage(input_tokens=1500, cached_input_tokens=200, output_tokens=350)


async def clickhouse_outage(kafka_broker, warehouse, run_pipeline) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings(kafka_bootstrap=kafka_broker.bootstrap)
    await ensure_topics(settings)
    keys = [Key(unique("ch_out_a"), Provider.OPENAI, "gpt-4o-mini", USAGE),
            Key(unique("ch_out_b"), Provider.ANTHROPIC, "claude-sonnet-4-5", USAGE)]
    names = {key.wrapped_key_id for key in keys}
    start = datetime.now(UTC) - timedelta(hours=2)
    before = [key.event(start + timedelta(seconds=5 * i)) for i in range(150) for key in keys]
    during = [key.event(start + timedelta(hours=1, seconds=5 * i)) for i in range(150)
              for key in keys]

    with TcpProxy("127.0.0.1", warehouse.port) as proxy:
        direct = {name: warehouse.migrated_database("f") for name in ("running", "stopped")}
        proxied = {name: via_port(url, proxy.port) for name, url in direct.items()}
        env = {"KEYWARDEN_SINK_MAX_BATCH_ROWS": "100",
               "KEYWARDEN_PIPELINE_SESSION_TIMEOUT_SECONDS": "6"}
        running = run_pipeline(proxied["running"], **env)
        stopped = run_pipeline(proxied["stopped"], **env)
        assert await produce(before, settings) == len(before)
        for name in direct:
            async def caught_up(url: str = direct[name]) -> bool:
                return (await distinct_ids(url, names))[0] == len(before)

            await wait_for(caught_up, 90, f"{name}: the events before the outage stored")

        proxy.close()
        closed_at = asyncio.get_running_loop().time()
        assert await produce(during, settings) == len(during)

        async def retrying() -> bool:
            return "ClickHouse insert into request_events failed" in stopped.log()

        await wait_for(retrying, 20, "the worker to be retrying its insert")
        # A graceful stop while the batch cannot be stored: what it acknowledged must be stored.
        await asyncio.to_thread(stopped.stop)
        assert (await distinct_ids(direct["running"], names))[0] == len(before)
        # On purpose: the outage lasts CLICKHOUSE_DOWN_S, whatever happened meanwhile.
        await asyncio.sleep(max(0.0, CLICKHOUSE_DOWN_S - (asyncio.get_running_loop().time()
                                                         - closed_at)))
        proxy.open()
        stopped.start()  # same consumer group: resumes from its committed offsets

        expected = exact_totals([*before, *during])
        for name, url in direct.items():
            async def complete(url: str = url) -> bool:
                return await stored_totals(url, names) == expected

            try:
                await wait_for(complete, 90, f"{name}: every event stored once after the outage")
            except AssertionError:
                worker = running if name == "running" else stopped
                print(worker.log())
                raise
            distinct, rows = await distinct_ids(url, names)
            assert distinct == rows == len(before) + len(during), (name, distinct, rows)
        assert "retry" in running.log()  # it did back off rather than crash


async def slack_outage(kafka_broker, fake_slack, warehouse_db) -> None:  # type: ignore[no-untyped-def]
    run = uuid.uuid4().hex[:8]
    settings = load_settings(
        kafka_bootstrap=kafka_broker.bootstrap, kafka_topic_partitions=3,
        clickhouse_url=warehouse_db, slack_bot_token=DEFAULT_TOKEN,
        slack_base_url=fake_slack.api_url, notifier_default_channel="#alerts",
        notifier_alerts_topic=f"alerts.v1.f{run}", notifier_dlq_topic=f"alerts.dlq.v1.f{run}",
        notifier_delivered_topic=f"alerts.delivered.v1.f{run}",
        notifier_group_id=f"notifier-f{run}", notifier_retry_base_seconds=0.2,
        notifier_retry_max_seconds=3, notifier_deliveries_flush_seconds=0.5,
        notifier_session_timeout_ms=6000, notifier_digest_threshold=1000,
    )
    alerts = [
        AlertEvent(
            alert_id=AlertEvent.make_id(AlertKind.SPIKE, f"wk_slack_{run}_{n}", f"hour:{n}"),
            kind=AlertKind.SPIKE, state=AlertState.OPEN, detected_at=datetime.now(UTC),
            wrapped_key_id=f"wk_slack_{run}_{n}", key_scope=f"slack-{run}-{n}",
            tags=KeyTags(team="team-f", service="svc", environment="prod"),
            title=f"Spend {n} spiking", metric="cost_usd", observed=30, baseline=10, ratio=3)
        for n in range(12)
    ]
    await ensure_topics(settings, [TopicSpec(settings.notifier_alerts_topic)])
    producer = make_producer(settings)
    await producer.start()

    async def publish(batch: list[AlertEvent]) -> None:
        for alert in batch:
            await producer.send_and_wait(settings.notifier_alerts_topic, alert.to_json_bytes(),
                                         key=alert.wrapped_key_id.encode())

    def posted() -> Counter[str]:
        return Counter(str(call.metadata.get("event_payload", {}).get("alert_id"))
                       for call in fake_slack.posts())

    try:
        async with Notifier(settings) as notifier:
            await publish(alerts[:4])
            await wait_for(lambda: _async(len(posted()) == 4), 20, "the first alerts posted")
            fake_slack.go_down()
            down_at = asyncio.get_running_loop().time()
            await publish(alerts[4:])
            await publish(alerts[:2])  # redelivered alerts while down: still posted once
            await asyncio.sleep(SLACK_DOWN_S)  # on purpose: the outage has a length
            assert set(posted()) == {str(a.alert_id) for a in alerts[:4]}, "posted while down"
            fake_slack.come_back()
            await wait_for(lambda: _async(len(posted()) == len(alerts)), 60,
                           "every alert posted after Slack came back")
            # Every alert handled (committed): anything posted twice has been posted by now.
            await wait_for(lambda: committed_to_end(settings, settings.notifier_group_id,
                                                    settings.notifier_alerts_topic),
                           15, "every alert handled")
            assert not any(notifier.backlog.values())
    finally:
        await producer.stop()
        fake_slack.come_back()
    counts = posted()
    assert counts == Counter({str(a.alert_id): 1 for a in alerts}), counts
    assert asyncio.get_running_loop().time() - down_at >= SLACK_DOWN_S


async def _async(value: bool) -> bool:
    return value


async def test_clickhouse_down_30s_and_slack_down_60s_lose_and_repeat_nothing(
    kafka_broker, warehouse, warehouse_db, run_pipeline, fake_slack
) -> None:
    results = await asyncio.gather(
        clickhouse_outage(kafka_broker, warehouse, run_pipeline),
        slack_outage(kafka_broker, fake_slack, warehouse_db),
        return_exceptions=True,
    )
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        raise failures[0]
