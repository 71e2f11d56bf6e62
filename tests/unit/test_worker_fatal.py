"""What the worker's health check calls fatal (pipelines/worker.py `worker_health`), so that its
watchdog exits for the supervisor to start a new worker instead of a worker that looks alive and
no longer consumes: a stopped loop of its own outside faust (the ingest stage, the analytics
read-ahead), and a restore of its tables from their changelogs that reads nothing for
`pipeline_stall_seconds`."""

from __future__ import annotations

import uuid

import pytest
from faust.types import TP

from keywarden.settings import load_settings
from pipelines.health import WorkerHealth
from pipelines.worker import Pipeline, build_pipeline, worker_health

STALL_SECONDS = 30.0


@pytest.fixture
def worker(tmp_path) -> tuple[Pipeline, WorkerHealth]:
    settings = load_settings(kafka_bootstrap="127.0.0.1:1", home=tmp_path,
                             pipeline_store="memory://", pipeline_stall_seconds=STALL_SECONDS)
    pipeline = build_pipeline(settings, app_id=f"kw-fatal-{uuid.uuid4().hex[:8]}")
    return pipeline, worker_health(pipeline, settings)


@pytest.mark.parametrize("loop", ["ingest stage", "analytics read-ahead"])
def test_a_stopped_loop_of_the_worker_is_fatal(worker: tuple[Pipeline, WorkerHealth],
                                               loop: str) -> None:
    pipeline, health = worker
    assert not health.check().fatal

    stopped = pipeline.stage if loop == "ingest stage" else pipeline.read_ahead
    stopped.crashed = RuntimeError("the broker went away")

    report = health.check()
    assert report.fatal
    assert f"loop {loop} died: RuntimeError: the broker went away" in report.problems


def test_a_table_restore_that_reads_nothing_for_the_stall_limit_is_fatal(
    worker: tuple[Pipeline, WorkerHealth],
) -> None:
    pipeline, health = worker
    now = [1000.0]
    health.clock = lambda: now[0]
    restore = pipeline.app.tables.recovery
    changelog = TP("kw-fatal-changelog", 3)
    restore.active_highwaters[changelog] = 120
    restore.active_offsets[changelog] = 20
    restore._set_recovery_started()  # what faust's recovery does once it seeks the changelogs

    assert not health.check().problems
    now[0] += STALL_SECONDS - 1
    assert not health.check().problems  # a slow restore is not a stalled one
    restore.active_offsets[changelog] = 70  # it read 50 records
    now[0] += 2
    assert not health.check().problems
    now[0] += STALL_SECONDS
    report = health.check()
    assert report.fatal and not report.live
    assert report.problems == [
        f"state recovery stalled: 50 changelog records to read, none read for "
        f"{STALL_SECONDS:.0f} s"]

    restore._set_recovery_ended()
    assert not health.check().problems
