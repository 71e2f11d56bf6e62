"""Assembles the pipeline (app, topics, sinks, agents) and runs it as a faust worker."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import faust

from keywarden.clickhouse import get_client
from keywarden.kafka import ensure_topics
from keywarden.settings import Settings
from pipelines.app import create_app
from pipelines.ingest.agents import IngestProcessor, register_ingest
from pipelines.sinks.clickhouse import DEAD_LETTER_COLUMNS, REQUEST_COLUMNS, ClickHouseSink
from pipelines.topics import PipelineTopics, declare_topics
from schemas.pricing import PricingCatalog, load_catalog

log = logging.getLogger(__name__)


@dataclass
class Pipeline:
    app: faust.App
    topics: PipelineTopics
    ingest: IngestProcessor


def build_pipeline(
    settings: Settings, catalog: PricingCatalog | None = None, app_id: str | None = None
) -> Pipeline:
    """Wire the pipeline for `settings`; nothing connects until the app starts."""
    app = create_app(settings, app_id)
    topics = declare_topics(app)

    def client() -> object:
        return get_client(settings.clickhouse_url)

    async def publish_dead_letter(key: bytes | None, value: bytes) -> None:
        delivery = await topics.dead_letters.send(key=key, value=value)
        await delivery  # at-least-once: the DLQ record is on the broker before we move on

    processor = IngestProcessor(
        catalog=catalog or load_catalog(),
        request_sink=ClickHouseSink(client, "request_events", REQUEST_COLUMNS),
        dead_letter_sink=ClickHouseSink(client, "request_dead_letters", DEAD_LETTER_COLUMNS),
        publish_dead_letter=publish_dead_letter,
    )
    register_ingest(
        app, topics, processor, settings.sink_max_batch_rows, settings.sink_max_batch_seconds
    )
    return Pipeline(app=app, topics=topics, ingest=processor)


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Create missing topics, then run the pipeline until SIGINT/SIGTERM."""
    asyncio.run(ensure_topics(settings))
    pipeline = build_pipeline(settings)
    worker = faust.Worker(pipeline.app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
