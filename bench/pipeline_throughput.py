"""Pipeline throughput per worker, beside a plain consumer baseline measured in the same run.

Not a test. Starts a private Kafka broker and embedded warehouse (or uses --bootstrap and
--clickhouse-url), produces N synthetic request events, then measures:
  * pipeline: one `keywarden pipeline run` worker: decode, price, store, per-key state, rules,
    spend publication, rollups (from the first row stored until the last event is stored AND
    counted by the analytics stage, read from the worker's /metrics);
  * baseline: one plain aiokafka consumer that only decodes each record and inserts the same
    rows (unpriced) into request_events of another database, in batches of the same size.
Prints events/s of both and their ratio, and writes JSON to bench-results/.

    .venv/bin/python bench/pipeline_throughput.py --events 20000
    .venv/bin/python bench/pipeline_throughput.py --events 150000 --span-days 0.0416 --keys 1
    (the last: one busy key, 150,000 events in one hour)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from bench.processes import cpu_seconds, scratch_dir  # noqa: E402
from bench.stack import new_database  # noqa: E402
from keywarden.clickhouse import get_client  # noqa: E402
from keywarden.kafka import ensure_topics, make_consumer  # noqa: E402
from keywarden.settings import load_settings  # noqa: E402
from keywarden.synthetic import DEFAULT_KEYS, produce, synthetic_traffic  # noqa: E402
from pipelines.sinks.clickhouse import REQUEST_COLUMNS, now_version  # noqa: E402
from schemas import topics  # noqa: E402

BATCH = 5000


def count(url: str) -> int:
    client = get_client(url)
    try:
        return int(client.command("SELECT count() FROM request_events"))
    finally:
        client.close()


def analysed(health_port: int) -> int:
    """Events the worker's analytics stage has counted through its runs (its /metrics)."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("keywarden_pipeline_events_analysed_total "):
            return int(float(line.split()[-1]))
    return 0


def measure_pipeline(bootstrap: str, url: str, total: int, home: Path,
                     profile: Path | None = None) -> dict[str, float]:
    from tests.support.kafka import free_ports

    health_port = free_ports(1)[0]
    env = {**os.environ, "KEYWARDEN_PIPELINE_HEALTH_PORT": str(health_port),
           "KEYWARDEN_HOME": str(home), "KEYWARDEN_KAFKA_BOOTSTRAP": bootstrap,
           "KEYWARDEN_CLICKHOUSE_URL": url,
           "KEYWARDEN_PIPELINE_APP_ID": f"kw-bench-{uuid.uuid4().hex[:8]}",
           "KEYWARDEN_SINK_MAX_BATCH_ROWS": str(BATCH)}
    log = open(home / "pipeline.log", "wb")  # noqa: SIM115 - the child owns it
    worker = subprocess.Popen(
        [sys.executable, "-m", "keywarden.cli", "pipeline", "run", "--loglevel", "warning"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    spy = None
    if profile is not None:  # py-spy samples the worker (not a dependency: pip install py-spy)
        spy = subprocess.Popen(
            [str(Path(sys.executable).with_name("py-spy")), "record", "--nonblocking", "--format",
             "raw", "--rate", "100", "--pid", str(worker.pid), "-o", str(profile)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started_at = time.monotonic()
    try:
        first_at = None
        seen = 0
        deadline = time.monotonic() + 600
        while seen < total and time.monotonic() < deadline:
            seen = count(url)
            if seen and first_at is None:
                first_at, first_rows = time.monotonic(), seen
                first_cpu = cpu_seconds(worker.pid)
            time.sleep(0.05)
        done_at = time.monotonic()
        # The worker has stored and analysed the events once its analytics stage counted them
        # all (per-key state, rules, spend): the figure that counts.
        counted = 0
        while counted < total and time.monotonic() < deadline:
            counted = analysed(health_port)
            time.sleep(0.05)
        analysed_at = time.monotonic()
        worker_cpu = cpu_seconds(worker.pid) - first_cpu if first_at is not None else 0.0
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        worker.terminate()
        worker.wait(30)
        log.close()
    if first_at is None or seen < total or counted < total:
        raise SystemExit(f"pipeline stored {seen} and analysed {counted} of {total}; "
                         f"see {home / 'pipeline.log'}")
    rows = total - first_rows  # the first batch's rows landed at first_at
    elapsed = analysed_at - first_at
    return {"events": total, "seconds": elapsed, "events_per_s": rows / elapsed,
            "rows_seconds": done_at - first_at, "rows_per_s": rows / (done_at - first_at),
            "seconds_from_start": analysed_at - started_at,
            "cpu_us_per_event": worker_cpu / rows * 1e6}


async def measure_baseline(bootstrap: str, url: str, total: int) -> dict[str, float]:
    """A bare consumer tuned as a careful engineer would write one: large fetches, `getmany`
    batches of BATCH records, orjson, one column-oriented insert per batch with the table's
    types asked once, and the insert of
    one batch overlapping the fetch and decode of the next (at most one in flight; the offsets of
    a batch are committed once its insert returned)."""
    settings = load_settings(kafka_bootstrap=bootstrap)
    consumer = make_consumer(topics.REQUESTS, group_id=f"bench-{uuid.uuid4().hex[:8]}",
                             settings=settings, max_poll_records=BATCH,
                             fetch_max_bytes=64 * 1024 * 1024,
                             max_partition_fetch_bytes=16 * 1024 * 1024)
    client = get_client(url)
    await consumer.start()
    done = 0
    first_at = None
    first_rows = 0
    first_cpu = 0.0
    in_flight: asyncio.Task[Any] | None = None
    in_flight_rows = 0
    columns = list(REQUEST_COLUMNS)
    # the table's types asked once, as the worker's sink does (no DESCRIBE per insert)
    types = client.create_insert_context("request_events", columns,
                                         column_oriented=True).column_types

    async def settle() -> None:
        nonlocal done, first_at, first_rows, first_cpu, in_flight
        if in_flight is None:
            return
        await in_flight
        in_flight = None
        await consumer.commit()
        done += in_flight_rows
        if first_at is None:
            first_at, first_rows, first_cpu = time.monotonic(), done, time.process_time()

    try:
        while done + in_flight_rows < total:
            batch = await consumer.getmany(timeout_ms=500, max_records=BATCH)
            records = [record for records in batch.values() for record in records]
            if not records:
                continue
            data = bare_columns([orjson.loads(r.value) for r in records])
            await settle()
            in_flight_rows = len(records)
            in_flight = asyncio.create_task(asyncio.to_thread(
                client.insert, "request_events", data, column_names=columns,
                column_types=types, column_oriented=True))
        await settle()
    finally:
        if in_flight is not None:
            in_flight.cancel()
        await consumer.stop()
        client.close()
    assert first_at is not None
    elapsed = time.monotonic() - first_at
    cpu = time.process_time() - first_cpu
    return {"events": total, "seconds": elapsed, "events_per_s": (total - first_rows) / elapsed,
            "cpu_us_per_event": cpu / (total - first_rows) * 1e6}


async def measure_faust_floor(bootstrap: str, total: int) -> dict[str, float]:
    """faust alone: an agent that takes the events in batches of BATCH and does nothing else
    (no decode, no state, no insert). What faust's per-event path costs by itself: no pipeline
    built on `take_events` can go faster than this on this machine."""
    import faust

    app = faust.App(f"kw-bench-floor-{uuid.uuid4().hex[:8]}", broker=f"kafka://{bootstrap}",
                    store="memory://", web_enabled=False, autodiscover=False,
                    topic_replication_factor=1, key_serializer="raw", value_serializer="raw",
                    consumer_auto_offset_reset="earliest",
                    consumer_max_fetch_size=load_settings().pipeline_fetch_partition_bytes)
    source = app.topic(topics.REQUESTS, key_type=bytes, value_type=bytes,
                       key_serializer="raw", value_serializer="raw")
    finished = asyncio.Event()
    progress = {"done": 0, "first_rows": 0, "first_at": 0.0}

    @app.agent(source)
    async def floor(stream: Any) -> None:
        async for events in stream.take_events(BATCH, within=0.5):
            progress["done"] += len(events)
            if not progress["first_at"]:
                progress["first_at"], progress["first_rows"] = time.monotonic(), progress["done"]
            if progress["done"] >= total:
                finished.set()

    app.finalize()
    await app.start()
    try:
        await asyncio.wait_for(finished.wait(), 600)
    finally:
        await app.stop()
    elapsed = time.monotonic() - progress["first_at"]
    return {"events": total, "seconds": elapsed,
            "events_per_s": (total - progress["first_rows"]) / elapsed}


def bare_columns(docs: list[dict[str, Any]]) -> list[list[Any]]:
    """REQUEST_COLUMNS as columns, straight from the JSON documents (unpriced, unvalidated)."""
    now, version = datetime.now(UTC), now_version()
    n = len(docs)
    usage = [d["usage"] for d in docs]
    tags = [d["tags"] for d in docs]

    def field(name: str, default: Any = "") -> list[Any]:
        return [d.get(name) or default for d in docs]

    return [
        [uuid.UUID(d["event_id"]) for d in docs],
        [datetime.fromisoformat(d["occurred_at"]) for d in docs],
        field("wrapped_key_id"), field("key_scope"), field("provider"),
        field("provider_key_id"), field("endpoint"), field("requested_model"),
        field("served_model"), [d.get("served_model") or d.get("requested_model") or ""
                                for d in docs],
        field("outcome"), field("rejection_reason"), field("http_status", 0),
        [u["input_tokens"] for u in usage], [u["output_tokens"] for u in usage],
        [u["cached_input_tokens"] for u in usage], [u["cache_write_tokens"] for u in usage],
        [u["reasoning_tokens"] for u in usage], [None] * n, ["unknown_model"] * n,
        ["none"] * n, [""] * n, [d.get("latency_ms") for d in docs],
        [d.get("time_to_first_token_ms") for d in docs], [bool(d.get("streaming")) for d in docs],
        field("client_ip"), field("request_id"), field("gateway_id"),
        [t["team"] for t in tags], [t["service"] for t in tags],
        [t["environment"] for t in tags], [t["cost_center"] for t in tags],
        [t.get("extra") or {} for t in tags], [now] * n, [version] * n,
        [u.get("cache_write_5m_tokens", 0) for u in usage],
        [u.get("cache_write_1h_tokens", 0) for u in usage], [""] * n, [""] * n,
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--span-days", type=float, default=0.0,
                        help="spread the events evenly over this many days of event time ending "
                             "now (a history replay); default one second apart")
    parser.add_argument("--keys", type=int, default=None,
                        help="only the first N of the synthetic keys (1: one busy key, whose "
                             "hours outgrow one changelog record; default all)")
    parser.add_argument("--bootstrap", help="use this Kafka instead of a private broker")
    parser.add_argument("--clickhouse-url", help="use this ClickHouse instead of a private one")
    parser.add_argument("--faust-floor", action="store_true",
                        help="also measure a faust agent that only takes the events")
    parser.add_argument("--baseline-default-gc", action="store_true",
                        help="run the baseline with CPython's default garbage collector settings "
                             "instead of the worker's (collect less often, start-up frozen)")
    parser.add_argument("--profile", type=Path,
                        help="record the worker with py-spy (collapsed stacks) to this file")
    args = parser.parse_args()
    # The worker runs on uvloop; so do the baseline consumer and the faust floor.
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

    from tests.support.kafka import free_ports, start_test_broker

    with scratch_dir("kw-bench-") as scratch:
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
            spacing = (timedelta(days=args.span_days) / args.events if args.span_days
                       else timedelta(seconds=1))
            events = synthetic_traffic(args.events, seed=42, spacing=spacing,
                                       keys=DEFAULT_KEYS[:args.keys])
            print(f"producing {len(events)} events …", flush=True)
            asyncio.run(produce(events, settings))
            pipeline_url = new_database(base_url, "bench_pipeline")
            baseline_url = new_database(base_url, "bench_baseline")
            (scratch / "home").mkdir()
            pipeline = measure_pipeline(bootstrap, pipeline_url, len(events), scratch / "home",
                                        args.profile)
            if not args.baseline_default_gc:
                # the worker's collector settings (pipelines/worker.py): a like-for-like baseline
                from pipelines.worker import tune_garbage_collector

                tune_garbage_collector()
            baseline = asyncio.run(measure_baseline(bootstrap, baseline_url, len(events)))
            floor = (asyncio.run(measure_faust_floor(bootstrap, len(events))) if args.faust_floor
                     else None)
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
        "events": len(events), "keys": len({e.wrapped_key_id for e in events}),
        "batch_rows": BATCH, "pipeline": pipeline, "baseline": baseline,
        "ratio_pipeline_to_baseline": ratio, "faust_floor": floor,
        "baseline_gc": "default" if args.baseline_default_gc else "tuned as the worker's",
        "load_average": os.getloadavg(),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform()},
    }
    print(f"pipeline (decode+price+store+state+rules+spend+rollups): "
          f"{pipeline['events_per_s']:,.0f} events/s per worker, stored and analysed "
          f"(rows alone {pipeline['rows_per_s']:,.0f}/s; {pipeline['seconds_from_start']:.1f} s "
          f"from worker start to the last event analysed)")
    print(f"baseline (aiokafka decode+insert):                      "
          f"{baseline['events_per_s']:,.0f} events/s")
    if floor is not None:
        print(f"faust floor (take_events, nothing else):                "
              f"{floor['events_per_s']:,.0f} events/s")
    print(f"ratio pipeline/baseline: {ratio:.2f}   (load average {os.getloadavg()[0]:.2f})")
    # CPU per event (user + system, from /proc and the bench's own clock): what other tenants of
    # a shared machine steal does not count, so this moves less than events/s from run to run.
    # The warehouse server's work for either is in neither figure.
    print(f"CPU per event: worker {pipeline['cpu_us_per_event']:,.0f} us, baseline "
          f"{baseline['cpu_us_per_event']:,.0f} us "
          f"(baseline/worker {baseline['cpu_us_per_event'] / pipeline['cpu_us_per_event']:.2f})")
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    path = out / f"pipeline_throughput-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
