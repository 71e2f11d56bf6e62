"""Alerts before a wrapped key's secret expires: `expiring_keys` is the pure rule (one
`AlertEvent(kind=KEY_EXPIRING)` per key within `warn_days` of its expiry, with an id derived from
the key and the expiry, so a re-run or a replay yields the same alert), and `ExpiryWatcher` runs
it periodically in the admin server and publishes new alerts to `alerts.v1`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from aiokafka import AIOKafkaProducer

from keywarden.background import BackgroundTask
from keywarden.kafka import KafkaUnavailable, kafka_errors
from schemas.events.alert import AlertEvent, AlertKind, Severity
from schemas.events.keys import WrappedKeyRecord
from schemas.topics import ALERTS

log = logging.getLogger(__name__)


def expiring_keys(
    registry_state: Mapping[str, WrappedKeyRecord] | Iterable[WrappedKeyRecord],
    now: datetime,
    warn_days: float,
) -> list[AlertEvent]:
    """Alerts for live keys whose current secret expires within `warn_days` of `now` (or has
    expired already: critical). `registry_state` is `Registry.wrapped_keys` or its records."""
    records = registry_state.values() if isinstance(registry_state, Mapping) else registry_state
    alerts = []
    for key in sorted(records, key=lambda k: k.key_id):
        if key.revoked or key.expires_at is None:
            continue
        left = key.expires_at - now
        if left > timedelta(days=warn_days):
            continue
        expired = left <= timedelta(0)
        days_left = Decimal(str(round(left.total_seconds() / 86400, 2)))
        when = key.expires_at.isoformat()
        alerts.append(
            AlertEvent(
                alert_id=AlertEvent.make_id(AlertKind.KEY_EXPIRING, key.key_id, f"expires:{when}"),
                kind=AlertKind.KEY_EXPIRING,
                severity=Severity.CRITICAL if expired else Severity.WARNING,
                detected_at=now,
                wrapped_key_id=key.key_id,
                key_scope=key.scope,
                tags=key.tags,
                title=(
                    f"Wrapped key {key.scope} expired at {when}"
                    if expired
                    else f"Wrapped key {key.scope} expires in {days_left} days"
                ),
                summary=(
                    f"Rotate it with `keywarden keys rotate {key.key_id}` (the current secret "
                    "keeps working for a grace period) or extend its expiry."
                ),
                period=f"expires:{when}",
                metric="days_left",
                observed=days_left,
                threshold=Decimal(str(warn_days)),
                details={"expires_at": when},
            )
        )
    return alerts


class ExpiryWatcher(BackgroundTask):
    """Every `interval` seconds, publishes the expiry alerts not yet published by this process."""

    def __init__(
        self,
        keys: Callable[[], Iterable[WrappedKeyRecord]],
        producer: Callable[[], AIOKafkaProducer | None],
        warn_days: float,
        interval: float,
    ) -> None:
        self._keys = keys
        self._producer = producer
        self._warn_days = warn_days
        self._interval = interval
        self._sent: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    async def check_once(self, now: datetime | None = None) -> list[AlertEvent]:
        producer = self._producer()
        if producer is None:
            return []
        fresh = [
            a
            for a in expiring_keys(list(self._keys()), now or datetime.now(UTC), self._warn_days)
            if str(a.alert_id) not in self._sent
        ]
        for alert in fresh:
            try:
                with kafka_errors("could not publish an expiry alert"):
                    await producer.send_and_wait(
                        ALERTS, alert.to_json_bytes(), key=alert.wrapped_key_id.encode()
                    )
            except KafkaUnavailable as error:
                log.warning("%s", error)
                break
            self._sent.add(str(alert.alert_id))
        return fresh

    async def _run(self) -> None:
        while True:
            try:
                await self.check_once()
            except Exception:  # a failed round is logged; the next one tries again
                log.exception("expiry check failed")
            await asyncio.sleep(self._interval)

    def _task_name(self) -> str:
        return "admin-expiry-watcher"


__all__ = ["ExpiryWatcher", "expiring_keys"]
