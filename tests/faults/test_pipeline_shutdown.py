"""SIGTERM stops a pipeline worker within its shutdown timeout even while Kafka is unreachable
(issue 17: a worker ignored SIGTERM until it was killed)."""

from __future__ import annotations

import asyncio
import signal
import subprocess

import pytest

from keywarden.kafka import ensure_topics
from keywarden.settings import load_settings
from tests.support.analytics import wait_for

pytestmark = pytest.mark.slow

SHUTDOWN_TIMEOUT_S = 8


async def test_sigterm_stops_the_worker_within_its_timeout_while_kafka_is_down(
    kafka_broker, warehouse_db, run_pipeline
) -> None:
    await ensure_topics(load_settings(kafka_bootstrap=kafka_broker.bootstrap))
    worker = run_pipeline(warehouse_db,
                          KEYWARDEN_PIPELINE_SHUTDOWN_TIMEOUT_SECONDS=str(SHUTDOWN_TIMEOUT_S))

    async def ready() -> bool:
        return (await asyncio.to_thread(worker.probe, "/readyz"))[0] == 200

    await wait_for(ready, 60, "the worker to have its partitions")
    assert worker.process is not None
    await kafka_broker.kafka.stop()
    try:
        worker.process.send_signal(signal.SIGTERM)
        try:  # the timeout plus the interpreter's own exit
            code = await asyncio.to_thread(worker.process.wait, SHUTDOWN_TIMEOUT_S + 10)
        except subprocess.TimeoutExpired:
            worker.kill()
            raise AssertionError(f"still running after SIGTERM:\n{worker.log()}") from None
        assert code in (0, 1), worker.log()  # 1: the deadline ended a shutdown stuck on Kafka
    finally:
        await kafka_broker.kafka.start()
