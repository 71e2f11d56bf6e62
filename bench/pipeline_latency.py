"""Event to ClickHouse row at a steady rate: one `keywarden pipeline run` worker (production
batching: `KEYWARDEN_SINK_MAX_BATCH_SECONDS` 0.5 unless set), events produced at `--rate` per
second for `--seconds` (open loop: each at `start + i / rate`, whatever the pipeline does), and a
poller reading the new event ids from `request_events` every 50 ms. Latency = when the poller
first saw the row minus when the event was handed to the Kafka producer; so it includes the
poll interval (up to 50 ms) and the producer's own batching.

    .venv/bin/python -m bench.pipeline_latency [--rate 1000] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.processes import scratch_dir, spawn
from bench.results import machine_info, write_result
from bench.stack import new_database, private_kafka, private_warehouse
from bench.stats import summarize
from keywarden.clickhouse import get_client
from keywarden.kafka import ensure_topics, make_producer
from keywarden.settings import load_settings
from keywarden.synthetic import DEFAULT_KEYS, synthetic_event
from schemas import topics

POLL_S = 0.05


async def produce_steady(settings: Any, rate: float, seconds: float,
                         sent: dict[str, float]) -> None:
    """Hand `rate * seconds` events to the producer at `start + i / rate` (open loop)."""
    import random

    rng = random.Random(5)
    producer = make_producer(settings)
    await producer.start()
    try:
        total = int(rate * seconds)
        start = time.monotonic()
        deliveries = []
        for index in range(total):
            delay = start + index / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            event = synthetic_event(DEFAULT_KEYS[index % len(DEFAULT_KEYS)],
                                    datetime.now(UTC), rng)
            sent[str(event.event_id)] = time.monotonic()
            deliveries.append(await producer.send(topics.REQUESTS, event.to_json_bytes(),
                                                  key=event.wrapped_key_id.encode()))
        await asyncio.gather(*deliveries)
    finally:
        await producer.stop()


def poll_rows(url: str, sent: dict[str, float], seen: dict[str, float], expected: int,
              timeout: float) -> None:
    """Record when each event id first shows in `request_events` (until all are seen)."""
    client = get_client(url)
    since = datetime.now(UTC) - timedelta(minutes=1)
    deadline = time.monotonic() + timeout
    try:
        while len(seen) < expected and time.monotonic() < deadline:
            rows = client.query(
                "SELECT toString(event_id), ingested_at FROM request_events "
                "WHERE ingested_at >= {since:DateTime64(3, 'UTC')}",
                parameters={"since": since}).result_rows
            now = time.monotonic()
            newest = since
            for event_id, ingested_at in rows:
                if event_id not in seen:
                    seen[event_id] = now
                newest = max(newest, ingested_at)
            since = newest - timedelta(seconds=5)  # rows of a slower insert may land late
            time.sleep(POLL_S)
    finally:
        client.close()


def run(rate: float, seconds: float, scratch: Path) -> dict[str, Any]:
    with private_kafka(scratch / "kafka") as broker, \
            private_warehouse(scratch / "warehouse") as base_url:
        settings = load_settings(kafka_bootstrap=broker.bootstrap)
        asyncio.run(ensure_topics(settings))
        url = new_database(base_url, "bench_latency")
        (scratch / "home").mkdir()
        env = {"KEYWARDEN_KAFKA_BOOTSTRAP": broker.bootstrap, "KEYWARDEN_CLICKHOUSE_URL": url,
               "KEYWARDEN_PIPELINE_APP_ID": f"kw-bench-latency-{uuid.uuid4().hex[:8]}",
               "KEYWARDEN_HOME": str(scratch / "home")}
        worker = spawn("worker", [sys.executable, "-m", "keywarden.cli", "pipeline", "run",
                                  "--loglevel", "warning"], scratch, env)
        try:
            # warm-up: the worker has joined and stores rows before the clock runs
            warm: dict[str, float] = {}
            asyncio.run(produce_steady(settings, 10, 1, warm))
            poll_rows(url, warm, {}, len(warm), 300)
            sent: dict[str, float] = {}
            seen: dict[str, float] = {}
            import threading

            expected = int(rate * seconds) + len(warm)
            poller = threading.Thread(target=poll_rows, args=(url, sent, seen, expected,
                                                              seconds + 120))
            poller.start()
            asyncio.run(produce_steady(settings, rate, seconds, sent))
            poller.join()
        finally:
            worker.stop(60)
    latencies = [(seen[event_id] - at) * 1000 for event_id, at in sent.items()
                 if event_id in seen]
    return {"rate": rate, "seconds": seconds, "sent": len(sent), "stored": len(latencies),
            "event_to_row_ms": summarize(latencies)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    with scratch_dir("kw-bench-latency-") as scratch:
        result = run(args.rate, args.seconds, scratch)
    result.update(benchmark="pipeline_latency", at=datetime.now(UTC).isoformat(),
                  load_average=os.getloadavg(), machine=machine_info())
    path = write_result("pipeline_latency", result, f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
    figures = result["event_to_row_ms"]
    print(f"{result['stored']:,} of {result['sent']:,} events at {args.rate:,.0f}/s: event to row "
          f"p50 {figures['p50']:.0f} ms, p95 {figures['p95']:.0f} ms, p99 {figures['p99']:.0f} ms, "
          f"max {figures['max']:.0f} ms; load average {os.getloadavg()[0]:.2f}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
