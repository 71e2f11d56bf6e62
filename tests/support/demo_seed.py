"""Demo-like warehouse data for the notebooks: eight days of synthetic traffic priced with the
real catalog, a spike on one key in the last hour, and an alert delivery for that spike."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

from clickhouse_connect.driver import Client

from keywarden.synthetic import DEFAULT_KEYS, synthetic_event, synthetic_traffic
from pipelines.pricing import price
from pipelines.sinks.clickhouse import REQUEST_COLUMNS, request_row
from schemas.pricing import load_catalog

DEMO_END = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SPIKE_KEY = DEFAULT_KEYS[0]  # wk_payments_chatbot_prod


def seed_demo(client: Client, *, days: int = 8, per_hour: int = 8) -> int:
    """Insert the demo traffic; returns the number of request rows."""
    catalog = load_catalog()
    spacing = timedelta(hours=1) / per_hour
    count = days * 24 * per_hour
    events = synthetic_traffic(count, start=DEMO_END - spacing * count, spacing=spacing, seed=11)
    rng = random.Random(5)
    spike_start = DEMO_END - timedelta(minutes=50)
    events += [synthetic_event(SPIKE_KEY, spike_start + timedelta(seconds=15 * i), rng)
               for i in range(160)]
    ingested = datetime.now(UTC)
    rows = [request_row(price(event, catalog), ingested, 1) for event in events]
    client.insert("request_events", rows, column_names=list(REQUEST_COLUMNS))
    client.insert(
        "alert_deliveries",
        [[uuid.uuid4(), uuid.uuid4(), "sent", "spike", "warning", SPIKE_KEY.wrapped_key_id,
          SPIKE_KEY.scope, SPIKE_KEY.team, SPIKE_KEY.service, SPIKE_KEY.environment,
          "#payments", "bot", 1, "delivered", DEMO_END, DEMO_END]],
        column_names=["attempt_id", "alert_id", "state", "kind", "severity", "wrapped_key_id",
                      "key_scope", "team", "service", "environment", "channel", "mode",
                      "attempt", "outcome", "detected_at", "attempted_at"],
    )
    return len(rows)


__all__ = ["DEMO_END", "SPIKE_KEY", "seed_demo"]
