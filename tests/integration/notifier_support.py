"""Helpers shared by the notifier's integration tests: alerts, waiting, an in-memory DLQ."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from keywarden.settings import Settings
from schemas.events.alert import AlertEvent, AlertKind, AlertState
from schemas.events.request import KeyTags
from services.fakes.slack import FakeSlack, SlackCall
from tests.support.kafka import committed_to_end


def make_alert(
    n: int,
    *,
    team: str = "team-a",
    kind: AlertKind = AlertKind.SPIKE,
    run: str = "",
    state: AlertState = AlertState.OPEN,
    **extra: Any,
) -> AlertEvent:
    key = f"key-{team}-{n}"
    return AlertEvent(
        alert_id=AlertEvent.make_id(kind, key, f"hour:{run}:{n}"),
        kind=kind,
        state=state,
        detected_at=datetime.now(UTC),
        wrapped_key_id=f"wk_{team}_{n}",
        key_scope=key,
        tags=KeyTags(team=team, service="svc", environment="prod"),
        title=f"Spend {n} spiking" if state is AlertState.OPEN else "Back under 2x baseline",
        metric="cost_usd",
        observed=Decimal("30"),
        baseline=Decimal("10"),
        ratio=Decimal("3"),
        **extra,
    )


async def alerts_all_handled(settings: Settings) -> bool:
    """Whether the notifier's group has committed the end of its alerts topic. An offset is
    committed once its alert is posted, skipped or dead-lettered, so from then on that notifier
    posts nothing more: what a test waits for before counting duplicates."""
    return await committed_to_end(settings, settings.notifier_group_id,
                                  settings.notifier_alerts_topic)


def posted_alert_ids(slack: FakeSlack, state: str = "open") -> list[str]:
    """alert ids of successful posts (from message metadata), one entry per post."""
    ids = []
    for call in slack.posts():
        payload = call.metadata.get("event_payload", {})
        if payload.get("state") == state:
            ids.extend(str(payload.get("alert_ids") or payload.get("alert_id")).split(","))
    return ids


def digest_posts(slack: FakeSlack) -> list[SlackCall]:
    return [c for c in slack.posts() if c.metadata.get("event_type") == "keywarden_alert_digest"]


class MemoryDeadLetters:
    """Stands in for alerts.dlq.v1 where no broker is involved."""

    def __init__(self) -> None:
        self.published: list[dict[str, Any]] = []

    async def publish(
        self, alert: AlertEvent, *, error: str, channel: str, http_status: int
    ) -> None:
        self.published.append(
            {"alert": alert, "error": error, "channel": channel, "http_status": http_status}
        )
