"""The faust App, built from settings. Only the App: topics and agents attach in their modules."""

from __future__ import annotations

import faust

from keywarden.settings import Settings


def create_app(settings: Settings, app_id: str | None = None) -> faust.App:
    """A faust App for the pipeline; nothing connects until the worker starts it."""
    brokers = [f"kafka://{server.strip()}" for server in settings.kafka_bootstrap.split(",")]
    return faust.App(
        app_id or settings.pipeline_app_id,
        broker=brokers,
        store=settings.pipeline_store,
        topic_replication_factor=settings.kafka_topic_replication,
        topic_partitions=settings.kafka_topic_partitions,
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        autodiscover=False,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        broker_commit_every=500,
        broker_commit_interval=1.0,
        broker_session_timeout=settings.pipeline_session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, settings.pipeline_session_timeout_seconds / 3),
        datadir=str(settings.home / "faust"),
    )
