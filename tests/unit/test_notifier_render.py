"""Block Kit rendering: each alert kind names the key, its tags and its figures, in valid blocks."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from slack_sdk.models.blocks import Block

from schemas.events.alert import AlertEvent, AlertKind, AlertState
from schemas.events.request import KeyTags
from services.notifier.cli import sample_alerts
from services.notifier.render import (
    LAYOUTS,
    render_alert,
    render_console,
    render_digest,
    render_resolution,
)


def _everything(message) -> str:  # type: ignore[no-untyped-def]
    import json

    return message.text + json.dumps(message.blocks, ensure_ascii=False)


def test_every_alert_kind_has_a_layout() -> None:
    assert set(LAYOUTS) == set(AlertKind)
    assert {alert.kind for alert in sample_alerts()} == set(AlertKind)


@pytest.mark.parametrize("alert", sample_alerts(), ids=lambda a: a.kind.value)
def test_message_names_key_tags_figures_and_next_step(alert: AlertEvent) -> None:
    message = render_alert(alert, mention="<@U123ABC>")
    text = _everything(message)
    for expected in ("payments-checkout-prod", "payments", "checkout", "prod", "<@U123ABC>"):
        assert expected in text
        assert expected in message.text  # the notification fallback alone carries them too
    assert "What to do next" in text
    assert str(alert.alert_id) in text
    assert message.metadata["event_payload"]["alert_id"] == str(alert.alert_id)
    # slack_sdk's own Block Kit models accept the blocks (lengths, required fields)
    parsed = Block.parse_all(message.blocks)
    assert [b.to_dict() for b in parsed]
    assert message.blocks[0]["type"] == "header"


@pytest.mark.parametrize(
    ("kind", "figures"),
    [
        (AlertKind.BUDGET_THRESHOLD, ["$81.20", "$100.00", "81%", "80% of cap"]),
        (AlertKind.SPIKE, ["$24.50", "$10.20", "2.4×"]),
        (AlertKind.FIRST_MODEL_USE, ["gpt-4.1"]),
        (AlertKind.ORPHANED_KEY, ["31 days", "30 days"]),
        (AlertKind.ROTATION_OVERDUE, ["97 days", "90 days"]),
        (AlertKind.UNKNOWN_MODEL_PRICE, ["gpt-9-preview", "12"]),
        (AlertKind.KEY_EXPIRING, ["5", "2026-12-02"]),
        (AlertKind.LEAKED_KEY, ["github.com/example/repo"]),
    ],
)
def test_figures_per_kind(kind: AlertKind, figures: list[str]) -> None:
    alert = next(a for a in sample_alerts() if a.kind is kind)
    message = render_alert(alert)
    for figure in figures:
        assert figure in _everything(message)
        assert figure in message.text


def test_spike_ratio_is_computed_when_missing() -> None:
    alert = AlertEvent(
        alert_id=AlertEvent.make_id(AlertKind.SPIKE, "k", "p"),
        kind=AlertKind.SPIKE,
        detected_at=datetime(2026, 11, 27, 10, tzinfo=UTC),
        key_scope="k",
        title="spike",
        metric="requests",
        observed=Decimal("300"),
        baseline=Decimal("100"),
    )
    assert "3.0× baseline" in render_alert(alert).text
    assert "300 requests" in render_alert(alert).text


def test_user_text_is_escaped_for_mrkdwn() -> None:
    alert = sample_alerts()[0].model_copy(update={"title": "a <b> & c"})
    assert "a &lt;b&gt; &amp; c" in render_alert(alert).blocks[1]["text"]["text"]


def test_resolution_replies_in_thread() -> None:
    alert = sample_alerts()[1].model_copy(update={"state": AlertState.RESOLVED})
    message = render_resolution(alert, "1700000000.000100")
    assert message.thread_ts == "1700000000.000100"
    assert message.text.startswith("Resolved:")
    Block.parse_all(message.blocks)


def test_digest_lists_every_alert_within_block_limits() -> None:
    alerts = [
        a.model_copy(update={"key_scope": f"key-{i}"})
        for i in range(60)
        for a in sample_alerts()[:1]
    ]
    message = render_digest("#pay", alerts, 60)
    assert len(message.blocks) <= 50
    assert "60 alerts" in message.blocks[0]["text"]["text"]
    assert "key-0" in _everything(message) and "and 20 more" in _everything(message)
    Block.parse_all(message.blocks)


def test_console_form_is_readable_plain_text() -> None:
    alert = sample_alerts()[0]
    out = render_console(render_alert(alert, "@dana"), "#pay")
    assert "#pay" in out and "Spend: $81.20 of $100.00 cap (81%)" in out
    assert "*" not in out and "`" not in out
    assert KeyTags().team == ""
