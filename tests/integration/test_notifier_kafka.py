"""The notifier end to end: AlertEvents on a real Kafka topic, the real slack-sdk against the fake
Slack, delivered ids on the compacted topic, delivery rows in the embedded warehouse. Proves once
across redelivery, a cancelled notifier, a SIGKILLed notifier process, and dead-lettering."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest

from keywarden.clickhouse import get_client
from keywarden.kafka import ensure_topics, make_consumer, make_producer
from keywarden.settings import Settings, load_settings
from schemas.events.alert import AlertEvent, AlertState
from schemas.topics import TopicSpec
from services.fakes.slack import DEFAULT_TOKEN, FakeSlack
from services.notifier import Notifier
from services.notifier.deliveries import ClickHouseDeliveryLog, DeliveryAttempt
from tests.support.waiting import wait_until_async

from .notifier_support import alerts_all_handled, make_alert, posted_alert_ids

pytestmark = pytest.mark.slow

ROUTES = '{"team-a": "#team-a-alerts", "team-b": "#team-b-alerts"}'


def _env(settings: Settings) -> dict[str, str]:
    """The KEYWARDEN_* variables that reproduce `settings` in a child process."""
    names = [
        "kafka_bootstrap",
        "clickhouse_url",
        "slack_base_url",
        "notifier_routes",
        "notifier_alerts_topic",
        "notifier_dlq_topic",
        "notifier_delivered_topic",
        "notifier_group_id",
        "notifier_retry_base_seconds",
        "notifier_retry_max_seconds",
        "notifier_deliveries_flush_seconds",
        "notifier_session_timeout_ms",
        "notifier_digest_threshold",
        "notifier_default_channel",
    ]
    env = {f"KEYWARDEN_{n.upper()}": str(getattr(settings, n)) for n in names}
    env["KEYWARDEN_SLACK_BOT_TOKEN"] = DEFAULT_TOKEN
    return env


@pytest.fixture
def notifier_settings(kafka_broker, fake_slack: FakeSlack, warehouse_db: str) -> Settings:  # type: ignore[no-untyped-def]
    run = uuid.uuid4().hex[:8]
    return load_settings(
        kafka_bootstrap=kafka_broker.bootstrap,
        kafka_topic_partitions=3,
        clickhouse_url=warehouse_db,
        slack_bot_token=DEFAULT_TOKEN,
        slack_base_url=fake_slack.api_url,
        notifier_routes=ROUTES,
        notifier_default_channel="#alerts",
        notifier_alerts_topic=f"alerts.v1.t{run}",
        notifier_dlq_topic=f"alerts.dlq.v1.t{run}",
        notifier_delivered_topic=f"alerts.delivered.v1.t{run}",
        notifier_group_id=f"notifier-t{run}",
        notifier_retry_base_seconds=0.05,
        notifier_retry_max_seconds=0.5,
        notifier_deliveries_flush_seconds=0.2,
        notifier_session_timeout_ms=6000,
        notifier_digest_threshold=1000,  # digests have their own test
    )


async def produce(settings: Settings, events: list[AlertEvent | bytes]) -> None:
    await ensure_topics(settings, [TopicSpec(settings.notifier_alerts_topic)])
    producer = make_producer(settings)
    await producer.start()
    try:
        for event in events:
            if isinstance(event, bytes):
                await producer.send_and_wait(settings.notifier_alerts_topic, value=event)
            else:
                await producer.send_and_wait(
                    settings.notifier_alerts_topic,
                    key=event.wrapped_key_id.encode(),
                    value=event.to_json_bytes(),
                )
    finally:
        await producer.stop()


async def read_topic(settings: Settings, topic: str, count: int, timeout: float = 10) -> list[dict]:
    consumer = make_consumer(topic, group_id=None, settings=settings)
    await consumer.start()
    found: list[dict] = []
    try:
        async with asyncio.timeout(timeout):
            while len(found) < count:
                for messages in (await consumer.getmany(timeout_ms=200)).values():
                    found.extend(json.loads(m.value) for m in messages)
    finally:
        await consumer.stop()
    return found


def rows(url: str, sql: str) -> list[tuple]:
    client = get_client(url)
    try:
        return client.query(sql).result_rows
    finally:
        client.close()


async def test_alerts_reach_slack_once_and_every_attempt_lands_in_clickhouse(
    notifier_settings: Settings, fake_slack: FakeSlack
) -> None:
    opened = [make_alert(i, team=("team-a", "team-b", "zeta")[i % 3]) for i in range(6)]
    resolved = opened[0].model_copy(update={"state": AlertState.RESOLVED})
    await produce(notifier_settings, [*opened, resolved])
    async with Notifier(notifier_settings) as notifier:
        await wait_until_async(lambda: len(fake_slack.posts()) == 7, 15, "7 posts")
        # Kafka redelivers (or the pipeline re-emits) the same alerts: nothing is posted again.
        await produce(notifier_settings, [*opened[:3], resolved])
        await wait_until_async(lambda: notifier.consumed == 11, 15, "redeliveries consumed")
        await wait_until_async(lambda: not any(notifier.backlog.values()), 15, "backlog drained")
    assert sorted(posted_alert_ids(fake_slack)) == sorted(str(a.alert_id) for a in opened)
    assert len(fake_slack.posts("#team-a-alerts")) == 3  # two opens and the resolution
    reply = next(c for c in fake_slack.posts() if c.thread_ts)
    parent = next(c for c in fake_slack.posts() if c.ts == reply.thread_ts)
    assert parent.metadata["event_payload"]["alert_id"] == str(opened[0].alert_id)

    url = notifier_settings.clickhouse_url
    await wait_until_async(
        lambda: len(rows(url, "SELECT * FROM alert_deliveries FINAL")) == 11,
        timeout=15, what="11 delivery rows",
    )
    outcomes = dict(
        rows(url, "SELECT outcome, count() FROM alert_deliveries FINAL GROUP BY outcome")
    )
    assert outcomes == {"delivered": 7, "duplicate_skipped": 4}
    ((channel, ts),) = rows(
        url,
        f"SELECT slack_channel, slack_ts FROM alert_deliveries FINAL "
        f"WHERE alert_id = '{opened[0].alert_id}' AND state = 'open' "
        f"AND outcome = 'delivered'",
    )
    assert ts == parent.ts and channel.startswith("C")


async def test_cancelled_mid_stream_then_restarted_posts_each_alert_once(
    notifier_settings: Settings, fake_slack: FakeSlack
) -> None:
    fake_slack.latency = 0.03
    alerts = [make_alert(i, team=("team-a", "team-b", "zeta")[i % 3]) for i in range(45)]
    await produce(notifier_settings, alerts)
    first = asyncio.create_task(Notifier(notifier_settings).run_forever())
    await wait_until_async(lambda: len(fake_slack.posts()) >= 12, 15, "some posts")
    first.cancel()  # killed mid-stream: in-flight posts finish recording, the rest is left
    with contextlib.suppress(asyncio.CancelledError):
        await first
    posted_before_restart = len(fake_slack.posts())
    assert posted_before_restart < len(alerts)
    async with Notifier(notifier_settings):
        await wait_until_async(lambda: len(fake_slack.posts()) >= len(alerts), 30, "all")
        # Every alert handled: a duplicate, if any, is posted by now.
        await wait_until_async(lambda: alerts_all_handled(notifier_settings), 15,
                               "every alert handled", interval=0.2)
    counts = Counter(posted_alert_ids(fake_slack))
    assert set(counts) == {str(a.alert_id) for a in alerts}
    assert max(counts.values()) == 1


async def test_sigkilled_process_mid_stream_then_restarted_posts_each_alert_once(
    notifier_settings: Settings, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    fake_slack.latency = 0.03
    alerts = [make_alert(i, team=("team-a", "team-b")[i % 2]) for i in range(40)]
    await produce(notifier_settings, alerts)
    code = (
        "import asyncio; from services.notifier import Notifier; "
        "from services.notifier.cli import run_until_signalled; "
        "asyncio.run(run_until_signalled(Notifier()))"
    )
    log_path = tmp_path / "notifier.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", code],
            env={**os.environ, **_env(notifier_settings)},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[2],
        )
    try:
        await wait_until_async(
            lambda: len(fake_slack.posts()) >= 10 or process.poll() is not None,
            timeout=30,
            what="the child's first posts",
        )
        assert process.poll() is None, log_path.read_text()[-3000:]
        process.send_signal(signal.SIGKILL)  # no stop(), no commit, no goodbye
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
    assert len(fake_slack.posts()) < len(alerts)
    async with Notifier(notifier_settings):
        await wait_until_async(
            lambda: len(set(posted_alert_ids(fake_slack))) >= len(alerts),
            timeout=30,
            what="all alerts",
        )
        await wait_until_async(lambda: alerts_all_handled(notifier_settings), 15,
                               "every alert handled", interval=0.2)
    counts = Counter(posted_alert_ids(fake_slack))
    assert set(counts) == {str(a.alert_id) for a in alerts}
    assert max(counts.values()) == 1, {k: v for k, v in counts.items() if v > 1}


async def test_permanent_error_goes_to_the_dlq_topic_and_the_rest_keep_flowing(
    notifier_settings: Settings, fake_slack: FakeSlack
) -> None:
    fake_slack.fail_channel("#team-b-alerts", "channel_not_found")
    broken = make_alert(0, team="team-b")
    fine = [make_alert(i, team="team-a") for i in range(1, 5)]
    await produce(notifier_settings, [broken, b"{not an alert", *fine])
    async with Notifier(notifier_settings):
        await wait_until_async(lambda: len(fake_slack.posts("#team-a-alerts")) == 4, 15, "team-a")
        dead = await read_topic(notifier_settings, notifier_settings.notifier_dlq_topic, 2)
    by_error = {d["error"].split(":")[0]: d for d in dead}
    assert by_error["channel_not_found"]["alert"]["alert_id"] == str(broken.alert_id)
    assert by_error["channel_not_found"]["channel"] == "#team-b-alerts"
    assert "{not an alert" in by_error["invalid_event"]["payload"]
    # After a restart the dead-lettered alert is neither retried nor dead-lettered again.
    async with Notifier(notifier_settings) as again:
        await produce(notifier_settings, [broken])
        await wait_until_async(lambda: again.consumed >= 1, 15, "redelivery consumed")
        await wait_until_async(lambda: alerts_all_handled(notifier_settings), 15,
                               "the redelivery handled", interval=0.2)
    assert len(await read_topic(notifier_settings, notifier_settings.notifier_dlq_topic, 2)) == 2


async def test_clickhouse_down_keeps_delivering_and_buffers_rows(
    notifier_settings: Settings, fake_slack: FakeSlack
) -> None:
    dead_url = "http://default:@127.0.0.1:9/nowhere"  # nothing listens on the discard port
    target = {"url": dead_url}
    log = ClickHouseDeliveryLog(lambda: get_client(target["url"]), flush_seconds=0.1)
    await produce(notifier_settings, [make_alert(i) for i in range(3)])
    async with Notifier(notifier_settings, delivery_log=log):
        await wait_until_async(
            lambda: len(fake_slack.posts()) == 3, 15, "posts while ClickHouse is down"
        )
        await wait_until_async(lambda: log.buffered == 3, 15, "3 delivery rows buffered")
        assert log.inserted == 0
        target["url"] = notifier_settings.clickhouse_url  # ClickHouse is back
        await wait_until_async(lambda: log.inserted == 3, 15, "buffered rows inserted")
    assert rows(
        notifier_settings.clickhouse_url,
        "SELECT count() FROM alert_deliveries FINAL WHERE outcome = 'delivered'",
    ) == [(3,)]
    assert DeliveryAttempt.__dataclass_fields__.keys() >= {"attempt_id", "outcome"}
