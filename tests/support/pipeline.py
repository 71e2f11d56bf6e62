"""pytest plugin: a pipeline worker as a real child process (`keywarden pipeline run`).

Fixture: `run_pipeline` (a factory that starts a worker against the session broker and a
database, such as `warehouse_db`, and stops or kills it at the end).

Every test shares the session broker's `llm.requests.v1`. A worker under a new app id starts
where that topic ended when the test began (its ingest group's offsets are committed there
before it starts), so it reads what its own test produced, not every earlier test's records:
without that, each worker worked through the whole suite's backlog first, and how long that took
depended on which tests had run before.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiokafka import TopicPartition

from keywarden.kafka import make_consumer
from keywarden.settings import PROJECT_ROOT, load_settings
from schemas.topics import REQUESTS
from tests.support.kafka import topic_ends

Offsets = dict[TopicPartition, int]


def source_ends(bootstrap: str, topic: str = REQUESTS) -> Offsets:
    """The end offset of each partition of `topic` now (empty when it does not exist yet)."""
    return asyncio.run(topic_ends(load_settings(kafka_bootstrap=bootstrap), topic))


def start_group_at(bootstrap: str, group_id: str, offsets: Offsets) -> bool:
    """Commit `offsets` for `group_id` unless the group has committed any already (a worker
    restarted under the same app id goes on from its own commits); True when it committed."""

    async def commit() -> bool:
        settings = load_settings(kafka_bootstrap=bootstrap)
        consumer = make_consumer(group_id=group_id, settings=settings)
        await consumer.start()
        try:
            consumer.assign(list(offsets))
            committed = [await consumer.committed(tp) for tp in offsets]
            if any(offset is not None for offset in committed):
                return False
            await consumer.commit(offsets)
            return True
        finally:
            await consumer.stop()

    return bool(offsets) and asyncio.run(commit())


def _in_a_thread(function: Callable[..., object], *args: object) -> object:
    """Run blocking `function` off the test's event loop (asyncio.run cannot nest in it)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(function, *args).result()


@dataclass
class PipelineProcess:
    """One `keywarden pipeline run` child process."""

    env: dict[str, str]
    log_path: Path
    health_port: int = 0
    process: subprocess.Popen[bytes] | None = None
    starts: int = field(default=0)

    def start(self) -> None:
        self.starts += 1
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it until it exits
        loglevel = os.environ.get("KW_TEST_WORKER_LOGLEVEL", "warning")  # "info" to debug
        self.process = subprocess.Popen(
            [sys.executable, "-m", "keywarden.cli", "pipeline", "run", "--loglevel", loglevel],
            cwd=PROJECT_ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def kill(self) -> None:
        """SIGKILL: no flush, no commit, no goodbye."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def probe(self, path: str) -> tuple[int, str]:
        """GET the worker's health endpoint `path`: (status, body); (0, error) if unreachable."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}{path}",
                                        timeout=5) as reply:
                return reply.status, reply.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError as error:
            return 0, str(error)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@pytest.fixture
def run_pipeline(
    kafka_broker: object, tmp_path: Path
) -> Iterator[Callable[..., PipelineProcess]]:
    """Start pipeline workers; each gets its own consumer group unless `app_id` is shared.
    A worker starts at the source topic's end as of this test's start (module docstring);
    `from_beginning=True` reads the whole topic."""
    bootstrap: str = kafka_broker.bootstrap  # type: ignore[attr-defined]
    ends = _in_a_thread(source_ends, bootstrap)
    started: list[PipelineProcess] = []

    def start(clickhouse_url: str, app_id: str | None = None, *, from_beginning: bool = False,
              **extra: str) -> PipelineProcess:
        with socket.socket() as probe:  # each worker its own health port
            probe.bind(("127.0.0.1", 0))
            health_port = int(probe.getsockname()[1])
        home = tmp_path / f"home-{len(started)}"
        home.mkdir()
        env = {
            **os.environ,
            "KEYWARDEN_HOME": str(home),
            "KEYWARDEN_KAFKA_BOOTSTRAP": bootstrap,
            "KEYWARDEN_CLICKHOUSE_URL": clickhouse_url,
            "KEYWARDEN_PIPELINE_APP_ID": app_id or f"kw-test-{uuid.uuid4().hex[:8]}",
            "KEYWARDEN_SINK_MAX_BATCH_SECONDS": "0.2",
            "KEYWARDEN_PIPELINE_HEALTH_PORT": str(health_port),
            **extra,
        }
        if not from_beginning and env["KEYWARDEN_KAFKA_BOOTSTRAP"] == bootstrap:
            # the ingest stage's group (pipelines/worker.py: "<app id>.ingest")
            _in_a_thread(start_group_at, bootstrap, f"{env['KEYWARDEN_PIPELINE_APP_ID']}.ingest",
                         ends)
        worker = PipelineProcess(env=env, log_path=tmp_path / f"pipeline-{len(started)}.log",
                                 health_port=int(env["KEYWARDEN_PIPELINE_HEALTH_PORT"]))
        worker.start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
