"""The pipeline worker's topics exist before its consumer starts: its state tables' changelogs
included (pipelines/worker.py `pipeline_topics`). Left to faust, a changelog created after the
consumer's first metadata fetch stayed out of the group's assignment, and a worker taking over
a killed worker's partitions did not recover that table."""

from __future__ import annotations

import uuid

from keywarden.kafka import ensure_topics, make_admin
from keywarden.settings import load_settings
from pipelines.worker import build_pipeline, pipeline_topics


async def test_the_state_changelogs_exist_and_are_visible_before_the_worker_starts(
    kafka_broker,
) -> None:
    settings = load_settings(kafka_bootstrap=kafka_broker.bootstrap)
    app_id = f"kw-topics-{uuid.uuid4().hex[:8]}"
    pipeline = build_pipeline(settings, app_id=app_id)  # the app is not started
    changelogs = {table.changelog_topic.get_topic_name() for table in pipeline.app.tables.values()}
    assert changelogs == {f"{app_id}-key-hours-changelog", f"{app_id}-key-state-changelog"}

    await ensure_topics(settings, pipeline_topics(pipeline))  # returns once they are visible

    admin = make_admin(settings)
    await admin.start()
    try:
        described = await admin.describe_topics(sorted(changelogs))
    finally:
        await admin.close()
    partitions = {topic["topic"]: len(topic["partitions"]) for topic in described
                  if not topic["error_code"]}
    assert partitions == dict.fromkeys(changelogs, settings.kafka_topic_partitions)
