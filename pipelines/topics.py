"""The topics the pipeline reads and writes, declared on a faust App (names from schemas.topics)."""

from __future__ import annotations

from dataclasses import dataclass

import faust

from schemas import topics as names


@dataclass(frozen=True)
class PipelineTopics:
    requests: faust.TopicT
    minutes: faust.TopicT  # the ingest stage's runs, which the faust agents analyse
    dead_letters: faust.TopicT
    spend: faust.TopicT
    alerts: faust.TopicT


def declare_topics(app: faust.App) -> PipelineTopics:
    """Bind the project's topics to `app` as raw-bytes topics (the pipeline decodes values)."""

    def raw(name: str) -> faust.TopicT:
        return app.topic(
            name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            allow_empty=True,
        )

    return PipelineTopics(
        requests=raw(names.REQUESTS),
        minutes=raw(names.usage_minutes_topic(app.conf.id)),
        dead_letters=raw(names.REQUESTS_DLQ),
        spend=raw(names.SPEND),
        alerts=raw(names.ALERTS),
    )
