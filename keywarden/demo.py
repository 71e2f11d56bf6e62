"""`keywarden demo`: the whole local stack on the embedded default, fed with demo traffic.

It starts what is not already running (Kafka broker, embedded warehouse, pipeline worker),
sends traffic, waits until it is in ClickHouse, prints what arrived, and stops what it started,
on completion or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path

from deploy.local.kafka import LocalKafka, run_blocking
from deploy.local.warehouse import spawn_warehouse, stop_warehouse
from keywarden.clickhouse import get_client, parse_clickhouse_url
from keywarden.kafka import ensure_topics
from keywarden.settings import PROJECT_ROOT, Settings
from keywarden.synthetic import produce, synthetic_traffic
from schemas.clickhouse.migrations import migrate


def _say(message: str) -> None:
    print(f"[keywarden demo] {message}", flush=True)


def start_kafka(settings: Settings, stack: ExitStack) -> LocalKafka:
    kafka = LocalKafka.from_settings(settings)
    if kafka.status().running:
        _say(f"Kafka already running at {kafka.bootstrap}")
        return kafka
    _say(f"starting Apache Kafka {settings.kafka_version} (KRaft) at {kafka.bootstrap} …")
    run_blocking(kafka.start(timeout=120))
    stack.callback(lambda: run_blocking(kafka.stop()))
    return kafka


def start_warehouse(settings: Settings, stack: ExitStack) -> None:
    target = parse_clickhouse_url(settings.clickhouse_url)
    try:
        with urllib.request.urlopen(f"{target.interface}://{target.host}:{target.port}/ping",
                                    timeout=2) as answer:
            if answer.status == 200:
                _say(f"ClickHouse already answering at {target.redacted}")
                return
    except OSError:  # nothing answers yet: start the embedded one
        pass
    data_dir = settings.data_dir / "warehouse"
    _say(f"starting the embedded warehouse (chDB) on port {settings.warehouse_port}, data in "
         f"{data_dir} …")
    process = spawn_warehouse(data_dir, settings.warehouse_port)
    stack.callback(stop_warehouse, process)


def start_pipeline(settings: Settings, stack: ExitStack) -> subprocess.Popen[bytes]:
    log_path = settings.home / "logs" / "pipeline.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    _say(f"starting the pipeline worker (log: {log_path}) …")
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "keywarden.cli", "pipeline", "run", "--loglevel", "warning"],
            cwd=PROJECT_ROOT, env=os.environ.copy(), stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT,
        )

    def stop() -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()

    stack.callback(stop)
    return process


def wait_for_rows(settings: Settings, event_ids: list[str], timeout: float) -> int:
    """Wait until the given events are in ClickHouse; return how many are."""
    client = get_client(settings.clickhouse_url)
    deadline = time.monotonic() + timeout
    count = 0
    try:
        while time.monotonic() < deadline:
            count = int(client.command(
                "SELECT uniqExact(event_id) FROM request_events WHERE event_id IN {ids:Array(UUID)}",
                parameters={"ids": event_ids},
            ))
            if count >= len(event_ids):
                break
            time.sleep(0.5)
    finally:
        client.close()
    return count


def print_spend(settings: Settings) -> None:
    client = get_client(settings.clickhouse_url)
    try:
        result = client.query(
            "SELECT team, environment, model, count() AS requests, "
            "sum(input_tokens + output_tokens) AS tokens, sum(cost_usd) AS cost_usd "
            "FROM request_events FINAL GROUP BY team, environment, model "
            "ORDER BY cost_usd DESC"
        )
    finally:
        client.close()
    header = f"{'team':<10} {'env':<8} {'model':<20} {'requests':>8} {'tokens':>10} {'cost USD':>14}"
    print(header)
    print("-" * len(header))
    total = Decimal(0)
    for team, environment, model, requests, tokens, cost in result.result_rows:
        total += Decimal(cost or 0)
        print(f"{team:<10} {environment:<8} {model:<20} {requests:>8} {tokens:>10} "
              f"{Decimal(cost or 0):>14.6f}")
    print(f"{'total':<52} {total:>14.6f}")


def run_demo(settings: Settings, events: int = 500) -> int:
    with ExitStack() as stack:
        previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        stack.callback(signal.signal, signal.SIGTERM, previous)
        Path(settings.home).mkdir(parents=True, exist_ok=True)
        start_kafka(settings, stack)
        start_warehouse(settings, stack)
        client = get_client(settings.clickhouse_url, create_database=True)
        applied = migrate(client)
        client.close()
        _say(f"migrations applied: {', '.join(applied) if applied else 'none pending'}")
        created = asyncio.run(ensure_topics(settings))
        _say(f"topics created: {', '.join(created) if created else 'all present'}")
        pipeline = start_pipeline(settings, stack)

        traffic = synthetic_traffic(events, seed=int(time.time()))
        started = time.monotonic()
        sent = asyncio.run(produce(traffic, settings))
        _say(f"produced {sent} request events to llm.requests.v1")
        stored = wait_for_rows(settings, [str(e.event_id) for e in traffic], timeout=120)
        if pipeline.poll() is not None:
            _say(f"the pipeline worker exited with {pipeline.returncode}; see its log")
            return 1
        _say(f"{stored} rows in ClickHouse request_events "
             f"({time.monotonic() - started:.1f}s after producing); spend so far:")
        print_spend(settings)
        _say("stopping what the demo started")
    return 0
