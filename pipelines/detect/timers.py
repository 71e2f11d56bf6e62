"""Timer rules (orphaned keys, overdue provider-key rotation), run on the leader worker.

Their clock is the warehouse's event clock: the newest event time stored, advanced by the wall
time since that event was ingested. Live, that is wall time; during a replay of old traffic it is
the replay's time, so the rules judge the replayed world, not today's. Which alerts are open is
read from the `alerts` table, so a restarted or newly elected leader resolves what its
predecessor opened.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from pipelines.alerts import build
from pipelines.alerts.emitter import AlertEmitter
from pipelines.detect.orphan import idle_since
from pipelines.detect.rotation import overdue_age_days
from pipelines.registry import RegistryView
from schemas.events.alert import AlertEvent, AlertKind
from schemas.events.keys import ProviderKeyStatus

log = logging.getLogger(__name__)


def event_clock(client: Client) -> datetime:
    newest, ingested = client.query(
        "SELECT max(occurred_at), max(ingested_at) FROM request_events").result_rows[0]
    wall = datetime.now(UTC)
    if not isinstance(newest, datetime) or newest.year < 2000:
        return wall
    return newest + max(wall - ingested, wall - wall)


@dataclass
class KeyHygieneCheck:
    """Orphaned keys and rotation-overdue provider keys, as of the event clock."""

    registry: RegistryView
    emitter: AlertEmitter
    client_factory: Callable[[], Client]
    orphan_days: int = 30

    async def run(self) -> list[AlertEvent]:
        if not self.registry.ready.is_set():
            return []
        now, last_requests, open_orphans, open_rotations = await asyncio.to_thread(self._read)
        alerts = self.orphans(now, last_requests, open_orphans) + self.rotations(
            now, open_rotations)
        return await self.emitter.emit(alerts)

    def _read(self) -> tuple[datetime, dict[str, datetime], list[dict[str, str]],
                             list[dict[str, str]]]:
        client = self.client_factory()
        try:
            now = event_clock(client)
            rows = client.query(
                "SELECT wrapped_key_id, max(occurred_at) FROM request_events "
                "WHERE wrapped_key_id IN {keys:Array(String)} GROUP BY wrapped_key_id",
                parameters={"keys": sorted(self.registry.wrapped_keys)},
            ).result_rows
        finally:
            client.close()
        return (now, dict(rows), self.emitter.open_alerts(AlertKind.ORPHANED_KEY),
                self.emitter.open_alerts(AlertKind.ROTATION_OVERDUE))

    def orphans(self, now: datetime, last_requests: dict[str, datetime],
                open_alerts: list[dict[str, str]]) -> list[AlertEvent]:
        alerts: list[AlertEvent] = []
        still_open: set[str] = set()
        for key in self.registry.wrapped_keys.values():
            since = idle_since(created_at=key.created_at, last_request_at=last_requests.get(
                key.key_id), revoked=key.revoked, now=now, idle_days=self.orphan_days)
            if since is not None:
                alert = build.orphan_alert(wrapped_key_id=key.key_id, key_scope=key.scope,
                                           tags=key.tags, idle_since=since,
                                           idle_days=self.orphan_days, at=now)
                alerts.append(alert)
                still_open.add(str(alert.alert_id))
        for facts in open_alerts:
            if facts["id"] not in still_open:  # it made a request, or was revoked
                alerts.append(build.resolved(facts, at=now, wrapped_key_id=facts[
                    "wrapped_key_id"], key_scope=facts["key_scope"],
                    summary="The key is in use again or was revoked."))
        return alerts

    def rotations(self, now: datetime, open_alerts: list[dict[str, str]]) -> list[AlertEvent]:
        alerts: list[AlertEvent] = []
        still_open: set[str] = set()
        for key in self.registry.provider_keys.values():
            age = overdue_age_days(created_at=key.created_at, rotation_days=key.rotation_days,
                                   active=key.status is ProviderKeyStatus.ACTIVE, now=now)
            if age is not None:
                alert = build.rotation_alert(
                    provider_key_id=key.provider_key_id, provider=key.provider.value,
                    created_at=key.created_at, rotation_days=key.rotation_days, age_days=age,
                    at=now)
                alerts.append(alert)
                still_open.add(str(alert.alert_id))
        for facts in open_alerts:
            if facts["id"] not in still_open:
                alerts.append(build.resolved(facts, at=now, wrapped_key_id="",
                                             summary="The provider key was rotated."))
        return alerts
