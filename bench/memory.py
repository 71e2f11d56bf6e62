"""Benchmark 5: resident memory of a gateway holding 100,000 wrapped keys in its registry, and of
a pipeline worker holding 100,000 active keys in its per-key state, each beside the same
process's RSS before the keys were loaded (the baseline: code, imports, an empty registry).

Each measurement runs in a fresh child process:
  * gateway: a `Gateway` is built from settings (vault, registry, ledger, publisher: everything
    a replica holds) and 100k `key_created` registry events, as the admin API makes them, are
    applied to its registry directly (the same `Registry.apply` the Kafka follower calls);
  * pipeline: the pipeline is assembled (`build_pipeline`, every module imported) and its
    `KeyStateStore` is driven with each key's events over plain dicts standing in for the faust
    tables (the `memory://` store is a dict of the same encoded bytes): every key gets
    `--events-per-key` events spread over as many hours, so that it has that many hour buckets
    plus its key record.

    python -m bench.memory [--quick] [--keys 100000]
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.processes import rss_mib, scratch_dir
from bench.results import machine_info, write_result

KEYS = 100_000


def _gateway_child(keys: int, home: Path) -> dict[str, Any]:
    import os

    from keywarden.settings import load_settings
    from schemas.events.keys import KeyPolicy, RegistryEvent, RegistryEventType, WrappedKeyRecord
    from schemas.events.request import KeyTags
    from services.gateway.auth import issue_wrapped_key
    from services.gateway.gateway import Gateway

    gateway = Gateway(load_settings(home=home, gateway_id="bench-memory"))
    gc.collect()
    before = rss_mib(os.getpid())
    started = time.perf_counter()
    now = datetime.now(UTC)
    pepper = gateway.vault.pepper
    for index in range(keys):
        scope = f"team-{index % 500}-svc-{index}-prod"
        issued = issue_wrapped_key(scope, pepper)
        record = WrappedKeyRecord(
            key_id=issued.key_id, scope=scope, secret_hash=issued.secret_hash,
            tags=KeyTags(team=f"team-{index % 500}", service=f"svc-{index}", environment="prod",
                         cost_center=f"CC-{index % 50}"),
            policy=KeyPolicy(daily_budget_usd=Decimal("50"), monthly_budget_usd=Decimal("1000"),
                             rpm=600, allowed_models=["gpt-4o-mini", "claude-*"]),
            created_at=now, created_by="bench")
        gateway.registry.apply(RegistryEvent(occurred_at=now, actor="bench",
                                             type=RegistryEventType.KEY_CREATED,
                                             wrapped_key=record))
    load_seconds = time.perf_counter() - started
    gc.collect()
    after = rss_mib(os.getpid())
    assert len(gateway.registry.wrapped_keys) == keys
    return {"keys": keys, "rss_before_mib": round(before, 1), "rss_after_mib": round(after, 1),
            "added_mib": round(after - before, 1),
            "bytes_per_key": round((after - before) * 1024 * 1024 / keys),
            "load_seconds": round(load_seconds, 1),
            "policy": "daily+monthly budget, rpm, 2 allowed models, 4 tags"}


def _pipeline_child(keys: int, events_per_key: int, home: Path) -> dict[str, Any]:
    import os

    from keywarden.settings import load_settings
    from pipelines.rollups.state import KeyStateStore
    from pipelines.rollups.tables import StateTables
    from pipelines.worker import build_pipeline

    pipeline = build_pipeline(load_settings(home=home))  # every module imported, nothing started
    tables = StateTables(hours={}, keys={})  # type: ignore[arg-type]
    store = KeyStateStore(tables, allowed_lateness=timedelta(hours=1))
    gc.collect()
    before = rss_mib(os.getpid())
    started = time.perf_counter()
    now = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
    cost = Decimal("0.000123456")
    for index in range(keys):
        key = f"wk_{index:016x}"
        partition = index % 6
        record = store.record(partition, key)
        for step in range(events_per_key):
            at = now - timedelta(hours=events_per_key - 1 - step, minutes=step % 60)
            store.count(partition, key, uuid.uuid4(), at, 1200, cost)
            record.observe(at)
        record.models.setdefault("gpt-4o-mini", now.isoformat())
        store.touch(partition, key)
        if index % 1000 == 999:
            store.flush()
    store.flush()
    load_seconds = time.perf_counter() - started
    gc.collect()
    after = rss_mib(os.getpid())
    stored = sum(len(k) + len(v) for k, v in tables.hours.items()) + sum(
        len(k) + len(v) for k, v in tables.keys.items())
    del pipeline
    return {"keys": keys, "events_per_key": events_per_key,
            "hour_buckets": len(tables.hours), "key_records": len(tables.keys),
            "rss_before_mib": round(before, 1), "rss_after_mib": round(after, 1),
            "added_mib": round(after - before, 1),
            "bytes_per_key": round((after - before) * 1024 * 1024 / keys),
            "table_bytes": stored, "load_seconds": round(load_seconds, 1),
            "store": "memory:// (dict of encoded bytes); rocksdb:// keeps this on disk"}


def _child(kind: str, keys: int, events_per_key: int) -> dict[str, Any]:
    argv = [sys.executable, "-m", "bench.memory", "--child", kind, "--keys", str(keys),
            "--events-per-key", str(events_per_key)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"memory child {kind} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(quick: bool = False, stamp: str | None = None, keys: int = KEYS) -> dict[str, Any]:
    stamp = stamp or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    events_per_key = 2 if quick else 6
    result = {
        "benchmark": "memory", "at": stamp, "machine": machine_info(),
        "gateway": _child("gateway", keys, events_per_key),
        "pipeline": _child("pipeline", keys, events_per_key),
    }
    result["path"] = str(write_result("memory", result, stamp))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--keys", type=int, default=KEYS)
    parser.add_argument("--events-per-key", type=int, default=6)
    parser.add_argument("--child", choices=["gateway", "pipeline"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "gateway":
        with scratch_dir("kw-bench-mem-gw-") as home:
            print(json.dumps(_gateway_child(args.keys, home)))
        return 0
    if args.child == "pipeline":
        with scratch_dir("kw-bench-mem-pipe-") as home:
            print(json.dumps(_pipeline_child(args.keys, args.events_per_key, home)))
        return 0
    result = run(args.quick, keys=args.keys)
    print(json.dumps({k: result[k] for k in ("gateway", "pipeline")}, indent=2))
    print(f"wrote {result['path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
