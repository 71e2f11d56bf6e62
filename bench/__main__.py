"""`python -m bench [--quick] [--only NAME ...]`: every benchmark, each beside its baseline in the
same run; prints one table and writes bench-results/summary-<timestamp>.json.

A benchmark that fails is reported as failed (with why) and the others still run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import detection, end_to_end, gateway_throughput, gateway_vs_litellm, memory
from bench.results import RESULTS_DIR, machine_info
from keywarden.settings import PROJECT_ROOT


def _script(module: str, prefix: str, args: list[str]) -> Callable[[bool, str], dict[str, Any]]:
    """A benchmark written as a script of its own (run as a child; its JSON is read back)."""

    def run(quick: bool, stamp: str) -> dict[str, Any]:
        RESULTS_DIR.mkdir(exist_ok=True)
        before = set(RESULTS_DIR.glob(f"{prefix}-*.json"))
        done = subprocess.run([sys.executable, "-m", module, *args], cwd=PROJECT_ROOT,
                              capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            raise RuntimeError(f"{module} exited {done.returncode}: "
                               f"{(done.stderr or done.stdout)[-1500:]}")
        written = sorted(set(RESULTS_DIR.glob(f"{prefix}-*.json")) - before)
        if not written:
            raise RuntimeError(f"{module} wrote no {prefix}-*.json: {done.stdout[-800:]}")
        result = json.loads(written[-1].read_text())
        result["path"] = str(written[-1])
        return result

    return run


def _gateway_latency(quick: bool, stamp: str) -> dict[str, Any]:
    requests = ["--requests", "200", "--warmup", "30"] if quick else ["--requests", "1000"]
    return _script("bench.gateway_latency", "gateway_latency", requests)(quick, stamp)


def _pipeline_throughput(quick: bool, stamp: str) -> dict[str, Any]:
    # 50,000 in both: with 10,000 the worker's figure was mostly its analytics stage starting
    # (faust joining its group, ≈2 s), not its throughput (0.03x where 50,000 gives ≈0.3x).
    events = ["--events", "50000"] if quick else ["--events", "150000"]
    return _script("bench.pipeline_throughput", "pipeline_throughput", events)(quick, stamp)


BENCHMARKS: dict[str, Callable[[bool, str], dict[str, Any]]] = {
    "gateway_latency": _gateway_latency,
    "gateway_vs_litellm": lambda quick, stamp: gateway_vs_litellm.run(quick, stamp),
    "gateway_throughput": lambda quick, stamp: gateway_throughput.run(quick, stamp),
    "pipeline_throughput": _pipeline_throughput,
    "end_to_end": lambda quick, stamp: end_to_end.run(quick, stamp),
    "memory": lambda quick, stamp: memory.run(quick, stamp),
    "detection": lambda quick, stamp: detection.run(quick, stamp),
}


def _ms(value: float) -> str:
    return f"{value:.2f}"


def rows_of(name: str, result: dict[str, Any]) -> list[list[str]]:
    """[benchmark, case, keywarden figure, baseline figure, ratio / note] rows."""
    rows: list[list[str]] = []
    if name == "gateway_latency":
        for run in result["runs"]:
            kind = "stream" if run["streaming"] else "plain"
            rows.append([name, f"{kind}, sequential {run['requests']} req",
                         f"p50 {_ms(run['gateway']['p50_ms'])} p99 {_ms(run['gateway']['p99_ms'])}",
                         f"direct p50 {_ms(run['direct']['p50_ms'])} p99 "
                         f"{_ms(run['direct']['p99_ms'])}",
                         f"added p50 {run['added_p50_ms']:+.2f} p99 {run['added_p99_ms']:+.2f} ms"])
    elif name == "gateway_vs_litellm":
        for run in result["runs"]:
            kind = "stream" if run["streaming"] else "plain"
            rate = run["rate_rps"]
            case = f"{kind}, {'sequential' if rate == 'seq' else f'{rate} rps'}"
            direct = run["targets"]["direct"]["latency_ms"]
            for target in ("floor", "keywarden", "litellm"):
                if target not in run["targets"]:
                    continue
                measured = run["targets"][target]
                add = run["added_ms"][target]
                errors = sum(measured["errors"].values())
                rows.append([f"added latency: {target}", case,
                             f"p50/p95/p99 {add['p50']:+.2f}/{add['p95']:+.2f}/{add['p99']:+.2f}",
                             f"direct p50/p95/p99 {_ms(direct['p50'])}/{_ms(direct['p95'])}/"
                             f"{_ms(direct['p99'])}",
                             f"{measured['achieved_rps']} rps ok" + (f", {errors} errors"
                                                                     if errors else "")
                             + (f"; over floor p50/p99 {over['p50']:+.2f}/{over['p99']:+.2f}"
                                if target == "keywarden"
                                and (over := run.get("keywarden_over_floor_ms")) else "")])
        if not result["litellm"]["available"]:
            rows.append(["added latency: litellm", "-", "not measured", "-",
                         result["litellm"]["note"][:120]])
    elif name == "gateway_throughput":
        last_pass = [s for s in result["steps"] if s["failed"] is None]
        best = last_pass[-1] if last_pass else None
        rows.append([name, "p99 added < 5 ms", f"{result['sustained_rps']} rps",
                     f"direct p99 {_ms(best['direct']['latency_ms']['p99'])} ms" if best else "-",
                     f"stopped by: {result['stopped_by']}"[:120]])
    elif name == "pipeline_throughput":
        rows.append([name, f"{result['events']} events, 1 worker",
                     f"{result['pipeline']['events_per_s']:,.0f} ev/s",
                     f"aiokafka+insert {result['baseline']['events_per_s']:,.0f} ev/s",
                     f"ratio {result['ratio_pipeline_to_baseline']:.2f}"])
    elif name == "end_to_end":
        row = result["request_to_row"]
        lat, req = row["request_to_row_ms"], row["request_latency_ms"]
        rows.append(["e2e: request -> ClickHouse row", f"{row['requests']} req @ "
                     f"{row['rate_rps']} rps", f"p50 {_ms(lat['p50'])} p99 {_ms(lat['p99'])} ms",
                     f"request itself p50 {_ms(req['p50'])} p99 {_ms(req['p99'])} ms",
                     f"{row['rows_seen']}/{row['requests']} seen"])
        spike = result["spike_to_slack"]
        lat = spike["event_to_slack_ms"]
        rows.append(["e2e: spiking event -> Slack", f"{spike['keys']} keys",
                     f"p50 {_ms(lat['p50'])} p99 {_ms(lat['p99'])} ms", "-",
                     f"{spike['spikes_seen']}/{spike['keys']} posted"])
    elif name == "memory":
        for part in ("gateway", "pipeline"):
            figures = result[part]
            what = ("wrapped keys in registry" if part == "gateway" else
                    f"active keys, {figures['events_per_key']} hour buckets each")
            rows.append([f"memory: {part}", f"{figures['keys']:,} {what}",
                         f"RSS {figures['rss_after_mib']} MiB",
                         f"empty {figures['rss_before_mib']} MiB",
                         f"+{figures['added_mib']} MiB, {figures['bytes_per_key']} B/key"])
    elif name == "detection":
        for shape in result["shapes"]:
            delay = shape["median_delay_min"]
            rows.append([f"spike detection: {shape['shape']}",
                         f"{shape['seeds']} seeds x {shape['keys']} keys x {shape['days']} days",
                         f"recall {shape['detected']}/{shape['surges']}, precision "
                         f"{detection.pct(shape['precision'])}",
                         f"{shape['false_per_key_month']:.2f} false alerts/key-month "
                         f"({shape['false_per_key_month_after_week']:.2f} after day 7)",
                         "median delay " + ("-" if delay is None else f"{delay:.0f} min")])
        target = result["median_delay_min_target"]
        rows.append(["spike detection: all shapes",
                     "target surges (>= 2.5x, >= 2 h, keys >= 400/day)",
                     f"recall {result['target_detected']}/{result['target_surges']}",
                     f"median delay {result['median_delay_min_all']} min over every surge found",
                     "median delay " + ("-" if target is None else f"{target} min") + " (target)"])
    return rows


def print_table(rows: list[list[str]]) -> None:
    header = ["benchmark", "case", "keywarden", "baseline (same run)", "ratio / note"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "-+-".join("-" * w for w in widths)
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print(line)
    for row in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rates, shorter runs")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), metavar="NAME")
    args = parser.parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    summary: dict[str, Any] = {"at": stamp, "quick": args.quick, "machine": machine_info(),
                               "results": {}, "failed": {}, "seconds": {}}
    rows: list[list[str]] = []
    started_all = time.monotonic()
    for name in args.only or list(BENCHMARKS):
        print(f"== {name} …", flush=True)
        started = time.monotonic()
        try:
            result = BENCHMARKS[name](args.quick, stamp)
        except Exception as error:  # one benchmark failing must not hide the others' figures
            summary["failed"][name] = f"{type(error).__name__}: {error}"[:2000]
            traceback.print_exc()
            rows.append([name, "FAILED", "-", "-", str(error).splitlines()[0][:100]])
        else:
            summary["results"][name] = result
            try:
                rows.extend(rows_of(name, result))
            except (KeyError, TypeError) as error:  # a script changed its JSON shape
                rows.append([name, "see JSON", "-", "-", f"table row: {error!r}"])
        summary["seconds"][name] = round(time.monotonic() - started, 1)
        print(f"   {summary['seconds'][name]} s", flush=True)
    summary["seconds"]["total"] = round(time.monotonic() - started_all, 1)
    machine = summary["machine"]
    print(f"\nmachine: {machine['cpu']}, {machine['cores']} cores, {machine['ram_gib']} GiB; "
          f"Python {machine['python']}, Kafka {machine['kafka']}, "
          + ", ".join(f"{k} {v}" for k, v in machine["packages"].items() if v))
    print_table(rows)
    RESULTS_DIR.mkdir(exist_ok=True)
    path = Path(RESULTS_DIR / f"summary-{stamp}.json")
    summary["table"] = rows
    path.write_text(json.dumps(summary, indent=2, default=str))
    print(f"\nwrote {path} ({summary['seconds']['total']} s)")
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
