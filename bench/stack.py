"""The local stack a benchmark runs against, each part its own process: private Kafka, a private
warehouse and fresh databases on it, the fake provider, the floor, and the gateway with a
registered key (`gateway_stack`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.processes import LOOPBACK, Child, free_port, settings_env, spawn, wait_http
from keywarden.settings import PROJECT_ROOT


def spawn_fake_provider(keys: list[str], log_dir: Path) -> tuple[Child, str]:
    """The fake provider in its own process; returns it and its base URL."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.fake_provider", "--port", str(port)]
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
