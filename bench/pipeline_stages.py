"""CPU per event of each step of a pipeline worker, in process, without Kafka or ClickHouse.

Not a test. The same synthetic events as `bench/pipeline_throughput.py` go through the worker's
own code, step by step, in batches of 5,000, and each step's CPU time per event is printed:
decode, price, the request rows, the rows as columns, the per-key-minute runs, their encoding,
their decoding (the analytics stage's side) and the per-key state and rules over them (the
faust tables replaced by dicts). What it leaves out: aiokafka, faust, clickhouse-connect's
serialization and the event loop (`pipeline_throughput.py --profile` shows those).

    .venv/bin/python bench/pipeline_stages.py --events 50000 [--span-days 15]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from keywarden.synthetic import synthetic_traffic  # noqa: E402
from pipelines.detect.agents import KeyAnalyzer  # noqa: E402
from pipelines.detect.batch import BatchOutput, DetectConfig  # noqa: E402
from pipelines.ingest.agents import RawRecord  # noqa: E402
from pipelines.ingest.decode import decode  # noqa: E402
from pipelines.ingest.minutes import build_minutes  # noqa: E402
from pipelines.pricing import price  # noqa: E402
from pipelines.rollups.state import KeyStateStore  # noqa: E402
from pipelines.rollups.tables import StateTables  # noqa: E402
from pipelines.sinks.clickhouse import now_version, request_row  # noqa: E402
from pipelines.worker import tune_garbage_collector  # noqa: E402
from schemas.events.usage_minute import UsageMinute  # noqa: E402
from schemas.pricing import load_catalog  # noqa: E402

BATCH = 5000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50000)
    parser.add_argument("--span-days", type=float, default=0.0)
    args = parser.parse_args()
    spacing = (timedelta(days=args.span_days) / args.events if args.span_days
               else timedelta(seconds=1))
    values = [event.to_json_bytes() for event in
              synthetic_traffic(args.events, seed=42, spacing=spacing)]
    tune_garbage_collector()
    catalog = load_catalog()
    store = KeyStateStore(StateTables(hours={}, keys={}),  # type: ignore[arg-type]
                          allowed_lateness=timedelta(hours=1))
    analyzer = KeyAnalyzer(store, DetectConfig(), lambda _key: None)
    spent: dict[str, float] = {}

    def timed(name: str, work: Callable[[], Any]) -> Any:
        started = time.process_time()
        result = work()
        spent[name] = spent.get(name, 0.0) + time.process_time() - started
        return result

    def analyse(runs: list[UsageMinute]) -> None:
        groups: dict[tuple[int, str], list[UsageMinute]] = {}
        for run in runs:
            groups.setdefault((run.source_partition, run.wrapped_key_id), []).append(run)
        out = BatchOutput()
        for (partition, key), found in groups.items():
            analyzer.analyze_events(partition, key,
                                    [event for run in found for event in run.events], out)
        store.flush()

    offset = 0
    for begin in range(0, len(values), BATCH):
        records = [RawRecord("llm.requests.v1", 0, offset + i, None, value)
                   for i, value in enumerate(values[begin:begin + BATCH])]
        offset += len(records)
        events = timed("decode", lambda: [decode(r.value) for r in records])  # noqa: B023
        priced = timed("price", lambda: [price(e, catalog) for e in events])  # noqa: B023
        source_of = {item.event.event_id: r for item, r in zip(priced, records, strict=True)}
        now, version = datetime.now(UTC), now_version()
        rows = timed("request rows", lambda: [request_row(p, now, version)  # noqa: B023
                                              for p in priced])  # noqa: B023
        timed("rows as columns", lambda: [list(c) for c in zip(*rows, strict=True)])  # noqa: B023
        runs = timed("runs built", lambda: build_minutes(priced, source_of))  # noqa: B023
        encoded = timed("runs encoded", lambda: [run.encode() for run in runs])  # noqa: B023
        decoded = timed("runs decoded",
                        lambda: [UsageMinute.decode(raw) for raw in encoded])  # noqa: B023
        timed("state and rules", lambda: analyse(decoded))  # noqa: B023
    total = sum(spent.values())
    print(f"{len(values):,} events, spacing {spacing}, batches of {BATCH:,}")
    for name, seconds in spent.items():
        print(f"  {name:<16} {seconds / len(values) * 1e6:6.1f} us/event")
    print(f"  {'all':<16} {total / len(values) * 1e6:6.1f} us/event")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
