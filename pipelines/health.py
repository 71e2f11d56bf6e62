"""Is the pipeline worker consuming? Liveness, readiness and counters over HTTP.

A worker whose fetcher or ingest agent died, or whose lag stopped moving, can look alive to a
supervisor that only checks the process (issue 17). `WorkerHealth.check()` judges from faust's
own services and the offset ledger; `HealthServer` answers `/healthz` (liveness), `/readyz`
(readiness) and `/metrics` (Prometheus text) on `KEYWARDEN_PIPELINE_HEALTH_PORT`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from faust.exceptions import ConsumerNotStarted

from pipelines.watchdog import oldest_step

log = logging.getLogger(__name__)

Counter = tuple[str, float]  # help text, value

# Faust restarts its fetcher on every rebalance and an agent's actor after a crash: a service
# that is not running for this long, outside a rebalance, is dead rather than restarting.
DEAD_AFTER_SECONDS = 10.0


@dataclass(frozen=True)
class HealthReport:
    live: bool
    ready: bool
    problems: list[str]

    def as_json(self) -> dict[str, Any]:
        return {"live": self.live, "ready": self.ready, "problems": self.problems}

    @property
    def fatal(self) -> bool:
        """A dead fetcher, agent or loop, or a stalled state recovery: the process cannot
        recover by itself."""
        return any(p.startswith(("fetcher", "agent", "loop", "app", "state recovery"))
                   for p in self.problems)


def not_recovering() -> tuple[int, int] | None:
    return None


@dataclass
class WorkerHealth:
    """Judges one worker from its app's services, its lag and its progress.

    `lag()` gives, per assigned source partition, the records not stored yet (None: unknown);
    `progress()` any number that grows whenever records are stored or dead-lettered;
    `stuck_step()` the batch step running longest and for how long (pipelines/watchdog.py);
    `stopped_loops()` the worker's own consuming loops outside faust (the ingest stage, the
    analytics read-ahead) that have died: name -> reason. Nobody restarts them, so one is dead
    as soon as it stops;
    `recovery()`, while the worker restores its tables from their changelogs, the changelog
    records still to read and a number that grows as they are read (None when not restoring).
    A restore that reads nothing for `stall_seconds` is fatal: the worker takes no part in the
    analytics until it ends, and faust only logs the wait (seen once in the scale-out fault
    test, docs/benchmarks.md), so a new process, which starts the restore anew, is the way on."""

    app: Any
    lag: Callable[[], Mapping[Any, int | None]]
    progress: Callable[[], int]
    stall_seconds: float
    dead_after: float = DEAD_AFTER_SECONDS
    clock: Callable[[], float] = time.monotonic
    stuck_step: Callable[[float], tuple[str, float] | None] = oldest_step
    stopped_loops: Callable[[], Mapping[str, str]] = dict
    recovery: Callable[[], tuple[int, int] | None] = not_recovering
    _last_progress: int | None = None
    _recovery_read: tuple[int, float] | None = None  # (records read, since when)
    _progress_at: float = 0.0
    _down_since: dict[str, float] = field(default_factory=dict)

    def _down_for(self, name: str, down: bool, now: float) -> float:
        """How long `name` has been down without a break (0 when it is up)."""
        if not down:
            self._down_since.pop(name, None)
            return 0.0
        return now - self._down_since.setdefault(name, now)

    def check(self) -> HealthReport:
        now = self.clock()
        problems: list[str] = []
        app = self.app
        started = bool(getattr(app, "_started", None) and app._started.is_set())
        if app.crashed:
            problems.append(f"app crashed: {app.crash_reason!r}")
        assigned = started and not app.rebalancing and _consumer_assigned(app)

        fetcher = app._fetcher  # noqa: SLF001 - faust keeps its fetcher service there
        if fetcher.crashed:
            problems.append(f"fetcher crashed: {fetcher.crash_reason!r}")
        elif self._down_for("fetcher", assigned and fetcher.state != "running", now) \
                >= self.dead_after:
            problems.append(f"fetcher not running ({fetcher.state}) while partitions are assigned")

        for agent in app.agents.values():
            actors = list(getattr(agent, "_actors", ()))
            dead = [a for a in actors if a.crashed or (a.actor_task and a.actor_task.done())]
            if self._down_for(f"agent {agent.name}", started and bool(dead), now) \
                    >= self.dead_after:
                reason = next((a.crash_reason for a in dead if a.crash_reason), None)
                problems.append(f"agent {agent.name} died: {reason!r}")
        problems += [f"loop {name} died: {reason}" for name, reason in self.stopped_loops().items()]

        lags = self.lag() if assigned else {}
        behind = sum(n for n in lags.values() if n)
        progress = self.progress()
        if progress != self._last_progress or not behind:
            self._last_progress, self._progress_at = progress, now
        elif now - self._progress_at >= self.stall_seconds:
            problems.append(f"lag stalled: {behind} records behind, nothing stored for "
                            f"{now - self._progress_at:.0f} s")
        problems += self._recovery_stalled(now)
        stuck = self.stuck_step(now)
        if stuck is not None and stuck[1] >= self.stall_seconds and not any(
                p.startswith("lag stalled") for p in problems):
            # behind by a batch whatever the measured lag says (None before a first commit,
            # or a highwater the consumer has not refreshed while it waits for this step)
            problems.append(f"lag stalled: batch step {stuck[0]!r} running for "
                            f"{stuck[1]:.0f} s")

        live = not problems
        return HealthReport(live=live, ready=live and assigned, problems=problems)

    def _recovery_stalled(self, now: float) -> list[str]:
        recovering = self.recovery()
        if recovering is None or not recovering[0]:
            self._recovery_read = None
            return []
        remaining, read = recovering
        if self._recovery_read is None or self._recovery_read[0] != read:
            self._recovery_read = (read, now)
        waited = now - self._recovery_read[1]
        if waited < self.stall_seconds:
            return []
        return [f"state recovery stalled: {remaining} changelog records to read, none read for "
                f"{waited:.0f} s"]


def _consumer_assigned(app: Any) -> bool:
    try:
        app.consumer.assignment()
    except ConsumerNotStarted:  # before faust's consumer thread runs
        return False
    return True


def ledger_lag(app: Any, topic: str, position: Callable[[Any], int | None]) -> Callable[[], dict]:
    """Per assigned partition of `topic`: highwater minus the ledger's stored position."""

    def lag() -> dict[Any, int | None]:
        result: dict[Any, int | None] = {}
        for tp in app.consumer.assignment():
            if tp.topic != topic:
                continue
            stored, end = position(tp), app.consumer.highwater(tp)
            result[tp] = None if stored is None or end is None else max(end - stored, 0)
        return result

    return lag


def render_metrics(counters: Mapping[str, Counter],
                   lags: Iterable[tuple[Any, int | None]], report: HealthReport) -> str:
    """Prometheus text exposition of the worker's counters, lag and health."""
    lines = []
    for name, (help_text, value) in counters.items():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter", f"{name} {value:g}"]
    lines += ["# HELP keywarden_pipeline_lag_records Records not stored yet, per partition.",
              "# TYPE keywarden_pipeline_lag_records gauge"]
    for tp, lag in lags:
        if lag is not None:
            lines.append(f'keywarden_pipeline_lag_records{{topic="{tp.topic}",'
                         f'partition="{tp.partition}"}} {lag}')
    for name, flag in (("live", report.live), ("ready", report.ready)):
        lines += [f"# TYPE keywarden_pipeline_{name} gauge",
                  f"keywarden_pipeline_{name} {int(flag)}"]
    return "\n".join(lines) + "\n"


class HealthServer:
    """`/healthz`, `/readyz` and `/metrics` of one worker (aiohttp, its own small site)."""

    def __init__(self, health: WorkerHealth, counters: Callable[[], Mapping[str, Counter]],
                 host: str, port: int) -> None:
        self.health = health
        self.counters = counters
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        if self._runner is not None:
            return
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self.host, self.port).start()
        self._runner = runner
        log.info("health on http://%s:%d/healthz, /readyz, /metrics", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _healthz(self, _request: web.Request) -> web.Response:
        report = self.health.check()
        return web.json_response(report.as_json(), status=200 if report.live else 503)

    async def _readyz(self, _request: web.Request) -> web.Response:
        report = self.health.check()
        return web.json_response(report.as_json(), status=200 if report.ready else 503)

    async def _metrics(self, _request: web.Request) -> web.Response:
        report = self.health.check()
        lags = self.health.lag() if report.ready else {}
        return web.Response(text=render_metrics(self.counters(), lags.items(), report),
                            content_type="text/plain")
