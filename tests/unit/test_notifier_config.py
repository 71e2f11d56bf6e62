"""Notifier configuration: the delivery mode follows what is configured, errors name the variable,
secrets stay out of reprs; the delivery-row buffer keeps rows while ClickHouse is down."""

from __future__ import annotations

from typing import Any

import pytest

from keywarden.settings import load_settings
from services.notifier.cli import sample_alerts
from services.notifier.deliveries import COLUMNS, ClickHouseDeliveryLog, DeliveryAttempt
from services.notifier.errors import NotifierConfigError
from services.notifier.service import build_transport, policy_from
from services.notifier.transport import ConsoleTransport, WebApiTransport, WebhookTransport

TOKEN = "xoxb-123-secret"
HOOK = "https://hooks.slack.com/services/T1/B2/very-secret"


def test_bot_token_selects_the_web_api_and_is_never_shown() -> None:
    settings = load_settings(slack_bot_token=TOKEN, slack_webhook_url=HOOK)
    transport = build_transport(settings)
    assert isinstance(transport, WebApiTransport)
    assert TOKEN not in repr(transport) and TOKEN not in repr(settings)
    assert HOOK not in repr(settings)


def test_webhook_urls_select_webhooks() -> None:
    settings = load_settings(slack_webhook_urls=f'{{"#pay": "{HOOK}"}}')
    transport = build_transport(settings)
    assert isinstance(transport, WebhookTransport) and HOOK not in repr(transport)
    assert isinstance(build_transport(load_settings(slack_webhook_url=HOOK)), WebhookTransport)


def test_nothing_configured_prints_to_the_console() -> None:
    nothing = load_settings(slack_bot_token=None, slack_webhook_url=None, slack_webhook_urls=None)
    assert isinstance(build_transport(nothing), ConsoleTransport)


def test_bad_webhook_map_names_the_variable() -> None:
    with pytest.raises(NotifierConfigError, match="KEYWARDEN_SLACK_WEBHOOK_URLS"):
        build_transport(load_settings(slack_webhook_urls="not json"))


def test_backoff_bounds_are_checked() -> None:
    with pytest.raises(NotifierConfigError, match="KEYWARDEN_NOTIFIER_RETRY_MAX_SECONDS"):
        policy_from(load_settings(notifier_retry_base_seconds=5, notifier_retry_max_seconds=1))


class _Client:
    def __init__(self) -> None:
        self.inserted: list[list[Any]] = []

    def insert(self, table: str, rows: list[list[Any]], column_names: list[str]) -> None:
        assert table == "alert_deliveries" and column_names == COLUMNS
        self.inserted.extend(rows)

    def close(self) -> None:
        pass


async def test_rows_are_buffered_while_clickhouse_is_down_and_bounded() -> None:
    state: dict[str, Any] = {"client": None}

    def connect() -> _Client:
        if state["client"] is None:
            raise ConnectionRefusedError("ClickHouse is down")
        return state["client"]

    log = ClickHouseDeliveryLog(connect, batch_rows=2, max_buffer=5)
    alert = sample_alerts()[0]
    for attempt in range(8):
        log.add(DeliveryAttempt.of(alert, attempt=attempt + 1, outcome="retrying"))
    assert log.buffered == 5 and log.dropped == 3
    assert await log.flush() is False and log.buffered == 5
    state["client"] = _Client()
    assert await log.flush() is True
    assert log.buffered == 0 and log.inserted == 5
    attempts = [row[COLUMNS.index("attempt")] for row in state["client"].inserted]
    assert attempts == [4, 5, 6, 7, 8]  # the oldest rows were the ones dropped
