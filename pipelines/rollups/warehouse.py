"""ClickHouse rollups per key and model per minute, hour and day, recomputed by the pipeline.

The ingest step marks the (key, hour) spans it stored; `RollupRefresher` recomputes them from
`request_events FINAL` every few seconds, off the hot path (see schemas/clickhouse/0020 for why
not materialized views). At start it also recomputes spans ingested since the newest refresh, so
a worker killed before its refresh leaves no rollup stale. `refresh_spans` is reused by reprice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from clickhouse_connect.driver.client import Client

from keywarden.background import BackgroundTask
from pipelines.rollups.state import DAY, HOUR, day_start, hour_start
from pipelines.sinks.clickhouse import now_version

log = logging.getLogger(__name__)

_SQL = (Path(__file__).with_name("sql") / "refresh_rollup.sql").read_text(encoding="utf-8")
GRAINS = (
    ("usage_rollup_minute", "toStartOfMinute", hour_start, HOUR),
    ("usage_rollup_hour", "toStartOfHour", hour_start, HOUR),
    ("usage_rollup_day", "toStartOfDay", day_start, DAY),
)
Span = tuple[str, datetime, datetime]  # key, first event time, last event time
_KEYS_CHARS = 12_000  # key characters per statement (sent as a URL parameter)


def refresh_spans(client: Client, spans: Iterable[Span]) -> int:
    """Recompute every grain's buckets that the spans touch; returns the statements run."""
    by_range: dict[tuple[str, datetime, datetime], set[str]] = {}
    for key, first, last in spans:
        for table, _function, floor, size in GRAINS:
            lo, hi = floor(first), floor(last) + size
            by_range.setdefault((table, lo, hi), set()).add(key)
    version = now_version()
    statements = 0
    for (table, lo, hi), keys in sorted(by_range.items()):
        function = next(f for t, f, _, _ in GRAINS if t == table)
        sql = _SQL.replace("__TABLE__", table).replace("__BUCKET__", function)
        for chunk in _key_chunks(sorted(keys)):
            client.command(sql, parameters={"keys": chunk, "lo": lo, "hi": hi,
                                            "version": version})
            statements += 1
    return statements


def _key_chunks(keys: list[str], max_chars: int = _KEYS_CHARS) -> Iterator[list[str]]:
    """`keys` in runs whose combined length stays under `max_chars`: parameters travel in the
    URL, and a refresh of thousands of keys at once (a replay, 100k active keys) was refused
    as too long a request line, and retried forever."""
    chunk: list[str] = []
    size = 0
    for key in keys:
        if chunk and size + len(key) + 4 > max_chars:
            yield chunk
            chunk, size = [], 0
        chunk.append(key)
        size += len(key) + 4
    if chunk:
        yield chunk


class RollupRefresher(BackgroundTask):
    """Collects touched spans and recomputes them in the background every `interval` seconds."""

    def __init__(self, client_factory: Callable[[], Client], interval: float) -> None:
        self._client_factory = client_factory
        self.interval = interval
        self._pending: dict[str, tuple[datetime, datetime]] = {}
        self._task: asyncio.Task[None] | None = None
        self.refreshes = 0
        self.failures = 0

    def mark(self, wrapped_key_id: str, at: datetime) -> None:
        first, last = self._pending.get(wrapped_key_id, (at, at))
        self._pending[wrapped_key_id] = (min(first, at), max(last, at))

    def _task_name(self) -> str:
        return "rollup-refresher"

    async def _after_stop(self, was_running: bool) -> None:
        await self.flush()  # flushing stop: what was marked is recomputed before we go

    async def flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        spans = _coalesce(pending)
        try:
            await asyncio.to_thread(self._refresh, spans)
            self.refreshes += 1
        except Exception as error:  # side work: count, log, retry next round; never raise
            self.failures += 1
            log.warning("rollup refresh failed (%s); will retry", type(error).__name__)
            for key, first, last in spans:
                self.mark(key, first)
                self.mark(key, last)

    def _refresh(self, spans: list[Span]) -> None:
        client = self._client_factory()
        try:
            refresh_spans(client, spans)
        finally:
            client.close()

    async def catch_up(self) -> None:
        """Mark spans ingested since the newest rollup refresh (minus a margin) as touched."""
        def find() -> list[tuple[str, datetime, datetime]]:
            client = self._client_factory()
            try:
                newest = client.command("SELECT max(refreshed_at) FROM usage_rollup_hour")
                since = newest if isinstance(newest, datetime) else datetime(1970, 1, 1, tzinfo=UTC)
                rows = client.query(
                    "SELECT wrapped_key_id, min(occurred_at), max(occurred_at) FROM request_events "
                    "WHERE ingested_at >= {since:DateTime64(3, 'UTC')} GROUP BY wrapped_key_id",
                    parameters={"since": since - timedelta(minutes=1)},
                ).result_rows
                return [(key, first, last) for key, first, last in rows]
            finally:
                client.close()

        try:
            for key, first, last in await asyncio.to_thread(find):
                self.mark(key, first)
                self.mark(key, last)
        except Exception as error:
            log.warning("rollup catch-up query failed (%s)", type(error).__name__)

    async def _run(self) -> None:
        await self.catch_up()
        while True:
            await asyncio.sleep(self.interval)
            await self.flush()


def _coalesce(pending: dict[str, tuple[datetime, datetime]]) -> list[Span]:
    """Spans per key; keys whose hour spans coincide share one statement in refresh_spans."""
    return [(key, first, last) for key, (first, last) in sorted(pending.items())]
