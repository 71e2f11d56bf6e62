"""Liveness of a worker judged from faust's own services (pipelines/health.py)."""

from __future__ import annotations

import faust

from pipelines.health import WorkerHealth


def idle_app() -> faust.App:
    return faust.App("kw-health-unit", broker="kafka://127.0.0.1:9", web_enabled=False,
                     autodiscover=False, store="memory://")


async def test_a_crashed_fetcher_fails_liveness_and_is_fatal() -> None:
    app = idle_app()
    health = WorkerHealth(app=app, lag=dict, progress=lambda: 0, stall_seconds=60)
    assert health.check().live
    # What issue 17 saw: faust's fetcher died of UnsupportedCodecError, the process lived on.
    await app._fetcher.crash(RuntimeError("Libraries for lz4 compression codec not found"))
    report = health.check()
    assert not report.live and not report.ready
    assert report.fatal  # the worker's watchdog stops the process (exit status 70)
    assert any(problem.startswith("fetcher crashed") and "lz4" in problem
               for problem in report.problems)


async def test_an_unstarted_worker_is_alive_but_not_ready() -> None:
    health = WorkerHealth(app=idle_app(), lag=dict, progress=lambda: 0, stall_seconds=60)
    report = health.check()
    assert report.live and not report.ready and not report.fatal

