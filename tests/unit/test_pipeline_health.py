"""Liveness of a worker judged from faust's own services (pipelines/health.py)."""

from __future__ import annotations

import asyncio

import faust

from pipelines.health import WorkerHealth
from pipelines.watchdog import oldest_step, slow_step


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


async def test_an_agent_whose_actor_stays_dead_fails_liveness_and_is_fatal() -> None:
    app = idle_app()

    @app.agent(app.topic("kw-health-unit-runs"))
    async def analytics(stream):  # type: ignore[no-untyped-def]
        raise RuntimeError("state store corrupt")
        yield  # an agent is an async generator

    now = [1000.0]
    health = WorkerHealth(app=app, lag=dict, progress=lambda: 0, stall_seconds=60,
                          clock=lambda: now[0])
    app._started.set()  # what mode sets once the worker's services run
    analytics.supervisor = analytics._new_supervisor()  # not started: it restarts nobody
    actor = await analytics._start_task(index=None)
    await asyncio.wait_for(asyncio.shield(actor.actor_task), 5)
    assert actor.crashed
    assert health.check().live  # faust's supervisor may still restart it
    now[0] += health.dead_after
    report = health.check()
    assert not report.live and not report.ready and report.fatal
    assert any(problem.startswith(f"agent {analytics.name} died") and "state store corrupt"
               in problem for problem in report.problems)


async def test_a_stopped_ingest_stage_fails_liveness_at_once_and_is_fatal() -> None:
    stopped: dict[str, str] = {}
    health = WorkerHealth(app=idle_app(), lag=dict, progress=lambda: 0, stall_seconds=60,
                          stopped_loops=lambda: stopped)
    assert health.check().live
    stopped["ingest stage"] = "KafkaUnavailable: the broker went away"
    report = health.check()
    assert not report.live and not report.ready and report.fatal  # the watchdog exits (70)
    assert report.problems == [
        "loop ingest stage died: KafkaUnavailable: the broker went away"]


async def test_an_unstarted_worker_is_alive_but_not_ready() -> None:
    health = WorkerHealth(app=idle_app(), lag=dict, progress=lambda: 0, stall_seconds=60)
    report = health.check()
    assert report.live and not report.ready and not report.fatal



async def test_a_batch_step_running_past_the_stall_limit_fails_liveness_whatever_the_lag() -> None:
    # What a full suite once saw: a partition with records but no commit yet (lag unknown),
    # its batch stuck in the dead-letter step while ClickHouse was unreachable.
    now = [1000.0]
    steps: list[tuple[str, float]] = []
    health = WorkerHealth(app=idle_app(), lag=lambda: {"p0": None}, progress=lambda: 7,
                          stall_seconds=3, clock=lambda: now[0],
                          stuck_step=lambda at: steps[0] if steps else None)
    assert health.check().live
    steps.append(("dead-letter", 2.0))
    assert health.check().live  # under the limit: a slow step, not a stall
    steps[0] = ("dead-letter", 3.5)
    report = health.check()
    assert not report.live and not report.fatal
    assert report.problems == ["lag stalled: batch step 'dead-letter' running for 4 s"]
    steps.clear()
    assert health.check().live


async def test_slow_step_reports_the_oldest_running_step_until_it_ends() -> None:
    assert oldest_step() is None
    async with slow_step("store request rows"):
        async with slow_step("dead-letter"):
            name, age = oldest_step()  # type: ignore[misc]
            assert name == "store request rows" and age >= 0
        assert oldest_step()[0] == "store request rows"  # type: ignore[index]
    assert oldest_step() is None
