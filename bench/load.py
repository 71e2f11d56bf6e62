"""The load generator: open loop at a fixed request rate (bounded in count and time, loopback
only), closed loop, and warm-up, with the chat request every gateway benchmark sends."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.processes import LOOPBACK
from bench.stats import summarize

CHAT_PATH = "/v1/chat/completions"
CHAT_BODY: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "max_tokens": 20,
    "messages": [{"role": "user", "content": "hello there"}],
}


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

    def merged(self, other: LoadResult) -> LoadResult:
        """This result and `other` (a slice of the same target at the same rate) as one."""
        errors = dict(self.errors)
        for name, count in other.errors.items():
            errors[name] = errors.get(name, 0) + count
        return LoadResult(target_rps=self.target_rps,
                          latencies_ms=self.latencies_ms + other.latencies_ms, errors=errors,
                          sent=self.sent + other.sent, seconds=self.seconds + other.seconds,
                          max_send_lag_ms=max(self.max_send_lag_ms, other.max_send_lag_ms))

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
