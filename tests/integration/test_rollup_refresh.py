"""Rollup refresh at scale: one refresh of thousands of keys (a replay, a busy minute of 100,000
active keys) recomputes every key's buckets, instead of being refused as too long a request."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from keywarden.clickhouse import get_client
from pipelines.pricing import price
from pipelines.rollups.warehouse import refresh_spans
from pipelines.sinks.clickhouse import REQUEST_COLUMNS, request_row
from schemas.events.request import Provider, Usage
from tests.support.analytics import CATALOG, Key, unique

HOUR = datetime(2026, 11, 20, 9, tzinfo=UTC)
KEYS = 4000


def test_one_refresh_of_thousands_of_keys_recomputes_every_key(warehouse_db: str) -> None:
    usage = Usage(input_tokens=1000, output_tokens=100)
    keys = [Key(unique(f"many_keys_{n}"), Provider.OPENAI, "gpt-4o-mini", usage)
            for n in range(KEYS)]
    events = [key.event(HOUR + timedelta(seconds=n % 3600)) for n, key in enumerate(keys)]
    client = get_client(warehouse_db)
    try:
        rows = [request_row(price(event, CATALOG), HOUR, 1) for event in events]
        client.insert("request_events", rows, column_names=list(REQUEST_COLUMNS))
        statements = refresh_spans(client, [(e.wrapped_key_id, e.occurred_at, e.occurred_at)
                                            for e in events])
        refreshed = client.command(
            "SELECT uniqExact(wrapped_key_id) FROM usage_rollup_hour FINAL "
            "WHERE bucket = {hour:DateTime64(3, 'UTC')}", parameters={"hour": HOUR})
    finally:
        client.close()
    assert int(refreshed) == KEYS
    assert statements > 3  # the keys were split over several statements per grain
