"""Benchmark (not a test): the gateway's added latency, p50 and p99, against calling the fake
provider directly, measured in the same run, for non-streaming and streaming chat completions.

Starts its own Kafka broker (jar cache shared with the dev broker), the fake provider, and a
gateway in a thread with its own event loop; prints the figures and writes JSON to bench-results/.

    python bench/gateway_latency.py [--requests 400] [--warmup 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import socket
import statistics
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from bench.processes import scratch_dir  # noqa: E402
from deploy.local.kafka import LocalKafka  # noqa: E402
from keywarden.settings import PROJECT_ROOT, get_settings, load_settings  # noqa: E402
from services.admin.registry_writer import KeyAdmin  # noqa: E402
from services.fakes.provider import FakeProvider  # noqa: E402
from services.gateway.server import GatewayServer  # noqa: E402

OPENAI_KEY = "sk-bench-openai"
BODY = {
    "model": "gpt-4o-mini",
    "max_tokens": 20,
    "messages": [{"role": "user", "content": "hello there"}],
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


class GatewayThread:
    """The gateway on its own loop, so the benchmark client never shares its event loop."""

    def __init__(self, settings) -> None:
        self.server = GatewayServer(settings)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> str:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(wait_ready=30), self._loop).result(60)
        return self.server.base_url

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def timed(client: httpx.Client, url: str, headers: dict[str, str], stream: bool) -> float:
    body = BODY | ({"stream": True} if stream else {})
    started = time.perf_counter()
    if stream:
        with client.stream("POST", url, json=body, headers=headers) as response:
            for _ in response.iter_bytes():
                pass
            status = response.status_code
    else:
        status = client.post(url, json=body, headers=headers).status_code
    elapsed = (time.perf_counter() - started) * 1000
    if status != 200:
        raise RuntimeError(f"{url} answered {status}")
    return elapsed


def measure(
    direct: str, gateway: str, wrapped: str, requests: int, warmup: int, stream: bool
) -> dict:
    direct_headers = {"authorization": f"Bearer {OPENAI_KEY}"}
    gateway_headers = {"authorization": f"Bearer {wrapped}"}
    with httpx.Client(timeout=30) as client:
        for _ in range(warmup):
            timed(client, direct, direct_headers, stream)
            timed(client, gateway, gateway_headers, stream)
        direct_ms, gateway_ms = [], []
        for _ in range(requests):  # interleaved, so drift affects both sides alike
            direct_ms.append(timed(client, direct, direct_headers, stream))
            gateway_ms.append(timed(client, gateway, gateway_headers, stream))
    result = {"requests": requests, "streaming": stream}
    for name, values in (("direct", direct_ms), ("gateway", gateway_ms)):
        result[name] = {
            "p50_ms": percentile(values, 50),
            "p99_ms": percentile(values, 99),
            "mean_ms": statistics.fmean(values),
        }
    result["added_p50_ms"] = result["gateway"]["p50_ms"] - result["direct"]["p50_ms"]
    result["added_p99_ms"] = result["gateway"]["p99_ms"] - result["direct"]["p99_ms"]
    return result


async def register(settings) -> str:
    async with KeyAdmin(settings, "bench") as admin:
        await admin.add_provider_key("openai", OPENAI_KEY)
        issued, _ = await admin.create_key("bench-latency")
    return issued.value


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--requests", type=int, default=400)
    options.add_argument("--warmup", type=int, default=50)
    args = options.parse_args()

    base = get_settings()
    with scratch_dir("keywarden-bench-") as home:
        kafka = LocalKafka(
            home=home,
            name="bench",
            port=free_port(),
            controller_port=free_port(),
            version=base.kafka_version,
            lib_dir=base.home / "kafka" / base.kafka_version / "lib",
        )
        asyncio.run(kafka.start())
        fake = FakeProvider({OPENAI_KEY}).start()
        gateway = None
        try:
            settings = load_settings(
                home=home,
                kafka_bootstrap=kafka.bootstrap,
                gateway_port=0,
                gateway_id="bench",
                gateway_upstream_openai=fake.base_url,
                gateway_upstream_anthropic=fake.base_url,
                gateway_upstream_google=fake.base_url,
            )
            wrapped = asyncio.run(register(settings))
            gateway = GatewayThread(settings)
            gateway_url = gateway.start() + "/v1/chat/completions"
            direct_url = fake.base_url + "/v1/chat/completions"
            runs = [
                measure(direct_url, gateway_url, wrapped, args.requests, args.warmup, stream)
                for stream in (False, True)
            ]
        finally:
            if gateway is not None:
                gateway.stop()
            fake.stop()
            asyncio.run(kafka.stop())

    for run in runs:
        kind = "streaming" if run["streaming"] else "non-streaming"
        print(
            f"{kind:>14}: direct p50 {run['direct']['p50_ms']:.2f} ms p99 "
            f"{run['direct']['p99_ms']:.2f} ms | "
            f"gateway p50 {run['gateway']['p50_ms']:.2f} ms p99 "
            f"{run['gateway']['p99_ms']:.2f} ms | "
            f"added p50 {run['added_p50_ms']:.2f} ms p99 {run['added_p99_ms']:.2f} ms"
        )
    out = PROJECT_ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = out / f"gateway_latency-{stamp}.json"
    path.write_text(
        json.dumps(
            {
                "benchmark": "gateway_latency",
                "at": stamp,
                "machine": platform.platform(),
                "cpus": __import__("os").cpu_count(),
                "runs": runs,
            },
            indent=2,
        )
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
