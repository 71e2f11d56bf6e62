"""Per-key state at scale for one `keywarden pipeline run` worker: resident memory per active key,
and how long a restarted worker takes to recover the state of 100,000 active keys.

Private Kafka and warehouse. Steps, each timed from the outside:
  1. worker A starts with empty state; one marker event is produced; the time from the start to
     its row in ClickHouse is the start-up of a worker with nothing to recover (the baseline);
     A's RSS then is the empty figure;
  2. one event for each of `--keys` distinct keys (each key: one key record and one hour
     bucket in the changelogs), produced and processed; once the group's committed offsets reach
     the end of the topic (committed only when the state is in the changelogs) A's RSS is read:
     (RSS - empty RSS) / keys is the memory per active key;
  3. A is stopped (SIGTERM) and worker B started in the same group with a fresh data directory
     (the `memory://` store recovers every key from the changelogs), a second marker produced:
     start to its row, minus the baseline of step 1, is the recovery time.

    .venv/bin/python -m bench.pipeline_recovery [--keys 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from bench.processes import Child, rss_mib, scratch_dir, spawn
from bench.results import machine_info, write_result
from bench.stack import new_database, private_kafka, private_warehouse
from keywarden.clickhouse import get_client
from keywarden.kafka import ensure_topics, make_admin, make_consumer
from keywarden.settings import Settings, load_settings
from keywarden.synthetic import DEFAULT_KEYS, SyntheticKey, produce, synthetic_event
from schemas import topics
from schemas.events.request import RequestEvent

KEYS = 100_000


def key_events(count: int, at: datetime, prefix: str) -> list[RequestEvent]:
    """One event for each of `count` distinct keys, all in the hour of `at`."""
    rng = random.Random(11)
    template = DEFAULT_KEYS[0]
    events = []
    for index in range(count):
        key = SyntheticKey(f"{prefix}_{index:06d}", f"{prefix}-{index}", template.team,
                           template.service, template.environment, template.cost_center,
                           template.provider, template.models)
        events.append(synthetic_event(key, at + timedelta(milliseconds=index % 1000), rng))
    return events


def rows(url: str) -> int:
    client = get_client(url)
    try:
        return int(client.command("SELECT count() FROM request_events"))
    finally:
        client.close()


def wait_rows(url: str, total: int, worker: Child, timeout: float) -> float:
    """Seconds until `request_events` holds `total` rows (polled every 50 ms)."""
    started = time.monotonic()
    while rows(url) < total:
        if worker.process.poll() is not None:
            raise RuntimeError(f"worker exited: {worker.tail()}")
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{rows(url)} of {total} rows after {timeout}s: {worker.tail()}")
        time.sleep(0.05)
    return time.monotonic() - started


async def committed_to_end(settings: Settings, group_id: str) -> bool:
    """Whether the group committed every partition of the request topic to its end."""
    consumer = make_consumer(group_id=None, settings=settings)
    await consumer.start()
    admin = make_admin(settings)
    await admin.start()
    try:
        partitions = consumer.partitions_for_topic(topics.REQUESTS) or set()
        tps = [TopicPartition(topics.REQUESTS, p) for p in sorted(partitions)]
        ends = await consumer.end_offsets(tps)
        found = await admin.list_consumer_group_offsets(group_id, partitions=tps)
    finally:
        await admin.close()
        await consumer.stop()
    return all(found.get(tp) is not None and found[tp].offset >= ends[tp] for tp in tps)


def start_worker(name: str, scratch: Path, env: dict[str, str]) -> tuple[Child, float]:
    home = scratch / name
    home.mkdir()
    argv = [sys.executable, "-m", "keywarden.cli", "pipeline", "run", "--loglevel", "warning"]
    return spawn(name, argv, scratch, {**env, "KEYWARDEN_HOME": str(home)}), time.monotonic()


def run(keys: int, scratch: Path) -> dict[str, Any]:
    with private_kafka(scratch / "kafka") as broker, \
            private_warehouse(scratch / "warehouse") as base_url:
        settings = load_settings(kafka_bootstrap=broker.bootstrap)
        asyncio.run(ensure_topics(settings))
        url = new_database(base_url, "bench_recovery")
        app_id = f"kw-bench-recovery-{uuid.uuid4().hex[:8]}"
        env = {"KEYWARDEN_KAFKA_BOOTSTRAP": broker.bootstrap, "KEYWARDEN_CLICKHOUSE_URL": url,
               "KEYWARDEN_PIPELINE_APP_ID": app_id, "KEYWARDEN_SINK_MAX_BATCH_ROWS": "5000"}
        now = datetime.now(UTC).replace(minute=30, second=0, microsecond=0) - timedelta(hours=1)

        # 1. empty start-up
        worker, started = start_worker("worker-a", scratch, env)
        try:
            asyncio.run(produce(key_events(1, now, "marker_a"), settings))
            wait_rows(url, 1, worker, 300)
            empty_start = time.monotonic() - started
            rss_empty = rss_mib(worker.pid)
            # 2. the active keys
            events = key_events(keys, now, "active")
            asyncio.run(produce(events, settings))
            load_seconds = wait_rows(url, keys + 1, worker, 1800)
            deadline = time.monotonic() + 300
            while not asyncio.run(committed_to_end(settings, app_id)):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"offsets not committed to the end: {worker.tail()}")
                time.sleep(0.5)
            rss_full = rss_mib(worker.pid)
        finally:
            worker.stop(60)
        # 3. recovery by a fresh worker in the same group
        worker, started = start_worker("worker-b", scratch, env)
        try:
            asyncio.run(produce(key_events(1, now, "marker_b"), settings))
            wait_rows(url, keys + 2, worker, 900)
            recovered_start = time.monotonic() - started
            rss_recovered = rss_mib(worker.pid)
        finally:
            worker.stop(60)
    return {
        "keys": keys, "changelog_records": 2 * keys,
        "empty_start_seconds": round(empty_start, 2),
        "recovered_start_seconds": round(recovered_start, 2),
        "recovery_seconds": round(recovered_start - empty_start, 2),
        "load_seconds": round(load_seconds, 1),
        "rss_empty_mib": round(rss_empty, 1), "rss_full_mib": round(rss_full, 1),
        "rss_recovered_mib": round(rss_recovered, 1),
        "bytes_per_key": round((rss_full - rss_empty) * 1024 * 1024 / keys),
        "bytes_per_key_recovered": round((rss_recovered - rss_empty) * 1024 * 1024 / keys),
        "store": os.environ.get("KEYWARDEN_PIPELINE_STORE", "memory://"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=KEYS)
    args = parser.parse_args()
    with scratch_dir("kw-bench-recovery-") as scratch:
        result = run(args.keys, scratch)
    result.update(benchmark="pipeline_recovery", at=datetime.now(UTC).isoformat(),
                  load_average=os.getloadavg(), machine=machine_info())
    path = write_result("pipeline_recovery", result, f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
    print(f"{args.keys:,} active keys: {result['bytes_per_key']:,} bytes per key of worker RSS "
          f"({result['rss_empty_mib']} -> {result['rss_full_mib']} MiB); restart with recovery "
          f"{result['recovered_start_seconds']} s vs empty {result['empty_start_seconds']} s "
          f"(recovery {result['recovery_seconds']} s); load average {os.getloadavg()[0]:.2f}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
