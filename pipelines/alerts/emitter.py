"""Emits alert state changes: to `alerts.v1` first, then to the ClickHouse `alerts` table.

Order (each batch of alerts):
  1. drop the (alert_id, state) pairs the `alerts` table already holds: they were published;
  2. publish the rest to alerts.v1 (keyed by alert_id) and wait for the broker's acks;
  3. only then insert their rows: a row means "published".
A crash between 2 and 3 leaves a published alert without its row. So that the redelivered batch
does not publish it again, a restarted emitter first reads the recent tail of alerts.v1 (the
last `recent_window`, by record timestamp) and treats the pairs found there as published too.
The worker starts that read as it starts (`prefetch`), so its first alert does not wait for a
Kafka consumer to start and read the tail (≈1.7 s on a local broker); an alert raised before the
read finished waits for the same read.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from clickhouse_connect.driver.client import Client

from keywarden.compacted import TopicReader
from keywarden.settings import Settings
from pipelines.sinks.clickhouse import ClickHouseSink, read_with_retry
from schemas.events.alert import AlertEvent, AlertKind

log = logging.getLogger(__name__)

ALERT_COLUMNS = (
    "alert_id", "state", "kind", "severity", "detected_at", "wrapped_key_id", "key_scope",
    "provider_key_id", "model", "team", "service", "environment", "cost_center", "title",
    "summary", "period", "metric", "observed", "baseline", "ratio", "threshold", "limit_usd",
    "details", "published_at",
)  # fmt: skip

Publish = Callable[[bytes, bytes], Awaitable[None]]
RecentPairs = Callable[[], Awaitable[set[tuple[str, str]]]]


async def recently_published(settings: Settings, topic: str, within: timedelta,
                             timeout: float = 30.0) -> set[tuple[str, str]]:
    """The (alert_id, state) pairs on `topic` with a record timestamp in the last `within`."""
    pairs: set[tuple[str, str]] = set()

    def collect(_key: bytes | None, value: bytes | None) -> None:
        try:
            doc = json.loads(value or b"")
            pairs.add((str(doc["alert_id"]), str(doc["state"])))
        except (ValueError, KeyError, TypeError):
            pass

    reader = TopicReader(topic, settings, poll_ms=500)
    try:
        await reader.start(timeout, since=datetime.now(UTC) - within, must_exist=False)
        await reader.read_to_end(collect, timeout)
    finally:
        await reader.stop()
    return pairs


def alert_row(alert: AlertEvent, published_at: datetime) -> tuple[Any, ...]:
    tags = alert.tags
    return (
        alert.alert_id, alert.state.value, alert.kind.value, alert.severity.value,
        alert.detected_at, alert.wrapped_key_id, alert.key_scope, alert.provider_key_id or "",
        alert.model or "", tags.team, tags.service, tags.environment, tags.cost_center,
        alert.title, alert.summary, alert.period, alert.metric, alert.observed, alert.baseline,
        alert.ratio, alert.threshold, alert.limit_usd, dict(alert.details), published_at,
    )  # fmt: skip


class AlertEmitter:
    """Publishes alerts at most once per (alert_id, state) as far as the warehouse knows."""

    def __init__(self, publish: Publish, client_factory: Callable[[], Client],
                 recent: RecentPairs | None = None) -> None:
        self._publish = publish
        self._client_factory = client_factory
        self._recent = recent
        self._published_before: set[tuple[str, str]] | None = None
        self._reading = asyncio.Lock()  # one read of the tail, whoever asks first
        self.sink = ClickHouseSink(client_factory, "alerts", ALERT_COLUMNS)
        self.published = 0
        self.skipped = 0

    async def emit(self, alerts: Sequence[AlertEvent]) -> list[AlertEvent]:
        """Steps 1-3 of the module docstring; returns the alerts actually published."""
        unique: dict[tuple[str, str], AlertEvent] = {}
        for alert in alerts:
            unique.setdefault((str(alert.alert_id), alert.state.value), alert)
        if not unique:
            return []
        # 1. what the warehouse says was published already
        ids = sorted({pair[0] for pair in unique})
        known = await read_with_retry(lambda: self._known(ids), "published alerts")
        known |= await self._published()
        fresh = [alert for pair, alert in unique.items() if pair not in known]
        self.skipped += len(unique) - len(fresh)
        # 2. publish and wait for the acks
        for alert in fresh:
            await self._publish(str(alert.alert_id).encode(), alert.to_json_bytes())
        # 3. record them
        now = datetime.now(UTC)
        refused = await self.sink.write([alert_row(alert, now) for alert in fresh])
        if refused:
            raise RuntimeError(f"the alerts table refused {len(refused)} rows: {refused[0][1]}")
        self.published += len(fresh)
        return fresh

    async def prefetch(self) -> None:
        """Read the recent tail of alerts.v1 now, before any alert needs it. A failure (Kafka
        not reachable yet) is only logged: the first alert then reads the tail itself, and
        fails its batch as before if it still cannot."""
        try:
            pairs = await self._published()
        except Exception as error:  # noqa: BLE001 - any failure leaves the read to emit()
            log.warning("could not read the recently published alerts ahead (%s); the first "
                        "alert reads them", error)
        else:
            log.debug("read %d recently published alert states ahead", len(pairs))

    async def _published(self) -> set[tuple[str, str]]:
        async with self._reading:
            if self._published_before is None:
                self._published_before = await self._recent() if self._recent else set()
                log.info("%d recently published alert states found on the topic",
                         len(self._published_before))
        return self._published_before

    def _known(self, alert_ids: list[str]) -> set[tuple[str, str]]:
        client = self._client_factory()
        try:
            rows = client.query(
                "SELECT DISTINCT toString(alert_id), state FROM alerts "
                "WHERE alert_id IN {ids:Array(UUID)}", parameters={"ids": alert_ids},
            ).result_rows
        finally:
            client.close()
        return {(alert_id, state) for alert_id, state in rows}

    def open_alerts(self, kind: AlertKind) -> list[dict[str, str]]:
        """Alerts of `kind` opened and not resolved, as facts (blocking: call in a thread)."""
        client = self._client_factory()
        try:
            rows = client.query(
                "SELECT toString(alert_id), any(title), any(period), any(wrapped_key_id), "
                "any(key_scope), any(provider_key_id), any(metric), min(detected_at) "
                "FROM alerts WHERE kind = {kind:String} GROUP BY alert_id "
                "HAVING countIf(state = 'resolved') = 0",
                parameters={"kind": kind.value},
            ).result_rows
        finally:
            client.close()
        return [
            {"id": alert_id, "kind": kind.value, "title": title, "period": period,
             "wrapped_key_id": key, "key_scope": scope, "provider_key_id": provider_key,
             "metric": metric, "model": "", "since": since.isoformat()}
            for alert_id, title, period, key, scope, provider_key, metric, since in rows
        ]
