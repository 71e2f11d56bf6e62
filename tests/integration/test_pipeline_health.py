"""A worker tells its supervisor whether it is consuming: /readyz once it has its partitions,
/healthz failing while it is behind and stores nothing (here: ClickHouse unreachable) and
passing again once it catches up; /metrics counts what it stored."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

from keywarden.kafka import ensure_topics
from keywarden.settings import load_settings
from keywarden.synthetic import produce
from schemas.events.request import Provider, Usage
from schemas.topics import REQUESTS
from tests.faults.support import distinct_ids, via_port
from tests.support.analytics import Key, unique, wait_for
from tests.support.kafka import committed_to_end
from tests.support.tcp_proxy import TcpProxy


async def test_liveness_fails_while_the_lag_stalls_and_passes_once_it_moves_again(
    kafka_broker, warehouse, run_pipeline
) -> None:
    settings = load_settings(kafka_bootstrap=kafka_broker.bootstrap)
    await ensure_topics(settings)
    key = Key(unique("health"), Provider.OPENAI, "gpt-4o-mini",
              Usage(input_tokens=100, output_tokens=10))
    start = datetime.now(UTC) - timedelta(minutes=10)
    first = [key.event(start + timedelta(seconds=i)) for i in range(5)]
    second = [key.event(start + timedelta(seconds=10 + i)) for i in range(5)]
    with TcpProxy("127.0.0.1", warehouse.port) as proxy:
        direct = warehouse.migrated_database()
        app_id = unique("kw-health")
        worker = run_pipeline(via_port(direct, proxy.port), app_id=app_id,
                              KEYWARDEN_PIPELINE_STALL_SECONDS="3")

        async def probe(path: str, status: int, text: str = "") -> bool:
            got, body = await asyncio.to_thread(worker.probe, path)
            return got == status and text in body

        await wait_for(lambda: probe("/readyz", 200), 60, "the worker to be ready")
        assert await produce(first, settings) == 5
        await wait_for(lambda: _stored(direct, key, 5), 60, "the first events stored")
        # the shared topic holds every earlier test's records: the cut comes once the worker
        # has worked through all of them, so that what stalls is this test's second batch
        await wait_for(lambda: committed_to_end(settings, f"{app_id}.ingest", REQUESTS),
                       120, "the worker to catch up with the source topic")
        assert await probe("/healthz", 200)

        proxy.close()
        assert await produce(second, settings) == 5
        await wait_for(lambda: probe("/healthz", 503, "lag stalled"), 60,
                       "liveness to fail while nothing can be stored")
        status, body = await asyncio.to_thread(worker.probe, "/readyz")
        assert status == 503 and not json.loads(body)["ready"]

        proxy.open()
        await wait_for(lambda: _stored(direct, key, 10), 90, "every event stored after")
        await wait_for(lambda: probe("/healthz", 200), 30, "liveness to pass again")
        status, metrics = await asyncio.to_thread(worker.probe, "/metrics")
        assert status == 200
        assert _counter(metrics, "keywarden_pipeline_records_stored_total") >= 10

        async def runs_analysed() -> str:
            found = (await asyncio.to_thread(worker.probe, "/metrics"))[1]
            return found if _counter(found, "keywarden_pipeline_runs_analysed_total") else ""

        # The analytics stage took the runs this worker wrote as written, not decoded again
        # (pipelines/ingest/written.py); a run it read before its transaction's commit returned
        # here, if any, was decoded.
        metrics = await wait_for(runs_analysed, 60, "the runs analysed")
        taken = _counter(metrics, "keywarden_pipeline_runs_taken_as_written_total")
        assert 0 < taken <= _counter(metrics, "keywarden_pipeline_runs_analysed_total")
        worker.stop()  # while ClickHouse is still reachable through the proxy: a clean exit


def _counter(metrics: str, name: str) -> float:
    return next(float(line.split()[-1]) for line in metrics.splitlines()
                if line.startswith(f"{name} "))


async def _stored(url: str, key: Key, count: int) -> bool:
    return (await distinct_ids(url, [key.wrapped_key_id]))[0] == count
