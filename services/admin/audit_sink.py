"""`audit.v1` -> ClickHouse `audit_log`: a consumer group reads audit events in batches and
inserts them; the offset is committed only after the insert. A redelivered event (after a crash
between insert and commit) is inserted again but `audit_log` is a ReplacingMergeTree ordered by
(entity_id, occurred_at, event_id), so it collapses into one row; readers use FINAL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer
from clickhouse_connect.driver import Client

from keywarden.clickhouse import get_client
from keywarden.kafka import KafkaUnavailable, ensure_topics, kafka_errors, make_consumer
from keywarden.settings import Settings
from schemas.events.audit import AuditEvent
from schemas.topics import AUDIT, TOPICS

log = logging.getLogger(__name__)

AUDIT_COLUMNS = (
    "event_id", "occurred_at", "actor", "action", "entity_kind", "entity_id",
    "registry_event_id", "before", "after", "details",
)  # fmt: skip


def audit_row(event: AuditEvent) -> list[Any]:
    """One `audit_log` row (before/after as JSON text, empty when absent)."""
    return [
        event.event_id,
        event.occurred_at,
        event.actor,
        event.action.value,
        event.entity_kind,
        event.entity_id,
        event.registry_event_id,
        json.dumps(event.before, sort_keys=True) if event.before is not None else "",
        json.dumps(event.after, sort_keys=True) if event.after is not None else "",
        dict(event.details),
    ]


def decode_batch(values: list[bytes]) -> list[AuditEvent]:
    """The valid audit events among raw records (an invalid one is logged, without payload)."""
    events = []
    for value in values:
        try:
            events.append(AuditEvent.model_validate_json(value))
        except ValueError as error:
            log.warning("skipped an invalid audit record: %s", type(error).__name__)
    return events


class AuditSink:
    """Consumes `audit.v1` into `audit_log` until stopped. `start()`/`stop()` are idempotent."""

    def __init__(self, settings: Settings, clickhouse_url: str | None = None) -> None:
        self.settings = settings
        self._url = clickhouse_url or settings.clickhouse_url
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._client: Client | None = None
        self.rows_written = 0

    async def start(self) -> None:
        if self._task is not None:
            return
        await ensure_topics(self.settings, [t for t in TOPICS if t.name == AUDIT], timeout=10)
        self._client = await asyncio.to_thread(get_client, self._url)
        consumer = make_consumer(
            AUDIT,
            group_id=self.settings.admin_audit_sink_group,
            settings=self.settings,
            fetch_max_wait_ms=100,
        )
        with kafka_errors(f"cannot consume {AUDIT}"):
            await consumer.start()
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(), name="audit-sink")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.stop(), 10)
        client, self._client = self._client, None
        if client is not None:
            client.close()

    async def __aenter__(self) -> AuditSink:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def run_forever(self) -> None:
        await self.start()
        assert self._task is not None
        await self._task

    async def _run(self) -> None:
        assert self._consumer is not None and self._client is not None
        consumer, client = self._consumer, self._client
        timeout_ms = int(self.settings.admin_audit_sink_batch_seconds * 1000)
        while True:
            try:
                with kafka_errors(f"reading {AUDIT}"):
                    batches = await consumer.getmany(
                        timeout_ms=timeout_ms, max_records=self.settings.admin_audit_sink_batch_rows
                    )
                values = [r.value for records in batches.values() for r in records if r.value]
                if not values:
                    continue
                events = decode_batch(values)
                # 1. insert (idempotent: ReplacingMergeTree by event id)
                if events:
                    rows = [audit_row(e) for e in events]
                    await asyncio.to_thread(
                        client.insert, "audit_log", rows, column_names=list(AUDIT_COLUMNS)
                    )
                    self.rows_written += len(rows)
                # 2. commit the offsets of what was stored (never before step 1)
                with kafka_errors(f"committing {AUDIT} offsets"):
                    await consumer.commit()
            except asyncio.CancelledError:
                raise
            except KafkaUnavailable as error:
                log.warning("audit sink: %s; retrying", error)
                await asyncio.sleep(1.0)
            except Exception as error:  # ClickHouse down: rewind to the last commit and retry
                log.warning("audit sink: insert failed (%s); retrying", type(error).__name__)
                await asyncio.sleep(1.0)
                for partition in consumer.assignment():
                    committed = await consumer.committed(partition)
                    if committed is None:
                        await consumer.seek_to_beginning(partition)
                    else:
                        consumer.seek(partition, committed)


__all__ = ["AUDIT_COLUMNS", "AuditSink", "audit_row", "decode_batch"]
