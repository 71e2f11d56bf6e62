"""Batched, idempotent writes of priced requests and dead letters to ClickHouse.

Flush order (each batch):
  1. insert the rows; `request_events` is a ReplacingMergeTree keyed by event_id, so writing a
     redelivered event again is harmless;
  2. only then return, so the agent acknowledges the records and faust commits their offsets;
  3. anything that marks an event as seen (see pipelines/ingest) happens after step 1, never before.
A warehouse that is down is retried with capped exponential backoff, forever, without losing the
place in the stream; rows ClickHouse refuses as invalid are bisected out and dead-lettered.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import (
    ClickHouseError,
    DatabaseError,
    DataError,
    OperationalError,
    ProgrammingError,
)

from pipelines.pricing import PricedRequest
from schemas.events.dead_letter import DeadLetterRecord

log = logging.getLogger(__name__)

REQUEST_COLUMNS = (
    "event_id", "occurred_at", "wrapped_key_id", "key_scope", "provider", "provider_key_id",
    "endpoint", "requested_model", "served_model", "model", "outcome", "rejection_reason",
    "http_status", "input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens",
    "reasoning_tokens", "cost_usd", "pricing_status", "catalog_version", "price_entry_id",
    "latency_ms", "time_to_first_token_ms", "streaming", "client_ip", "request_id", "gateway_id",
    "team", "service", "environment", "cost_center", "tags", "ingested_at", "row_version",
    "cache_write_5m_tokens", "cache_write_1h_tokens", "price_layer", "price_layer_version",
)  # fmt: skip

DEAD_LETTER_COLUMNS = (
    "received_at", "source_topic", "source_partition", "source_offset", "reason", "detail",
    "payload_preview",
)  # fmt: skip

# Server-side error codes that are worth retrying as they are (load, not bad data).
_TRANSIENT_CODES = {159, 160, 202, 203, 209, 210, 241, 242, 252, 285, 319, 425, 999}


def request_row(item: PricedRequest, ingested_at: datetime, row_version: int) -> tuple[Any, ...]:
    """One `request_events` row, in REQUEST_COLUMNS order."""
    event, priced = item.event, item.priced
    tags = event.tags
    return (
        event.event_id, event.occurred_at, event.wrapped_key_id, event.key_scope,
        event.provider.value, event.provider_key_id or "", event.endpoint,
        event.requested_model or "", event.served_model or "", event.model or "",
        event.outcome.value, event.rejection_reason.value if event.rejection_reason else "",
        event.http_status, event.usage.input_tokens, event.usage.output_tokens,
        event.usage.cached_input_tokens, event.usage.cache_write_tokens,
        event.usage.reasoning_tokens, priced.cost_usd, priced.status.value,
        priced.catalog_version, priced.price_entry_id or "", event.latency_ms,
        event.time_to_first_token_ms, event.streaming, event.client_ip or "", event.request_id,
        event.gateway_id, tags.team, tags.service, tags.environment, tags.cost_center,
        dict(tags.extra), ingested_at, row_version, event.usage.cache_write_5m_tokens,
        event.usage.cache_write_1h_tokens, priced.price_layer, priced.price_layer_version,
    )  # fmt: skip


def dead_letter_row(record: DeadLetterRecord, payload: bytes | None) -> tuple[Any, ...]:
    preview = (payload or b"")[:512].decode("utf-8", errors="replace")
    return (
        datetime.now(UTC), record.source_topic, record.source_partition, record.source_offset,
        record.reason, record.detail, preview,
    )  # fmt: skip


def is_transient(error: Exception) -> bool:
    """Whether retrying the same insert unchanged can succeed (an outage or load, not bad data)."""
    if isinstance(error, OperationalError):  # unreachable, connection reset, timed out
        return True
    if isinstance(error, (DataError, ProgrammingError)):  # raised client-side: the rows are wrong
        return False
    if isinstance(error, DatabaseError):
        code = getattr(error, "code", None)
        # No code: a proxy or load balancer answered, not ClickHouse; waiting is the safe choice.
        return code is None or code in _TRANSIENT_CODES
    return False


@dataclass
class Backoff:
    """Capped exponential backoff with full jitter."""

    base_seconds: float = 0.2
    max_seconds: float = 10.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.max_seconds, self.base_seconds * 2**attempt))


async def read_with_retry(read: Callable[[], Any], what: str,
                          backoff: Backoff | None = None) -> Any:
    """Run the blocking `read` in a thread, waiting out warehouse outages like the sink does."""
    backoff = backoff or Backoff()
    attempt = 0
    while True:
        try:
            return await asyncio.to_thread(read)
        except ClickHouseError as error:
            if not is_transient(error):
                raise
            delay = backoff.delay(attempt)
            attempt += 1
            log.warning("ClickHouse read (%s) failed (%s), retry %d in %.2fs",
                        what, type(error).__name__, attempt, delay)
            await asyncio.sleep(delay)


class ClickHouseSink:
    """Writes batches of rows to one table; retries outages, isolates rows ClickHouse refuses."""

    def __init__(
        self,
        client_factory: Callable[[], Client],
        table: str,
        columns: Sequence[str],
        backoff: Backoff | None = None,
    ) -> None:
        self._client_factory = client_factory
        self._client: Client | None = None
        self.table = table
        self.columns = list(columns)
        self.backoff = backoff or Backoff()
        self.rows_written = 0
        self.retries = 0
        # The table's column types, asked once: clickhouse-connect otherwise sends a DESCRIBE
        # TABLE before every insert (a round trip and its parsing per batch). Dropped with the
        # client, and before a refused insert is retried (the table may have changed).
        self._types: Sequence[Any] | None = None

    def _insert(self, rows: Sequence[tuple[Any, ...]]) -> None:
        if self._client is None:
            self._client = self._client_factory()
            self._types = None
        if self._types is None:
            self._types = self._client.create_insert_context(
                self.table, self.columns, column_oriented=True).column_types
        # Column-oriented: clickhouse-connect serializes column by column, and handing it the
        # columns saves its own row-to-column pass over every value.
        columns = [list(column) for column in zip(*rows, strict=True)]
        self._client.insert(self.table, columns, column_names=self.columns,
                            column_types=self._types, column_oriented=True)

    async def write(self, rows: Sequence[tuple[Any, ...]]) -> list[tuple[tuple[Any, ...], str]]:
        """Store `rows`; return the rows ClickHouse refused as invalid, with its message.

        Returns only once every other row is stored: an outage is waited out, not reported.
        """
        if not rows:
            return []
        attempt = 0
        described = False  # the types were asked again after a refusal
        while True:
            try:
                await asyncio.to_thread(self._insert, rows)
                self.rows_written += len(rows)
                return []
            except ClickHouseError as error:
                if is_transient(error):
                    delay = self.backoff.delay(attempt)
                    attempt += 1
                    self.retries += 1
                    self._client = None  # reconnect: the endpoint may have moved or restarted
                    log.warning(
                        "ClickHouse insert into %s failed (%s), retry %d in %.2fs",
                        self.table, type(error).__name__, attempt, delay,
                    )
                    await asyncio.sleep(delay)
                    continue
                if not described:  # refused: try once more with the table's types of now
                    described, self._types = True, None
                    continue
                return await self._isolate(rows, str(error))

    async def _isolate(
        self, rows: Sequence[tuple[Any, ...]], message: str
    ) -> list[tuple[tuple[Any, ...], str]]:
        if len(rows) == 1:
            return [(rows[0], message.splitlines()[0][:500])]
        middle = len(rows) // 2
        refused = await self.write(rows[:middle])
        return refused + await self.write(rows[middle:])


def now_version() -> int:
    """A row version that grows with wall time: later restatements win in ReplacingMergeTree."""
    return time.time_ns() // 1000
