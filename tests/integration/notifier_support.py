"""Helpers shared by the notifier's integration tests: alerts, waiting, an in-memory DLQ."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from schemas.events.alert import AlertEvent, AlertKind, AlertState
from schemas.events.request import KeyTags
from services.fakes.slack import FakeSlack, SlackCall


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


async def wait_until(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        await asyncio.sleep(0.02)


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
