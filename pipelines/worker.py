"""Assembles the pipeline (app, topics, sinks, agents) and runs it as a faust worker."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import faust
import uvloop
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import OperationalError

from keywarden.clickhouse import get_client
from keywarden.kafka import ensure_topics, kafka_errors
from keywarden.settings import Settings
from pipelines.alerts.emitter import AlertEmitter, recently_published
from pipelines.app import create_app, read_committed, track_producer_topics
from pipelines.detect.agents import (
    ANOMALY_COLUMNS,
    BASELINE_COLUMNS,
    AnalyticsStep,
    KeyAnalyzer,
)
from pipelines.detect.batch import DetectConfig
from pipelines.detect.runs import RunsProcessor, RunsStats
from pipelines.detect.timers import KeyHygieneCheck
from pipelines.health import HealthServer, WorkerHealth, ledger_lag
from pipelines.ingest import batches, offsets
from pipelines.ingest.agents import (
    BATCH_DEAD_LETTER_COLUMNS,
    IngestProcessor,
    register_ledgered_agent,
)
from pipelines.ingest.stage import IngestStage
from pipelines.ingest.written import WrittenRuns
from pipelines.registry import RegistryView
from pipelines.rollups.state import KeyStateStore
from pipelines.rollups.tables import declare_tables
from pipelines.rollups.warehouse import RollupRefresher
from pipelines.sinks.clickhouse import DEAD_LETTER_COLUMNS, REQUEST_COLUMNS, ClickHouseSink
from pipelines.topics import PipelineTopics, declare_topics
from pipelines.watchdog import run_loop
from schemas.pricing import PricingCatalog, load_catalog
from schemas.topics import (
    TOPICS,
    USAGE_MINUTES,
    TopicSpec,
    spec_of,
    state_changelog_spec,
    usage_minutes_topic,
)

log = logging.getLogger(__name__)

# The exit status of a worker that stopped itself because it was no longer consuming.
EXIT_NOT_CONSUMING = 70
# Committed runs held for the analytics stage, in batches' worth of events: the analytics stage
# reads a batch's runs while the next few batches are stored; past that, it decodes them.
WRITTEN_RUNS_BATCHES = 4


@dataclass
class Pipeline:
    app: faust.App
    topics: PipelineTopics
    ingest: IngestProcessor
    stage: IngestStage
    analytics: AnalyticsStep
    runs: RunsProcessor
    undecodable: batches.UndecodableBatches
    ledger: offsets.OffsetLedger
    read_ahead: offsets.ReadAhead


def build_pipeline(
    settings: Settings, catalog: PricingCatalog | None = None, app_id: str | None = None
) -> Pipeline:
    """Wire the pipeline for `settings`; nothing connects until the app starts.

    Two stages in one process (docs/benchmarks.md, README "Pipeline"): the ingest stage
    (aiokafka, no faust per event) stores rows and writes per-key-minute runs in one Kafka
    transaction per source partition and batch; the analytics stage keeps the per-key state (faust
    tables) and runs the rules over those runs, read read_committed in batches by the ledgered
    faust agent's read-ahead (pipelines/ingest/agents.py)."""
    read_committed()
    app = create_app(settings, app_id)
    topics = declare_topics(app)

    def client() -> Client:
        return get_client(settings.clickhouse_url)

    async def publish_dead_letter(key: bytes | None, value: bytes) -> None:
        delivery = await topics.dead_letters.send(key=key, value=value)
        await delivery  # at-least-once: the DLQ record is on the broker before we move on

    processor = IngestProcessor(
        catalog=catalog
        or load_catalog(settings.pricing_overrides_file, settings.pricing_data_file),
        request_sink=ClickHouseSink(client, "request_events", REQUEST_COLUMNS),
        dead_letter_sink=ClickHouseSink(client, "request_dead_letters", DEAD_LETTER_COLUMNS),
        publish_dead_letter=publish_dead_letter,
        batch_dead_letter_sink=ClickHouseSink(client, "request_dead_letters",
                                              BATCH_DEAD_LETTER_COLUMNS),
    )
    # Every aiokafka consumer of this process (the ingest stage's, faust's, the gap reader's,
    # the followers') steps over a batch it cannot decode instead of dying on it, and reports
    # transaction markers (offsets without a record) to the offset ledger.
    undecodable = batches.UndecodableBatches()
    batches.install(undecodable)
    # the runs the ingest stage committed, taken by the analytics stage without decoding them
    written = WrittenRuns(max_events=WRITTEN_RUNS_BATCHES * settings.sink_max_batch_rows)
    stage = IngestStage(settings, processor, undecodable, group_id=f"{app.conf.id}.ingest",
                        runs_topic=topics.minutes.get_topic_name(),
                        batch_rows=settings.sink_max_batch_rows,
                        batch_seconds=settings.sink_max_batch_seconds, written=written)
    analytics = add_analytics(app, topics, settings, processor, client)
    runs = RunsProcessor(analytics, processor, RunsStats(), written=written)
    ledger = offsets.OffsetLedger(topics.minutes.get_topic_name(), markers=undecodable.markers)
    read_ahead = offsets.ReadAhead(settings, max_records=settings.sink_max_batch_rows,
                                   wait_ms=int(settings.sink_max_batch_seconds * 1000))

    async def committed(tps: set[Any]) -> Mapping[Any, int | None]:
        return await offsets.group_committed(settings, app.conf.id, tps)

    register_ledgered_agent(
        app, topics.minutes, "keywarden.analytics", runs, settings.sink_max_batch_rows,
        settings.sink_max_batch_seconds, committed,
        offsets.GapReader(settings, chunk_records=settings.sink_max_batch_rows),
        undecodable, ledger=ledger,
        read_ahead=read_ahead,
    )

    @app.task
    async def run_ingest_stage() -> None:
        await run_loop("the ingest stage", stage.run,
                       lambda error: setattr(stage, "crashed", error))

    @app.on_before_shutdown.connect
    async def stop_ingest_stage(app: faust.App, **_kw: Any) -> None:
        await stage.stop()

    return Pipeline(app=app, topics=topics, ingest=processor, stage=stage, analytics=analytics,
                    runs=runs, undecodable=undecodable, ledger=ledger, read_ahead=read_ahead)


def add_analytics(
    app: faust.App, topics: PipelineTopics, settings: Settings, processor: IngestProcessor,
    client: Callable[[], Any],
) -> AnalyticsStep:
    """Per-key state, detection, spend and rollups over the runs, plus background work."""
    tables = declare_tables(app, settings.kafka_topic_partitions)
    config = DetectConfig.from_settings(settings)
    store = KeyStateStore(tables, config.allowed_lateness,
                          timedelta(days=settings.analytics_state_retention_days))
    registry = RegistryView(settings)

    def policy_of(key: str) -> Any:
        record = registry.wrapped_key(key)
        return record.policy if record is not None else None

    async def publish_alert(key: bytes, value: bytes) -> None:
        await (await topics.alerts.send(key=key, value=value))  # wait for the broker's ack

    async def publish_spend(key: bytes, value: bytes) -> None:
        await topics.spend.send(key=key, value=value)  # flushed before the offsets commit

    def assigned() -> set[int]:
        return {tp.partition for tp in app.consumer.assignment() if tp.topic == topics.minutes
                .get_topic_name()}

    async def recent_alerts() -> set[tuple[str, str]]:
        return await recently_published(settings, topics.alerts.get_topic_name(),
                                        timedelta(seconds=settings.analytics_alert_replay_seconds))

    emitter = AlertEmitter(publish_alert, client, recent_alerts)
    refresher = RollupRefresher(client, settings.analytics_rollup_flush_seconds)
    step = AnalyticsStep(
        store=store, analyzer=KeyAnalyzer(store, config, policy_of), emitter=emitter,
        anomaly_sink=ClickHouseSink(client, "anomalies", ANOMALY_COLUMNS),
        baseline_sink=ClickHouseSink(client, "key_baselines", BASELINE_COLUMNS),
        publish_spend=publish_spend, refresher=refresher, registry=registry,
        catalog_version=processor.catalog.catalog_version,
        registry_wait_seconds=settings.analytics_registry_wait_seconds,
        assigned_partitions=assigned,
    )
    hygiene = KeyHygieneCheck(registry, emitter, client, settings.analytics_orphan_days)

    @app.task
    async def start_background() -> None:
        await track_producer_topics(app, [
            tables.hours.changelog_topic.get_topic_name(),
            tables.keys.changelog_topic.get_topic_name(),
            *(topic.get_topic_name() for topic in (topics.spend, topics.alerts,
                                                   topics.dead_letters)),
        ])
        await registry.start()
        await refresher.start()

    @app.task
    async def read_recent_alerts() -> None:
        await emitter.prefetch()  # so the worker's first alert does not wait for it

    @app.timer(settings.analytics_timer_seconds, on_leader=True)
    async def key_hygiene() -> None:
        # A timer that raises crashes the whole faust app: a warehouse or broker outage must
        # only skip this round (the next one sees everything this one would have).
        try:
            with kafka_errors("orphan/rotation check"):
                await hygiene.run()
        except (OperationalError, OSError) as exc:  # KafkaUnavailable is an OSError
            log.warning("orphan/rotation check skipped this round: %s", exc)

    @app.on_before_shutdown.connect
    async def stop_background(app: faust.App, **_kw: Any) -> None:
        await refresher.stop()
        await registry.stop()

    return step


def worker_health(pipeline: Pipeline, settings: Settings) -> WorkerHealth:
    """Liveness and readiness of `pipeline`'s worker (see pipelines/health.py)."""
    stats, ledger, stage = pipeline.ingest.stats, pipeline.ledger, pipeline.stage
    read_ahead = pipeline.read_ahead
    analytics_lag = ledger_lag(pipeline.app, ledger.topic, ledger.committable)

    def progress() -> int:
        return (stats.stored + stats.dead_lettered + stats.undecodable_batches
                + stage.stats.transactions + sum(ledger.partitions.values()))

    def lag() -> dict[Any, int | None]:
        return {**stage.lag(), **analytics_lag()}

    def stopped_loops() -> dict[str, str]:
        loops = {"ingest stage": stage.crashed, "analytics read-ahead": read_ahead.crashed}
        return {name: f"{type(crashed).__name__}: {crashed}"
                for name, crashed in loops.items() if crashed is not None}

    def recovery() -> tuple[int, int] | None:
        restore = pipeline.app.tables.recovery
        if not getattr(restore, "in_recovery", False):
            return None
        return (restore.active_remaining_total(),
                sum(offset for offset in restore.active_offsets.values() if offset is not None))

    return WorkerHealth(
        app=pipeline.app,
        lag=lag,
        progress=progress,
        stall_seconds=settings.pipeline_stall_seconds,
        stopped_loops=stopped_loops,
        recovery=recovery,
    )


def worker_counters(pipeline: Pipeline) -> dict[str, tuple[str, float]]:
    stats = pipeline.ingest.stats
    return {
        "keywarden_pipeline_records_received_total": ("Source records handed to ingest.",
                                                      stats.received),
        "keywarden_pipeline_records_stored_total": ("Events stored in request_events.",
                                                    stats.stored),
        "keywarden_pipeline_records_dead_lettered_total": ("Records dead-lettered one by one.",
                                                           stats.dead_lettered),
        "keywarden_pipeline_undecodable_batches_total": (
            "Record batches no consumer of this worker could decode, stepped over.",
            pipeline.undecodable.total),
        "keywarden_pipeline_runs_analysed_total": ("Per-key-minute runs analysed (faust).",
                                                   pipeline.runs.stats.received),
        "keywarden_pipeline_events_analysed_total": ("Events counted through the runs.",
                                                     pipeline.runs.stats.analysed),
        "keywarden_pipeline_runs_taken_as_written_total": (
            "Runs the analytics stage took as this process wrote them, without decoding.",
            pipeline.runs.written.hits if pipeline.runs.written is not None else 0),
        "keywarden_pipeline_ingest_transactions_total": (
            "Kafka transactions committed by the ingest stage (runs + source offsets).",
            pipeline.stage.stats.transactions),
        "keywarden_pipeline_gaps_read_total": ("Offset ranges read directly (gap reader).",
                                               pipeline.ledger.gaps),
        "keywarden_pipeline_stalled_partitions_read_total": (
            "Assigned partitions the consumer delivered nothing of, read directly to their end.",
            pipeline.ledger.tails_read),
    }


class PipelineWorker(faust.Worker):
    """faust's Worker plus what a supervisor needs to trust it: health endpoints, a watchdog
    that stops a worker whose fetcher or agent died (exit status 70, so it is restarted rather
    than left alive and idle), and a hard deadline after SIGTERM: faust's own stop waits on the
    broker (commits, flushes) and would otherwise hang while Kafka is unreachable."""

    def __init__(self, pipeline: Pipeline, settings: Settings, **kwargs: Any) -> None:
        super().__init__(pipeline.app, **kwargs)
        self.pipeline = pipeline
        self.settings = settings
        self.exit_code = 0
        self.health = worker_health(pipeline, settings)
        self.health_server = (
            HealthServer(self.health, lambda: worker_counters(pipeline),
                         settings.pipeline_health_host, settings.pipeline_health_port)
            if settings.pipeline_health_port else None
        )
        self._watchdog: asyncio.Future[None] | None = None
        self._deadline: threading.Timer | None = None

    async def on_first_start(self) -> None:
        await super().on_first_start()
        if self.health_server is not None:
            try:
                await self.health_server.start()
            except OSError as error:  # the worker consumes anyway; the probes will say so
                log.error("health endpoints not started on %s:%d: %s",
                          self.settings.pipeline_health_host,
                          self.settings.pipeline_health_port, error)
        self._watchdog = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self._signal_stop_time or self.should_stop:
                return  # stopping anyway: services going down are not a death
            try:
                report = self.health.check()
            except Exception:  # a bug in judging must not end the judging: say it, go on
                log.exception("the worker's health check failed")
                continue
            if report.fatal:
                log.critical("the worker stopped consuming (%s); stopping it so that its "
                             "supervisor starts a new one", "; ".join(report.problems))
                self.exit_code = EXIT_NOT_CONSUMING
                self._schedule_shutdown(signal.SIGTERM)
                return

    def _schedule_shutdown(self, signal: signal.Signals) -> None:
        self._arm_deadline()
        super()._schedule_shutdown(signal)

    def _arm_deadline(self) -> None:
        if self._deadline is not None:
            return
        timeout = self.settings.pipeline_shutdown_timeout_seconds

        def expire() -> None:
            log.critical("shutdown did not finish within %.0f s (is Kafka reachable?): exiting "
                         "now; uncommitted offsets are read again by the next worker", timeout)
            logging.shutdown()
            os._exit(self.exit_code or 1)

        # A thread, not a loop callback: the deadline must hold even if the loop is stuck.
        self._deadline = threading.Timer(timeout, expire)
        self._deadline.daemon = True
        self._deadline.start()

    async def on_stop(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self.health_server is not None:
            await self.health_server.stop()
        await super().on_stop()


# Every event allocates a few hundred short-lived objects (the validated model, Decimals,
# datetimes, rows, runs); with CPython's default first-generation threshold of 700 the cyclic
# collector ran every few events, and with the whole process's objects in the older generations
# its collections cost more than decoding and pricing themselves (docs/benchmarks.md, issue 16:
# decode 62 -> 19 us and pricing 40 -> 21 us per event in isolation). Reference counting frees
# the per-event objects either way; the collector only looks for cycles.
GC_FIRST_GENERATION_THRESHOLD = 50_000


def tune_garbage_collector() -> None:
    """Collect cycles less often, and never scan what start-up built (imports, the pricing
    catalog, the app): `gc.freeze()` moves it to a generation the collector skips."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_FIRST_GENERATION_THRESHOLD, older, oldest)


def pipeline_topics(pipeline: Pipeline) -> tuple[TopicSpec, ...]:
    """Every topic `pipeline`'s worker reads or writes: the project's, its runs topic and its
    state tables' changelogs.

    The changelogs are here, not left to faust, because faust creates them only as the tables
    start, after its consumer has subscribed to them. A consumer whose first metadata fetch
    came before the topic existed ("Topic ... not found in cluster metadata") keeps metadata
    without it until aiokafka's next refresh (up to 5 minutes), and the group leader's faust
    assignor skips it ("Ignoring missing topic"): the table's changelog partitions are assigned
    to nobody, so a worker taking over a killed worker's partitions never recovers that table
    (seen in the scale-out fault test: key-state left out of every assignment, under load)."""
    runs = spec_of(usage_minutes_topic(pipeline.app.conf.id), like=USAGE_MINUTES)
    changelogs = tuple(state_changelog_spec(table.changelog_topic.get_topic_name())
                       for table in pipeline.app.tables.values())
    return (*TOPICS, runs, *changelogs)


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Create missing topics, then run the pipeline until SIGINT/SIGTERM (or until it stops
    consuming: then it exits with status 70)."""
    # uvloop runs faust's per-message futures and callbacks 30-40% faster than asyncio's own
    # loop here (docs/benchmarks.md); mode's worker takes the loop from the policy.
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    pipeline = build_pipeline(settings)  # connects to nothing: the topics come first
    asyncio.run(ensure_topics(settings, pipeline_topics(pipeline)))
    tune_garbage_collector()
    worker = PipelineWorker(pipeline, settings, loglevel=loglevel, quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit:
        if worker.exit_code:
            raise SystemExit(worker.exit_code) from None
        raise
