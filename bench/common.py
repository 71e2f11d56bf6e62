"""What every benchmark shares: the machine and versions it ran on, percentiles, an open-loop
load generator (fixed request rate, bounded in count and time, loopback only), and the local
stack as child processes (Kafka, warehouse, fake provider, gateway, pipeline worker).

`python -m bench.common fake-provider --key K` serves the fake provider in its own process (it
prints its port), so that it never shares a GIL with the load generator or the gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp

from keywarden.settings import PROJECT_ROOT, get_settings

RESULTS_DIR = PROJECT_ROOT / "bench-results"
LOOPBACK = "127.0.0.1"
CHAT_PATH = "/v1/chat/completions"
CHAT_BODY: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "max_tokens": 20,
    "messages": [{"role": "user", "content": "hello there"}],
}


# --- machine and versions -------------------------------------------------------------------


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _ram_gib() -> float | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def clickhouse_version(url: str) -> str | None:
    from keywarden.clickhouse import get_client

    with contextlib.suppress(Exception):
        client = get_client(url)
        try:
            return str(client.command("SELECT version()"))
        finally:
            client.close()
    return None


def machine_info(clickhouse_url: str | None = None) -> dict[str, Any]:
    """CPU, cores, RAM, OS and the versions of everything on the measured path."""
    packages = ["aiokafka", "faust-streaming", "clickhouse-connect", "chdb-core", "uvicorn",
                "uvloop", "httptools", "orjson", "httpx", "aiohttp", "pydantic", "slack_sdk"]
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": _ram_gib(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "kafka": get_settings().kafka_version,
        "packages": {name: _version(name) for name in packages},
    }
    if clickhouse_url:
        info["clickhouse"] = clickhouse_version(clickhouse_url)
    return info


# --- statistics -------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


def summarize(values: list[float]) -> dict[str, float | int]:
    """n, p50, p95, p99, mean and max of latencies in ms (zeros when there are none)."""
    if not values:
        return {"n": 0, "p50": 0.0, "p95": 0.0, "p99": 0.0, "mean": 0.0, "max": 0.0}
    return {
        "n": len(values),
        "p50": round(percentile(values, 50), 3),
        "p95": round(percentile(values, 95), 3),
        "p99": round(percentile(values, 99), 3),
        "mean": round(statistics.fmean(values), 3),
        "max": round(max(values), 3),
    }


def added(target: dict[str, Any], baseline: dict[str, Any]) -> dict[str, float]:
    """Per percentile, target minus baseline (ms)."""
    return {q: round(target[q] - baseline[q], 3) for q in ("p50", "p95", "p99")}


# --- the load generator -----------------------------------------------------------------------


@dataclass
class LoadResult:
    """What one open-loop run measured: latencies (ms, from each request's scheduled start, so a
    target that falls behind pays for its queue), failures, and the rate actually achieved."""

    target_rps: float
    latencies_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    sent: int = 0
    seconds: float = 0.0
    max_send_lag_ms: float = 0.0

    @property
    def achieved_rps(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "target_rps": self.target_rps,
            "achieved_rps": round(self.achieved_rps, 1),
            "sent": self.sent,
            "ok": len(self.latencies_ms),
            "errors": self.errors,
            "max_send_lag_ms": round(self.max_send_lag_ms, 2),
            "latency_ms": summarize(self.latencies_ms),
        }


def _loopback_only(url: str) -> None:
    host = url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
    if host not in (LOOPBACK, "localhost", "[::1]"):
        raise ValueError(f"the load generator only targets loopback, not {host}")


async def open_loop(
    url: str,
    headers: dict[str, str],
    body: dict[str, Any],
    *,
    rate: float,
    max_requests: int,
    max_seconds: float,
    max_in_flight: int = 2000,
    timeout_s: float = 10.0,
) -> LoadResult:
    """Send requests at a fixed `rate` whether or not earlier ones have answered (open loop),
    stopping after `max_requests` or `max_seconds`; waits for the stragglers up to `timeout_s`."""
    _loopback_only(url)
    result = LoadResult(target_rps=rate)
    payload = json.dumps(body).encode()
    send_headers = {**headers, "content-type": "application/json"}
    connector = aiohttp.TCPConnector(limit=max_in_flight, force_close=False)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    loop = asyncio.get_running_loop()
    in_flight: set[asyncio.Task[None]] = set()

    async def one(session: aiohttp.ClientSession, scheduled: float) -> None:
        try:
            async with session.post(url, data=payload, headers=send_headers) as response:
                async for _chunk in response.content.iter_any():
                    pass
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            name = type(error).__name__
            result.errors[name] = result.errors.get(name, 0) + 1
            return
        if status != 200:
            result.errors[f"http_{status}"] = result.errors.get(f"http_{status}", 0) + 1
            return
        result.latencies_ms.append((loop.time() - scheduled) * 1000)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = loop.time()
        interval = 1.0 / rate
        for index in range(max_requests):
            scheduled = started + index * interval
            if scheduled - started > max_seconds:
                break
            delay = scheduled - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                result.max_send_lag_ms = max(result.max_send_lag_ms, -delay * 1000)
            if len(in_flight) >= max_in_flight:
                result.errors["client_in_flight_cap"] = (
                    result.errors.get("client_in_flight_cap", 0) + 1
                )
                continue
            task = asyncio.create_task(one(session, scheduled))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            result.sent += 1
        if in_flight:
            await asyncio.wait(set(in_flight), timeout=timeout_s + 1)
        result.seconds = max(loop.time() - started, 1e-9)
        # The rate that was offered is what matters for a sustained-rate verdict: use the send
        # window, not the time the stragglers took.
        result.seconds = min(result.seconds, result.sent / rate if rate else result.seconds)
    return result


async def closed_loop(url: str, headers: dict[str, str], body: dict[str, Any],
                      count: int) -> LoadResult:
    """One request at a time, `count` times: latency with no queueing at all."""
    _loopback_only(url)
    result = LoadResult(target_rps=0.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            begun = loop.time()
            async with session.post(url, json=body, headers=headers) as response:
                async for _chunk in response.content.iter_any():
                    pass
                status = response.status
            result.sent += 1
            if status == 200:
                result.latencies_ms.append((loop.time() - begun) * 1000)
            else:
                result.errors[f"http_{status}"] = result.errors.get(f"http_{status}", 0) + 1
    result.seconds = loop.time() - started
    return result


async def warm_up(url: str, headers: dict[str, str], body: dict[str, Any], count: int) -> None:
    """A few sequential requests, so that connections, caches and JITs are warm."""
    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            async with session.post(url, json=body, headers=headers) as response:
                await response.read()


# --- child processes --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def rss_mib(pid: int) -> float:
    """Resident set size of a process in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def wait_http(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Until GET `url` answers 200 (or the process dies, or the timeout passes)."""
    import httpx

    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200:
                return
            last = response.status_code
        except httpx.HTTPError as error:
            last = type(error).__name__
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer 200 within {timeout}s (last: {last})")


@dataclass
class Child:
    """A child process with its log file; `stop()` is SIGTERM, then SIGKILL."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 15.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""


def spawn(name: str, argv: list[str], log_dir: Path, env: dict[str, str] | None = None,
          cwd: Path = PROJECT_ROOT) -> Child:
    log_path = log_dir / f"{name}.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            argv, cwd=cwd, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT,
        )
    return Child(name, process, log_path)


def spawn_fake_provider(keys: list[str], log_dir: Path) -> tuple[Child, str]:
    """The fake provider in its own process; returns it and its base URL."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.common", "fake-provider", "--port", str(port)]
    for key in keys:
        argv += ["--key", key]
    child = spawn("fake-provider", argv, log_dir)
    base_url = f"http://{LOOPBACK}:{port}"
    deadline = time.monotonic() + 20
    while True:
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), 0.5):
            break
        if child.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"fake provider did not start: {child.tail()}")
        time.sleep(0.05)
    return child, base_url


def spawn_floor(provider_url: str, log_dir: Path) -> tuple[Child, str]:
    """The floor (`bench/gateway_floor.py`: the least a Python pass-through does) in front of
    `provider_url`; returns it and its base URL once it accepts connections."""
    port = free_port()
    child = spawn("floor", [sys.executable, "-m", "bench.gateway_floor", "--port", str(port),
                            "--upstream", provider_url], log_dir)
    deadline = time.monotonic() + 20
    while True:
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), 0.5):
            break
        if child.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the floor did not start: {child.tail()}")
        time.sleep(0.05)
    return child, f"http://{LOOPBACK}:{port}"


def spawn_gateway(env: dict[str, str], log_dir: Path, name: str = "gateway",
                  workers: int = 1) -> tuple[Child, str]:
    """`keywarden gateway serve` on a free loopback port; returns once /readyz answers 200."""
    port = free_port()
    argv = [sys.executable, "-m", "keywarden.cli", "gateway", "serve", "--host", LOOPBACK,
            "--port", str(port)] + (["--workers", str(workers)] if workers > 1 else [])
    # KW_BENCH_GATEWAY_SOURCE: run the gateway of another source tree (an export of an earlier
    # commit) with this tree's benchmark, for before/after figures in one harness.
    source = os.environ.get("KW_BENCH_GATEWAY_SOURCE")
    child = spawn(name, argv, log_dir, env, cwd=Path(source) if source else PROJECT_ROOT)
    base_url = f"http://{LOOPBACK}:{port}"
    try:
        wait_http(base_url + "/readyz", 60, child.process)
    except Exception:
        child.stop()
        raise RuntimeError(f"gateway did not become ready: {child.tail()}") from None
    return child, base_url


def settings_env(**values: Any) -> dict[str, str]:
    """KEYWARDEN_* variables for a child process from settings field names."""
    return {f"KEYWARDEN_{name.upper()}": str(value) for name, value in values.items()}


@contextlib.contextmanager
def private_kafka(home: Path) -> Iterator[Any]:
    """A private Kafka broker on free ports (jar cache shared with the dev broker)."""
    from deploy.local.kafka import run_blocking
    from tests.support.kafka import start_test_broker

    broker = start_test_broker(home)
    try:
        yield broker
    finally:
        run_blocking(broker.stop())


@contextlib.contextmanager
def private_warehouse(data_dir: Path) -> Iterator[str]:
    """A private embedded warehouse; yields its base URL (database `keywarden`)."""
    from deploy.local.warehouse import spawn_warehouse, stop_warehouse
    from keywarden.clickhouse import get_client

    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = spawn_warehouse(data_dir, port)
    try:
        url = f"http://default:@{LOOPBACK}:{port}/keywarden"
        get_client(url, create_database=True).close()
        yield url
    finally:
        stop_warehouse(process)


def new_database(base_url: str, prefix: str) -> str:
    """A fresh, migrated database on the warehouse at `base_url`; returns its URL."""
    from keywarden.clickhouse import get_client
    from schemas.clickhouse.migrations import migrate

    url = f"{base_url.rsplit('/', 1)[0]}/{prefix}_{uuid.uuid4().hex[:8]}"
    client = get_client(url, create_database=True)
    try:
        migrate(client)
    finally:
        client.close()
    return url


PROVIDER_KEY = "sk-bench-openai"


@dataclass
class GatewayStack:
    """The fake provider, the floor and one gateway, each in its own process, with a wrapped
    key."""

    provider_url: str
    gateway_url: str
    wrapped_key: str
    gateway: Child
    provider: Child
    env: dict[str, str]
    floor_url: str
    floor: Child | None = None


async def _register(settings: Any, scope: str) -> str:
    from services.admin.registry_writer import KeyAdmin

    async with KeyAdmin(settings, "bench") as admin:
        if admin.registry.active_provider_key("openai") is None:
            await admin.add_provider_key("openai", PROVIDER_KEY)
        issued, _ = await admin.create_key(scope)
    return issued.value


@contextlib.contextmanager
def gateway_stack(scratch: Path, bootstrap: str, workers: int = 1,
                  **gateway_settings: Any) -> Iterator[GatewayStack]:
    """Fake provider, the floor in front of it, and `keywarden gateway serve` on private Kafka,
    a key registered."""
    from keywarden.settings import load_settings

    scratch.mkdir(parents=True, exist_ok=True)
    provider, provider_url = spawn_fake_provider([PROVIDER_KEY], scratch)
    gateway = floor = None
    try:
        floor, floor_url = spawn_floor(provider_url, scratch)
        values = {"home": scratch / "home", "kafka_bootstrap": bootstrap,
                  "gateway_id": "bench", "gateway_upstream_openai": provider_url,
                  "gateway_upstream_anthropic": provider_url,
                  "gateway_upstream_google": provider_url, **gateway_settings}
        settings = load_settings(**values)
        wrapped = asyncio.run(_register(settings, f"bench-{uuid.uuid4().hex[:6]}"))
        env = settings_env(**values)
        gateway, gateway_url = spawn_gateway(env, scratch, workers=workers)
        yield GatewayStack(provider_url, gateway_url, wrapped, gateway, provider, env, floor_url,
                           floor)
    finally:
        if gateway is not None:
            gateway.stop()
        if floor is not None:
            floor.stop()
        provider.stop()


def run_async(coroutine: Awaitable[Any]) -> Any:
    return asyncio.run(coroutine)  # type: ignore[arg-type]


def write_result(name: str, result: dict[str, Any], stamp: str) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    return path


async def _serve_fake_provider(port: int, keys: list[str]) -> None:
    from services.fakes.provider import FakeProvider

    provider = FakeProvider(keys, host=LOOPBACK, port=port)
    provider.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    while not stop.is_set():
        provider.clear_requests()  # the recording is for tests; a benchmark would only grow it
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
    provider.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.common")
    commands = parser.add_subparsers(dest="command", required=True)
    fake = commands.add_parser("fake-provider", help="serve the fake provider until SIGTERM")
    fake.add_argument("--port", type=int, required=True)
    fake.add_argument("--key", action="append", required=True)
    commands.add_parser("machine", help="print the machine and versions as JSON")
    args = parser.parse_args(argv)
    if args.command == "fake-provider":
        asyncio.run(_serve_fake_provider(args.port, args.key))
    else:
        print(json.dumps(machine_info(), indent=2))
    return 0


Callback = Callable[[], Awaitable[None]]

if __name__ == "__main__":
    sys.exit(main())
