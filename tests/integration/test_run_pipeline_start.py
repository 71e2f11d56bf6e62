"""The `run_pipeline` fixture's start position (tests/support/pipeline.py): a test's worker
starts where the shared source topic ended when its test began, and a restarted worker under
the same app id keeps its own commits."""

from __future__ import annotations

import asyncio
import uuid

from keywarden.kafka import ensure_topics
from keywarden.settings import load_settings
from keywarden.synthetic import produce, synthetic_traffic
from schemas.topics import REQUESTS
from tests.support.kafka import committed_to_end
from tests.support.pipeline import source_ends, start_group_at


async def test_a_new_group_starts_at_the_ends_noted_and_an_existing_one_keeps_its_commits(
    kafka_broker,
) -> None:
    settings = load_settings(kafka_bootstrap=kafka_broker.bootstrap)
    await ensure_topics(settings)
    assert await produce(synthetic_traffic(30), settings) == 30
    ends = await asyncio.to_thread(source_ends, kafka_broker.bootstrap)
    assert sum(ends.values()) >= 30 and {tp.topic for tp in ends} == {REQUESTS}

    group = f"kw-start-{uuid.uuid4().hex[:8]}.ingest"
    assert await asyncio.to_thread(start_group_at, kafka_broker.bootstrap, group, ends)
    assert await committed_to_end(settings, group, REQUESTS)

    # a second start under the same group: its commits stand, nothing is moved back
    assert not await asyncio.to_thread(start_group_at, kafka_broker.bootstrap, group,
                                       {tp: 0 for tp in ends})
    assert await committed_to_end(settings, group, REQUESTS)


def test_a_topic_not_created_yet_has_no_ends(kafka_broker) -> None:
    assert source_ends(kafka_broker.bootstrap, f"kw-absent-{uuid.uuid4().hex[:8]}") == {}
