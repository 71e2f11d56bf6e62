"""Delivery attempts and outcomes, batched into ClickHouse `alert_deliveries`. Writing them is
side work: when ClickHouse is down the rows stay buffered (bounded, oldest dropped and counted)
and the next flush retries them with the same attempt ids; delivery never waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any, Protocol

from keywarden.background import BackgroundTask
from schemas.events.alert import AlertEvent
from schemas.ids import uuid7

log = logging.getLogger(__name__)

TABLE = "alert_deliveries"


@dataclass(frozen=True)
class DeliveryAttempt:
    """One row of `alert_deliveries` (schemas/clickhouse/0030_alert_deliveries.sql)."""

    attempt_id: uuid.UUID
    alert_id: uuid.UUID
    state: str
    kind: str
    severity: str
    wrapped_key_id: str
    key_scope: str
    team: str
    service: str
    environment: str
    channel: str
    mode: str
    attempt: int
    outcome: str
    error: str
    http_status: int
    wait_ms: int
    latency_ms: float
    slack_channel: str
    slack_ts: str
    thread_ts: str
    digest_size: int
    detected_at: datetime
    attempted_at: datetime
    notifier_id: str

    @classmethod
    def of(cls, alert: AlertEvent, **values: Any) -> DeliveryAttempt:
        row: dict[str, Any] = {
            "attempt_id": uuid7(),
            "alert_id": alert.alert_id,
            "state": alert.state.value,
            "kind": alert.kind.value,
            "severity": alert.severity.value,
            "wrapped_key_id": alert.wrapped_key_id,
            "key_scope": alert.key_scope,
            "team": alert.tags.team,
            "service": alert.tags.service,
            "environment": alert.tags.environment,
            "channel": "",
            "mode": "",
            "attempt": 1,
            "outcome": "",
            "error": "",
            "http_status": 0,
            "wait_ms": 0,
            "latency_ms": 0.0,
            "slack_channel": "",
            "slack_ts": "",
            "thread_ts": "",
            "digest_size": 0,
            "detected_at": alert.detected_at,
            "attempted_at": datetime.now(UTC),
            "notifier_id": "",
        }
        row.update(values)
        return cls(**row)


COLUMNS = [f.name for f in fields(DeliveryAttempt)]


class DeliveryLog(Protocol):
    def add(self, row: DeliveryAttempt) -> None: ...


class MemoryDeliveryLog:
    """Keeps rows in a list (tests, console demos without a warehouse)."""

    def __init__(self) -> None:
        self.rows: list[DeliveryAttempt] = []

    def add(self, row: DeliveryAttempt) -> None:
        self.rows.append(row)


class ClickHouseDeliveryLog(BackgroundTask):
    """Buffers rows and inserts them in batches every `flush_seconds` or `batch_rows` rows.

    `client_factory` returns a clickhouse-connect client (keywarden.clickhouse.get_client);
    inserts run in a worker thread so the event loop keeps delivering.
    """

    def __init__(
        self,
        client_factory: Callable[[], Any],
        *,
        batch_rows: int = 500,
        flush_seconds: float = 2.0,
        max_buffer: int = 100_000,
        table: str = TABLE,
    ) -> None:
        self._client_factory = client_factory
        self._client: Any = None
        self._batch_rows = batch_rows
        self._flush_seconds = flush_seconds
        self._buffer: deque[DeliveryAttempt] = deque()
        self._max_buffer = max_buffer
        self._table = table
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self.dropped = 0
        self.inserted = 0

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def add(self, row: DeliveryAttempt) -> None:
        if len(self._buffer) >= self._max_buffer:
            self._buffer.popleft()
            self.dropped += 1
            if self.dropped in (1, 10, 100, 1000) or self.dropped % 10_000 == 0:
                log.warning("alert_deliveries buffer full: %d rows dropped so far", self.dropped)
        self._buffer.append(row)
        if len(self._buffer) >= self._batch_rows:
            self._wakeup.set()

    def _task_name(self) -> str:
        return "alert-deliveries-flush"

    async def _after_stop(self, was_running: bool) -> None:
        """One last flush (kept short: ClickHouse may be down), then close the client."""
        if was_running:
            await self.flush()
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self._flush_seconds)
            self._wakeup.clear()
            await self.flush()

    async def flush(self) -> bool:
        """Insert everything buffered; False (rows kept) if ClickHouse did not take them."""
        while self._buffer:
            batch = [self._buffer[i] for i in range(min(self._batch_rows, len(self._buffer)))]
            try:
                await asyncio.to_thread(self._insert, batch)
            except Exception as error:  # noqa: BLE001 — any failure: keep the rows, retry later
                if not self._failing:
                    log.warning(
                        "ClickHouse insert into %s failed (%s); buffering %d delivery rows",
                        self._table,
                        type(error).__name__,
                        len(self._buffer),
                    )
                self._failing = True
                self._client = None  # reconnect next time
                return False
            for _ in batch:
                self._buffer.popleft()
            self.inserted += len(batch)
            if self._failing:
                log.info("ClickHouse is back: %s inserts resumed", self._table)
                self._failing = False
        return True

    def _insert(self, batch: list[DeliveryAttempt]) -> None:
        if self._client is None:
            self._client = self._client_factory()
        rows = [[asdict(row)[name] for name in COLUMNS] for row in batch]
        self._client.insert(self._table, rows, column_names=COLUMNS)


__all__ = [
    "COLUMNS",
    "ClickHouseDeliveryLog",
    "DeliveryAttempt",
    "DeliveryLog",
    "MemoryDeliveryLog",
]
