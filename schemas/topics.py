"""Kafka topic names and their settings: the one list every component and `keywarden` uses."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

REQUESTS = "llm.requests.v1"
REQUESTS_DLQ = "llm.requests.dlq.v1"
SPEND = "usage.spend.v1"
# Per-key-per-minute runs of stored events, from the ingest stage to the analytics stage
# (schemas/events/usage_minute.py); written in Kafka transactions, read read_committed.
USAGE_MINUTES = "llm.usage.minutes.v1"
ALERTS = "alerts.v1"
ALERTS_DLQ = "alerts.dlq.v1"
# Which alert states the notifier has delivered (key alert_id:state); compacted, read at start.
ALERTS_DELIVERED = "alerts.delivered.v1"
KEYS_REGISTRY = "keys.registry.v1"
AUDIT = "audit.v1"
# Admin credentials and team ceilings (services/admin); compacted like the key registry.
ADMIN_REGISTRY = "admin.registry.v1"


@dataclass(frozen=True)
class TopicSpec:
    """A topic the project creates: name, whether it is compacted, and extra broker configs."""

    name: str
    compacted: bool = False
    partitions: int | None = None  # None: the configured default (KEYWARDEN_KAFKA_TOPIC_PARTITIONS)
    retention_ms: int | None = None  # None: the configured default; ignored when compacted
    configs: dict[str, str] = field(default_factory=dict)

    def broker_configs(self, default_retention_ms: int) -> dict[str, str]:
        configs = dict(self.configs)
        if self.compacted:
            configs.setdefault("cleanup.policy", "compact")
        else:
            configs.setdefault("cleanup.policy", "delete")
            configs.setdefault("retention.ms", str(self.retention_ms or default_retention_ms))
        return configs


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(REQUESTS),
    TopicSpec(REQUESTS_DLQ, retention_ms=30 * 24 * 3600 * 1000),
    TopicSpec(SPEND, compacted=True),
    TopicSpec(ALERTS),
    TopicSpec(ALERTS_DLQ, retention_ms=30 * 24 * 3600 * 1000),
    TopicSpec(ALERTS_DELIVERED, compacted=True),
    # The registry is the source of truth for keys: compacted, one partition so that every
    # gateway reads changes in the order they were made.
    TopicSpec(KEYS_REGISTRY, compacted=True, partitions=1),
    TopicSpec(ADMIN_REGISTRY, compacted=True, partitions=1),
    # The audit trail is kept a year on the broker; ClickHouse audit_log keeps it for good.
    TopicSpec(AUDIT, partitions=1, retention_ms=365 * 24 * 3600 * 1000),
)

# The pipeline's runs: one topic per pipeline deployment (`usage_minutes_topic`), created by
# the worker. Partitioned like REQUESTS (the default count): a run goes to its source partition.
USAGE_MINUTES_SPEC = TopicSpec(USAGE_MINUTES, retention_ms=7 * 24 * 3600 * 1000)

SPECS: dict[str, TopicSpec] = {spec.name: spec for spec in (*TOPICS, USAGE_MINUTES_SPEC)}


def usage_minutes_topic(app_id: str) -> str:
    """The runs topic of the pipeline deployment `app_id` (`KEYWARDEN_PIPELINE_APP_ID`). It is
    internal to that deployment, as faust's changelogs are: two deployments on one cluster (a
    replay under a new app id beside production, a staging pipeline) each analyse only the runs
    their own ingest stage wrote, never count each other's."""
    return f"{USAGE_MINUTES}.{app_id}"


def state_changelog_spec(name: str) -> TopicSpec:
    """The spec of a pipeline state table's changelog `name` (`<app id>-<table>-changelog`, named
    by faust): compacted, partitioned like REQUESTS (the default count), as faust would create it.
    The worker creates it before faust starts (pipelines/worker.py `pipeline_topics`)."""
    return TopicSpec(name, compacted=True)


def spec_of(name: str, like: str | None = None) -> TopicSpec:
    """The spec of topic `name`. A project topic renamed by configuration (the notifier's
    `KEYWARDEN_NOTIFIER_*_TOPIC`) is created with the spec of the topic `like` it stands for."""
    if name in SPECS:
        return SPECS[name]
    if like is None:
        raise KeyError(f"{name} is not a topic of schemas/topics.py")
    return replace(SPECS[like], name=name)
