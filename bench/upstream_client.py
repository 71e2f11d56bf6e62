"""The gateway's upstream client against aiohttp's, alone: CPU per request and latency.

Sequential requests from this process to the fake provider (its own process), plain and
streamed, alternating the two clients round by round so that both see the same machine:
aiohttp's `ClientSession` (what the gateway used until 2026-12-03, and what the floor and the
load generator use) and `services.gateway.http_client.HttpClient` (what the gateway uses now).
CPU is this process's user + system time over the round, so it is the client's own cost.

    python -m bench.upstream_client [--requests 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from statistics import median
from typing import Any

import aiohttp
import orjson
import uvloop

from bench.load import CHAT_BODY, CHAT_PATH
from bench.stack import spawn_fake_provider
from services.gateway.http_client import HttpClient

KEY = "sk-bench-upstream-client"
Client = Callable[[str, bytes, int], Awaitable[tuple[float, float]]]


async def with_aiohttp(url: str, body: bytes, count: int) -> tuple[float, float]:
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    connector = aiohttp.TCPConnector(limit=1000, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        return await _timed(count, lambda: _aiohttp_one(session, url, body, headers))


async def _aiohttp_one(session: aiohttp.ClientSession, url: str, body: bytes,
                       headers: dict[str, str]) -> None:
    async with session.request("POST", url, data=body, headers=headers) as response:
        async for _chunk in response.content.iter_any():
            pass


async def with_http_client(url: str, body: bytes, count: int) -> tuple[float, float]:
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    client = HttpClient()
    try:
        return await _timed(count, lambda: _http_client_one(client, url, body, headers))
    finally:
        await client.close()


async def _http_client_one(client: HttpClient, url: str, body: bytes,
                           headers: dict[str, str]) -> None:
    response = await client.request("POST", url, headers, body)
    async for _chunk in response.chunks():
        pass


async def _timed(count: int, one: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    """(CPU µs per request, p50 ms) over `count` sequential requests after 100 warm-ups."""
    for _ in range(100):
        await one()
    latencies = []
    cpu_before = time.process_time()
    for _ in range(count):
        started = time.perf_counter()
        await one()
        latencies.append(time.perf_counter() - started)
    cpu = time.process_time() - cpu_before
    return cpu / count * 1e6, median(latencies) * 1000


async def measure(base_url: str, requests: int, rounds: int) -> dict[str, Any]:
    url = base_url + CHAT_PATH
    out: dict[str, Any] = {}
    clients: dict[str, Client] = {"aiohttp": with_aiohttp, "keywarden": with_http_client}
    for kind, body in (("plain", CHAT_BODY), ("stream", CHAT_BODY | {"stream": True})):
        raw = orjson.dumps(body)
        figures: dict[str, list[tuple[float, float]]] = {name: [] for name in clients}
        for _ in range(rounds):
            for name, client in clients.items():
                figures[name].append(await client(url, raw, requests))
        out[kind] = {name: {"cpu_us_per_request": round(median(c for c, _ in runs), 1),
                            "p50_ms": round(median(p for _, p in runs), 3)}
                     for name, runs in figures.items()}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="per round and client")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kw-bench-upstream-") as scratch:
        provider, base_url = spawn_fake_provider([KEY], Path(scratch))
        try:
            result = uvloop.run(measure(base_url, args.requests, args.rounds))
        finally:
            provider.stop()
    print("case    client     CPU µs/request  p50 ms   (median of rounds)")
    for kind, clients in result.items():
        for name, figures in clients.items():
            print(f"{kind:<7} {name:<10} {figures['cpu_us_per_request']:>14.1f} "
                  f"{figures['p50_ms']:>7.3f}")
        ratio = clients["aiohttp"]["cpu_us_per_request"] / clients["keywarden"][
            "cpu_us_per_request"]
        print(f"{kind:<7} aiohttp / keywarden CPU: {ratio:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
