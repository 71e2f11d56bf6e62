"""Besides the pipeline, the project's own consumers read batches compressed with every codec:
the notifier delivers alerts that a librdkafka producer published lz4-, zstd- and
snappy-compressed (the audit sink and the followers use the same consumer factory, tested per
codec in test_producer_codecs.py)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from keywarden.kafka import ensure_topics
from keywarden.settings import load_settings
from schemas.topics import TopicSpec
from services.fakes.slack import DEFAULT_TOKEN, FakeSlack
from services.notifier import Notifier
from tests.support.producers import librdkafka_publish
from tests.support.waiting import wait_until_async

from .notifier_support import make_alert, posted_alert_ids

pytestmark = pytest.mark.slow


async def test_the_notifier_delivers_alerts_published_with_every_compression_codec(
    kafka_broker, fake_slack: FakeSlack, warehouse_db: str
) -> None:
    run = uuid.uuid4().hex[:8]
    settings = load_settings(
        kafka_bootstrap=kafka_broker.bootstrap, kafka_topic_partitions=1,
        clickhouse_url=warehouse_db, slack_bot_token=DEFAULT_TOKEN,
        slack_base_url=fake_slack.api_url, notifier_default_channel="#alerts",
        notifier_alerts_topic=f"alerts.v1.c{run}", notifier_dlq_topic=f"alerts.dlq.v1.c{run}",
        notifier_delivered_topic=f"alerts.delivered.v1.c{run}",
        notifier_group_id=f"notifier-c{run}", notifier_digest_threshold=1000,
        notifier_deliveries_flush_seconds=0.2)
    await ensure_topics(settings, [TopicSpec(settings.notifier_alerts_topic)])
    sent = []
    for codec in ("gzip", "snappy", "lz4", "zstd"):
        alerts = [make_alert(i, run=f"{run}-{codec}") for i in range(3)]
        sent += alerts
        await asyncio.to_thread(
            librdkafka_publish, kafka_broker.bootstrap, settings.notifier_alerts_topic,
            [(a.wrapped_key_id.encode(), a.to_json_bytes()) for a in alerts], codec)
    expected = sorted(str(a.alert_id) for a in sent)
    async with Notifier(settings):
        await wait_until_async(lambda: sorted(set(posted_alert_ids(fake_slack)) & set(expected))
                               == expected, timeout=60, what="every compressed alert posted")
