"""Shared by the fault tests: databases reached through a proxy, per-key exact totals, rows."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from schemas.events.request import RequestEvent
from tests.support.analytics import cost, query


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
