"""Profiling aid (not a benchmark of the product): the gateway's own work per request, in process,
with no sockets. The real `ProxyEndpoint` and `Gateway` (registry, policy, budget ledger, pricing,
adapters, event, publisher queue, metrics) run against a stub upstream that answers at once with
a fake provider's chat completion; the publisher's queue is emptied between requests instead of
being sent to Kafka. What it leaves out (uvicorn, aiohttp, the event loop's sockets, the Kafka
producer) is what the floor pays too, or is measured by `bench.gateway_profile`.

    python -m bench.gateway_hotpath [--requests 5000] [--rounds 7] [--budget] [--stream] [--profile]

It prints the fastest and the median round: on a shared machine the fastest is the one least
disturbed by other processes.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from bench.processes import scratch_dir
from keywarden.settings import load_settings
from schemas.events.keys import (
    KeyPolicy,
    ProviderKeyRecord,
    RegistryEvent,
    RegistryEventType,
    WrappedKeyRecord,
)
from services.gateway.auth import issue_wrapped_key
from services.gateway.gateway import Gateway
from services.gateway.proxy import ProxyEndpoint

REQUEST = orjson.dumps(
    {"model": "gpt-4o-mini", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
)
ANSWER = orjson.dumps(
    {
        "id": "chatcmpl-0123456789",
        "created": 1764700000,
        "model": "gpt-4o-mini-2024-07-18",
        "service_tier": "default",
        "system_fingerprint": "fp_fake0001",
        "object": "chat.completion",
        "usage": {
            "prompt_tokens": 9,
            "completion_tokens": 20,
            "total_tokens": 29,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "word " * 20, "refusal": None,
                            "annotations": []},
                "logprobs": None,
                "finish_reason": "length",
            }
        ],
    }
)


def _chunk(payload: Any) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def stream_answer() -> list[bytes]:
    common = {"id": "chatcmpl-0123456789", "created": 1764700000, "model": "gpt-4o-mini",
              "object": "chat.completion.chunk"}
    events = [_chunk({**common, "choices": [{"index": 0, "delta": {"role": "assistant",
                                                                    "content": ""}}],
                      "usage": None})]
    events += [_chunk({**common, "choices": [{"index": 0, "delta": {"content": "word "}}],
                       "usage": None}) for _ in range(20)]
    events.append(_chunk({**common, "choices": [], "usage": {"prompt_tokens": 9,
                                                              "completion_tokens": 20,
                                                              "total_tokens": 29}}))
    events.append(b"data: [DONE]\n\n")
    return events


class StubResponse:
    """Quacks like `forward.UpstreamResponse`."""

    def __init__(self, chunks: list[bytes] | None) -> None:
        self.status_code = 200
        self._chunks = chunks
        self.headers = {"content-type": "text/event-stream" if chunks else "application/json",
                        "x-request-id": "req_0123456789"}

    async def read(self) -> bytes:
        return ANSWER

    async def chunks(self) -> Any:
        for chunk in self._chunks or ():
            yield chunk

    async def close(self) -> None:
        return None


class StubUpstream:
    def __init__(self, stream: bool) -> None:
        self._chunks = stream_answer() if stream else None

    async def send(self, method: str, url: str, headers: dict[str, str], body: bytes,
                   provider: str) -> StubResponse:
        return StubResponse(self._chunks)


def build(home: Path, budget: bool, stream: bool) -> tuple[ProxyEndpoint, Gateway, str]:
    settings = load_settings(home=home, kafka_bootstrap="127.0.0.1:9", gateway_id="hotpath",
                             gateway_upstream_openai="http://127.0.0.1:9",
                             gateway_publish_queue_size=1_000_000)
    gateway = Gateway(settings)
    now = datetime.now(UTC)
    sealed = gateway.vault.seal("pk_hotpath", "sk-hotpath")
    provider_key = ProviderKeyRecord(provider_key_id="pk_hotpath", provider="openai",
                                     sealed=sealed, created_at=now)
    issued = issue_wrapped_key("hotpath", gateway.vault.pepper)
    policy = KeyPolicy(daily_budget_usd=Decimal("1000000"), monthly_budget_usd=Decimal("9000000"),
                       rpm=10_000_000, allowed_models=("gpt-4o*",)) if budget else KeyPolicy()
    record = WrappedKeyRecord(key_id=issued.key_id, scope="hotpath",
                              secret_hash=issued.secret_hash, policy=policy, created_at=now)
    for event in (
        RegistryEvent(occurred_at=now, actor="bench", type=RegistryEventType.PROVIDER_KEY_ADDED,
                      provider_key=provider_key),
        RegistryEvent(occurred_at=now, actor="bench", type=RegistryEventType.KEY_CREATED,
                      wrapped_key=record),
    ):
        gateway.registry.apply(event)
    gateway.registry_follower.ready.set()
    gateway.spend_follower.last_ok = time.monotonic() + 10**9  # spend feed "healthy"
    gateway.upstream = StubUpstream(stream)  # type: ignore[assignment]
    return ProxyEndpoint(gateway), gateway, issued.value


async def drive(endpoint: ProxyEndpoint, gateway: Gateway, wrapped: str, stream: bool,
                count: int) -> float:
    body = orjson.dumps({**orjson.loads(REQUEST), "stream": True}) if stream else REQUEST
    scope = {
        "type": "http", "method": "POST", "path": "/v1/chat/completions", "query_string": b"",
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8080), "scheme": "http",
        "http_version": "1.1", "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8080"), (b"user-agent", b"bench"),
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()), (b"accept", b"*/*"),
                    (b"authorization", b"Bearer " + wrapped.encode())],
    }
    request = {"type": "http.request", "body": body, "more_body": False}
    statuses: list[int] = []
    disconnected = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if stream:  # the relay's disconnect watcher waits here until the answer is done
            await disconnected.wait()
            return {"type": "http.disconnect"}
        return request

    first = [True]

    async def receive_once() -> dict[str, Any]:
        if first[0]:
            first[0] = False
            return request
        return await receive()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    queue = gateway.publisher._queue  # drained here instead of sent to Kafka
    started = time.process_time()
    for _ in range(count):
        first[0] = True
        await endpoint(scope, receive_once, send)
        while not queue.empty():
            queue.get_nowait()
    spent = time.process_time() - started
    bad = [s for s in statuses if s != 200]
    if bad:
        raise SystemExit(f"{len(bad)} requests were not answered 200: {bad[:5]}")
    return spent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000, help="per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--budget", action="store_true",
                        help="a key with daily and monthly caps, an RPM limit and an allowlist")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--profile", action="store_true", help="cProfile, top 30 by own time")
    args = parser.parse_args()
    with scratch_dir("kw-hotpath-") as home:  # the gateway's home: its keyring and spool
        return measure(args, home)


def measure(args: argparse.Namespace, home: Path) -> int:
    endpoint, gateway, wrapped = build(home, args.budget, args.stream)
    asyncio.run(drive(endpoint, gateway, wrapped, args.stream, 500))  # warm caches
    gc.collect()
    gc.freeze()
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        asyncio.run(drive(endpoint, gateway, wrapped, args.stream, args.requests))
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
        return 0
    rounds = sorted(
        asyncio.run(drive(endpoint, gateway, wrapped, args.stream, args.requests))
        / args.requests * 1e6
        for _ in range(args.rounds)
    )
    kind = ("stream" if args.stream else "plain") + (", capped key" if args.budget else "")
    print(f"{kind}: {rounds[0]:.1f} µs (fastest round), {rounds[len(rounds) // 2]:.1f} µs "
          f"(median) of CPU per request in the gateway's own code ({args.rounds} rounds of "
          f"{args.requests} requests, no sockets)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
