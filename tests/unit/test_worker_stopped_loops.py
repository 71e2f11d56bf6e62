"""The worker's own loops outside faust (pipelines/worker.py `worker_health`): when the ingest
stage or the analytics read-ahead has stopped, the worker's health check calls it fatal, so its
watchdog exits for the supervisor to start a new worker, instead of a worker that looks alive and
no longer consumes."""

from __future__ import annotations

import uuid

import pytest

from keywarden.settings import load_settings
from pipelines.worker import build_pipeline, worker_health


@pytest.mark.parametrize("loop", ["ingest stage", "analytics read-ahead"])
def test_a_stopped_loop_of_the_worker_is_fatal(tmp_path, loop: str) -> None:
    settings = load_settings(kafka_bootstrap="127.0.0.1:1", home=tmp_path,
                             pipeline_store="memory://")
    pipeline = build_pipeline(settings, app_id=f"kw-loops-{uuid.uuid4().hex[:8]}")
    health = worker_health(pipeline, settings)
    assert not health.check().fatal

    stopped = pipeline.stage if loop == "ingest stage" else pipeline.read_ahead
    stopped.crashed = RuntimeError("the broker went away")

    report = health.check()
    assert report.fatal
    assert f"loop {loop} died: RuntimeError: the broker went away" in report.problems
