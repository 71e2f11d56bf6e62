"""Pipeline throughput per worker, beside a plain consumer baseline measured in the same run.

Not a test. Starts a private Kafka broker and embedded warehouse (or uses --bootstrap and
--clickhouse-url), produces N synthetic request events, then measures:
  * pipeline: one `keywarden pipeline run` worker: decode, price, store, per-key state, rules,
    spend publication, rollups (from the first row stored to the last);
  * baseline: one plain aiokafka consumer that only decodes each record and inserts the same
    rows (unpriced) into request_events of another database, in batches of the same size.
Prints events/s of both and their ratio, and writes JSON to bench-results/.

    .venv/bin/python bench/pipeline_throughput.py --events 20000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from keywarden.clickhouse import get_client  # noqa: E402
from keywarden.kafka import ensure_topics, make_consumer  # noqa: E402
from keywarden.settings import load_settings  # noqa: E402
from keywarden.synthetic import produce, synthetic_traffic  # noqa: E402
from pipelines.ingest.decode import decode  # noqa: E402
from pipelines.pricing import PricedRequest  # noqa: E402
from pipelines.sinks.clickhouse import REQUEST_COLUMNS, now_version, request_row  # noqa: E402
from schemas import topics  # noqa: E402
from schemas.clickhouse.migrations import migrate  # noqa: E402
from schemas.pricing import Priced, PricingStatus  # noqa: E402

BATCH = 5000


def new_database(base_url: str, name: str) -> str:
    url = f"{base_url.rsplit('/', 1)[0]}/{name}"
    client = get_client(url, create_database=True)
    try:
        migrate(client)
    finally:
        client.close()
    return url


def count(url: str) -> int:
    client = get_client(url)
    try:
        return int(client.command("SELECT count() FROM request_events"))
    finally:
        client.close()


def measure_pipeline(bootstrap: str, url: str, total: int, home: Path) -> dict[str, float]:
    env = {**os.environ, "KEYWARDEN_HOME": str(home), "KEYWARDEN_KAFKA_BOOTSTRAP": bootstrap,
           "KEYWARDEN_CLICKHOUSE_URL": url,
           "KEYWARDEN_PIPELINE_APP_ID": f"kw-bench-{uuid.uuid4().hex[:8]}",
           "KEYWARDEN_SINK_MAX_BATCH_ROWS": str(BATCH)}
    log = open(home / "pipeline.log", "wb")  # noqa: SIM115 - the child owns it
    worker = subprocess.Popen(
        [sys.executable, "-m", "keywarden.cli", "pipeline", "run", "--loglevel", "warning"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        first_at = None
        seen = 0
        deadline = time.monotonic() + 600
        while seen < total and time.monotonic() < deadline:
            seen = count(url)
            if seen and first_at is None:
                first_at, first_rows = time.monotonic(), seen
            time.sleep(0.05)
        done_at = time.monotonic()
    finally:
        worker.terminate()
        worker.wait(30)
        log.close()
    if first_at is None or seen < total:
        raise SystemExit(f"pipeline stored {seen} of {total}; see {home / 'pipeline.log'}")
    rows = total - first_rows  # the first batch's rows landed at first_at
    elapsed = done_at - first_at
    return {"events": total, "seconds": elapsed, "events_per_s": rows / elapsed}


async def measure_baseline(bootstrap: str, url: str, total: int) -> dict[str, float]:
    settings = load_settings(kafka_bootstrap=bootstrap)
    consumer = make_consumer(topics.REQUESTS, group_id=f"bench-{uuid.uuid4().hex[:8]}",
                             settings=settings, max_poll_records=BATCH)
    client = get_client(url)
    unpriced = Priced(status=PricingStatus.UNKNOWN_MODEL, cost_usd=None, catalog_version="none")
    await consumer.start()
    done = 0
    first_at = None
    first_rows = 0
    try:
        while done < total:
            batch = await consumer.getmany(timeout_ms=500, max_records=BATCH)
            records = [record for records in batch.values() for record in records]
            if not records:
                continue
            now, version = datetime.now(UTC), now_version()
            rows = [request_row(PricedRequest(decode(r.value), unpriced), now, version)
                    for r in records]
            await asyncio.to_thread(client.insert, "request_events", rows,
                                    column_names=list(REQUEST_COLUMNS))
            await consumer.commit()
            done += len(rows)
            if first_at is None:
                first_at, first_rows = time.monotonic(), done
    finally:
        await consumer.stop()
        client.close()
    assert first_at is not None
    elapsed = time.monotonic() - first_at
    return {"events": total, "seconds": elapsed, "events_per_s": (total - first_rows) / elapsed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--bootstrap", help="use this Kafka instead of a private broker")
    parser.add_argument("--clickhouse-url", help="use this ClickHouse instead of a private one")
    args = parser.parse_args()

    from tests.support.kafka import free_ports, start_test_broker

    scratch = Path(tempfile.mkdtemp(prefix="kw-bench-"))
    broker = warehouse = None
    try:
        if args.bootstrap:
            bootstrap = args.bootstrap
        else:
            broker = start_test_broker(scratch / "kafka")
            bootstrap = broker.bootstrap
        if args.clickhouse_url:
            base_url = args.clickhouse_url
        else:
            from deploy.local.warehouse import spawn_warehouse

            port = free_ports(1)[0]
            (scratch / "warehouse").mkdir()
            warehouse = spawn_warehouse(scratch / "warehouse", port)
            base_url = f"http://default:@127.0.0.1:{port}/keywarden"
        settings = load_settings(kafka_bootstrap=bootstrap)
        asyncio.run(ensure_topics(settings))
        events = synthetic_traffic(args.events, seed=42)
        print(f"producing {len(events)} events …", flush=True)
        asyncio.run(produce(events, settings))
        suffix = uuid.uuid4().hex[:6]
        pipeline_url = new_database(base_url, f"bench_pipeline_{suffix}")
        baseline_url = new_database(base_url, f"bench_baseline_{suffix}")
        (scratch / "home").mkdir()
        pipeline = measure_pipeline(bootstrap, pipeline_url, len(events), scratch / "home")
        baseline = asyncio.run(measure_baseline(bootstrap, baseline_url, len(events)))
    finally:
        if warehouse is not None:
            from deploy.local.warehouse import stop_warehouse

            stop_warehouse(warehouse)
        if broker is not None:
            from deploy.local.kafka import run_blocking

            run_blocking(broker.stop())

    ratio = pipeline["events_per_s"] / baseline["events_per_s"]
    result = {
        "benchmark": "pipeline_throughput", "at": datetime.now(UTC).isoformat(),
        "events": len(events), "batch_rows": BATCH, "pipeline": pipeline, "baseline": baseline,
        "ratio_pipeline_to_baseline": ratio,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform()},
    }
    print(f"pipeline (decode+price+store+state+rules+spend+rollups): "
          f"{pipeline['events_per_s']:,.0f} events/s per worker")
    print(f"baseline (aiokafka decode+insert):                      "
          f"{baseline['events_per_s']:,.0f} events/s")
    print(f"ratio pipeline/baseline: {ratio:.2f}")
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    path = out / f"pipeline_throughput-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
