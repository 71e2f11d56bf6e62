"""Profiling (not a benchmark): where one gateway process spends its CPU per request under load.

Starts the benchmark stack (private Kafka, fake provider, `keywarden gateway serve`), drives the
gateway open loop at each rate while `py-spy record` samples it, and sums the samples of the
collapsed stacks into buckets (HTTP server, routing, auth, policy, upstream client, JSON, event,
Kafka producer, event loop, idle). py-spy is a profiling tool, not a project dependency:
`.venv/bin/pip install py-spy`.

    python -m bench.gateway_profile [--rates 200 500] [--seconds 8] [--stream]

Each rate is also driven once against the floor (`bench/gateway_floor.py`, no py-spy), whose CPU
per request is the least a Python pass-through spends on the same machine at the same moment.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.load import CHAT_BODY, CHAT_PATH, open_loop, warm_up
from bench.processes import cpu_seconds, scratch_dir
from bench.results import RESULTS_DIR
from bench.stack import PROVIDER_KEY, gateway_stack, private_kafka

# First match wins, checked from the innermost frame outwards: a frame in one of these files
# (or functions) names the bucket the sample is charged to.
BUCKETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("event: build + serialize", ("_publish", "request.py", "events/request", "_event_bytes",
                                  "event.py")),
    ("kafka producer (aiokafka)", ("aiokafka",)),
    ("upstream client", ("httpx", "httpcore", "aiohttp", "forward.py", "h11", "upstream.py")),
    ("anyio (under httpcore and starlette)", ("anyio",)),
    ("json parse/dump", ("json/", "orjson")),
    ("auth (hmac, key lookup)", ("auth.py", "hmac.py")),
    ("policy + budget + rate limit", ("policy.py", "budget.py", "ratelimit.py", "pricing")),
    ("provider adapters", ("providers/",)),
    ("http server (uvicorn)", ("uvicorn", "httptools")),
    ("asgi framework (starlette)", ("starlette",)),
    ("proxy endpoint", ("proxy.py", "relay.py", "hotpath.py", "asgi_app.py", "app.py")),
    ("pydantic", ("pydantic",)),
    ("logging", ("logging/",)),
    ("event loop + sockets", ("asyncio/", "uvloop", "selectors", "socket")),
)


GENERIC = ("asyncio/", "selectors.py", "socket.py", "contextlib.py", "threading.py", "enum.py",
           "typing.py", "abc.py", "functools.py", "<frozen", "concurrent/", "weakref.py",
           "queue.py", "copy.py", "_weakrefset.py", "cli.py", "runpy")


def bucket_of(stack: str) -> str:
    """The bucket of the innermost frame that is not generic plumbing (asyncio, contextlib…):
    a socket write under the upstream client is charged to the upstream client."""
    frames = stack.split(";")
    if frames and any(mark in frames[-1] for mark in ("select (", "poll (", "wait (")):
        return "idle (waiting for I/O)"
    for frame in reversed(frames):
        if any(mark in frame for mark in GENERIC):
            continue
        for name, marks in BUCKETS:
            if any(mark in frame for mark in marks):
                return name
        return "other: " + frame.split(" (", 1)[-1].split(":", 1)[0]
    return "event loop + sockets"


def summarize_raw(raw_path: Path, requests: int, sample_hz: int = 250) -> dict[str, Any]:
    """Samples per bucket from py-spy's collapsed-stack output; busy time per request (samples
    of a thread holding the CPU, over the requests of the recording: warm-up not counted, so an
    upper bound)."""
    counts: Counter[str] = Counter()
    for line in raw_path.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if stack and number.isdigit():
            counts[bucket_of(stack)] += int(number)
    total = sum(counts.values())
    busy = total - counts.get("idle (waiting for I/O)", 0)
    return {"samples": total, "busy_samples": busy, "requests": requests,
            "busy_ms_per_request": round(busy / sample_hz * 1000 / requests, 3) if requests else 0,
            "buckets": {name: {"samples": n, "share_of_busy": round(n / busy, 3) if busy else 0}
                        for name, n in counts.most_common() if name != "idle (waiting for I/O)"},
            "idle_share": round(counts.get("idle (waiting for I/O)", 0) / total, 3)
            if total else 0}


async def _drive(url: str, headers: dict[str, str], rate: int, seconds: float,
                 body: dict[str, Any]) -> dict[str, Any]:
    await warm_up(url, headers, body, 30)
    result = await open_loop(url, headers, body, rate=rate,
                             max_requests=int(rate * seconds), max_seconds=seconds)
    return result.as_dict()


def run(rates: list[int], seconds: float, rate_hz: int, stream: bool = False) -> dict[str, Any]:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        raise SystemExit("py-spy is not installed: .venv/bin/pip install py-spy")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS_DIR.mkdir(exist_ok=True)
    body = CHAT_BODY | ({"stream": True} if stream else {})
    out: dict[str, Any] = {"benchmark": "gateway_profile", "at": stamp, "stream": stream,
                           "runs": []}
    with contextlib.ExitStack() as stack:
        scratch = stack.enter_context(scratch_dir("kw-bench-profile-"))
        kafka = stack.enter_context(private_kafka(scratch / "kafka"))
        gw = stack.enter_context(gateway_stack(scratch / "gateway", kafka.bootstrap))
        url = gw.gateway_url + CHAT_PATH
        headers = {"authorization": f"Bearer {gw.wrapped_key}"}
        for rate in rates:
            raw = RESULTS_DIR / f"gateway_profile-{stamp}-{rate}rps.txt"
            recorder = subprocess.Popen(
                [py_spy, "record", "--pid", str(gw.gateway.pid), "--format", "raw",
                 "--rate", str(rate_hz), "--duration", str(int(seconds) + 3),
                 "--nonblocking", "--output", str(raw)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            cpu_before = cpu_seconds(gw.gateway.pid)
            load = asyncio.run(_drive(url, headers, rate, seconds, body))
            cpu = cpu_seconds(gw.gateway.pid) - cpu_before
            recorder.wait(60)
            summary = (summarize_raw(raw, load["ok"], rate_hz) if raw.exists()
                       else {"error": "no output"})
            # CPU the gateway process used (warm-up included), per request: the number to read;
            # the py-spy buckets say where it went.
            cpu_ms = round(cpu * 1000 / (load["sent"] + 30), 3)
            floor_cpu_ms = None
            if gw.floor is not None:
                floor_url = gw.floor_url + CHAT_PATH
                floor_headers = {"authorization": f"Bearer {PROVIDER_KEY}"}
                floor_before = cpu_seconds(gw.floor.pid)
                floor_load = asyncio.run(_drive(floor_url, floor_headers, rate, seconds, body))
                floor_cpu = cpu_seconds(gw.floor.pid) - floor_before
                floor_cpu_ms = round(floor_cpu * 1000 / (floor_load["sent"] + 30), 3)
            out["runs"].append({"rate_rps": rate, "load": load, "gateway_cpu_ms_per_request":
                                cpu_ms, "floor_cpu_ms_per_request": floor_cpu_ms,
                                "profile": summary, "raw": str(raw)})
    path = RESULTS_DIR / f"gateway_profile-{stamp}.json"
    path.write_text(json.dumps(out, indent=2))
    out["path"] = str(path)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=int, nargs="+", default=[200, 500])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--sample-hz", type=int, default=250)
    parser.add_argument("--stream", action="store_true", help="streamed chat completions")
    args = parser.parse_args()
    result = run(args.rates, args.seconds, args.sample_hz, args.stream)
    for item in result["runs"]:
        load, profile = item["load"], item["profile"]
        print(f"{item['rate_rps']} rps: achieved {load['achieved_rps']} ok {load['ok']} "
              f"errors {load['errors']} p50 {load['latency_ms']['p50']} p99 "
              f"{load['latency_ms']['p99']} ms; gateway CPU {item['gateway_cpu_ms_per_request']} "
              f"ms/request (py-spy attached), floor CPU {item['floor_cpu_ms_per_request']} "
              "ms/request (no py-spy)")
        for name, value in profile.get("buckets", {}).items():
            print(f"    {name:<34} {value['share_of_busy']:>6.1%}")
    print(f"wrote {result['path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
