"""Benchmark 2: the highest request rate one gateway process sustains with p99 added latency
under 5 ms. The rate steps up; at each step the fake provider is called directly at the same
rate first (the baseline), then through the gateway; a step passes when the gateway answered
every request with 200, kept up with the offered rate, and its p99 minus the direct p99 is under
the limit. The first failing step ends the run (one retry, since a shared machine is noisy).

    python -m bench.gateway_throughput [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from datetime import UTC, datetime
from typing import Any

from bench.load import CHAT_BODY, CHAT_PATH, open_loop, warm_up
from bench.processes import scratch_dir
from bench.results import machine_info, write_result
from bench.stack import PROVIDER_KEY, gateway_stack, private_kafka
from bench.stats import added

P99_LIMIT_MS = 5.0
KEEP_UP = 0.95  # achieved/offered rate below this is falling behind


def verdict(step: dict[str, Any]) -> str | None:
    """None when the step passes, else why not."""
    gateway, direct = step["gateway"], step["direct"]
    if gateway["errors"]:
        return f"errors {gateway['errors']}"
    if gateway["achieved_rps"] < KEEP_UP * gateway["target_rps"]:
        return f"fell behind ({gateway['achieved_rps']} of {gateway['target_rps']} rps)"
    if step["added_ms"]["p99"] >= P99_LIMIT_MS:
        return f"p99 added {step['added_ms']['p99']:.2f} ms >= {P99_LIMIT_MS} ms"
    if direct["achieved_rps"] < KEEP_UP * direct["target_rps"]:
        return "the baseline (direct) itself fell behind: load-generator bound"
    return None


async def step_up(provider_url: str, gateway_url: str, wrapped: str, rates: list[int],
                  seconds: float) -> list[dict[str, Any]]:
    direct = (provider_url + CHAT_PATH, {"authorization": f"Bearer {PROVIDER_KEY}"})
    gateway = (gateway_url + CHAT_PATH, {"authorization": f"Bearer {wrapped}"})
    for url, headers in (direct, gateway):
        await warm_up(url, headers, CHAT_BODY, 30)
    steps: list[dict[str, Any]] = []
    for rate in rates:
        for attempt in (1, 2):
            measured = {}
            for name, (url, headers) in (("direct", direct), ("gateway", gateway)):
                result = await open_loop(url, headers, CHAT_BODY, rate=rate,
                                         max_requests=int(rate * seconds), max_seconds=seconds)
                measured[name] = result.as_dict()
                await asyncio.sleep(0.3)
            step = {"rate_rps": rate, "attempt": attempt, **measured,
                    "added_ms": added(measured["gateway"]["latency_ms"],
                                      measured["direct"]["latency_ms"])}
            step["failed"] = verdict(step)
            steps.append(step)
            if step["failed"] is None:
                break
        if steps[-1]["failed"] is not None:
            break
    return steps


def run(quick: bool = False, stamp: str | None = None) -> dict[str, Any]:
    rates = [50, 100, 200, 300, 400, 600] if quick else [50, 100, 200, 300, 400, 600, 800, 1000]
    seconds = 3.0 if quick else 6.0
    stamp = stamp or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    with contextlib.ExitStack() as stack:
        scratch = stack.enter_context(scratch_dir("kw-bench-throughput-"))
        kafka = stack.enter_context(private_kafka(scratch / "kafka"))
        gw = stack.enter_context(gateway_stack(scratch / "gateway", kafka.bootstrap))
        steps = asyncio.run(step_up(gw.provider_url, gw.gateway_url, gw.wrapped_key, rates,
                                    seconds))
    passed = [s["rate_rps"] for s in steps if s["failed"] is None]
    result = {
        "benchmark": "gateway_throughput", "at": stamp, "machine": machine_info(),
        "load": {"rates_rps": rates, "seconds_per_step": seconds, "p99_added_limit_ms":
                 P99_LIMIT_MS, "kind": "open loop, non-streaming chat completions, loopback; "
                 "gateway, fake provider and client each in its own process"},
        "sustained_rps": max(passed) if passed else 0,
        "stopped_by": steps[-1]["failed"] if steps and steps[-1]["failed"] else "top of the range",
        "steps": steps,
    }
    result["path"] = str(write_result("gateway_throughput", result, stamp))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    result = run(args.quick)
    for step in result["steps"]:
        print(f"{step['rate_rps']:>5} rps try {step['attempt']}: gateway p99 "
              f"{step['gateway']['latency_ms']['p99']:.2f} ms, direct p99 "
              f"{step['direct']['latency_ms']['p99']:.2f} ms, added p99 "
              f"{step['added_ms']['p99']:+.2f} ms -> {step['failed'] or 'pass'}")
    print(f"sustained: {result['sustained_rps']} rps (stopped by: {result['stopped_by']})")
    print(f"wrote {result['path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
