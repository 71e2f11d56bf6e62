"""The faust App, built from settings. Only the App: topics and agents attach in their modules."""

from __future__ import annotations

import asyncio
from typing import Any

import faust

from keywarden.kafka import sasl_password, tls_context
from keywarden.settings import Settings


def broker_credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    """The Kafka security settings of every other client (keywarden/kafka.py), in faust's terms:
    the same TLS context (a private CA from `kafka_ssl_cafile`, else the system's) and SASL
    login."""
    protocol = settings.kafka_security_protocol
    tls = tls_context(settings)
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username, password=sasl_password(settings),
            mechanism=settings.kafka_sasl_mechanism or "PLAIN", ssl_context=tls)
    if tls is not None:
        return faust.SSLCredentials(tls)
    return None


def create_app(settings: Settings, app_id: str | None = None) -> faust.App:
    """A faust App for the pipeline; nothing connects until the worker starts it."""
    brokers = [f"kafka://{server.strip()}" for server in settings.kafka_bootstrap.split(",")]
    return faust.App(
        app_id or settings.pipeline_app_id,
        broker=brokers,
        broker_credentials=broker_credentials(settings),
        store=settings.pipeline_store,
        topic_replication_factor=settings.kafka_topic_replication,
        topic_partitions=settings.kafka_topic_partitions,
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        autodiscover=False,
        producer_acks=-1,
        producer_max_batch_size=512 * 1024,
        consumer_auto_offset_reset="earliest",
        broker_commit_every=500,
        broker_commit_interval=1.0,
        broker_session_timeout=settings.pipeline_session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, settings.pipeline_session_timeout_seconds / 3),
        # faust's default of 1 MiB per partition hands its fetcher small batches, and its
        # per-message machinery then runs once per small fetch round (docs/benchmarks.md).
        consumer_max_fetch_size=settings.pipeline_fetch_partition_bytes,
        datadir=str(settings.home / "faust"),
    )


async def track_producer_topics(app: faust.App, names: list[str]) -> None:
    """Make the app's producer keep metadata for every topic it writes to.

    aiokafka's client learns all topics from its first (unfiltered) metadata fetch, and `send`
    then skips registering a topic it already knows. Once any topic is registered, refreshes ask
    for the registered ones only, the unregistered topic drops out of the metadata, and records
    for it wait in the accumulator for a leader that is never looked up: a changelog write that
    never completes (seen as a worker whose batches never finish). Registering them up front
    keeps them in every refresh.
    """
    producer = app.producer._ensure_producer()  # type: ignore[attr-defined]  # noqa: SLF001
    await asyncio.gather(*(producer.client.add_topic(name) for name in names))


def read_committed() -> None:
    """Make faust's consumers read only committed records (the ingest stage writes its runs in
    transactions). faust sets `isolation_level` only with its own exactly-once mode, which the
    pipeline does not use (docs: its open duplicate and fencing issues)."""
    from faust.transport.drivers import aiokafka as driver

    thread = driver.AIOKafkaConsumerThread
    original = thread._create_worker_consumer
    if getattr(original, "keywarden_read_committed", False):
        return

    def create(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._isolation_level = "read_committed"  # noqa: SLF001 - read in consumer.start()
        return consumer

    create.keywarden_read_committed = True  # type: ignore[attr-defined]
    thread._create_worker_consumer = create  # type: ignore[method-assign]
