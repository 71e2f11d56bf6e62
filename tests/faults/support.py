"""Shared by the fault tests: databases reached through a proxy, per-key exact totals, rows, and
killing a worker while traffic arrives."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from keywarden.settings import Settings
from keywarden.synthetic import produce
from schemas.events.request import RequestEvent
from tests.support.analytics import cost, query
from tests.support.pipeline import PipelineProcess
from tests.support.waiting import wait_until_async


def via_port(url: str, port: int) -> str:
    """`url` with its port replaced (to go through a proxy)."""
    scheme, rest = url.split("://", 1)
    authority, path = rest.split("/", 1)
    credentials, _, hostport = authority.rpartition("@")
    host = hostport.rsplit(":", 1)[0]
    return f"{scheme}://{credentials}@{host}:{port}/{path}"


def exact_totals(events: Iterable[RequestEvent]) -> dict[str, tuple[int, Decimal]]:
    """key -> (distinct events, exact cost sum)."""
    totals: dict[str, tuple[int, Decimal]] = {}
    seen: set[Any] = set()
    for event in events:
        if event.event_id in seen:
            continue
        seen.add(event.event_id)
        count, total = totals.get(event.wrapped_key_id, (0, Decimal(0)))
        totals[event.wrapped_key_id] = (count + 1, total + cost(event))
    return totals


async def stored_totals(url: str, keys: Iterable[str]) -> dict[str, tuple[int, Decimal]]:
    """key -> (rows, cost sum) from request_events FINAL."""
    rows = await asyncio.to_thread(
        query, url, "SELECT wrapped_key_id, count(), sum(cost_usd) FROM request_events FINAL "
        "WHERE wrapped_key_id IN {keys:Array(String)} GROUP BY 1", keys=sorted(keys))
    return {key: (int(count), Decimal(total)) for key, count, total in rows}


async def distinct_ids(url: str, keys: Iterable[str]) -> tuple[int, int]:
    """(distinct event ids, rows after FINAL): equal when nothing is doubled."""
    rows = await asyncio.to_thread(
        query, url, "SELECT uniqExact(event_id), count() FROM request_events FINAL "
        "WHERE wrapped_key_id IN {keys:Array(String)}", keys=sorted(keys))
    return int(rows[0][0]), int(rows[0][1])


async def kill_mid_stream(worker: PipelineProcess, settings: Settings,
                          events: Sequence[RequestEvent], url: str, *, start: int, mark: int,
                          end: int, rate: float = 400) -> int:
    """SIGKILL `worker` while traffic is arriving; returns the distinct events stored just after.

    Waits until `worker` has stored `events[:start]` (all produced before), then produces
    `events[start:end]` at about `rate` events/s and kills the worker once `mark` are stored
    (checked every 0.1 s). The worker is then busy with events as they arrive. The last part,
    from halfway between `mark` and `end`, is produced only after the kill, so the kill lands
    before the end of the stream however fast the worker is."""
    keys = sorted({event.wrapped_key_id for event in events})

    async def wait_stored(count: int, what: str) -> None:
        async def stored_enough() -> bool:
            return (await distinct_ids(url, keys))[0] >= count

        try:
            await wait_until_async(stored_enough, 120, f"{count} events {what}", interval=0.1)
        except AssertionError:
            print(worker.log())
            raise

    hold = mark + (end - mark) // 2
    killed = asyncio.Event()

    async def trickle() -> None:
        step, first = max(1, int(rate / 10)), start
        while first < end:
            if first >= hold:
                await killed.wait()
            last = min(first + step, hold if first < hold else end)
            assert await produce(events[first:last], settings) == last - first
            first = last
            await asyncio.sleep(0.1)

    await wait_stored(start, "stored before the traffic")
    traffic = asyncio.create_task(trickle())
    try:
        await wait_stored(mark, "stored")
    except BaseException:
        traffic.cancel()
        raise
    worker.kill()
    killed_at = (await distinct_ids(url, keys))[0]
    killed.set()
    await traffic
    return killed_at
